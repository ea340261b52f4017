"""Kernel access contracts: how a kernel walks an input and its output, and the safe overlap distance.

A kernel's registry entry may carry ``access(low, arch) -> Contract | None`` (:attr:`Kernel.access`).
A :class:`Contract` maps input operands to a :class:`Stream`: the order, in *steps*, in which the
kernel reads that input and writes its output, at unit granularity (a unit is one pixel, all its
channels, for the windowed kernels; one element for the element-wise ones):

- ``last_read[x]``: the last step that reads input unit ``x`` (-1: never read);
- ``write_step[u]``: the step that writes output unit ``u``;
- ``reads_first``: within a step, every read precedes every write (else they may interleave: the
  output unit of step ``j`` may be written while step ``j``'s inputs are still being read).

From that follows the *safe distance* ``D`` (:func:`distance`): with the output placed ``D`` or more
bytes below the input (``in_offset - out_offset >= D``), no output byte is written over an input
byte that is still to be read. Placing the output above its input is never claimed (the kernels walk
forward). Inputs absent from ``streams`` are read throughout the call: nothing may overlap them. A
kernel without a contract never overlaps. The planner (:mod:`tinygen.plan`) and its verifier derive
``D`` from the contract; :mod:`tinygen.overlap_check` replays the streams on the planned offsets.

The contracts of the registry come from reading the C (see each constructor's docstring):
:func:`window` for the portable conv / depthwise / pooling kernels and the CMSIS-NN kernels that
walk output pixels in order; :func:`elementwise` for LUT, ADD, SUB and MUL kernels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Stream:
    in_unit: int  # bytes per input unit
    out_unit: int  # bytes per output unit
    last_read: np.ndarray  # int64 per input unit
    write_step: np.ndarray  # int64 per output unit
    reads_first: bool
    unit: str = "pixel"


@dataclass(frozen=True)
class Contract:
    streams: dict[int, Stream] = field(default_factory=dict)  # input operand index -> stream
    doc: str = ""


def window(p: dict, fh: int, fw: int, reads_first: bool = False, doc: str = "") -> Contract:
    """Pixel streaming over a (b, oy, ox) loop nest: output pixel ``j`` (all its channels) is step ``j``;
    it reads the input pixels of its window clipped to the input (rows ``oy*sh - ph + ky*dh``, columns
    likewise), all channels, and writes its own output pixel while still reading them (unless
    ``reads_first``). ``p`` holds ``in``/``out`` dims, strides, pads and (optional) dilations.

    >>> p = {"in": {"n": 1, "h": 1, "w": 4, "c": 2}, "out": {"n": 1, "h": 1, "w": 4, "c": 2},
    ...      "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0}
    >>> s = window(p, 1, 1).streams[0]
    >>> s.last_read.tolist(), s.write_step.tolist(), distance(s)
    ([0, 1, 2, 3], [0, 1, 2, 3], 2)
    """
    i, o = p["in"], p["out"]
    sh, sw, ph, pw = p["stride_h"], p["stride_w"], p["pad_h"], p["pad_w"]
    dh, dw = p.get("dil_h", 1), p.get("dil_w", 1)
    last = np.full((i["n"], i["h"], i["w"]), -1, np.int64)
    step = np.arange(o["n"] * o["h"] * o["w"], dtype=np.int64).reshape(o["n"], o["h"], o["w"])
    b, oy, ox = np.meshgrid(np.arange(o["n"]), np.arange(o["h"]), np.arange(o["w"]), indexing="ij")
    b = np.minimum(b, i["n"] - 1)
    for ky in range(fh):
        for kx in range(fw):
            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
            ok = (iy >= 0) & (iy < i["h"]) & (ix >= 0) & (ix < i["w"])
            np.maximum.at(last, (b[ok], iy[ok], ix[ok]), step[ok])
    s = Stream(i["c"], o["c"], last.reshape(-1), step.reshape(-1), reads_first)
    return Contract({0: s}, doc)


def channel_window(p: dict, fh: int, fw: int, doc: str = "") -> Contract:
    """Depthwise streaming at byte granularity: output byte (pixel j, channel oc = ic * m + k, ``m``
    the depth multiplier) is step ``j * out_c + oc``; it reads channel ``ic`` of pixel j's window,
    then writes that one byte (reads first). Input byte (q, ic) is last read at the step of the last
    window holding q, channel ``ic * m + m - 1``.

    >>> p = {"in": {"n": 1, "h": 3, "w": 3, "c": 4}, "out": {"n": 1, "h": 3, "w": 3, "c": 4},
    ...      "stride_h": 1, "stride_w": 1, "pad_h": 1, "pad_w": 1}
    >>> distance(channel_window(p, 3, 3).streams[0]), distance(window(p, 3, 3).streams[0])
    (16, 20)
    """
    px = window(p, fh, fw).streams[0]
    cin, cout = p["in"]["c"], p["out"]["c"]
    m = cout // cin
    ch = np.arange(cin, dtype=np.int64) * m + m - 1
    last = np.where(px.last_read[:, None] >= 0, px.last_read[:, None] * cout + ch[None, :], -1).reshape(-1)
    write = np.arange(len(px.write_step) * cout, dtype=np.int64)
    return Contract({0: Stream(1, 1, last, write, True, "byte")}, doc)


def elementwise(p_out: dict, ins: list[dict | None], doc: str = "") -> Contract:
    """Element ``k`` of the output is step ``k``: it reads element ``k`` of every input that has the
    output's shape, then writes ``out[k]`` (reads first). Inputs of another shape (broadcast) get no
    stream: they are read throughout.

    >>> c = elementwise({"n": 1, "h": 1, "w": 1, "c": 4}, [{"n": 1, "h": 1, "w": 1, "c": 4}])
    >>> distance(c.streams[0])
    0
    """
    n = p_out["n"] * p_out["h"] * p_out["w"] * p_out["c"]
    k = np.arange(n, dtype=np.int64)
    return Contract({j: Stream(1, 1, k, k, True, "element") for j, d in enumerate(ins) if d == p_out}, doc)


def distance(s: Stream) -> int:
    """Smallest ``in_offset - out_offset`` (bytes) at which writing the output never clobbers an input
    byte still to be read: for each output unit ``u`` written at step ``w``, the input units read at a
    step after ``w`` (at or after, unless reads come first) must all lie above ``u``'s last byte."""
    pm = np.maximum.accumulate(s.last_read) if len(s.last_read) else s.last_read
    need = s.write_step + (1 if s.reads_first else 0)
    first = np.searchsorted(pm, need, side="left")  # lowest input unit still needed after each write
    ok = first < len(pm)
    if not ok.any():
        return 0
    u = np.nonzero(ok)[0]
    return int(((u + 1) * s.out_unit - first[ok] * s.in_unit).max())


def stream_distance(contract: Contract | None, index: int) -> int | None:
    """Safe distance for input operand ``index`` under ``contract``; None: may not overlap."""
    if contract is None or index not in contract.streams:
        return None
    return distance(contract.streams[index])


def _root(g, tid: int) -> int:
    t = g.t(tid)
    return t.alias_of if t.alias_of is not None else tid


def op_distance(g, calls, i: int, root: int) -> int | None:
    """Safe distance (bytes, unaligned) for op ``i``'s output below input storage root ``root``, from
    the contract of op ``i``'s kernel; None when the contract does not cover every operand reading
    ``root`` (or there is no kernel or contract)."""
    if isinstance(calls, dict) or i >= len(calls) or calls[i] is None:
        return None
    op, call = g.ops[i], calls[i]
    contract = call.kernel.contract(call.low, call.arch)
    ks = [k for k, t in enumerate(op.inputs) if t >= 0 and not g.t(t).is_const and _root(g, t) == root]
    ds = [stream_distance(contract, k) for k in ks]
    if not ds or any(d is None for d in ds):
        return None
    return max(d for d in ds if d is not None)


def dims_of(shape) -> dict:
    """NHWC dims of a tensor shape of rank <= 4 (leading 1s), as in the kernels' params."""
    s = (1,) * (4 - len(shape)) + tuple(shape)
    return {"n": s[0], "h": s[1], "w": s[2], "c": s[3]}
