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

The safe set of distances need not be an interval: a kernel that finishes one channel (or one row)
of its input before writing the same channel of its output may sit exactly on its input (``D = 0``)
while ``D = 1`` clobbers. :func:`safe` decides one ``D`` byte by byte; :func:`distance` is the
smallest ``D`` from which every larger one is safe; :func:`op_distance` takes ``0`` when it is safe,
else that bound.

The contracts of the registry come from reading the C (see each constructor's docstring):
:func:`window` for the portable conv / depthwise / pooling kernels, the CMSIS-NN kernels that
walk output pixels in order and the generated conv (pixel pairs) and pooling kernels;
:func:`channel_planes` for the generated depthwise kernel (a channel plane at a time);
:func:`rows` for fully connected kernels that copy an input row before writing its outputs;
:func:`elementwise` for LUT, ADD, SUB and MUL kernels.
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
    reverse: bool = False  # the kernel walks from the last unit down: the output may sit above its input


@dataclass(frozen=True)
class Contract:
    streams: dict[int, Stream] = field(default_factory=dict)  # input operand index -> stream
    doc: str = ""


def window(p: dict, fh: int, fw: int, reads_first: bool = False, doc: str = "", group: int = 1,
           reverse: bool = False) -> Contract:
    """Pixel streaming over a (b, oy, ox) loop nest: output pixel ``j`` (all its channels) is step
    ``j // group`` (``group`` pixels per step: the generated conv gathers the windows of a pixel pair,
    then writes both pixels); it reads the input pixels of its window clipped to the input (rows
    ``oy*sh - ph + ky*dh``, columns likewise), all channels, and writes its own output pixel while
    still reading them (unless ``reads_first``). ``p`` holds ``in``/``out`` dims, strides, pads and
    (optional) dilations. ``reverse``: the pixels are walked from the last one down (in groups from
    the top: an odd count starts with the last pixel alone).

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
    npix = o["n"] * o["h"] * o["w"]
    j = np.arange(npix, dtype=np.int64)
    step = (npix - 1 - j + (npix % group)) // group if reverse else j // group
    step = step.reshape(o["n"], o["h"], o["w"])
    b, oy, ox = np.meshgrid(np.arange(o["n"]), np.arange(o["h"]), np.arange(o["w"]), indexing="ij")
    b = np.minimum(b, i["n"] - 1)
    for ky in range(fh):
        for kx in range(fw):
            iy, ix = oy * sh - ph + ky * dh, ox * sw - pw + kx * dw
            ok = (iy >= 0) & (iy < i["h"]) & (ix >= 0) & (ix < i["w"])
            np.maximum.at(last, (b[ok], iy[ok], ix[ok]), step[ok])
    s = Stream(i["c"], o["c"], last.reshape(-1), step.reshape(-1), reads_first, reverse=reverse)
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


def channel_planes(p: dict, doc: str = "", bands: list[tuple[int, int, int, int]] | None = None) -> Contract:
    """Depthwise, one channel plane at a time (multiplier 1): step ``b * C + c`` copies channel ``c`` of
    batch ``b``'s input (every pixel) into scratch, then writes channel ``c`` of every output pixel of
    batch ``b`` (reads first). With ``bands`` ((oy0, oy1, iy0, iy1) each: output rows [oy0, oy1) after
    copying input rows [iy0, iy1)), each band of each channel is a step of its own. Output byte (b, p, c) only ever lands on input bytes of channels already
    copied when ``D`` is 0 (in place, also for a strided, smaller output).

    >>> p = {"in": {"n": 1, "h": 3, "w": 3, "c": 4}, "out": {"n": 1, "h": 2, "w": 2, "c": 4}}
    >>> s = channel_planes(p).streams[0]
    >>> safe(s, 0), safe(s, 1), distance(s)
    (True, False, 12)
    """
    i, o = p["in"], p["out"]
    cin = i["c"]
    if bands is None:
        bands = [(0, o["h"], 0, i["h"])]
    nb = len(bands)
    # band index of each input row (the last band reading it; -1: never read) and of each output row
    in_band = np.full(i["h"], -1, np.int64)
    out_band = np.zeros(o["h"], np.int64)
    for k, (oy0, oy1, iy0, iy1) in enumerate(bands):
        in_band[iy0:iy1] = k
        out_band[oy0:oy1] = k
    ch = np.arange(cin, dtype=np.int64)
    b_in = np.arange(i["n"], dtype=np.int64)[:, None, None, None]
    b_out = np.arange(o["n"], dtype=np.int64)[:, None, None, None]
    last = np.where(in_band[None, :, None, None] >= 0,
                    (b_in * cin + ch[None, None, None, :]) * nb + in_band[None, :, None, None], -1)
    last = np.broadcast_to(last, (i["n"], i["h"], i["w"], cin)).reshape(-1)
    write = (b_out * cin + ch[None, None, None, :]) * nb + out_band[None, :, None, None]
    write = np.broadcast_to(write, (o["n"], o["h"], o["w"], o["c"])).reshape(-1)
    return Contract({0: Stream(1, 1, np.ascontiguousarray(last), np.ascontiguousarray(write), True, "byte")}, doc)


def rows(batches: int, in_depth: int, out_depth: int, doc: str = "") -> Contract:
    """Row at a time (fully connected): step ``b`` reads input row ``b`` whole (into scratch), then
    writes output row ``b`` (reads first).

    >>> s = rows(1, 640, 128).streams[0]
    >>> safe(s, 0), distance(s)
    (True, 0)
    """
    k = np.arange(batches, dtype=np.int64)
    return Contract({0: Stream(in_depth, out_depth, k, k, True, "row")}, doc)


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


def mirror(s: Stream) -> Stream:
    """The same accesses with every address negated (units in reverse order): a kernel walking down
    seen as one walking up."""
    return Stream(s.in_unit, s.out_unit, s.last_read[::-1].copy(), s.write_step[::-1].copy(), s.reads_first,
                  s.unit, not s.reverse)


def tightest(s: Stream) -> int:
    """The safe ``in_offset - out_offset`` that shares the most bytes: for a forward walk 0 when that is
    safe, else :func:`distance` (every larger one is safe too); for a reverse walk the largest safe
    one, ``n_out - n_in - distance(mirror(s))`` (every smaller one is safe too: the output above).

    >>> p = {"in": {"n": 1, "h": 1, "w": 4, "c": 2}, "out": {"n": 1, "h": 1, "w": 2, "c": 2},
    ...      "stride_h": 1, "stride_w": 2, "pad_h": 0, "pad_w": 0}
    >>> tightest(window(p, 1, 2).streams[0]), tightest(window(p, 1, 2, reverse=True).streams[0])
    (2, -6)
    """
    if s.reverse:
        n_in, n_out = len(s.last_read) * s.in_unit, len(s.write_step) * s.out_unit
        return n_out - n_in - distance(mirror(s))
    return 0 if safe(s, 0) else distance(s)


def safe(s: Stream, dist: int) -> bool:
    """Byte by byte: with the output ``dist`` bytes below the input (``in_offset - out_offset``),
    is every output byte written after the last read of the input byte it lands on (in the same
    step when reads come first)?"""
    n_in, n_out = len(s.last_read) * s.in_unit, len(s.write_step) * s.out_unit
    lo, hi = max(0, dist), min(n_out, dist + n_in)
    if lo >= hi:
        return True
    b = np.arange(lo, hi)
    w = s.write_step[b // s.out_unit]
    r = s.last_read[(b - dist) // s.in_unit]
    return bool(np.all(w >= r) if s.reads_first else np.all(w > r))


def stream_distance(contract: Contract | None, index: int) -> int | None:
    """Safe distance for input operand ``index`` under ``contract``; None: may not overlap."""
    if contract is None or index not in contract.streams:
        return None
    return tightest(contract.streams[index])


def _root(g, tid: int) -> int:
    t = g.t(tid)
    return t.alias_of if t.alias_of is not None else tid


def op_distance(g, calls, i: int, root: int) -> int | None:
    """Tightest safe distance (bytes, unaligned; :func:`tightest`) for op ``i``'s output below input
    storage root ``root`` (negative: above it), from the contract of op ``i``'s kernel; None when the contract does not cover every operand reading
    ``root`` (or there is no kernel or contract)."""
    if isinstance(calls, dict) or i >= len(calls) or calls[i] is None:
        return None
    op, call = g.ops[i], calls[i]
    contract = call.kernel.contract(call.low, call.arch)
    ks = [k for k, t in enumerate(op.inputs) if t >= 0 and not g.t(t).is_const and _root(g, t) == root]
    if not ks or contract is None or any(k not in contract.streams for k in ks):
        return None
    ss = [contract.streams[k] for k in ks]
    if len({s.reverse for s in ss}) > 1:
        return None
    if ss[0].reverse:
        return min(tightest(s) for s in ss)
    if all(safe(s, 0) for s in ss):
        return 0
    return max(distance(s) for s in ss)


def op_safe(g, calls, i: int, root: int, dist: int) -> bool:
    """Is op ``i``'s output ``dist`` bytes below input storage root ``root`` safe, byte by byte, under
    its kernel's contract for every operand reading ``root``? (The verifier's question.)"""
    if isinstance(calls, dict) or i >= len(calls) or calls[i] is None:
        return False
    op, call = g.ops[i], calls[i]
    contract = call.kernel.contract(call.low, call.arch)
    ks = [k for k, t in enumerate(op.inputs) if t >= 0 and not g.t(t).is_const and _root(g, t) == root]
    if not ks or contract is None or any(k not in contract.streams for k in ks):
        return False
    return all(safe(contract.streams[k], dist) for k in ks)


def dims_of(shape) -> dict:
    """NHWC dims of a tensor shape of rank <= 4 (leading 1s), as in the kernels' params."""
    s = (1,) * (4 - len(shape)) + tuple(shape)
    return {"n": s[0], "h": s[1], "w": s[2], "c": s[3]}
