"""CONV_2D generated kernels: receptive field widened to int16 in scratch + 2x2 register-blocked SMLAD GEMM.

One template (``templates/kernels/conv_gemm.c.j2``) covers the shape families that matter:

- ``1x1``: pointwise convs, stride 1 or 2 (KWS/MobileNet pointwise, ResNet shortcuts): the
  "receptive field" is one input pixel, widened with SXTAB16 (+ in_offset in the same instruction);
- ``kxk``: 3x3 and other windows (ResNet-8 3x3, any stride, SAME/VALID);
- ``first``: input channels not a multiple of 4 (first layers, 1-3 channels): the window is
  copied element by element, K padded to a multiple of 4.

Weights are re-laid-out at compile time: int16, [cout (even)][K padded to 4], lanes permuted like
the SXTAB16 pair (c0,c2),(c1,c3) when cin % 4 == 0. The bias is kept as is (the offset is added to
the input while widening, padding is 0, so no fold is needed). Requantization: requant.py.
"""

from __future__ import annotations

import functools

import numpy as np

from . import Generated, c_array
from .requant import acc_bound, conv_requant


@functools.lru_cache(maxsize=1)
def _env():
    """The emitter's Jinja settings (StrictUndefined, templates/), built once: templates compile once."""
    from ..emit import _env as emit_env

    return emit_env()


def render(template: str, **ctx) -> str:
    return _env().get_template(template).render(**ctx)

PERM4 = np.array([0, 2, 1, 3])
# Layers with more weights keep them int8 in flash (widened in the inner loop: 16 instructions per 16
# MACs instead of 12); smaller ones get them pre-extended to int16 (2x their flash). 16,384 keeps a
# MobileNetV1-0.25's flash within a 512 KB board; every KWS / ResNet-8 conv but the 64-channel 3x3 is int16.
INT16_MAX_WEIGHTS = 16384


def _shape(params: dict) -> dict:
    i, f, o = params["in"], params["filter"], params["out"]
    return {"h": i["h"], "w": i["w"], "cin": i["c"], "kh": f["h"], "kw": f["w"], "oh": o["h"], "ow": o["w"],
            "cout": o["c"], "sh": params["stride_h"], "sw": params["stride_w"], "ph": params["pad_h"],
            "pw": params["pad_w"]}


def applies(kind: str, params: dict, arrays: dict, arch: str) -> str | None:
    """None when the generated CONV_2D kernel runs this layer bit-exactly, else why not."""
    if kind != "CONV_2D":
        return f"{kind} is not CONV_2D"
    if params["in"]["n"] != 1 or params["out"]["n"] != 1:
        return "batch > 1 is not generated (one image per call)"
    if params["dil_h"] != 1 or params["dil_w"] != 1:
        return "dilated convolutions are not generated"
    if params["filter"]["n"] != params["out"]["c"] or params["filter"]["c"] != params["in"]["c"]:
        return "filter shape does not match the input/output channels"
    if np.any(np.asarray(arrays["mult"]) < 0):
        return "negative multiplier"
    s = _shape(params)
    k = s["kh"] * s["kw"] * s["cin"]
    if 4 * ((k + 3) // 4) * 4 > 1 << 16:
        return f"receptive field of {k} elements is too large for the scratch column"
    return None


def variant(params: dict) -> str:
    s = _shape(params)
    if s["kh"] == 1 and s["kw"] == 1 and s["ph"] == 0 and s["pw"] == 0:
        return "1x1"
    return "kxk" if s["cin"] % 4 == 0 else "first"


def layout_weights(w: np.ndarray, cout: int, kh: int, kw: int, cin: int, perm: bool) -> np.ndarray:
    """OHWI int8 -> int16 [cout rounded up to even][K rounded up to 4], lanes permuted if ``perm``."""
    k = kh * kw * cin
    kp = (k + 3) // 4 * 4
    coutp = cout + (cout & 1)
    out = np.zeros((coutp, kp), np.int16)
    out[:cout, :k] = np.asarray(w, np.int8).reshape(cout, k)
    if perm:
        out = out.reshape(coutp, kp // 4, 4)[:, :, PERM4].reshape(coutp, kp)
    return out


def _unroll(groups: int) -> int:
    """Groups of 4 K elements per loop iteration: all of them up to 16, else the largest divisor <= 16
    (LDRD offsets stay below 256 bytes)."""
    if groups <= 16:
        return groups
    return max(u for u in range(1, 17) if groups % u == 0)


def _pack16(wl: np.ndarray) -> np.ndarray:
    """int16 [coutp][kp] -> uint32 words in GEMM order: per channel pair, per group of 4, channel 0's
    two words then channel 1's (element 2i in the low half of a word)."""
    coutp, kp = wl.shape
    u = wl.astype(np.int32) & 0xFFFF
    words = (u[:, 0::2] | (u[:, 1::2] << 16)).astype(np.uint32)        # [coutp][kp/2]
    words = words.reshape(coutp // 2, 2, kp // 4, 2).transpose(0, 2, 1, 3)  # [pair][group][ch][2]
    return words.reshape(-1)


def _pack8(wl: np.ndarray) -> np.ndarray:
    """int16-range [coutp][kp] (scratch lane order s0..s3 per group) -> int8 words in GEMM order
    (per channel pair, per group, channel 0's word then channel 1's), bytes (s0, s2, s1, s3) so that
    SXTB16 gives the lanes (s0, s1) and SXTB16 ROR #8 gives (s2, s3)."""
    coutp, kp = wl.shape
    b = wl.astype(np.int8).reshape(coutp, kp // 4, 4)[:, :, PERM4].view(np.uint8).astype(np.uint32)
    words = b[:, :, 0] | (b[:, :, 1] << 8) | (b[:, :, 2] << 16) | (b[:, :, 3] << 24)  # [coutp][groups]
    return words.reshape(coutp // 2, 2, kp // 4).transpose(0, 2, 1).reshape(-1)


def _context(params: dict, arrays: dict, symbol: str) -> dict:
    s = _shape(params)
    k = s["kh"] * s["kw"] * s["cin"]
    kp = (k + 3) // 4 * 4
    cout = s["cout"]
    coutp = cout + (cout & 1)
    v = variant(params)
    perm = s["cin"] % 4 == 0
    w = np.asarray(arrays["weights"], np.int8).reshape(cout, k)
    bias = arrays.get("bias")
    bias = None if bias is None else np.asarray(bias, np.int32)
    rq = conv_requant(arrays["mult"], arrays["shift"], acc_bound(w, bias, int(params["in_offset"])),
                      int(params["out_offset"]))
    wl = layout_weights(w, cout, s["kh"], s["kw"], s["cin"], perm)
    off = int(params["in_offset"]) & 0xFFFF
    w16 = w.size <= INT16_MAX_WEIGHTS
    ctx = dict(s, sym=symbol, k=k, kp=kp, coutp=coutp, npix=s["oh"] * s["ow"], perm=perm,
               one_by_one=v == "1x1", variant=v, in_offset=int(params["in_offset"]),
               out_offset=int(params["out_offset"]), act_min=int(params["act_min"]), act_max=int(params["act_max"]),
               off2=off | (off << 16), has_bias=bias is not None, rq=rq,
               unroll=_unroll(kp // 4),
               w16=w16, weights_c=c_array("uint32_t", f"{symbol}_w", _pack16(wl) if w16 else _pack8(wl)))
    ctx["bias_c"] = ""
    const = wl.size * (2 if w16 else 1)
    if bias is not None:
        b = np.zeros(coutp, np.int32)
        b[:cout] = bias
        ctx["bias_c"] = c_array("int32_t", f"{symbol}_b", b)
        const += b.size * 4
    if not rq["per_tensor"]:
        const += 3 * 4 * cout + (0 if rq["nm_uniform"] or rq["mode"] == "smmlar" else 4 * cout)
    if not rq["ls_uniform"]:
        const += 4 * cout
    ctx["const_bytes"] = const
    return ctx


def generate(kind: str, params: dict, arrays: dict, arch: str, symbol: str, reverse: bool = False) -> Generated:
    """``reverse``: walk the output pixels from the last one down (same instructions; an output
    smaller than its input may then end at its input's end: :func:`access`)."""
    reason = applies(kind, params, arrays, arch)
    if reason is not None:
        raise ValueError(f"{symbol}: {reason}")
    ctx = _context(params, arrays, symbol)
    ctx["reverse"] = reverse
    src = render("kernels/conv_gemm.c.j2", **ctx)
    scratch = 4 * ctx["kp"] + (0 if ctx["perm"] else 2 * ctx["kp"])
    return Generated(symbol=symbol, source=src, args=("in0", "out0", "scratch"), scratch=scratch,
                     const_bytes=ctx["const_bytes"],
                     notes={"variant": f"{ctx['variant']} 2x2 blocked, K {ctx['k']}->{ctx['kp']}, "
                                       f"{'int16' if ctx['w16'] else 'int8'} weights" + (", reverse" if reverse else ""),
                            "requant": ctx["rq"]["mode"], "access": {"reverse": reverse}})


def alternatives(kind: str, params: dict, arrays: dict, arch: str, symbol: str) -> list[Generated]:
    """Variants the arena-driven choice may weigh (never chosen for speed): for a layer whose output
    is smaller than its input, the reverse walk (its output can sit at the top of its input, where a
    chain of layers placed over a later expanding layer's output wants it)."""
    i, o = params["in"], params["out"]
    if applies(kind, params, arrays, arch) is not None or o["h"] * o["w"] * o["c"] >= i["h"] * i["w"] * i["c"]:
        return []
    return [generate(kind, params, arrays, arch, symbol, reverse=True)]


def cost(kind: str, params: dict, arrays: dict, arch: str) -> float:
    """Estimated instructions on a Cortex-M33 with DSP: least-squares fit on 23 QEMU counts of
    benchmarks/kernel_bench.py shapes (within -6%/+23% of every one of them). Per 2x2 block and
    group of 4 K: 12 (4 LDRD + 8 SMLAD); per 2x2 block: 73 (4 requantizations, loop); per widened
    element: 2.7 (SXTAB16 path) or 7.2 (element copy); per output pixel and filter row: 29.5, less 29.6
    per pixel. ``arch`` "none"/"portable" (tg_dsp.h's C definitions): x3, not measured."""
    s = _shape(params)
    k = s["kh"] * s["kw"] * s["cin"]
    kp = (k + 3) // 4 * 4
    npix = s["oh"] * s["ow"]
    blocks = (npix + 1) // 2 * ((s["cout"] + 1) // 2)
    col = npix * kp * (2.655 if s["cin"] % 4 == 0 else 7.164) + npix * (29.477 * s["kh"] - 29.581)
    group = 11.954 if s["cout"] * k <= INT16_MAX_WEIGHTS else 15.954   # + 4 SXTB16 for int8 weights
    est = blocks * (group * (kp // 4) + 73.533) + col
    return float(est if arch == "dsp" else 3 * est)


def access(kind: str, params: dict, arch: str, reverse: bool = False):
    """Access contract (:mod:`tinygen.overlap`) of ``conv_gemm.c.j2``: output pixels in pairs (p, p + 1)
    in row-major order; ``_col`` copies the receptive fields of both pixels (their input windows,
    clipped, all channels) into scratch, then ``_gemm2`` writes both output pixels, all channels,
    from the scratch alone: one step per pair, reads first (an odd last pixel is a step of its own).
    ``reverse``: the same from the last pixel down (an odd count: the last pixel first, alone)."""
    from .. import overlap as ov

    f = params["filter"]
    return ov.window(params, f["h"], f["w"], reads_first=True, doc=access.__doc__ or "", group=2, reverse=reverse)
