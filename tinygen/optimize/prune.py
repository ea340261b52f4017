"""Structured channel pruning that physically removes output channels (filters/units).

Channels are grouped into *channel spaces*: a Conv2D/SeparableConv2D/Dense output together
with everything that carries those channels unchanged (BatchNorm over the last axis, on 4-D
or 2-D tensors, activations, pooling, DepthwiseConv2D with depth_multiplier 1, Dropout,
Flatten) and every tensor joined to it by a residual Add. All producers in one space lose
the same channels, so Add branches stay consistent; downstream Conv2D/Dense lose the
matching input rows, BatchNorm/DepthwiseConv2D the matching channels, a Dense behind a
Flatten the matching flattened positions, and a Concatenate (over the channel axis) keeps
each input's surviving channels at their offsets. A space that reaches the model output,
the model input, or a layer we cannot slice is skipped with the reason.

Filters are ranked by |gamma| of the BatchNorm right after the producer, else by the L1 norm
of the filter; per-space sensitivities (metric drop when only that space is pruned) order a
greedy allocation: :func:`allocation` lists its successive states, cheapest channels first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinygen.errors import InputError

from ._tf import keras
from .graph import Node, call, clone_layer, nodes, output_name, rebuild

GRID = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875)
_PASS = {"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "MaxPooling2D",
         "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout",
         "SpatialDropout2D", "ZeroPadding2D", "DepthwiseConv2D", "Flatten"}
_MERGE = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}
_PRODUCERS = (keras.layers.Dense, keras.layers.Conv2D, keras.layers.SeparableConv2D)


@dataclass
class Space:
    root: str
    width: int = 0
    producers: list[str] = field(default_factory=list)
    blocked: str = ""  # reason it cannot be pruned
    drops: dict[float, float] = field(default_factory=dict)  # ratio -> metric drop
    ratio: float = 0.0
    fixed: bool = False  # ratio given on the command line


def _is_producer(node: Node) -> bool:
    if type(node.layer) not in _PRODUCERS:
        return False
    return node.layer.get_config().get("groups", 1) == 1


def _width(node: Node) -> int:
    cfg = node.layer.get_config()
    return int(cfg["units"] if node.kind == "Dense" else cfg["filters"])


def _is_concat(node: Node) -> bool:
    if node.kind != "Concatenate":
        return False
    rank = len(node.layer.output_shape)
    return node.layer.get_config().get("axis", -1) in (-1, rank - 1)


def _pass_reason(node: Node) -> str | None:
    """Why a channel-preserving layer cannot be sliced (None when it can)."""
    cfg = node.layer.get_config()
    if node.kind == "DepthwiseConv2D" and cfg.get("depth_multiplier", 1) != 1:
        return f"{node.name}: depth_multiplier {cfg['depth_multiplier']} != 1"
    if node.kind == "BatchNormalization":
        rank = len(node.layer.input_shape)
        axis = cfg.get("axis")
        axis = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if [a % rank for a in axis] != [rank - 1]:
            return f"{node.name}: BatchNormalization over axis {cfg.get('axis')} (not the channel axis)"
    if cfg.get("data_format") == "channels_first":
        return f"{node.name}: channels_first layout"
    if node.kind == "PReLU" and cfg.get("shared_axes") is None and len(node.layer.input_shape) > 2:
        return f"{node.name}: PReLU with per-position slopes"
    return None


def channel_spaces(model: keras.Model, exclude=()) -> tuple[dict[str, str], dict[str, Space]]:
    """(layer name -> space root, root -> Space) for every layer output. Spaces holding a
    producer named in ``exclude`` are blocked."""
    graph = nodes(model)
    parent = {n.name: n.name for n in graph}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    blocked: dict[str, str] = {}
    concats = []
    for node in graph[1:]:
        reason = _pass_reason(node) if node.kind in _PASS else None
        if _is_producer(node):
            continue
        if _is_concat(node):
            concats.append(node)
            continue
        if (node.kind in _PASS or node.kind in _MERGE) and not reason:
            for i in node.inputs:
                parent[find(i)] = find(node.name)
        else:  # a layer we cannot slice: its inputs must keep all channels
            for i in node.inputs:
                blocked.setdefault(i, reason or f"feeds {node.kind} {node.name!r}, which cannot be sliced")
            blocked.setdefault(node.name, f"produced by {node.kind} {node.name!r}")
    blocked.setdefault(graph[0].name, "carries the model input")
    blocked.setdefault(output_name(model), "reaches the model output")
    for name in exclude:
        blocked[name] = "excluded by --exclude"
    roots = {n.name: find(n.name) for n in graph}
    producer_roots = {roots[n.name] for n in graph if _is_producer(n)}
    for node in concats:  # a concatenation joined (by Add) to a producer's channels cannot follow its inputs
        if roots[node.name] in producer_roots:
            for i in node.inputs:
                blocked.setdefault(i, f"feeds Concatenate {node.name!r}, whose output is added to other channels")
    spaces: dict[str, Space] = {}
    for node in graph:
        sp = spaces.setdefault(roots[node.name], Space(roots[node.name]))
        if _is_producer(node):
            sp.producers.append(node.name)
            sp.width = _width(node)
        if node.name in blocked and not sp.blocked:
            sp.blocked = blocked[node.name]
    for sp in spaces.values():
        if not sp.producers and not sp.blocked:
            sp.blocked = "no Conv2D/Dense produces it"
    return roots, spaces


def importance(model: keras.Model, space: Space) -> np.ndarray:
    """Per-channel score: sum over producers of |BN gamma| (when a BatchNorm follows) or the
    filter's L1 norm, each normalized to max 1."""
    graph = nodes(model)
    score = np.zeros(space.width)
    for p in space.producers:
        users = [n for n in graph if p in n.inputs]
        if len(users) == 1 and users[0].kind == "BatchNormalization" and users[0].layer.scale:
            s = np.abs(users[0].layer.get_weights()[0])
        else:
            layer = model.get_layer(p)
            k = layer.get_weights()[1 if isinstance(layer, keras.layers.SeparableConv2D) else 0]
            s = np.abs(k).reshape(-1, k.shape[-1]).sum(0)
        score += s / max(float(s.max()), 1e-12)
    return score


def keep_indices(score: np.ndarray, ratio: float) -> np.ndarray:
    n_keep = max(1, len(score) - int(np.floor(ratio * len(score))))
    return np.sort(np.argsort(-score, kind="stable")[:n_keep])


def _producer_weights(node: Node, cin, out) -> list[np.ndarray]:
    w = node.layer.get_weights()
    if isinstance(node.layer, keras.layers.SeparableConv2D):  # [depthwise (kh,kw,Cin,m), pointwise (1,1,Cin*m,Cout)]
        dw, pw = w[0], w[1]
        m = dw.shape[-1]
        if cin is not None:
            dw = dw[:, :, cin, :]
            pw = pw[:, :, (cin[:, None] * m + np.arange(m)[None, :]).ravel(), :]
        head = [dw, pw if out is None else pw[..., out]]
        rest = w[2:]
    else:
        k = w[0] if cin is None else np.take(w[0], cin, axis=-2)
        head, rest = [k if out is None else k[..., out]], w[1:]
    return head + [b if out is None else b[out] for b in rest]


def prune_model(model: keras.Model, keep: dict[str, np.ndarray]) -> keras.Model:
    """Physically remove channels: ``keep`` maps a space root to the channels it keeps."""
    roots, _ = channel_spaces(model)
    idx: dict[str, np.ndarray | None] = {nodes(model)[0].name: None}

    def replace(node, ins):
        layer = node.layer
        if _is_concat(node):
            parts, off = [], 0
            for name, shape in zip(node.inputs, layer.input_shape):
                part = idx[name]
                parts.append(np.arange(shape[-1]) + off if part is None else part + off)
                off += shape[-1]
            idx[node.name] = None if all(idx[n] is None for n in node.inputs) else np.concatenate(parts)
            return None
        cin = idx[node.inputs[0]]
        if _is_producer(node):
            out = keep.get(roots[node.name])
            idx[node.name] = out
            if cin is None and out is None:
                return None
            width = {} if out is None else {"filters" if node.kind != "Dense" else "units": len(out)}
            return call(clone_layer(layer, **width), ins, _producer_weights(node, cin, out))
        if node.kind in _MERGE:
            idx[node.name] = cin
            return None
        if node.kind == "Flatten":
            if cin is None:
                idx[node.name] = None
            else:
                shape = layer.input_shape
                pos = int(np.prod(shape[1:-1]))
                idx[node.name] = (np.arange(pos)[:, None] * shape[-1] + cin[None, :]).ravel()
            return None
        idx[node.name] = cin
        if cin is None or node.kind not in ("BatchNormalization", "DepthwiseConv2D", "PReLU"):
            return None
        w = layer.get_weights()
        if node.kind == "DepthwiseConv2D":
            w = [w[0][:, :, cin, :]] + [b[cin] for b in w[1:]]
        else:  # BatchNormalization and channel-shared PReLU: per-channel vectors (last axis)
            w = [np.take(v, cin, axis=-1) for v in w]
        return call(clone_layer(layer), ins, w)

    return rebuild(model, replace)


def check_ratio(target: float, flag: str = "--prune") -> None:
    if not 0.0 < target < 1.0:
        raise InputError(f"{flag} {target}: the pruning ratio must be between 0 and 1 (e.g. 0.3)")


def scan(model: keras.Model, judge, *, exclude=(), fixed: dict[str, float] | None = None,
         log=print) -> list[tuple[Space, np.ndarray]]:
    """Sensitivity scan: the metric drop (validation split) with only one space pruned, per
    ratio of :data:`GRID`. ``fixed`` maps a producer name to a ratio kept as given."""
    fixed = dict(fixed or {})
    _, spaces = channel_spaces(model, exclude)
    known = {p for sp in spaces.values() for p in sp.producers}
    for name in list(fixed) + list(exclude):
        if name not in known:
            raise InputError(f"layer {name!r} (in --prune-layer/--exclude) is not a Conv2D/Dense of the model; "
                             f"its prunable layers are {', '.join(sorted(known))}")
    base = judge.model(model)
    live = []
    todo = [sp for sp in spaces.values() if not sp.blocked]
    for sp in spaces.values():
        if sp.blocked and sp.producers:
            log(f"prune: skip {', '.join(sp.producers)}: channels {sp.blocked}")
    for k, sp in enumerate(todo, 1):
        score = importance(model, sp)
        given = [fixed[p] for p in sp.producers if p in fixed]
        if given:
            check_ratio(given[0], "--prune-layer")
            sp.ratio, sp.fixed = given[0], True
        else:
            for r in GRID:
                trial = prune_model(model, {sp.root: keep_indices(score, r)})
                sp.drops[r] = judge.drop(base, judge.model(trial))
        log(f"prune: scanned {k}/{len(todo)} {'+'.join(sp.producers)}"
            + (f" (ratio {sp.ratio:g} from --prune-layer)" if sp.fixed else
               " drops " + " ".join(f"{sp.drops[r]:+.3f}" for r in GRID)))
        live.append((sp, score))
    return live


def allocation(live: list[tuple[Space, np.ndarray]]) -> list[dict[str, float]]:
    """The greedy allocation's successive states (space root -> ratio), from nothing pruned
    to every free space at the largest ratio; each move takes the next grid ratio of the
    space whose channels cost least (metric drop per channel removed)."""
    ratios = {sp.root: sp.ratio for sp, _ in live}
    states = [dict(ratios)]
    while True:
        best = None
        for sp, _ in live:
            if sp.fixed:
                continue
            nxt = [r for r in GRID if r > ratios[sp.root]]
            if not nxt:
                continue
            r = nxt[0]
            gain = int(np.floor(r * sp.width)) - int(np.floor(ratios[sp.root] * sp.width))
            if gain <= 0:  # a narrow space loses no channel at this step: move on for free
                ratios[sp.root] = r
                continue
            cost = (sp.drops[r] - sp.drops.get(ratios[sp.root], 0.0)) / gain
            if best is None or cost < best[0]:
                best = (cost, sp.root, r)
        if best is None:
            return states
        ratios[best[1]] = best[2]
        states.append(dict(ratios))


def removed(live, ratios: dict[str, float]) -> tuple[int, int]:
    """(channels removed, prunable channels) at ``ratios``."""
    return (sum(int(np.floor(ratios[sp.root] * sp.width)) for sp, _ in live), sum(sp.width for sp, _ in live))


def apply(model: keras.Model, live, ratios: dict[str, float]) -> keras.Model:
    keep = {sp.root: keep_indices(score, ratios[sp.root]) for sp, score in live if ratios[sp.root] > 0}
    return prune_model(model, keep) if keep else model


def plan_and_prune(model: keras.Model, target: float, judge, *, exclude=(), fixed=None,
                   log=print) -> tuple[keras.Model, list[Space]]:
    """``--prune R``: the first allocation state removing at least ``R`` of the prunable
    channels, and the pruned (not yet fine-tuned) model."""
    check_ratio(target)
    live = scan(model, judge, exclude=exclude, fixed=fixed, log=log)
    states = allocation(live)
    chosen = next((s for s in states if removed(live, s)[0] >= target * removed(live, s)[1]), states[-1])
    for sp, _ in live:
        sp.ratio = chosen[sp.root]
    log(format_spaces([sp for sp, _ in live], *removed(live, chosen)))
    return apply(model, live, chosen), [sp for sp, _ in live]


def format_spaces(spaces: list[Space], removed: int, total: int) -> str:
    head = f"{'producers':<34} {'width':>5} {'ratio':>6} {'kept':>5}  drop at " + " ".join(f"{r:.3g}" for r in GRID)
    lines = [f"channel pruning: {removed}/{total} prunable channels removed "
             "(drop = metric lost pruning only that space, before fine-tune, validation split):", head, "-" * len(head)]
    for sp in spaces:
        kept = sp.width - int(np.floor(sp.ratio * sp.width))
        drops = " ".join(f"{sp.drops[r]:+.3f}" for r in GRID) if sp.drops else "(ratio from --prune-layer)"
        lines.append(f"{'+'.join(sp.producers):<34} {sp.width:5d} {sp.ratio:6.3f} {kept:5d}  {drops}")
    return "\n".join(lines)
