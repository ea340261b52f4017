"""Independent replay of the planned arena: does any kernel read a byte that was already overwritten?

:func:`check` takes only the graph, the kernel calls and the planned offsets (never the planner's
overlap decisions, groups or distances). It keeps, for every arena byte, the tensor (storage root)
whose value it holds, and runs the ops in order:

1. the op's scratch is written first: its bytes hold no tensor any more;
2. every activation input must still be whole (each byte holds that input);
3. inside the op, where an input and the output share bytes, the access order of the kernel's
   contract (:mod:`tinygen.overlap`, at pixel / element granularity) is replayed byte by byte: the
   step writing the output byte must come after the last step reading the input byte (or, unless the
   contract says reads come first in a step, strictly after). Operands without a stream, and kernels
   without a contract, are read throughout: any shared byte fails;
4. the output bytes then hold the output.

At the end the graph outputs must be whole. Ops of the op table marked in-place whose kernel has no
contract are replayed as element-wise (the op table's own promise).
Raises :class:`CompilerBug` naming the op, the tensors and the first clobbered byte.
"""

from __future__ import annotations

import numpy as np

from . import ops as optable
from . import overlap as ov
from .errors import CompilerBug
from .ir import Graph

FREE, SCRATCH = -1, -2


def _root(g: Graph, tid: int) -> int:
    t = g.t(tid)
    if t.view_of is not None:  # a band of its parent's rows (tinygen.patch): the parent's storage
        return _root(g, t.view_of[0])
    return t.alias_of if t.alias_of is not None else tid


def _contract(g: Graph, calls, i: int) -> ov.Contract | None:
    op = g.ops[i]
    call = None if isinstance(calls, dict) else calls[i]
    c = call.kernel.contract(call.low, call.arch) if call is not None else None
    if c is None and optable.facts(op.kind).inplace and op.outputs:
        dims = ov.dims_of(g.t(op.outputs[0]).shape)
        c = ov.elementwise(dims, [ov.dims_of(g.t(t).shape) if t >= 0 else None for t in op.inputs])
    return c


def _replay(g: Graph, i: int, k: int, s: ov.Stream | None, o_in: int, n_in: int, o_out: int, n_out: int) -> None:
    lo, hi = max(o_in, o_out), min(o_in + n_in, o_out + n_out)
    if lo >= hi:
        return
    op, x, y = g.ops[i], g.t(g.ops[i].inputs[k]), g.t(g.ops[i].outputs[0])
    if s is None:
        raise CompilerBug("overlap-check", f"op {op.where()} writes {y.describe()} over bytes [{lo}, {hi}) of input "
                                           f"{x.describe()} that its kernel reads throughout (no access contract)")
    if len(s.last_read) * s.in_unit != n_in or len(s.write_step) * s.out_unit != n_out:
        raise CompilerBug("overlap-check", f"op {op.where()}: the access contract does not cover {x.describe()} "
                                           f"and {y.describe()}")
    a = np.arange(lo, hi)
    w = s.write_step[(a - o_out) // s.out_unit]
    r = s.last_read[(a - o_in) // s.in_unit]
    bad = np.nonzero(w < r if s.reads_first else w <= r)[0]
    if len(bad):
        j = int(bad[0])
        raise CompilerBug("overlap-check", f"op {op.where()} writes {y.describe()} {s.unit} {int(w[j])} at arena byte "
                                           f"{lo + j} before it last reads that byte of input {x.describe()} "
                                           f"({s.unit} step {int(r[j])})")


def check(g: Graph, calls, offsets: dict[int, int], scratch: dict[int, tuple[int, int]], arena: int,
          external: frozenset = frozenset()) -> None:
    """Replay every op's accesses over ``offsets`` (tensor id -> arena offset) and ``scratch`` (op
    position -> (offset, bytes)); raise CompilerBug on the first read of an overwritten byte.
    ``external`` roots live outside the arena (a caller's read-only input): never clobbered. A view
    (a band of rows of its parent) is read and written over its own bytes only."""
    held = np.full(max(arena, 1), FREE, np.int64)

    def span(r: int) -> tuple[int, int]:
        return offsets[r], g.t(r).nbytes

    def whole(r: int, why: str, tid: int | None = None) -> None:
        if r in external:
            return
        o, n = span(r) if tid is None else span(tid)
        bad = np.nonzero(held[o:o + n] != r)[0]
        if len(bad):
            j = int(bad[0])
            by = int(held[o + j])
            what = "scratch" if by == SCRATCH else ("nothing" if by == FREE else g.t(by).describe())
            raise CompilerBug("overlap-check", f"{why} reads {g.t(r).describe()} but arena byte {o + j} holds {what}")

    for tid in g.inputs:
        if _root(g, tid) in external:
            continue
        o, n = span(_root(g, tid))
        held[o:o + n] = _root(g, tid)
    for i, op in enumerate(g.ops):
        outs = [_root(g, t) for t in op.outputs]
        ins = [(k, _root(g, t)) for k, t in enumerate(op.inputs) if t >= 0 and not g.t(t).is_const]
        if outs and all(r in {x for _, x in ins} for r in outs):  # shape-only: the output is its input's storage
            continue
        if i in scratch:
            so, sn = scratch[i]
            held[so:so + sn] = SCRATCH
        for k, r in ins:
            whole(r, f"op {op.where()}", op.inputs[k])
        contract = _contract(g, calls, i)
        for k, r in ins if outs else []:
            if r in external:
                continue
            s = contract.streams.get(k) if contract is not None else None
            _replay(g, i, k, s, *span(op.inputs[k]), *span(op.outputs[0]))
        for t, r in zip(op.outputs, outs):
            o, n = span(t)
            held[o:o + n] = r
    for tid in g.outputs:
        whole(_root(g, tid), "the caller")
