"""Static memory planning of the tensor arena.

1. Buffers: every computed tensor gets one; reshapes alias their input's buffer;
   in-place ops (element-wise, same size, input dead afterwards) write into
   their input's buffer; each op's backend scratch is a buffer live only
   during that op.
2. Live ranges over the execution order: [first write, last read].
3. Offsets: greedy placement of buffers into the tightest gap that fits
   (best fit), tried over several orderings (size, start, duration, area);
   the smallest arena wins; when it misses the live-set lower bound, a
   hill-climb over the placement order (Vela-style, < 0.3 s). An op's
   scratch may sit under its own output when the kernel allows it
   (SCRATCH_HOLDS_OUTPUT). Every offset is 16-byte aligned.
   :func:`schedule` searches execution orders for the lowest peak of live
   bytes (apply with :func:`reorder` before lowering).
4. :func:`verify_plan` re-derives liveness from the graph independently and
   raises if two live tensors overlap, so a planner bug cannot reach a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ops as optable
from .errors import ModelError
from .ir import Graph

ALIGN = 16


def align(n: int, a: int = ALIGN) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    name: str
    size: int
    start: int
    end: int
    tensors: list[int] = field(default_factory=list)
    offset: int = -1
    head: int = 0  # bytes at step `start` when larger than `size` (an op's scratch under its output)
    scratch_of: int | None = None  # op position whose scratch starts at this buffer's offset

    def overlaps_in_time(self, o: "Buffer") -> bool:
        return self.start <= o.end and o.start <= self.end

    def height_against(self, o: "Buffer") -> int:
        """Bytes this buffer occupies over the steps it shares with ``o``."""
        return max(self.size, self.head) if o.start <= self.start <= o.end else self.size


@dataclass
class Plan:
    arena_size: int
    buffers: list[Buffer]
    offsets: dict[int, int]  # tensor id -> arena offset
    scratch: dict[int, tuple[int, int]]  # op position -> (offset, size)
    inplace: dict[int, int]  # op position -> input tensor id it overwrites
    strategy: str = ""

    def table(self, g: Graph) -> str:
        rows = [f"{'buffer':<40} {'bytes':>8} {'offset':>8}  live"]
        for b in sorted(self.buffers, key=lambda b: (b.offset, b.start)):
            rows.append(f"{b.name[:40]:<40} {b.size:>8} {b.offset:>8}  [{b.start}, {b.end}]")
        rows.append(f"arena: {self.arena_size} bytes ({self.strategy})")
        return "\n".join(rows)


def _root(g: Graph, tid: int) -> int:
    t = g.t(tid)
    return t.alias_of if t.alias_of is not None else tid


def live_ranges(g: Graph) -> dict[int, tuple[int, int]]:
    """Storage root -> (first step written, last step read); inputs from step 0, outputs to the end."""
    end_step = len(g.ops)
    rng: dict[int, list[int]] = {}
    for tid in g.inputs:
        rng[_root(g, tid)] = [0, 0]
    for i, op in enumerate(g.ops):
        for tid in op.outputs:
            r = _root(g, tid)
            rng.setdefault(r, [i, i])
            rng[r][1] = max(rng[r][1], i)
        for tid in op.inputs:
            if tid < 0 or g.t(tid).is_const:
                continue
            r = _root(g, tid)
            rng.setdefault(r, [i, i])
            rng[r][1] = max(rng[r][1], i)
    for tid in g.outputs:
        r = _root(g, tid)
        rng.setdefault(r, [end_step, end_step])
        rng[r][1] = end_step
    return {k: (v[0], v[1]) for k, v in rng.items()}


def make_buffers(g: Graph, scratch: dict[int, int]) -> tuple[list[Buffer], dict[int, int]]:
    rng = live_ranges(g)
    by_root: dict[int, Buffer] = {}
    for r, (s, e) in rng.items():
        by_root[r] = Buffer(g.t(r).name, g.t(r).nbytes, s, e, [r])
    for t in g.tensors:
        if t.alias_of is not None and t.alias_of in by_root:
            by_root[t.alias_of].tensors.append(t.id)
    # in-place: the output takes over its input's buffer when the input dies at this op
    owner = {r: r for r in by_root}
    inplace: dict[int, int] = {}
    for i, op in enumerate(g.ops):
        if not optable.TABLE[op.kind].inplace or not op.outputs:
            continue
        out_root = _root(g, op.outputs[0])
        if out_root not in by_root or owner[out_root] != out_root:
            continue
        for tid in op.inputs:
            if tid < 0 or g.t(tid).is_const:
                continue
            src = by_root[owner[_root(g, tid)]]
            dst = by_root[out_root]
            if src.end == i and src.size == dst.size and tid not in g.inputs and src is not dst:
                src.end = dst.end
                src.tensors += dst.tensors
                src.name = f"{src.name} > {dst.name}"
                owner[out_root] = owner[_root(g, tid)]
                del by_root[out_root]
                inplace[i] = tid
                break
    buffers = list(by_root.values())
    for i, size in sorted(scratch.items()):
        if size <= 0:
            continue
        op = g.ops[i]
        rule = SCRATCH_HOLDS_OUTPUT.get(op.kind)
        out = by_root.get(owner.get(_root(g, op.outputs[0]), -1)) if op.outputs else None
        if rule is not None and rule(g, op, size) and out is not None and out.start == i and out.head == 0:
            out.head, out.scratch_of = size, i
            out.name = f"{out.name} (+scratch)"
            continue
        buffers.append(Buffer(f"scratch #{op.op_index} {op.kind}", size, i, i, []))
    return buffers, inplace


def _fc_single_row(g: Graph, op, scratch: int) -> bool:
    """FULLY_CONNECTED with one row and one output chunk on the cmsis-nn backend:
    tg_fully_connected_s8 (firmware/tg_backend_cmsis.c) fills the int32 row acc[0..n) in the
    scratch, then writes out[k] = requant(acc[k]) for k = 0, 1, ...: byte k of the output lies in
    acc[k / 4], already read. So the int8 output can start at the scratch's first byte. Not when
    the scratch holds less than the whole row (TG_FC_CHUNK chunks: the next chunk's accumulators
    would overwrite outputs already written) nor for batched FCs (acc reset per row)."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    w = g.t(op.inputs[1])
    return len(w.shape) == 2 and x.size == w.shape[1] and scratch >= 4 * y.size


# op kind -> rule: may the op's output share the first bytes of its own scratch?
SCRATCH_HOLDS_OUTPUT = {"FULLY_CONNECTED": _fc_single_row}


def lower_bound(buffers: list[Buffer]) -> int:
    """Bytes simultaneously live at the worst step (each buffer aligned): no placement can beat it.

    >>> lower_bound([Buffer("a", 100, 0, 1), Buffer("b", 100, 1, 2), Buffer("c", 10, 2, 2)])
    224
    """
    steps = sorted({b.start for b in buffers})
    return max((sum(align(max(b.size, b.head) if b.start == s else b.size) for b in buffers if b.start <= s <= b.end)
                for s in steps), default=0)


def _place(buffers: list[Buffer], order: list[Buffer]) -> int:
    """Greedy best fit in ``order``: each buffer goes into the tightest hole among the buffers
    already placed that overlap it in time (or on top of them). Returns the arena size."""
    placed: list[Buffer] = []
    top = 0
    for b in order:
        busy = [(p.offset, p.offset + p.height_against(b), b.height_against(p)) for p in placed if p.overlaps_in_time(b)]
        best, best_gap, lowest = None, None, None
        for x in sorted({0, *(align(hi) for _, hi, _ in busy)}):
            if any(x < hi and lo < x + need for lo, hi, need in busy):
                continue
            above = [lo - x for lo, _, _ in busy if lo >= x]
            if lowest is None and not above:
                lowest = x
            if above and (best_gap is None or min(above) < best_gap):
                best, best_gap = x, min(above)
        b.offset = best if best is not None else lowest
        placed.append(b)
        top = max(top, align(b.offset + max(b.size, b.head)))
    return top


def _hill_climb(buffers: list[Buffer], order: list[Buffer], size: int, bound: int, budget_s: float) -> tuple[int, list[Buffer]]:
    """Improve a placement order (as Vela's hill-climb allocator): repeatedly move a buffer that
    reaches the top of the arena, or a random one, earlier in the order; keep changes that do
    not grow the arena. Stops at the lower bound, after ``budget_s`` seconds or 400 tries."""
    import random
    import time

    rng = random.Random(0)
    best, best_order = size, list(order)
    deadline = time.perf_counter() + budget_s
    tries = 0
    while best > bound and tries < 400 and time.perf_counter() < deadline:
        tries += 1
        cand = list(best_order)
        _place(buffers, cand)
        tops = [i for i, b in enumerate(cand) if align(b.offset + max(b.size, b.head)) >= best]
        i = rng.choice(tops) if tops and rng.random() < 0.7 else rng.randrange(len(cand))
        j = rng.randrange(0, i + 1) if i else 0
        if i == j:
            j = rng.randrange(len(cand))
        cand.insert(j, cand.pop(i))
        got = _place(buffers, cand)
        if got <= best:
            best, best_order = got, cand
    return best, best_order


ORDERS = {
    "size": lambda b: (-b.size, b.start, b.name),
    "start": lambda b: (b.start, -b.size, b.name),
    "duration": lambda b: (-(b.end - b.start), -b.size, b.name),
    "area": lambda b: (-(b.end - b.start + 1) * b.size, b.start, b.name),
}


def plan(g: Graph, scratch: dict[int, int], search_budget_s: float = 0.3) -> Plan:
    """Plan the arena for ``g`` with per-op scratch sizes ``scratch`` (op position -> bytes).

    Greedy best fit over the orderings of ORDERS; unless that meets the live-set lower bound,
    a hill-climb over the placement order (deterministic, at most ``search_budget_s``)."""
    buffers, inplace = make_buffers(g, scratch)
    bound = lower_bound(buffers)
    best = None
    for name, key in ORDERS.items():
        order = sorted(buffers, key=key)
        size = _place(buffers, order)
        if best is None or size < best[0]:
            best = (size, name, order)
        if size == bound:
            break
    size, name, order = best
    if size > bound and search_budget_s > 0:
        got, climbed = _hill_climb(buffers, order, size, bound, search_budget_s)
        if got < size:
            size, name, order = got, f"{name}+search", climbed
    size = _place(buffers, order)
    offsets = {}
    scratch_at = {}
    for b in buffers:
        for tid in b.tensors:
            offsets[tid] = b.offset
        if not b.tensors:
            scratch_at[b.start] = (b.offset, b.size)
        if b.scratch_of is not None:
            scratch_at[b.scratch_of] = (b.offset, b.head)
    p = Plan(size, buffers, offsets, scratch_at, inplace, name + (" (optimal)" if size == bound else ""))
    verify_plan(g, p)
    return p


def verify_plan(g: Graph, p: Plan) -> None:
    """Independent check: no two tensors live at the same step share bytes (except a reshape alias
    and an in-place op's input/output), scratch overlaps nothing live, all offsets aligned, all in bounds."""
    steps = len(g.ops)
    live: dict[int, tuple[int, int]] = {}
    for tid in g.inputs:
        live[tid] = (0, 0)
    for i, op in enumerate(g.ops):
        for tid in op.outputs:
            live.setdefault(tid, (i, i))
        for tid in op.inputs:
            if tid >= 0 and not g.t(tid).is_const:
                s, _ = live.get(tid, (i, i))
                live[tid] = (s, max(live.get(tid, (i, i))[1], i))
    for tid in g.outputs:
        live[tid] = (live.get(tid, (steps, steps))[0], steps)
    # a reshape alias keeps its root's storage alive as long as the alias is read
    for tid, (s, e) in list(live.items()):
        r = _root(g, tid)
        if r != tid:
            rs, re_ = live.get(r, (s, e))
            live[r] = (min(rs, s), max(re_, e))
    items = []  # (name, offset, size, start, end, root, tid)
    for tid, (s, e) in live.items():
        if tid not in p.offsets:
            raise ModelError(f"plan: tensor {g.t(tid).describe()} has no arena offset")
        items.append((g.t(tid).name, p.offsets[tid], g.t(tid).nbytes, s, e, _root(g, tid), tid))
    for i, (off, size) in p.scratch.items():
        items.append((f"scratch of op {i}", off, size, i, i, -1 - i, None))
    inplace_pairs = {(p.inplace[i], g.ops[i].outputs[0]) for i in p.inplace}
    for name, off, size, s, e, root, tid in items:
        if off % ALIGN or off < 0 or off + size > p.arena_size:
            raise ModelError(f"plan: '{name}' at offset {off} size {size} is misaligned or outside the {p.arena_size}-byte arena")
    items.sort(key=lambda x: x[1])
    for a_i, a in enumerate(items):
        for b in items[a_i + 1:]:
            if b[1] >= a[1] + a[2]:
                break
            if a[5] == b[5] or not (a[3] <= b[4] and b[3] <= a[4]):
                continue
            pair = {(a[6], b[6]), (b[6], a[6])}
            if pair & inplace_pairs and a[1] == b[1] and (a[4] == b[3] or b[4] == a[3]):
                continue
            if _chained_inplace(g, p, a[6], b[6]):
                continue
            if _scratch_holds_output(g, p, a, b) or _scratch_holds_output(g, p, b, a):
                continue
            raise ModelError(
                f"plan: '{a[0]}' [{a[1]}, {a[1] + a[2]}) live {a[3]}..{a[4]} overlaps "
                f"'{b[0]}' [{b[1]}, {b[1] + b[2]}) live {b[3]}..{b[4]}"
            )


def _scratch_holds_output(g: Graph, p: Plan, s: tuple, o: tuple) -> bool:
    """True when ``s`` is op i's scratch and ``o`` op i's output placed at the scratch's first byte,
    inside it, for an op whose kernel allows that (SCRATCH_HOLDS_OUTPUT)."""
    if s[6] is not None or s[5] >= 0 or o[6] is None:
        return False
    i = -1 - s[5]
    op = g.ops[i]
    rule = SCRATCH_HOLDS_OUTPUT.get(op.kind)
    return (rule is not None and o[6] == op.outputs[0] and o[1] == s[1] and o[2] <= s[2]
            and rule(g, op, s[2]) and o[3] == i)


def _chained_inplace(g: Graph, p: Plan, a: int | None, b: int | None) -> bool:
    """True when a and b are linked by a chain of in-place ops or aliases (same storage by design)."""
    if a is None or b is None:
        return False
    link: dict[int, int] = {}
    for i, src in p.inplace.items():
        link[_root(g, g.ops[i].outputs[0])] = _root(g, src)

    def base(t: int) -> int:
        t = _root(g, t)
        while t in link:
            t = link[t]
        return t

    return base(a) == base(b) and p.offsets[a] == p.offsets[b]


def peak_live(g: Graph, order: list[int], scratch: dict[int, int] | None = None) -> int:
    """Peak of aligned live activation bytes (+ the running op's scratch) when ``g.ops`` run in
    ``order`` (positions into g.ops); reshape aliases share their root's bytes."""
    scratch = scratch or {}
    need = _remaining_uses(g)
    live = {_root(g, t) for t in g.inputs}
    peak = 0
    for pos in order:
        op = g.ops[pos]
        new = {_root(g, t) for t in op.outputs} - live
        live |= new
        peak = max(peak, sum(align(g.t(r).nbytes) for r in live) + scratch.get(pos, 0))
        for t in op.inputs:
            if t >= 0 and not g.t(t).is_const:
                need[_root(g, t)] -= 1
        live = {r for r in live if need.get(r, 0) > 0 or r in {_root(g, o) for o in g.outputs}}
    return peak


def _remaining_uses(g: Graph) -> dict[int, int]:
    uses: dict[int, int] = {}
    for op in g.ops:
        for t in op.inputs:
            if t >= 0 and not g.t(t).is_const:
                uses[_root(g, t)] = uses.get(_root(g, t), 0) + 1
    return uses


def schedule(g: Graph, scratch: dict[int, int] | None = None, max_states: int = 50_000) -> list[int]:
    """Execution order (positions into g.ops) minimising :func:`peak_live`: exact search over the
    sets of executed ops (memoised; a chain has n states, a ResNet block a few more). Keeps the
    source order on ties, and when the graph has more than ``max_states`` reachable states."""
    scratch = scratch or {}
    n = len(g.ops)
    producer = {t: i for i, op in enumerate(g.ops) for t in op.outputs}
    deps = [{producer[t] for t in op.inputs if t in producer} for op in g.ops]
    outs = {_root(g, o) for o in g.outputs}
    uses = _remaining_uses(g)
    consumers: dict[int, list[int]] = {}
    for i, op in enumerate(g.ops):
        for t in op.inputs:
            if t >= 0 and not g.t(t).is_const:
                consumers.setdefault(_root(g, t), []).append(i)
    roots_made = [{_root(g, t) for t in op.outputs} for op in g.ops]
    size = {r: align(g.t(r).nbytes) for r in set(uses) | outs | {r for s in roots_made for r in s}}
    inputs = {_root(g, t) for t in g.inputs}
    memo: dict[int, tuple[int, int]] = {}

    def live_bytes(done: int) -> int:
        have = set(inputs)
        for i in range(n):
            if done >> i & 1:
                have |= roots_made[i]
        return sum(size[r] for r in have
                   if r in outs or any(not (done >> c & 1) for c in consumers.get(r, [])))

    def best(done: int) -> tuple[int, int]:
        if done == (1 << n) - 1:
            return 0, -1
        if done in memo:
            return memo[done]
        if len(memo) > max_states:
            raise _TooMany
        base = live_bytes(done)
        res = None
        for i in range(n):
            if done >> i & 1 or any(not (done >> d & 1) for d in deps[i]):
                continue
            new = sum(size[r] for r in roots_made[i] if r not in inputs and not any(
                done >> j & 1 for j in range(n) if r in roots_made[j]))
            step = base + new + scratch.get(i, 0)
            cand = max(step, best(done | 1 << i)[0])
            if res is None or cand < res[0]:
                res = (cand, i)
        memo[done] = res
        return res

    try:
        order, done = [], 0
        while done != (1 << n) - 1:
            i = best(done)[1]
            order.append(i)
            done |= 1 << i
    except (_TooMany, RecursionError):
        return list(range(n))
    return order


class _TooMany(Exception):
    pass


def reorder(g: Graph, order: list[int]) -> None:
    """Run g.ops in ``order`` (from :func:`schedule`); call before lowering (emit zips g.ops with the
    lowered list, and scratch is keyed by position)."""
    if sorted(order) != list(range(len(g.ops))):
        raise ModelError(f"reorder: {order} is not a permutation of the {len(g.ops)} ops")
    g.ops = [g.ops[i] for i in order]
