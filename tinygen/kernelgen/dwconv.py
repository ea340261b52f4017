"""DEPTHWISE_CONV_2D (channel multiplier 1, any KHxKW up to 7x7, stride_w 1 or 2): generated kernels.

How the kernel works (``templates/kernels/dwconv.c.j2``), one channel at a time:

1. the channel's input plane is copied into scratch as int16, surrounded by the input zero
   point (so padded taps add ``(zp + in_offset) * w = 0``: no border code, and the input offset
   is folded into the bias as ``in_offset * sum(w)``);
2. each output row is walked in blocks of ``bw`` outputs; a kernel row's taps are taken two at a
   time: one 32-bit load of two neighbouring int16 pixels times a pre-packed weight pair is one
   SMLAD (2 MACs); an odd last tap is an SMLAxy on a half of a word already loaded for the block.
   Loads are shared between the outputs of a block (stride 1: a word serves up to 3 outputs);
3. the accumulator is requantized with TFLite's double rounding, in a cheaper exact form when the
   accumulator bound proven from the weights and bias allows it (``rq_plan``).

Weights, folded biases and requantization constants of all channels are ``static const`` arrays
(per channel: ``KH * ceil(KW/2)`` pair words, ``ceil(KH/2)`` odd-tap words when KW is odd).
"""

from __future__ import annotations

import numpy as np

from . import Generated, c_array

MAX_K = 7
MAX_SCRATCH = 64 * 1024
BAND_BYTES = 2048  # strided layers whose channel plane is larger walk it in bands of output rows
I32 = 1 << 31


# ---- exact requantization plans -----------------------------------------------------------------


def rq_plan(bound: int, mult: int, shift: int, out_offset: int, max_s: int = 8) -> dict | None:
    """Cheaper exact form of TFLite's ``MultiplyByQuantizedMultiplier(x, mult, shift) + out_offset``
    for every ``|x| <= bound``, or None when the proof fails (use the general form).

    With ``S = max(shift, 0) + 1`` and ``r = -min(shift, 0) >= 1``:
    SaturatingRoundingDoublingHighMul(x << (S-1), mult) == y = SMMULR(x << S, mult) when
    ``|x| << S < 2^31`` (both round half up on the 2^31 boundary; mult < 2^31 never saturates), and
    RoundingDivideByPOT(y, r) + off == (y + [y<0 ? -1 : 0] + 2^(r-1) + (off << r)) >> r (``fold``) when
    that sum cannot overflow, else ((y - [y<0] + 2^(r-1)) >> r) + off. The kernels compute it as
    SMMLAR(x << S, mult, K - [x<0]) >> r: adding an integer before the outer floor equals adding it
    times 2^32 under SMMLAR's, and x < 0 differs from y < 0 only when y == 0, where
    (2^(r-1) - 1) >> r == 2^(r-1) >> r == 0.
    ``max_s`` bounds S where the 2^S scale goes into int16 weights.

    >>> rq_plan(1000, 1 << 30, -3, 5)
    {'S': 1, 'right': 3, 'K': 44, 'fold': True}
    >>> rq_plan(1 << 30, 1 << 30, -3, 5) is None
    True
    """
    left, right = max(shift, 0), max(-shift, 0)
    S = left + 1
    if right < 1 or S > max_s or (bound << S) >= I32 or not 0 < mult < I32:
        return None
    ybound = ((bound << left) * mult >> 31) + 1
    if ybound + 1 + (1 << (right - 1)) >= I32:
        return None
    k = (1 << (right - 1)) + (out_offset << right)
    fold = ybound + 1 + abs(k) < I32
    return {"S": S, "right": right, "K": k if fold else 1 << (right - 1), "fold": fold}


CLAMP_COST = {"ssat": 0, "ssat_lo": 3, "ssat_hi": 3, "both": 5}  # extra instructions per output


def clamp_kind(lo: int, hi: int) -> str:
    """How the template clamps to the activation range: ssat alone, ssat + max, ssat + min, or both."""
    if lo == -128 and hi == 127:
        return "ssat"
    return {(False, True): "ssat_lo", (True, False): "ssat_hi"}.get((lo == -128, hi == 127), "both")


# ---- family interface ----------------------------------------------------------------------------


def _geom(p: dict) -> dict:
    i, f, o = p["in"], p["filter"], p["out"]
    return dict(N=i["n"], H=i["h"], W=i["w"], C=i["c"], KH=f["h"], KW=f["w"], OH=o["h"], OW=o["w"],
                SH=p["stride_h"], SW=p["stride_w"], PT=p["pad_h"], PL=p["pad_w"])


# register spills GCC adds beyond 3 (stride 1) / 4 (stride 2) accumulators, measured on Cortex-M33 (kernel_bench)
SPILL = {1: {1: 0, 2: 0, 3: 0, 4: 7, 5: 22}, 2: {1: 0, 2: 0, 3: 0, 4: 0, 5: 10}}


LOOP = 8  # per iteration of the block loop (counter, pointer steps, branch, reloaded weights); 0 when unrolled


def _block_cost(b: dict, kh: int, sw: int, looped: bool) -> float:
    return kh * (len(b["loads"]) + len(b["macs"])) + 9 * b["bw"] + 4 + (LOOP if looped else 0) + SPILL[sw][b["bw"]]


def block_width(sw: int, ow: int, kw: int = 3, kh: int = 3) -> int:
    """Outputs per block: the width in 2..5 with the fewest estimated instructions per output row
    (full blocks + the tail block); ties go to the wider block.

    >>> block_width(1, 5), block_width(1, 6), block_width(2, 24), block_width(1, 1)
    (3, 4, 4, 1)
    """
    best = None
    for bw in range(min(5, ow), 0, -1):
        full, tail = divmod(ow, bw)
        c = full * _block_cost(_schedule(bw, sw, kw), kh, sw, full > 1)
        if tail:
            c += _block_cost(_schedule(tail, sw, kw), kh, sw, False)
        if best is None or c < best[0]:
            best = (c, bw)
    return best[1]


def applies(kind, params, arrays, arch):
    if kind != "DEPTHWISE_CONV_2D":
        return f"{kind} is not a depthwise convolution"
    p = params
    if p.get("ch_mult", 1) != 1 or p["in"]["c"] != p["out"]["c"]:
        return f"channel multiplier {p.get('ch_mult')} (only 1 is generated)"
    if p.get("dil_h", 1) != 1 or p.get("dil_w", 1) != 1:
        return "dilation other than 1"
    g = _geom(p)
    if not (1 <= g["KH"] <= MAX_K and 1 <= g["KW"] <= MAX_K):
        return f"filter {g['KH']}x{g['KW']} larger than {MAX_K}x{MAX_K}"
    if g["SW"] not in (1, 2) or not 1 <= g["SH"] <= 4:
        return f"stride {g['SH']}x{g['SW']} (stride_w 1 or 2, stride_h up to 4 are generated)"
    if g["N"] != p["out"]["n"] or g["N"] < 1:
        return "batch mismatch"
    lay = _layout(g)
    if lay["scratch"] > MAX_SCRATCH:
        return f"input plane of {lay['scratch']} bytes exceeds the {MAX_SCRATCH}-byte scratch limit"
    if lay["PW"] * 2 * g["KH"] + 16 > 4095:
        return f"rows of {g['W']} pixels are too wide for the immediate-offset loads"
    return None


def _schedule(bw: int, sw: int, kw: int) -> dict:
    """Loads (halfword offsets) and MAC operations of one kernel row for a block of ``bw`` outputs."""
    loads: list[int] = []
    macs = []
    for j in range(bw):
        base = j * sw
        for i in range(kw // 2):
            off = base + 2 * i
            if off not in loads:
                loads.append(off)
            macs.append({"acc": j, "op": "pair", "x": off, "w": i})
    if kw % 2:
        for j in range(bw):
            s = j * sw + kw - 1
            if s in loads:
                macs.append({"acc": j, "op": "single", "x": s, "half": "b"})
            elif s - 1 in loads:
                macs.append({"acc": j, "op": "single", "x": s - 1, "half": "t"})
            else:
                loads.append(s)
                macs.append({"acc": j, "op": "single", "x": s, "half": "b"})
    return {"bw": bw, "loads": sorted(loads), "macs": macs, "reach": max(loads) + 2}


def _layout(g: dict) -> dict:
    bw = block_width(g["SW"], g["OW"], g["KW"], g["KH"])
    full, tail = divmod(g["OW"], bw)
    blocks = [_schedule(bw, g["SW"], g["KW"])] + ([_schedule(tail, g["SW"], g["KW"])] if tail else [])
    reach = max((full - 1) * bw * g["SW"] + blocks[0]["reach"] if full else 0,
                full * bw * g["SW"] + (blocks[1]["reach"] if tail else 0))
    pw = max(g["W"] + g["PL"], reach)
    pw += pw % 2
    ph = max(g["H"] + g["PT"], (g["OH"] - 1) * g["SH"] + g["KH"])
    lay = {"bw": bw, "full": full, "tail": tail, "blocks": blocks, "PW": pw, "PH": ph, "scratch": pw * ph * 2,
           "bands": None}
    if g["SH"] >= 2 and lay["scratch"] > BAND_BYTES:
        lay.update(bands(g, pw))
    return lay


def bands(g: dict, pw: int) -> dict:
    """Strided layers with a large plane: bands of ``BO`` output rows, each copying only the
    ``(BO - 1) * SH + KH`` input rows it reads (halo rows copied again), into a scratch of that many
    rows (at most BAND_BYTES when a single output row fits). The strided output is small enough to
    stay in place on its input (:func:`access`).

    >>> b = bands({"OH": 24, "SH": 2, "KH": 3, "PT": 0, "H": 48}, 50)
    >>> b["BO"], b["NB"], b["last"], b["PH"], b["scratch"]
    (9, 3, 6, 19, 1900)
    """
    bo = max(1, (BAND_BYTES // (2 * pw) - g["KH"]) // g["SH"] + 1)
    bo = min(bo, g["OH"])
    nb = -(-g["OH"] // bo)
    ph = (bo - 1) * g["SH"] + g["KH"]
    return {"bands": [(k * bo, min(g["OH"], (k + 1) * bo)) for k in range(nb)], "BO": bo, "NB": nb,
            "last": g["OH"] - (nb - 1) * bo, "PH": ph, "scratch": pw * ph * 2}


def _pack16(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """int16 pairs -> int32 words (lo = bits 0..15)."""
    u = (lo.astype(np.int64) & 0xFFFF) | ((hi.astype(np.int64) & 0xFFFF) << 16)
    return u.astype(np.uint32).view(np.int32)


def _constants(params, arrays, g) -> tuple[np.ndarray, np.ndarray, dict]:
    C, KH, KW = g["C"], g["KH"], g["KW"]
    w = np.asarray(arrays["weights"], np.int64).reshape(KH, KW, C)
    bias = np.asarray(arrays["bias"], np.int64) if arrays.get("bias") is not None else np.zeros(C, np.int64)
    mult = np.asarray(arrays["mult"], np.int64).reshape(-1)
    shift = np.asarray(arrays["shift"], np.int64).reshape(-1)
    if mult.size == 1:
        mult, shift = np.repeat(mult, C), np.repeat(shift, C)
    in_off, out_off = int(params["in_offset"]), int(params["out_offset"])
    plans = []
    for c in range(C):
        bound = 255 * int(np.abs(w[:, :, c]).sum()) + abs(int(bias[c]))
        plans.append(rq_plan(bound, int(mult[c]), int(shift[c]), out_off))
    fast = all(pl is not None for pl in plans)
    fold = fast and all(pl["fold"] for pl in plans)
    scale = np.array([1 << pl["S"] for pl in plans] if fast else [1] * C, np.int64)
    ws = w * scale[None, None, :]
    folded = (bias + in_off * w.sum(axis=(0, 1))) * scale
    folded = ((folded + I32) % (1 << 32) - I32)  # int32 wrap-around, as the accumulator
    words = []
    z = np.zeros(C, np.int64)
    for ky in range(KH):
        for i in range(KW // 2):
            words.append(_pack16(ws[ky, 2 * i], ws[ky, 2 * i + 1]))
    if KW % 2:
        for r in range(0, KH, 2):
            words.append(_pack16(ws[r, KW - 1], ws[r + 1, KW - 1] if r + 1 < KH else z))
    wtab = np.stack(words, axis=1).reshape(-1) if words else np.zeros(0, np.int32)
    if fast:
        q = np.stack([folded, mult, [pl["K"] for pl in plans], [pl["right"] for pl in plans]], axis=1)
    else:
        q = np.stack([folded, mult, shift, z], axis=1)
    info = {"fast": fast, "fold": fold, "words_per_channel": len(words)}
    return wtab.astype(np.int32), q.astype(np.int64).astype(np.int32).reshape(-1), info


def generate(kind, params, arrays, arch, symbol):
    from ..emit import render

    reason = applies(kind, params, arrays, arch)
    if reason:
        raise ValueError(f"dwconv: {reason}")
    g = _geom(params)
    lay = _layout(g)
    wtab, qtab, info = _constants(params, arrays, g)
    KW = g["KW"]
    single_w = [(f"ws{ky // 2}", "b" if ky % 2 == 0 else "t") for ky in range(g["KH"])]
    src = render("kernels/dwconv.c.j2", sym=symbol, g=g, lay=lay, info=info,
                 npair=KW // 2, odd=KW % 2, nsingle=(g["KH"] + 1) // 2 if KW % 2 else 0, single_w=single_w,
                 zp=-int(params["in_offset"]), fill="0x%08Xu" % ((-int(params["in_offset"]) & 0xFFFF) * 0x10001),
                 out_offset=int(params["out_offset"]),
                 lo=int(params["act_min"]), hi=int(params["act_max"]),
                 clamp=clamp_kind(int(params["act_min"]), int(params["act_max"])),
                 wtab=c_array("int32_t", f"{symbol}_w", wtab, 8), qtab=c_array("int32_t", f"{symbol}_q", qtab, 4))
    return Generated(symbol=symbol, source=src, args=("in0", "out0", "scratch"), scratch=lay["scratch"],
                     const_bytes=4 * (wtab.size + qtab.size),
                     notes={"variant": f"dw {g['KH']}x{g['KW']} s{g['SH']}x{g['SW']} block {lay['bw']}",
                            "requant": "smmlar" if info["fast"] else "exact64", "fold_offset": info["fold"]})


def cost(kind, params, arrays, arch):
    """Instructions on Cortex-M33 (DSP): per output ~(MAC instructions + loads)/block + requant,
    plus the plane copy; calibrated on QEMU counts (benchmarks/kernel_bench.py)."""
    g = _geom(params)
    lay = _layout(g)
    b = lay["blocks"][0]
    per_block = g["KH"] * (len(b["loads"]) + len(b["macs"])) + (9 + CLAMP_COST[clamp_kind(
        int(params["act_min"]), int(params["act_max"]))]) * b["bw"] + 6
    outs = g["OH"] * g["OW"]
    rows = g["H"]
    if lay["bands"]:  # the rows each band copies (halo rows again), and a zero-point row per row outside
        rows = sum((oy1 - oy0 - 1) * g["SH"] + g["KH"] for oy0, oy1 in lay["bands"])
    per_channel = (outs / b["bw"]) * per_block + rows * g["W"] * 2.5 + g["OH"] * 6 + 30
    dsp = 1.0 if arch == "dsp" else 3.0
    return float(g["N"] * g["C"] * per_channel * dsp + lay["PW"] * lay["PH"] / 2)


def random_layer(rng, name: str, h: int, w: int, c: int, k: int = 3, stride: int = 1, padding: str = "SAME",
                 act: str = "NONE", bias: bool = True):
    """A depthwise layer as ``ops._conv_params`` lowers it (per-channel, random int8 weights and input):
    (params, arrays, input), for benchmarks and QEMU tests."""
    from .. import quant
    from ..ops import Arr

    del name
    oh, ph = quant.conv_pad(h, k, stride, 1, padding)
    ow, pw = quant.conv_pad(w, k, stride, 1, padding)
    zx, zy = int(rng.integers(-128, 128)), int(rng.integers(-128, 128))
    sx, sy = 0.05, float(rng.uniform(0.05, 0.2))
    mult, shift = quant.conv_multipliers(sx, rng.uniform(0.002, 0.02, c), sy)
    lo, hi = quant.activation_range(act, sy, zy)
    params = {"in": {"n": 1, "h": h, "w": w, "c": c}, "filter": {"n": 1, "h": k, "w": k, "c": c},
              "out": {"n": 1, "h": oh, "w": ow, "c": c}, "stride_h": stride, "stride_w": stride, "pad_h": ph,
              "pad_w": pw, "dil_h": 1, "dil_w": 1, "ch_mult": 1, "in_offset": -zx, "out_offset": zy,
              "act_min": lo, "act_max": hi, "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights"),
              "bias": Arr("bias") if bias else None}
    arrays = {"mult": np.array(mult, np.int32), "shift": np.array(shift, np.int32),
              "weights": rng.integers(-128, 128, k * k * c).astype(np.int8)}
    if bias:
        arrays["bias"] = rng.integers(-4000, 4000, c).astype(np.int32)
    return params, arrays, rng.integers(-128, 128, h * w * c).astype(np.int8)


def access(kind, params, arch):
    """Access contract (:mod:`tinygen.overlap`) of ``dwconv.c.j2``: batches, then channels outermost;
    per channel the whole input plane is copied into scratch before any output byte of that channel is
    written, and the output rows read only the scratch: one channel plane per step, reads first
    (in place: the output may sit exactly on its input). Banded (strided, large planes): one band of
    output rows of one channel per step, after copying the input rows that band reads."""
    from .. import overlap as ov

    g = _geom(params)
    lay = _layout(g)
    rows = None
    if lay["bands"]:
        rows = [(oy0, oy1, max(0, oy0 * g["SH"] - g["PT"]), min(g["H"], (oy1 - 1) * g["SH"] - g["PT"] + g["KH"]))
                for oy0, oy1 in lay["bands"]]
    return ov.channel_planes(params, access.__doc__ or "", rows)
