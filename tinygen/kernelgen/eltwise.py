"""ADD and MUL of two int8 tensors of the same shape (no broadcasting): generated kernels.

ADD (TFLite int8 add.cc): each input's rescale ``MBQM((x + off) << 20, m_i, s_i)`` depends on one
int8 value only, so it is a 256-entry int32 table per input computed here exactly (and pre-scaled
by ``2^S`` for the SMMLAR form); per element the kernel adds two table entries and applies the
output requantization (``dwconv.rq_plan``: exact cheaper form when the table bound proves it).
MUL (mul.cc): ``MBQM((a + o1) * (b + o2), m, s)``, the product bound being 255 * 255.
Both loops are unrolled by 4 and read element i before writing it (safe in place, out == in1).
"""

from __future__ import annotations

import numpy as np

from .. import quant
from . import Generated, c_array
from .dwconv import CLAMP_COST, clamp_kind, rq_plan

UNROLL = 4


def _size(d: dict) -> int:
    return int(d["n"] * d["h"] * d["w"] * d["c"])


def applies(kind, params, arrays, arch):
    if kind not in ("ADD", "MUL"):
        return f"{kind} is not ADD/MUL"
    p = params
    if not (p["in1"] == p["in2"] == p["out"]):
        return f"broadcasting {p['in1']} with {p['in2']} is not generated"
    if _size(p["out"]) < 1:
        return "empty tensor"
    if kind == "ADD" and not (0 <= p["left_shift"] <= 22 and p["in1_shift"] <= 0 and p["in2_shift"] <= 0):
        return "ADD input shifts outside TFLite's int8 ADD ranges"
    return None


def _table(offset: int, left: int, mult: int, shift: int) -> np.ndarray:
    """MBQM((v + offset) << left, mult, shift) for the int8 value v of each byte pattern 0..255."""
    v = np.arange(256, dtype=np.int64)
    v = np.where(v >= 128, v - 256, v)
    return quant.multiply_by_quantized_multiplier((v + offset) << left, mult, shift).astype(np.int64)


def _plan(kind, p):
    if kind == "ADD":
        t1 = _table(p["in1_offset"], p["left_shift"], p["in1_mult"], p["in1_shift"])
        t2 = _table(p["in2_offset"], p["left_shift"], p["in2_mult"], p["in2_shift"])
        bound = int(np.abs(t1).max() + np.abs(t2).max())
        return t1, t2, bound
    b1 = max(abs(-128 + p["in1_offset"]), abs(127 + p["in1_offset"]))
    b2 = max(abs(-128 + p["in2_offset"]), abs(127 + p["in2_offset"]))
    return None, None, b1 * b2


def generate(kind, params, arrays, arch, symbol):
    from ..emit import render

    reason = applies(kind, params, arrays, arch)
    if reason:
        raise ValueError(f"eltwise: {reason}")
    p = params
    t1, t2, bound = _plan(kind, p)
    rq = rq_plan(bound, int(p["out_mult"]), int(p["out_shift"]), int(p["out_offset"]), max_s=8 if kind == "ADD" else 14)
    fast = rq is not None
    S = rq["S"] if fast else 0
    tables = ""
    const = 0
    if kind == "ADD":
        tables = (c_array("int32_t", f"{symbol}_t1", (t1 << S).astype(np.int32), 8)
                  + c_array("int32_t", f"{symbol}_t2", (t2 << S).astype(np.int32), 8))
        const = 2 * 256 * 4
    n = _size(p["out"])
    src = render("kernels/eltwise.c.j2", sym=symbol, kind=kind, n=n, unroll=UNROLL, tables=tables, fast=fast,
                 rq=rq or {}, S=S, mult=int(p["out_mult"]), shift=int(p["out_shift"]),
                 out_offset=int(p["out_offset"]), o1=int(p["in1_offset"]), o2=int(p["in2_offset"]),
                 lo=int(p["act_min"]), hi=int(p["act_max"]), clamp=clamp_kind(int(p["act_min"]), int(p["act_max"])))
    return Generated(symbol=symbol, source=src, args=("in0", "in1", "out0"), scratch=0, const_bytes=const,
                     notes={"variant": f"{kind.lower()} x{UNROLL}" + (" table" if kind == "ADD" else ""),
                            "requant": "smmlar" if fast else "exact64", "acc_bound": bound})


def cost(kind, params, arrays, arch):
    """Instructions on Cortex-M33: ~12 per element (2 loads, 2 table loads or 2 adds + mul, requant, store)
    plus the clamp (calibrated on benchmarks/kernel_bench.py)."""
    per = 12.0 + CLAMP_COST[clamp_kind(int(params["act_min"]), int(params["act_max"]))]
    return float(_size(params["out"]) * (per if arch == "dsp" else 2.5 * per) + 20)


def random_layer(rng, name: str, h: int, w: int, c: int, kind: str = "ADD", act: str = "NONE"):
    """An ADD/MUL layer as ``ops._lower_binary`` lowers it: (params, {}, (in1, in2)), for benchmarks/tests."""
    del name
    shape = {"n": 1, "h": h, "w": w, "c": c}
    s1, s2 = float(rng.uniform(0.02, 0.1)), float(rng.uniform(0.02, 0.1))
    so = float(rng.uniform(0.05, 0.2)) if kind == "ADD" else s1 * s2 * 60
    z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
    p = {"in1": dict(shape), "in2": dict(shape), "out": dict(shape)}
    p.update((quant.add_params if kind == "ADD" else quant.mul_params)(s1, z1, s2, z2, so, zo))
    p["act_min"], p["act_max"] = quant.activation_range(act, so, zo)
    n = h * w * c
    return p, {}, (rng.integers(-128, 128, n).astype(np.int8), rng.integers(-128, 128, n).astype(np.int8))


def access(kind, params, arch):
    """Access contract (:mod:`tinygen.overlap`) of ``eltwise.c.j2``: element i of both inputs is read,
    then ``out[i]`` written, i in order (the unrolled body keeps that order per element)."""
    from .. import overlap as ov

    return ov.elementwise(params["out"], [params["in1"], params["in2"]], access.__doc__ or "")
