"""Overlap planning: place an op's output over the consumed part of an input that dies at that op.

For op ``i`` whose kernel has an access contract (:mod:`tinygen.overlap`) streaming input operand
``k``, and whose input ``k`` dies at ``i`` (a graph input too: ``tg_model_run`` may overwrite its
input, model.h says so; not read through another operand without a stream), the output may start ``D`` bytes below the input (``D``: the contract's safe
distance, rounded up to the 16-byte alignment): the output lands on the input's consumed pixels, or,
for an expanding layer, the input sits in the tail of the larger output. Chosen overlaps tie buffers
into *groups* (chains: a buffer dies at one op and is made by one) with fixed relative offsets,
which the planner places as single shapes (:class:`tinygen.plan.Buffer` ``parts``).

:func:`choose` picks the set of overlaps by the arena it yields (all, none, then one pass toggling
each): an overlap can hurt (a chain drifts downwards by ``D`` per op), so the planner measures.
Legality is re-derived by :func:`tinygen.plan.verify_plan` and replayed by
:mod:`tinygen.overlap_check`; nothing here is trusted by either.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import overlap as ov
from .ir import Graph


@dataclass(frozen=True)
class Candidate:
    op: int  # op position
    src: int  # index into the buffer list: the input that dies at op
    dst: int  # the op's output buffer
    dist: int  # aligned safe distance: dst offset = src offset - dist (negative: above, a reverse walk)


def _root(g: Graph, tid: int) -> int:
    t = g.t(tid)
    return t.alias_of if t.alias_of is not None else tid


def candidates(g: Graph, calls, buffers, align) -> list[Candidate]:
    """Overlaps the contracts allow (``align``: rounds a distance up to the arena alignment)."""
    where = {t: j for j, b in enumerate(buffers) for t in b.tensors}
    out = []
    for i, op in enumerate(g.ops):
        if not op.outputs or _root(g, op.outputs[0]) not in where:
            continue
        dst = where[_root(g, op.outputs[0])]
        for tid in op.inputs:
            if tid < 0 or g.t(tid).is_const or _root(g, tid) not in where:
                continue
            src = where[_root(g, tid)]
            s, d = buffers[src], buffers[dst]
            if src == dst or s.end != i or d.start != i or d.head or s.head or any(c.src == src for c in out):
                continue
            dist = ov.op_distance(g, calls, i, _root(g, tid))
            if dist is None:
                continue
            up, down = align(dist), -align(-dist)  # a forward walk may sit further below, a reverse one above
            dist = up if ov.op_safe(g, calls, i, _root(g, tid), up) else down
            if not ov.op_safe(g, calls, i, _root(g, tid), dist):
                continue
            if dist < d.size and dist + s.size > 0:  # the two share bytes: worth it
                out.append(Candidate(i, src, dst, dist))
    return out


def grouped(buffers, chosen: list[Candidate]):
    """The buffers with the chosen overlaps merged into groups (parts at fixed relative offsets),
    of the buffers' own class (:class:`tinygen.plan.Buffer`)."""
    nxt = {c.src: c for c in chosen}
    prev = {c.dst: c for c in chosen}
    out = []
    for j, b in enumerate(buffers):
        if j in prev:
            continue
        if j not in nxt:
            b.parts = []
            out.append(b)
            continue
        chain, rel, k = [(0, b)], 0, j
        while k in nxt:
            c = nxt[k]
            rel -= c.dist
            k = c.dst
            chain.append((rel, buffers[k]))
        low = min(r for r, _ in chain)
        parts = [(r - low, p) for r, p in chain]
        for _, p in parts:
            p.parts = []
        g = type(b)(" ~ ".join(p.name for _, p in parts), 0, min(p.start for _, p in parts),
                   max(p.end for _, p in parts), parts=parts)
        g.size = g.height()
        out.append(g)
    return out


def _area(buffers) -> int:
    """Sum over the steps of each buffer's span of live bytes (the lower bound's terms)."""
    total = 0
    for b in buffers:
        segs = b.segs()
        for t in sorted({s for _, _, s, _ in segs} | {e for _, _, _, e in segs}):
            live = [(r, n) for r, n, s, e in segs if s <= t <= e]
            total += max(r + n for r, n in live) - min(r for r, _ in live)
    return total


def choose(buffers, cands: list[Candidate], size_of, passes: int = 3) -> list[Candidate]:
    """The overlaps to apply: smallest ``size_of(grouped buffers)``, then the least live area (bytes x
    steps: an overlap that lowers a step below the peak opens the way for the next), then the fewest
    overlaps (a last pass drops those the arena does not need). From two
    starts (none, all), passes toggling each candidate in op order keep a change when it improves
    that key (an overlap can hurt: a chain of forward-walking kernels drifts down by each distance;
    two overlaps may only pay together), until a pass changes nothing (at most ``passes``)."""
    if not cands:
        return []

    def key(sel):
        gb = grouped(buffers, sel)
        return size_of(gb), _area(gb), len(sel)

    results = []
    for start in ([], list(cands)):
        best, best_key = start, key(start)
        for _ in range(passes):
            changed = False
            for c in cands:
                sel = [x for x in best if x != c] if c in best else sorted(best + [c], key=lambda x: x.op)
                k = key(sel)
                if k < best_key:
                    best, best_key, changed = sel, k, True
            if not changed:
                break
        results.append((best_key, best))
    best = min(results, key=lambda r: r[0])[1]
    size = key(best)[0]
    for c in list(best):  # drop the overlaps the arena does not need
        sel = [x for x in best if x != c]
        if size_of(grouped(buffers, sel)) <= size:
            best = sel
    return best if size < size_of(grouped(buffers, [])) else []


TRADE_BUDGET = 0.03  # estimated instructions a smaller arena may cost, as a fraction of the model's
TRADE_TRIES = 12  # plans tried at most


def trade(g: Graph, calls: list, plan_fn, regen, budget: float | None = None):
    """Arena-driven kernel choice (the generated set). A layer whose cheapest kernel has no access
    contract (a CMSIS-NN fallback that re-reads its input) may instead run a generated kernel of the
    same layer that has one, and a generated layer may run another variant of its kernel (the
    reverse walk of a shrinking conv: its output can then end at its input's end, under a chain
    that an expanding layer's output holds at the top; the scratch-free fully connected kernel), when
    that shrinks the planned arena. The
    swaps together may cost at most ``budget`` of the model's estimated instructions; cheapest
    first (the layers at the plan's peak before the others), in passes until one changes nothing
    (two swaps may only pay together), at most
    TRADE_TRIES plans. ``regen(i)``: every generated kernel call for layer ``i``. Returns (calls, plan)."""
    budget = TRADE_BUDGET if budget is None else budget
    best = plan_fn(g, calls)
    total = sum(c.cost for c in calls if c is not None)
    options = []
    for i, call in enumerate(calls):
        if call is None:
            continue
        has = call.kernel.contract(call.low, call.arch) is not None
        if has and call.generated is None:
            continue
        for alt in regen(i):
            if alt.kernel.contract(alt.low, alt.arch) is None or (call.generated is not None
                                                                  and alt.kernel.doc == call.kernel.doc):
                continue
            options.append((alt.cost - call.cost, i, alt))
    spent, tries, changed = 0.0, 0, True
    swapped: set[int] = set()
    while changed and tries < TRADE_TRIES:
        changed = False
        # the layers at the arena's peak first (only they can lower it), cheapest first
        peak = {i for i, t in enumerate(best.step_tops(len(g.ops))) if t >= best.arena_size}
        for extra, i, alt in sorted(options, key=lambda o: (o[1] not in peak, o[0], o[1])):
            if i in swapped or spent + max(extra, 0.0) > budget * total or tries >= TRADE_TRIES:
                continue
            old = calls[i]
            trial = list(calls)
            trial[i] = alt
            tries += 1
            p = plan_fn(g, trial)
            if p.arena_size < best.arena_size:
                alt.alternatives = [old.kernel.name] + [a for a in old.alternatives if a != alt.kernel.name]
                alt.alt_costs = {old.kernel.name: old.cost} | {k: v for k, v in old.alt_costs.items()
                                                               if k != alt.kernel.name}
                calls, best, spent, changed = trial, p, spent + max(extra, 0.0), True
                swapped.add(i)
    return calls, best
