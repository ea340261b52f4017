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
   (the chosen kernel's ``scratch_holds_output``). Every offset is 16-byte aligned.
   :func:`schedule` searches execution orders for the lowest peak of live
   bytes (apply with :func:`reorder` before lowering).
4. :func:`verify_plan` takes only the graph, the kernel calls and the offsets: it re-derives
   liveness (:func:`live_ranges`, the one liveness computation), which overlaps are legal (an
   in-place op from the op table whose input dies there; an output on its own kernel's scratch
   when the kernel says its access order allows it) and raises :class:`CompilerBug` on any other
   overlap, a scratch smaller than the kernel needs, misalignment or an offset out of bounds. It
   never reads the planner's own in-place or scratch decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import ops as optable
from .errors import CompilerBug, ModelError
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
    parts: list[tuple[int, "Buffer"]] = field(default_factory=list)  # an overlap group: (offset in it, buffer)

    def overlaps_in_time(self, o: "Buffer") -> bool:
        return self.start <= o.end and o.start <= self.end

    def height_against(self, o: "Buffer") -> int:
        """Bytes this buffer occupies over the steps it shares with ``o``."""
        return max(self.size, self.head) if o.start <= self.start <= o.end else self.size

    def segs(self) -> list[tuple[int, int, int, int]]:
        """(offset in the buffer, bytes, first step, last step) rectangles of its shape."""
        if self.parts:
            return [(rel + r, n, s, e) for rel, b in self.parts for r, n, s, e in b.segs()]
        head = [(0, self.head, self.start, self.start)] if self.head > self.size else []
        return [(0, self.size, self.start, self.end)] + head

    def height(self) -> int:
        return max(r + n for r, n, _, _ in self.segs())

    def flat(self) -> list["Buffer"]:
        """The tensors' own buffers, at their offsets (a group's parts, else itself)."""
        if not self.parts:
            return [self]
        for rel, b in self.parts:
            b.offset = self.offset + rel
        return [b for _, b in self.parts]


@dataclass
class Plan:
    arena_size: int
    buffers: list[Buffer]
    offsets: dict[int, int]  # tensor id -> arena offset
    scratch: dict[int, tuple[int, int]]  # op position -> (offset, size)
    inplace: dict[int, int]  # op position -> input tensor id it overwrites
    strategy: str = ""
    external: frozenset = frozenset()  # storage roots outside the arena (a caller-owned input); offsets into it

    def step_tops(self, n: int) -> list[int]:
        """Per op position ``0 .. n-1``: the highest arena byte in use while it runs (its live buffers,
        overlap groups as one shape, and its scratch)."""
        top = [0] * n
        for b in self.buffers:
            for i in range(max(b.start, 0), min(b.end, n - 1) + 1):
                top[i] = max(top[i], b.offset + b.size)
        for i, (off, size) in self.scratch.items():
            if 0 <= i < n:
                top[i] = max(top[i], off + size)
        return top

    def table(self, g: Graph) -> str:
        rows = [f"{'buffer':<40} {'bytes':>8} {'offset':>8}  live"]
        for b in sorted(self.buffers, key=lambda b: (b.offset, b.start)):
            rows.append(f"{b.name[:40]:<40} {b.size:>8} {b.offset:>8}  [{b.start}, {b.end}]")
        rows.append(f"arena: {self.arena_size} bytes ({self.strategy})")
        return "\n".join(rows)


def _root(g: Graph, tid: int) -> int:
    t = g.t(tid)
    if t.view_of is not None:  # a band of rows of its parent (tinygen.patch): the parent's storage
        return _root(g, t.view_of[0])
    return t.alias_of if t.alias_of is not None else tid


def view_offset(g: Graph, tid: int) -> int:
    """Byte offset of tensor ``tid`` inside its storage root (non-zero only for views)."""
    t = g.t(tid)
    return t.view_of[1] + view_offset(g, t.view_of[0]) if t.view_of is not None else 0


def external_roots(g: Graph, external_input: bool) -> frozenset:
    """The storage roots a caller-owned input buffer holds (the graph input, read in place)."""
    if external_input and len(g.inputs) != 1:
        from .errors import UnsupportedError

        raise UnsupportedError(f"--input-external reads one caller-owned input buffer; this model has "
                               f"{len(g.inputs)} inputs: build it without --input-external")
    return frozenset(_root(g, t) for t in g.inputs) if external_input else frozenset()


def live_ranges(g: Graph, order: list[int] | None = None) -> dict[int, tuple[int, int]]:
    """Storage root -> (first step written, last step read) when the ops run in ``order``
    (positions into g.ops; default: as listed); inputs from step 0, outputs to the end. Reshape
    aliases count as their root. The one liveness computation of the planner and its verifier.

    >>> from tinygen.ir import Graph, Op, Tensor
    >>> ts = [Tensor(i, f"t{i}", (4,), "int8") for i in range(3)]
    >>> g = Graph(ts, [Op("RELU", [0], [1], {}, 0), Op("RELU", [1], [2], {}, 1)], [0], [2])
    >>> live_ranges(g)
    {0: (0, 0), 1: (0, 1), 2: (1, 2)}
    """
    order = list(range(len(g.ops))) if order is None else order
    end_step = len(order)
    rng: dict[int, list[int]] = {}
    for tid in g.inputs:
        rng[_root(g, tid)] = [0, 0]
    for i, pos in enumerate(order):
        op = g.ops[pos]
        for tid in list(op.outputs) + [t for t in op.inputs if t >= 0 and not g.t(t).is_const]:
            r = _root(g, tid)
            rng.setdefault(r, [i, i])
            rng[r][1] = max(rng[r][1], i)
    for tid in g.outputs:
        r = _root(g, tid)
        rng.setdefault(r, [end_step, end_step])
        rng[r][1] = end_step
    return {k: (v[0], v[1]) for k, v in rng.items()}


def _scratch_sizes(calls) -> dict[int, int]:
    if isinstance(calls, dict):
        return {i: int(v) for i, v in calls.items() if v}
    return {i: c.scratch for i, c in enumerate(calls) if c is not None and c.scratch}


def _holds_output(calls, i: int, size: int) -> bool:
    """May op i's output start at its scratch's first byte? The chosen kernel says (its access order)."""
    if isinstance(calls, dict) or calls[i] is None:
        return False
    rule = calls[i].kernel.scratch_holds_output
    return rule is not None and rule(calls[i].low, size)


def make_buffers(g: Graph, calls, external: frozenset = frozenset()) -> tuple[list[Buffer], dict[int, int]]:
    """Buffers for the plan; ``calls`` are the layers' kernel calls (or a dict op position -> scratch bytes);
    ``external`` roots get none (they live outside the arena)."""
    rng = live_ranges(g)
    by_root: dict[int, Buffer] = {}
    for r, (s, e) in rng.items():
        if r not in external:
            by_root[r] = Buffer(g.t(r).name, g.t(r).nbytes, s, e, [r])
    for t in g.tensors:
        if t.alias_of is not None and t.alias_of in by_root:
            by_root[t.alias_of].tensors.append(t.id)
    # in-place: the output takes over its input's buffer when the input dies at this op
    owner = {r: r for r in by_root}
    inplace: dict[int, int] = {}
    for i, op in enumerate(g.ops):
        if not optable.facts(op.kind).inplace or not op.outputs:
            continue
        out_root = _root(g, op.outputs[0])
        if out_root not in by_root or owner[out_root] != out_root:
            continue
        for tid in op.inputs:
            if tid < 0 or g.t(tid).is_const or _root(g, tid) not in owner:
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
    for i, size in sorted(_scratch_sizes(calls).items()):
        op = g.ops[i]
        out = by_root.get(owner.get(_root(g, op.outputs[0]), -1)) if op.outputs else None
        if _holds_output(calls, i, size) and out is not None and out.start == i and out.head == 0:
            out.head, out.scratch_of = size, i
            out.name = f"{out.name} (+scratch)"
            continue
        buffers.append(Buffer(f"scratch #{op.op_index} {op.kind}", size, i, i, []))
    return buffers, inplace


def lower_bound(buffers: list[Buffer]) -> int:
    """Bytes simultaneously live at the worst step (each buffer aligned; an overlap group counts the
    span of its parts live at that step): no placement of these buffers can beat it.

    >>> lower_bound([Buffer("a", 100, 0, 1), Buffer("b", 100, 1, 2), Buffer("c", 10, 2, 2)])
    224
    """
    segs = [b.segs() for b in buffers]
    steps = sorted({s for ss in segs for _, _, s, _ in ss})

    def span(ss, t):
        live = [(r, n) for r, n, s, e in ss if s <= t <= e]
        return align(max(r + n for r, n in live) - min(r for r, _ in live)) if live else 0

    import bisect

    live_at = dict.fromkeys(steps, 0)  # each buffer adds to the steps within its own life only
    for ss in segs:
        lo, hi = min(s for _, _, s, _ in ss), max(e for _, _, _, e in ss)
        for t in steps[bisect.bisect_left(steps, lo):bisect.bisect_right(steps, hi)]:
            live_at[t] += span(ss, t)
    return max(live_at.values(), default=0)


def _place(buffers: list[Buffer], order: list[Buffer]) -> int:
    """Greedy best fit in ``order``: each buffer goes into the tightest hole among the buffers
    already placed that overlap it in time (or on top of them). An overlap group is placed as one
    shape (its parts at fixed relative offsets). Returns the arena size."""
    at_step: dict[int, list[Buffer]] = {}  # the buffers placed so far, by the steps they live at
    top = 0
    for b in order:
        mine = b.segs()
        near = {id(p): p for t in range(b.start, b.end + 1) for p in at_step.get(t, ())}  # overlap in time
        busy = [(p.offset + r, p.offset + r + n, s, e) for p in near.values() for r, n, s, e in p.segs()]
        pairs = [(r, n, lo, hi) for r, n, s, e in mine for lo, hi, s2, e2 in busy if s <= e2 and s2 <= e]
        best, best_gap, lowest = None, None, None
        for x in sorted({0, *(align(hi) - r for r, _, _, hi in pairs)}):
            if x < 0 or any(x + r < hi and lo < x + r + n for r, n, lo, hi in pairs):
                continue
            above = [lo - x - r for r, n, lo, _ in pairs if lo >= x + r]
            if lowest is None and not above:
                lowest = x
            if above and (best_gap is None or min(above) < best_gap):
                best, best_gap = x, min(above)
        b.offset = best if best is not None else lowest
        for t in range(b.start, b.end + 1):
            at_step.setdefault(t, []).append(b)
        top = max(top, align(b.offset + b.height()))
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
        tops = [i for i, b in enumerate(cand) if align(b.offset + b.height()) >= best]
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


def _greedy(buffers: list[Buffer]) -> tuple[int, str, list[Buffer]]:
    best = None
    bound = lower_bound(buffers)
    for name, key in ORDERS.items():
        order = sorted(buffers, key=key)
        size = _place(buffers, order)
        if best is None or size < best[0]:
            best = (size, name, order)
        if size == bound:
            break
    return best


# Above this many buffers (long layer chains) the overlaps are applied all or none, whichever
# gives the smaller arena, instead of the candidate-by-candidate search (which re-plans the
# whole arena per candidate: quadratic in layers); build time stays linear (benchmarks/build_time.py).
SEARCH_LIMIT = 400


def plan(g: Graph, calls, search_budget_s: float = 0.3, overlap: bool | str = True,
         external_input: bool = False) -> Plan:
    """Plan the arena for ``g`` whose ops run ``calls`` (kernel calls from tinygen.kernels, None for
    shape-only ops; or a dict op position -> scratch bytes when no kernel is chosen yet).

    With ``overlap``, the kernels' access contracts let an op's output overlap an input that dies
    there (:mod:`tinygen.overlap_plan` chooses which; ``"all"``: every one the contracts allow, for
    tests that run the kernels over every overlap). Greedy best fit over the orderings of ORDERS;
    unless that meets the lower bound, a hill-climb over the placement order (deterministic, at most
    ``search_budget_s``). Checked by :func:`verify_plan` and replayed by :mod:`tinygen.overlap_check`.

    With ``external_input`` the graph input stays in the caller's buffer (read in place, never
    written): it takes no arena bytes. Views (a band of a tensor's rows, :mod:`tinygen.patch`) sit
    inside their parent's buffer at their byte offset; the parent is live from its first partial
    writer to its last reader."""
    from . import overlap_check, overlap_plan

    external = external_roots(g, external_input)
    plain, inplace = make_buffers(g, calls, external)
    cands = overlap_plan.candidates(g, calls, plain, align) if overlap else []
    if overlap == "all":
        chosen = cands
    elif len(plain) > SEARCH_LIMIT:  # the per-candidate search is quadratic: all the overlaps or none
        chosen = min(([], cands), key=lambda sel: (_greedy(overlap_plan.grouped(plain, sel))[0], len(sel)))
    else:
        chosen = overlap_plan.choose(plain, cands, lambda bs: _greedy(bs)[0])
    buffers = overlap_plan.grouped(plain, chosen)
    bound = lower_bound(buffers)
    size, name, order = _greedy(buffers)
    if size > bound and search_budget_s > 0:
        got, climbed = _hill_climb(buffers, order, size, bound, search_budget_s)
        if got < size:
            size, name, order = got, f"{name}+search", climbed
    size = _place(buffers, order)
    flat = [b for grp in buffers for b in grp.flat()]
    offsets = {}
    scratch_at = {}
    for b in flat:
        for tid in b.tensors:
            offsets[tid] = b.offset
        if not b.tensors:
            scratch_at[b.start] = (b.offset, b.size)
        if b.scratch_of is not None:
            scratch_at[b.scratch_of] = (b.offset, b.head)
    for r in external:
        offsets[r] = 0
    for t in g.tensors:
        if t.view_of is not None and _root(g, t.id) in offsets:
            offsets[t.id] = offsets[_root(g, t.id)] + view_offset(g, t.id)
    name += f", {len(chosen)} overlaps" if chosen else ""
    name += ", input outside the arena" if external else ""
    p = Plan(size, flat, offsets, scratch_at, inplace, name + (" (optimal)" if size == bound else ""), external)
    verify_plan(g, p, calls)
    overlap_check.check(g, calls, p.offsets, p.scratch, p.arena_size, external)
    return p


def verify_plan(g: Graph, p: Plan, calls) -> None:
    """Independent check of a plan: from the graph, the op table and the kernel calls only.

    No two storage roots live at the same step share bytes, except (a) an in-place op (op table
    ``inplace``) writing its output over an input that dies at that op, same offset and size, and
    (b) an op's output at the first byte of its own scratch when its kernel's access order allows
    it (``Kernel.scratch_holds_output``), and (c) an op's output at or beyond its kernel's safe
    distance below an input that dies at that op (the access contract, :mod:`tinygen.overlap`, read
    again here). Every op's scratch is at least what its kernel needs and
    overlaps nothing else live; aliases sit at their root's offset; offsets are aligned and inside
    the arena. ``p.inplace`` and the buffers' scratch marks are never read.
    """
    need = _scratch_sizes(calls)
    rng = live_ranges(g)
    for t in g.tensors:
        if t.alias_of is not None and t.id in p.offsets and p.offsets.get(t.alias_of) != p.offsets[t.id]:
            raise CompilerBug("plan", f"alias {t.describe()} is not at its root's offset")
        if t.view_of is not None and t.id in p.offsets and (
                p.offsets[t.id] != p.offsets.get(_root(g, t.id), -1) + view_offset(g, t.id)
                or view_offset(g, t.id) + t.nbytes > g.t(_root(g, t.id)).nbytes):
            raise CompilerBug("plan", f"view {t.describe()} is not inside its parent at its byte offset")
    for r in p.external:
        if r not in {_root(g, t) for t in g.inputs}:
            raise CompilerBug("plan", f"{g.t(r).describe()} is outside the arena but not a graph input")
    items = []  # (name, offset, size, start, end, root or None, op position of a scratch or None)
    for r, (s, e) in rng.items():
        if r in p.external:
            continue
        if r not in p.offsets:
            raise CompilerBug("plan", f"tensor {g.t(r).describe()} has no arena offset")
        items.append((g.t(r).name, p.offsets[r], g.t(r).nbytes, s, e, r, None))
    for i, size in need.items():
        if i not in p.scratch or p.scratch[i][1] < size:
            have = p.scratch.get(i, (0, 0))[1]
            raise CompilerBug("plan", f"op {g.ops[i].where()} needs {size} B of scratch, the plan gives {have} B")
    for i, (off, size) in p.scratch.items():
        items.append((f"scratch of {g.ops[i].where()}", off, size, i, i, None, i))
    for name, off, size, s, e, _, _ in items:
        if off % ALIGN or off < 0 or off + size > p.arena_size:
            raise CompilerBug("plan", f"'{name}' at offset {off} size {size} is misaligned or outside the "
                                      f"{p.arena_size}-byte arena")
    items.sort(key=lambda x: x[1])
    at_step: dict[int, list[int]] = {}  # items live at each step, in offset order: pairs share a step
    for k, it in enumerate(items):
        for t in range(it[3], it[4] + 1):
            at_step.setdefault(t, []).append(k)
    pairs = set()
    for live in at_step.values():
        for x, a_k in enumerate(live):
            for b_k in live[x + 1:]:
                if items[b_k][1] >= items[a_k][1] + items[a_k][2]:
                    break
                pairs.add((a_k, b_k))
    for a_k, b_k in sorted(pairs):
        a, b = items[a_k], items[b_k]
        if _legal_inplace(g, rng, a, b) or _legal_inplace(g, rng, b, a):
            continue
        if _legal_scratch_output(g, calls, a, b) or _legal_scratch_output(g, calls, b, a):
            continue
        if _legal_contract(g, calls, rng, a, b) or _legal_contract(g, calls, rng, b, a):
            continue
        raise CompilerBug(
            "plan", f"'{a[0]}' [{a[1]}, {a[1] + a[2]}) live {a[3]}..{a[4]} overlaps "
                    f"'{b[0]}' [{b[1]}, {b[1] + b[2]}) live {b[3]}..{b[4]}")


def _legal_inplace(g: Graph, rng: dict, x: tuple, y: tuple) -> bool:
    """``x`` is an input of op i (an in-place op of the op table) that dies at i, ``y`` op i's output,
    both at the same offset with the same size."""
    if x[5] is None or y[5] is None or x[1] != y[1] or x[2] != y[2]:
        return False
    i = rng[x[5]][1]
    if i >= len(g.ops) or rng[y[5]][0] != i or x[5] in {_root(g, t) for t in g.inputs}:
        return False
    op = g.ops[i]
    return (optable.facts(op.kind).inplace and _root(g, op.outputs[0]) == y[5]
            and x[5] in {_root(g, t) for t in op.inputs if t >= 0 and not g.t(t).is_const})


def _legal_contract(g: Graph, calls, rng: dict, x: tuple, y: tuple) -> bool:
    """``x`` is an input of op i that dies at i (a graph input too: a run may overwrite its input),
    ``y`` op i's output (made at i), and the output sits where the access contract of op i's kernel, re-read here for every operand
    reading ``x``, makes it safe byte by byte (:func:`tinygen.overlap.op_safe`)."""
    from .overlap import op_safe

    if x[5] is None or y[5] is None or x[6] is not None or y[6] is not None:
        return False
    i = rng[x[5]][1]
    if i >= len(g.ops) or rng[y[5]][0] != i:
        return False
    op = g.ops[i]
    if not op.outputs or _root(g, op.outputs[0]) != y[5]:
        return False
    return op_safe(g, calls, i, x[5], x[1] - y[1])


def _legal_scratch_output(g: Graph, calls, s: tuple, o: tuple) -> bool:
    """``s`` is op i's scratch and ``o`` op i's output, starting at the scratch's first byte and inside
    it, and op i's kernel allows that."""
    if s[6] is None or o[5] is None:
        return False
    i = s[6]
    return (o[5] == _root(g, g.ops[i].outputs[0]) and o[1] == s[1] and o[2] <= s[2] and o[3] == i
            and _holds_output(calls, i, s[2]))


def peak_live(g: Graph, order: list[int], scratch: dict[int, int] | None = None) -> int:
    """Peak of aligned live activation bytes (+ the running op's scratch) when ``g.ops`` run in
    ``order`` (positions into g.ops); reshape aliases share their root's bytes."""
    scratch = scratch or {}
    rng = live_ranges(g, order)
    return max((sum(align(g.t(r).nbytes) for r, (s, e) in rng.items() if s <= i <= e) + scratch.get(pos, 0)
                for i, pos in enumerate(order)), default=0)


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
