"""FULLY_CONNECTED generated kernel: vector x matrix, input widened once, int8 weights streamed.

``templates/kernels/fc.c.j2``: the input row (+ in_offset) goes once into scratch as int16 lanes
(c0,c2),(c1,c3) (SXTAB16); weights stay int8 (no flash growth beyond padding), re-laid-out as
[block of 4 rows][group of 4 inputs][row] so that two LDRDs fetch a group for 4 rows, widened by
SXTB16 / SXTB16 ROR #8 to feed SMLAD. Single rounding as TFLite 2.21's reference (requant.py);
exact for every accumulator, no bound needed.
"""

from __future__ import annotations

import numpy as np

from . import Generated, c_array
from .conv import render
from .requant import fc_requant


def applies(kind: str, params: dict, arrays: dict, arch: str) -> str | None:
    """None when the generated FULLY_CONNECTED kernel runs this layer bit-exactly, else why not."""
    if kind != "FULLY_CONNECTED":
        return f"{kind} is not FULLY_CONNECTED"
    if np.any(np.asarray(arrays["mult"]) < 0):
        return "negative multiplier"
    if params["in_depth"] > 16384:
        return f"in_depth {params['in_depth']} exceeds the generated kernel's 16384"
    return None


def _unroll(groups: int) -> int:
    """Groups per K-loop iteration: all up to 8, else the largest divisor <= 8 (LDRD offsets < 256 bytes)."""
    if groups <= 8:
        return groups
    return max(u for u in range(1, 9) if groups % u == 0)


def layout_weights(w: np.ndarray, out_depth: int, in_depth: int) -> np.ndarray:
    """[out][in] int8 -> uint32 words [out/4 blocks][in/4 groups][4 rows] (zero-padded)."""
    ip = (in_depth + 3) // 4 * 4
    odp = (out_depth + 3) // 4 * 4
    m = np.zeros((odp, ip), np.int8)
    m[:out_depth, :in_depth] = np.asarray(w, np.int8).reshape(out_depth, in_depth)
    words = m.view(np.uint8).reshape(odp, ip // 4, 4).astype(np.uint32)
    words = words[:, :, 0] | (words[:, :, 1] << 8) | (words[:, :, 2] << 16) | (words[:, :, 3] << 24)
    return words.reshape(odp // 4, 4, ip // 4).transpose(0, 2, 1).reshape(-1)


def generate(kind: str, params: dict, arrays: dict, arch: str, symbol: str, direct: bool = False) -> Generated:
    """``direct``: no scratch (the input row read as int8 and widened per pass of 4 rows; needs
    ``in_depth % 4 == 0``): its output cannot overlap its input, but it frees the 2 bytes per input
    element of scratch (:func:`alternatives`)."""
    reason = applies(kind, params, arrays, arch)
    if reason is None and direct and params["in_depth"] % 4:
        reason = "the direct variant needs in_depth % 4 == 0"
    if reason is not None:
        raise ValueError(f"{symbol}: {reason}")
    ind, od = int(params["in_depth"]), int(params["out_depth"])
    ip, odp = (ind + 3) // 4 * 4, (od + 3) // 4 * 4
    bias = arrays.get("bias")
    rq = fc_requant(arrays["mult"], arrays["shift"], od, int(params["out_offset"]))
    words = layout_weights(arrays["weights"], od, ind)
    off = int(params["in_offset"]) & 0xFFFF
    ctx = {"sym": symbol, "in_depth": ind, "out_depth": od, "ip": ip, "odp": odp, "groups": ip // 4,
           "unroll": _unroll(ip // 4), "batches": int(params["batches"]), "in_offset": int(params["in_offset"]),
           "out_offset": int(params["out_offset"]), "act_min": int(params["act_min"]),
           "act_max": int(params["act_max"]), "off2": off | (off << 16), "rq": rq, "has_bias": bias is not None,
           "weights_c": c_array("uint32_t", f"{symbol}_w", words), "bias_c": "", "direct": direct}
    const = words.size * 4
    if bias is not None:
        b = np.zeros(odp, np.int32)
        b[:od] = np.asarray(bias, np.int32)
        ctx["bias_c"] = c_array("int32_t", f"{symbol}_b", b)
        const += b.size * 4
    if not rq["per_tensor"]:
        const += (2 if rq["mode"] == "general" else 3) * 4 * od
    src = render("kernels/fc.c.j2", **ctx)
    if direct:
        return Generated(symbol=symbol, source=src, args=("in0", "out0"), scratch=0, const_bytes=const,
                         notes={"variant": f"vxm 4 rows/pass, K {ind}, direct (no scratch)", "requant": rq["mode"],
                                "access": {"direct": True}, "cost_extra": _direct_extra(params)})
    return Generated(symbol=symbol, source=src, args=("in0", "out0", "scratch"), scratch=2 * ip, const_bytes=const,
                     notes={"variant": f"vxm 4 rows/pass, K {ind}->{ip}", "requant": rq["mode"]})


def _direct_extra(params: dict) -> float:
    """Instructions the direct variant adds: 2 per group of 4 inputs and pass of 4 rows, less the
    widening loop it saves (1.7 per input element). Measured on AD (QEMU mps2-an505): +9,000 for the
    640 -> 128 layer (this gives +9,135), +10,150 for the 128 -> 640 one (+10,019). An 8-row pass
    (one widening for 8 rows) spills two registers per group under GCC 12 and is slower still."""
    ip = (params["in_depth"] + 3) // 4 * 4
    blocks = params["batches"] * ((params["out_depth"] + 3) // 4)
    return 2.0 * blocks * (ip // 4) - 1.727 * params["batches"] * ip


def alternatives(kind: str, params: dict, arrays: dict, arch: str, symbol: str) -> list[Generated]:
    """Variants the arena-driven choice may weigh: the direct (scratch-free) kernel."""
    if applies(kind, params, arrays, arch) is not None or params["in_depth"] % 4:
        return []
    return [generate(kind, params, arrays, arch, symbol, direct=True)]


def cost(kind: str, params: dict, arrays: dict, arch: str) -> float:
    """Estimated instructions on a Cortex-M33 with DSP: least-squares fit on 8 QEMU counts of
    benchmarks/kernel_bench.py shapes (within -7%/+14%): per block of 4 rows and group of 4 inputs
    19.6 (2 LDRD for the weights, 1 for the input, 8 SXTB16, 8 SMLAD), per block 33.8 (4
    requantizations), per input element 1.7 (widening), 217 per call. ``arch`` "none"/"portable": x3,
    not measured."""
    ip = (params["in_depth"] + 3) // 4 * 4
    blocks = params["batches"] * ((params["out_depth"] + 3) // 4)
    est = blocks * (19.59 * (ip // 4) + 33.813) + params["batches"] * ip * 1.727 + 217.281
    return float(est if arch == "dsp" else 3 * est)


def access(kind: str, params: dict, arch: str, direct: bool = False):
    """Access contract (:mod:`tinygen.overlap`) of ``fc.c.j2``: per batch row, the whole input row is
    widened into scratch first, then the row's outputs are written from the scratch alone: one row
    per step, reads first (a batch-1 output may sit anywhere on its input). ``direct``: every pass
    of 4 output rows reads the whole input row again, so the output may not touch its input: an
    empty contract (the input is read throughout)."""
    from .. import overlap as ov

    if direct:
        return ov.Contract({}, access.__doc__ or "")

    return ov.rows(int(params["batches"]), int(params["in_depth"]), int(params["out_depth"]),
                   access.__doc__ or "")
