"""FULLY_CONNECTED generated kernel: vector x matrix, input widened once, int8 weights streamed.

``templates/kernels/fc.c.j2``: the input row (+ in_offset) goes once into scratch as int16 lanes
(c0,c2),(c1,c3) (SXTAB16); weights stay int8 (no flash growth beyond padding), re-laid-out as
[block of 4 rows][group of 4 inputs][row] so that two LDRDs fetch a group for 4 rows, widened by
SXTB16 / SXTB16 ROR #8 to feed SMLAD. Single rounding as TFLite 2.21's reference (requant.py);
exact for every accumulator, no bound needed.
"""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Segment:
    """Output rows ``row0 .. row0 + rows * (full + bool(partial)) - 1`` in blocks of ``rows`` (4 or 6),
    ``partial`` rows valid in a last block, reading the int16 lanes or (``direct``) the int8 input."""
    row0: int
    rows: int
    full: int
    partial: int
    direct: bool

    @property
    def blocks(self) -> int:
        return self.full + (1 if self.partial else 0)

    @property
    def end(self) -> int:
        """One past the segment's last row, padding rows of a partial block included."""
        return self.row0 + self.rows * self.blocks


def segments(out_depth: int, direct_from: int, direct_rows: int = 6) -> list[Segment]:
    """Rows below ``direct_from`` (a multiple of 4) in 4-row blocks on the int16 lanes, the others
    direct: ``direct_rows``-row blocks, the remainder in 4-row blocks (the last one partial)."""
    segs = []
    lanes = min(direct_from, out_depth)
    if lanes:
        segs.append(Segment(0, 4, lanes // 4, lanes % 4, False))
    rest, r0 = out_depth - lanes, lanes
    if rest > 0:
        n6 = rest // direct_rows if direct_rows != 4 else 0
        if n6:
            segs.append(Segment(r0, direct_rows, n6, 0, True))
            r0 += direct_rows * n6
            rest -= direct_rows * n6
        if rest:
            segs.append(Segment(r0, 4, rest // 4, rest % 4, True))
    return segs


def lanes_only(out_depth: int) -> list[Segment]:
    """The ``lanes`` kernel's rows: every one in 4-row blocks on the int16 lanes."""
    return segments(out_depth, (out_depth + 3) // 4 * 4)


def layout_weights(w: np.ndarray, out_depth: int, in_depth: int, segs: list[Segment] | None = None) -> np.ndarray:
    """[out][in] int8 -> uint32 words, per segment [block][in/4 groups][rows of the block] (rows and
    inputs zero-padded); by default one segment of 4-row blocks."""
    segs = lanes_only(out_depth) if segs is None else segs
    ip = (in_depth + 3) // 4 * 4
    odp = segs[-1].end
    m = np.zeros((odp, ip), np.int8)
    m[:out_depth, :in_depth] = np.asarray(w, np.int8).reshape(out_depth, in_depth)
    words = m.view(np.uint8).reshape(odp, ip // 4, 4).astype(np.uint32)
    words = words[:, :, 0] | (words[:, :, 1] << 8) | (words[:, :, 2] << 16) | (words[:, :, 3] << 24)
    parts = []
    for g in segs:
        blk = words[g.row0:g.end]
        parts.append(blk.reshape(g.blocks, g.rows, ip // 4).transpose(0, 2, 1).reshape(-1))
    return np.concatenate(parts)


VARIANTS = ("lanes", "direct", "split")


def _split_at(params: dict) -> int | None:
    """The ``split`` variant's first direct row: the output row's tail from there (rounded up to 4
    bytes) holds the int16 lanes; None when the row is too short for them."""
    ind, od = int(params["in_depth"]), int(params["out_depth"])
    if params["batches"] != 1 or ind % 4:
        return None
    s = (od - 2 * ind - 3) // 4 * 4
    return s if s >= 4 else None


def generate(kind: str, params: dict, arrays: dict, arch: str, symbol: str, variant: str = "lanes") -> Generated:
    """``variant``:

    * ``lanes`` (default): the input row widened once into scratch (2 bytes per input element), all
      rows from it; the output may sit anywhere on its input (batch 1).
    * ``direct``: no scratch; every block re-reads the int8 input and widens it per group (6-row
      blocks, which spend that widening on 6 rows; the offset folded into the bias): the output
      may not touch its input.
    * ``split`` (an expanding layer, batch 1, out_depth >= 2 in_depth + 7): the int16 lanes live in
      the output row's tail, the rows below it read them, the rows of the tail run direct: no scratch,
      and cheaper than ``direct``. Its output may not touch its input either.
    """
    reason = applies(kind, params, arrays, arch)
    if reason is None and variant not in VARIANTS:
        reason = f"unknown variant {variant!r}"
    if reason is None and variant != "lanes" and params["in_depth"] % 4:
        reason = f"the {variant} variant needs in_depth % 4 == 0"
    if reason is None and variant == "split" and _split_at(params) is None:
        reason = "the split variant needs batch 1 and out_depth >= 2 in_depth + 7"
    if reason is not None:
        raise ValueError(f"{symbol}: {reason}")
    ind, od = int(params["in_depth"]), int(params["out_depth"])
    ip = (ind + 3) // 4 * 4
    split = _split_at(params) if variant == "split" else None
    segs = lanes_only(od) if variant == "lanes" else segments(od, 0 if variant == "direct" else split)
    widen = any(not g.direct for g in segs)
    bias = arrays.get("bias")
    rq = fc_requant(arrays["mult"], arrays["shift"], od, int(params["out_offset"]))
    words = layout_weights(arrays["weights"], od, ind, segs)
    odp = segs[-1].end
    b = np.zeros(odp, np.int64)
    if bias is not None:
        b[:od] = np.asarray(bias, np.int64)
    folded = any(g.direct for g in segs) and int(params["in_offset"]) != 0
    if folded:  # direct rows: sum (x + off) w = sum x w + off sum w, exact modulo 2^32 like the int32 accumulator
        wsum = np.asarray(arrays["weights"], np.int64).reshape(od, ind).sum(axis=1)
        rows = np.zeros(odp, bool)
        for g in segs:
            if g.direct:
                rows[g.row0:min(od, g.end)] = True
        b[:od] += np.where(rows[:od], int(params["in_offset"]) * wsum, 0)
    b = ((b + 2**31) % 2**32 - 2**31).astype(np.int32)
    has_bias = bias is not None or folded
    off = int(params["in_offset"]) & 0xFFFF
    name = {"lanes": f"vxm 4 rows/pass, K {ind}->{ip}", "direct": f"vxm 6 rows/pass, K {ind}, direct (no scratch)",
            "split": f"vxm 4 rows/pass, K {ind}, lanes in the output's tail from row {split} (no scratch)"}[variant]
    ctx = {"sym": symbol, "in_depth": ind, "out_depth": od, "ip": ip, "groups": ip // 4,
           "unroll": _unroll(ip // 4), "batches": int(params["batches"]), "in_offset": int(params["in_offset"]),
           "out_offset": int(params["out_offset"]), "act_min": int(params["act_min"]),
           "act_max": int(params["act_max"]), "off2": off | (off << 16), "rq": rq, "has_bias": has_bias,
           "weights_c": c_array("uint32_t", f"{symbol}_w", words), "segs": segs, "widen": widen,
           "split": split, "folded": folded, "scratch_arg": variant == "lanes", "variant": variant,
           "bias_c": c_array("int32_t", f"{symbol}_b", b) if has_bias else ""}
    const = words.size * 4 + (b.size * 4 if has_bias else 0)
    if not rq["per_tensor"]:
        const += (2 if rq["mode"] == "general" else 3) * 4 * od
    src = render("kernels/fc.c.j2", **ctx)
    if variant == "lanes":
        return Generated(symbol=symbol, source=src, args=("in0", "out0", "scratch"), scratch=2 * ip, const_bytes=const,
                         notes={"variant": name, "requant": rq["mode"]})
    return Generated(symbol=symbol, source=src, args=("in0", "out0"), scratch=0, const_bytes=const,
                     notes={"variant": name, "requant": rq["mode"], "access": {"variant": variant},
                            "cost_extra": _estimate(params, segs) - _estimate(params, lanes_only(od))})


# Estimated instructions (Cortex-M33 with DSP) per block and group of 4 inputs, per block (the
# requantizations of its rows), per widened input element, per call: a least-squares fit on QEMU
# counts of benchmarks/kernel_bench.py shapes (lanes: within -7%/+14%); keyed by (rows, direct).
_PER_GROUP = {(4, False): 19.59, (4, True): 21.59, (6, True): 30.4}
_PER_BLOCK = {4: 33.813, 6: 50.7}
_PER_WIDENED, _PER_CALL = 1.727, 217.281


def _estimate(params: dict, segs: list[Segment]) -> float:
    ip = (params["in_depth"] + 3) // 4 * 4
    est = _PER_CALL
    for g in segs:
        est += params["batches"] * g.blocks * (_PER_GROUP[(g.rows, g.direct)] * (ip // 4) + _PER_BLOCK[g.rows])
    if any(not g.direct for g in segs):
        est += params["batches"] * ip * _PER_WIDENED
    return est


def alternatives(kind: str, params: dict, arrays: dict, arch: str, symbol: str) -> list[Generated]:
    """Variants the arena-driven choice may weigh: the scratch-free ones (direct; split where it fits)."""
    if applies(kind, params, arrays, arch) is not None or params["in_depth"] % 4:
        return []
    out = [generate(kind, params, arrays, arch, symbol, variant="direct")]
    if _split_at(params) is not None:
        out.append(generate(kind, params, arrays, arch, symbol, variant="split"))
    return out


def cost(kind: str, params: dict, arrays: dict, arch: str) -> float:
    """Estimated instructions of the ``lanes`` kernel (:data:`_PER_GROUP`...: per block of 4 rows and
    group of 4 inputs 19.6: 2 LDRD for the weights, 1 for the input, 8 SXTB16, 8 SMLAD; per block
    33.8: 4 requantizations; per input element 1.7: widening; 217 per call). ``arch``
    "none"/"portable": x3, not measured."""
    od = int(params["out_depth"])
    est = _estimate(params, lanes_only(od))
    return float(est if arch == "dsp" else 3 * est)


def access(kind: str, params: dict, arch: str, variant: str = "lanes"):
    """Access contract (:mod:`tinygen.overlap`) of ``fc.c.j2``: per batch row, the whole input row is
    widened into scratch first, then the row's outputs are written from the scratch alone: one row
    per step, reads first (a batch-1 output may sit anywhere on its input). ``direct`` and ``split``:
    direct rows read the whole input row again per block, so the output may not touch its input:
    an empty contract (the input is read throughout)."""
    from .. import overlap as ov

    if variant in ("direct", "split"):
        return ov.Contract({}, access.__doc__ or "")

    return ov.rows(int(params["batches"]), int(params["in_depth"]), int(params["out_depth"]),
                   access.__doc__ or "")
