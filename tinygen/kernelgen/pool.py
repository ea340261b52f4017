"""AVERAGE_POOL_2D, MAX_POOL_2D and MEAN over H,W: generated kernels.

Channels go four at a time through one 32-bit load per pixel:
- average / mean: SXTAB16 and SXTAB16 ROR #8 sum the four int8 lanes into two int16x2 accumulators
  (exact while a window row has at most 256 pixels; rows are widened to int32 when the window
  has more than 256 pixels); then TFLite's rounding division by the window's pixel count (average
  pool, as tg_ref_avgpool_s8) or ``MBQM(sum - zp * count, mult, shift) + out_zp`` (MEAN, the SMMLAR
  form of ``dwconv.rq_plan`` where the bound 255 * count proves it exact);
- max: SSUB8 + SEL (tg_smax8) keeps the four lane maxima, starting from the activation minimum.
Windows that never touch the padding use compile-time bounds (``full``); the others compute
their clipped bounds per output pixel. Channel counts that are not a multiple of 4 end with a
scalar loop.
"""

from __future__ import annotations

from . import Generated
from .dwconv import clamp_kind, rq_plan

MAX_ROW = 256


def _geom(kind, p):
    i = p["in"]
    if kind == "MEAN":
        return dict(N=i["n"], H=i["h"], W=i["w"], C=i["c"], FH=i["h"], FW=i["w"], SH=1, SW=1, PT=0, PL=0,
                    OH=1, OW=1)
    o = p["out"]
    return dict(N=i["n"], H=i["h"], W=i["w"], C=i["c"], FH=p["filter_h"], FW=p["filter_w"], SH=p["stride_h"],
                SW=p["stride_w"], PT=p["pad_h"], PL=p["pad_w"], OH=o["h"], OW=o["w"])


def _full(g) -> bool:
    return (g["PT"] == 0 and g["PL"] == 0 and (g["OH"] - 1) * g["SH"] + g["FH"] <= g["H"]
            and (g["OW"] - 1) * g["SW"] + g["FW"] <= g["W"])


def applies(kind, params, arrays, arch):
    if kind not in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN"):
        return f"{kind} is not a pooling op"
    if kind == "MEAN" and "num_elements" not in params:  # tg_reduce_params_t: other axes than H, W
        return "MEAN over other axes than H and W (the reduce kernel runs it)"
    g = _geom(kind, params)
    if min(g["N"], g["H"], g["W"], g["C"], g["FH"], g["FW"], g["OH"], g["OW"]) < 1:
        return "empty tensor or window"
    if kind != "MEAN" and (params["out"]["c"] != g["C"] or params["out"]["n"] != g["N"]):
        return "pooling changes the batch or channel count"
    if g["FW"] > MAX_ROW:
        return f"window rows of {g['FW']} pixels (at most {MAX_ROW} are generated)"
    for oy in range(g["OH"]):       # TFLite rejects windows entirely in the padding; so does tg_ref
        if min(oy * g["SH"] - g["PT"] + g["FH"], g["H"]) <= max(oy * g["SH"] - g["PT"], 0):
            return "a pooling window lies entirely in the padding"
    for ox in range(g["OW"]):
        if min(ox * g["SW"] - g["PL"] + g["FW"], g["W"]) <= max(ox * g["SW"] - g["PL"], 0):
            return "a pooling window lies entirely in the padding"
    return None


def generate(kind, params, arrays, arch, symbol):
    from ..emit import render

    reason = applies(kind, params, arrays, arch)
    if reason:
        raise ValueError(f"pool: {reason}")
    g = _geom(kind, params)
    full = _full(g)
    ctx = dict(sym=symbol, kind=kind, g=g, full=full, c4=g["C"] // 4, widen=g["FH"] * g["FW"] > MAX_ROW,
               unroll_x=full and g["FW"] <= 8)
    notes = {"variant": f"{kind.lower()} {g['FH']}x{g['FW']} s{g['SH']}x{g['SW']}" + (" full" if full else " clipped")}
    if kind == "MEAN":
        count = g["H"] * g["W"]
        rq = rq_plan(255 * count, int(params["mult"]), int(params["shift"]), int(params["out_zp"]), max_s=31)
        ctx.update(rq=rq or {}, fast=rq is not None, mult=int(params["mult"]), shift=int(params["shift"]),
                   zp_sum=int(params["in_zp"]) * count, out_zp=int(params["out_zp"]), lo=-128, hi=127, clamp="ssat")
        notes["requant"] = "smmlar" if rq else "exact64"
    else:
        lo, hi = int(params["act_min"]), int(params["act_max"])
        ctx.update(lo=lo, hi=hi, clamp=clamp_kind(lo, hi), init4="0x%08Xu" % ((lo & 0xFF) * 0x01010101))
    src = render("kernels/pool.c.j2", **ctx)
    return Generated(symbol=symbol, source=src, args=("in0", "out0", "scratch") if kind == "AVERAGE_POOL_2D"
                     else ("in0", "out0"), scratch=0, const_bytes=0, notes=notes)


def cost(kind, params, arrays, arch):
    """Instructions on Cortex-M33: per output pixel and 4 channels, 3 per window pixel (load + 2 SXTAB16,
    or load + SSUB8 + SEL) plus ~2 of loop overhead and ~8 per channel for the division/requant."""
    g = _geom(kind, params)
    outs = g["N"] * g["OH"] * g["OW"]
    per4 = g["FH"] * g["FW"] * (3.4 if g["FW"] <= 8 else 4.5) + 10 + (0 if kind == "MAX_POOL_2D" else 32)
    scale = 1.0 if arch == "dsp" else 2.5
    return float(outs * ((g["C"] // 4) * per4 + (g["C"] % 4) * (2 * g["FH"] * g["FW"] + 10)) * scale + 30)


def random_layer(rng, name: str, h: int, w: int, c: int, fh: int, fw: int, stride_h: int, stride_w: int,
                 padding: str = "VALID", act: str = "NONE"):
    """A pooling layer as ``ops._pool_params`` lowers it: (params, {}, input), for benchmarks/tests."""
    import numpy as np

    from .. import quant

    del name
    oh, ph = quant.conv_pad(h, fh, stride_h, 1, padding)
    ow, pw = quant.conv_pad(w, fw, stride_w, 1, padding)
    lo, hi = quant.activation_range(act, 0.05, int(rng.integers(-128, 0)))
    p = {"in": {"n": 1, "h": h, "w": w, "c": c}, "out": {"n": 1, "h": oh, "w": ow, "c": c}, "filter_h": fh,
         "filter_w": fw, "stride_h": stride_h, "stride_w": stride_w, "pad_h": ph, "pad_w": pw, "act_min": lo,
         "act_max": hi}
    return p, {}, rng.integers(-128, 128, h * w * c).astype(np.int8)


def access(kind, params, arch):
    """Access contract (:mod:`tinygen.overlap`) of ``pool.c.j2``: b, oy, ox outermost; per output pixel
    its channels four at a time, each group written right after its window is read (the pixel
    contract, reads and writes of a pixel interleaved). MEAN: one output pixel per batch whose
    window is the whole plane."""
    from .. import overlap as ov

    g = _geom(kind, params)
    p = {"in": {"n": g["N"], "h": g["H"], "w": g["W"], "c": g["C"]},
         "out": {"n": g["N"], "h": g["OH"], "w": g["OW"], "c": g["C"]},
         "stride_h": g["SH"], "stride_w": g["SW"], "pad_h": g["PT"], "pad_w": g["PL"]}
    return ov.window(p, g["FH"], g["FW"], doc=access.__doc__ or "")
