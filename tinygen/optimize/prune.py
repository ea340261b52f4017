"""Structured channel pruning that physically removes output channels (filters/units).

Channels are grouped into *channel spaces*: a Conv2D/Dense output together with everything
that carries those channels unchanged (BatchNorm, activations, pooling, DepthwiseConv2D with
depth_multiplier 1, Dropout, Flatten) and every tensor joined to it by a residual Add. All
producers in one space lose the same channels, so Add branches stay consistent; downstream
Conv2D/Dense lose the matching input rows, BatchNorm/DepthwiseConv2D the matching channels,
and a Dense behind a Flatten the matching flattened positions. A space that reaches the model
output, the model input, or a layer we cannot slice is skipped with the reason.

Filters are ranked by |gamma| of the BatchNorm right after the producer, else by the L1 norm
of the filter; per-space ratios come from a sensitivity scan (accuracy drop when only that
space is pruned) allocated greedily under the global target ratio of prunable channels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tinygen.errors import InputError

from ._tf import keras
from .graph import Node, call, clone_layer, nodes, output_name, rebuild
from .metrics import accuracy, predict

GRID = (0.125, 0.25, 0.375, 0.5, 0.625, 0.75)
_PASS = {"BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "MaxPooling2D",
         "AveragePooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Dropout",
         "SpatialDropout2D", "ZeroPadding2D", "DepthwiseConv2D", "Flatten"}
_MERGE = {"Add", "Subtract", "Multiply", "Maximum", "Minimum", "Average"}


@dataclass
class Space:
    root: str
    width: int = 0
    producers: list[str] = field(default_factory=list)
    blocked: str = ""  # reason it cannot be pruned
    drops: dict[float, float] = field(default_factory=dict)  # ratio -> accuracy drop
    ratio: float = 0.0


def _is_producer(node: Node) -> bool:
    if type(node.layer) is keras.layers.Dense:
        return True
    return type(node.layer) is keras.layers.Conv2D and node.layer.get_config().get("groups", 1) == 1


def _pass_reason(node: Node) -> str | None:
    """Why a channel-preserving layer cannot be sliced (None when it can)."""
    cfg = node.layer.get_config()
    if node.kind == "DepthwiseConv2D" and cfg.get("depth_multiplier", 1) != 1:
        return f"{node.name}: depth_multiplier {cfg['depth_multiplier']} != 1"
    if node.kind == "BatchNormalization" and cfg.get("axis") not in (-1, 3, [3], [-1]):
        return f"{node.name}: BatchNormalization over axis {cfg.get('axis')}"
    if cfg.get("data_format") == "channels_first":
        return f"{node.name}: channels_first layout"
    if node.kind == "PReLU" and cfg.get("shared_axes") is None:
        return f"{node.name}: PReLU with per-position slopes"
    return None


def channel_spaces(model: keras.Model) -> tuple[dict[str, str], dict[str, Space]]:
    """(layer name -> space root, root -> Space) for every layer output."""
    graph = nodes(model)
    parent = {n.name: n.name for n in graph}

    def find(a):
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    blocked: dict[str, str] = {}
    for node in graph[1:]:
        reason = _pass_reason(node) if node.kind in _PASS else None
        if _is_producer(node):
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
    roots = {n.name: find(n.name) for n in graph}
    spaces: dict[str, Space] = {}
    for node in graph:
        sp = spaces.setdefault(roots[node.name], Space(roots[node.name]))
        if _is_producer(node):
            sp.producers.append(node.name)
            sp.width = int(node.layer.get_weights()[0].shape[-1])
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
            k = model.get_layer(p).get_weights()[0]
            s = np.abs(k).reshape(-1, k.shape[-1]).sum(0)
        score += s / max(float(s.max()), 1e-12)
    return score


def keep_indices(score: np.ndarray, ratio: float) -> np.ndarray:
    n_keep = max(1, len(score) - int(np.floor(ratio * len(score))))
    return np.sort(np.argsort(-score, kind="stable")[:n_keep])


def prune_model(model: keras.Model, keep: dict[str, np.ndarray]) -> keras.Model:
    """Physically remove channels: ``keep`` maps a space root to the channels it keeps."""
    roots, _ = channel_spaces(model)
    idx: dict[str, np.ndarray | None] = {nodes(model)[0].name: None}

    def replace(node, ins):
        layer = node.layer
        cin = idx[node.inputs[0]]
        if _is_producer(node):
            out = keep.get(roots[node.name])
            idx[node.name] = out
            if cin is None and out is None:
                return None
            w = layer.get_weights()
            k = w[0] if cin is None else np.take(w[0], cin, axis=-2)
            if out is not None:
                k = k[..., out]
            w = [k] + ([w[1] if out is None else w[1][out]] if len(w) > 1 else [])
            width = {} if out is None else {"filters" if node.kind == "Conv2D" else "units": len(out)}
            return call(clone_layer(layer, **width), ins, w)
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


def check_ratio(target: float) -> None:
    if not 0.0 < target < 1.0:
        raise InputError(f"--prune {target}: the pruning ratio must be between 0 and 1 (e.g. 0.3)")


def plan_and_prune(model: keras.Model, target: float, x_val, y_val, *, log=print) -> tuple[keras.Model, list[Space]]:
    """Sensitivity scan per channel space, greedy allocation to ``target`` (fraction of the
    prunable channels to remove), and the pruned (not yet fine-tuned) model."""
    check_ratio(target)
    _, spaces = channel_spaces(model)
    base = accuracy(predict(model, x_val), y_val)
    live = []
    for sp in spaces.values():
        if sp.blocked:
            if sp.producers:
                log(f"prune: skip {', '.join(sp.producers)}: channels {sp.blocked}")
            continue
        score = importance(model, sp)
        for r in GRID:
            trial = prune_model(model, {sp.root: keep_indices(score, r)})
            sp.drops[r] = base - accuracy(predict(trial, x_val), y_val)
        live.append((sp, score))
    total = sum(sp.width for sp, _ in live)
    removed = 0
    while live and removed < target * total:
        best = None
        for sp, _ in live:
            nxt = [r for r in GRID if r > sp.ratio]
            if not nxt:
                continue
            r = nxt[0]
            gain = int(np.floor(r * sp.width)) - int(np.floor(sp.ratio * sp.width))
            if gain <= 0:  # a narrow space loses no channel at this step: move on for free
                sp.ratio = r
                continue
            cost = (sp.drops[r] - sp.drops.get(sp.ratio, 0.0)) / gain
            if best is None or cost < best[0]:
                best = (cost, sp, r, gain)
        if best is None:
            break
        _, sp, r, gain = best
        sp.ratio, removed = r, removed + gain
    keep = {sp.root: keep_indices(score, sp.ratio) for sp, score in live if sp.ratio > 0}
    log(format_spaces([sp for sp, _ in live], removed, total))
    return (prune_model(model, keep) if keep else model), [sp for sp, _ in live]


def format_spaces(spaces: list[Space], removed: int, total: int) -> str:
    head = f"{'producers':<34} {'width':>5} {'ratio':>6} {'kept':>5}  drop at " + " ".join(f"{r:.3g}" for r in GRID)
    lines = [f"channel pruning: {removed}/{total} prunable channels removed "
             "(drop = accuracy lost pruning only that space, before fine-tune):", head, "-" * len(head)]
    for sp in spaces:
        kept = sp.width - int(np.floor(sp.ratio * sp.width))
        lines.append(f"{'+'.join(sp.producers):<34} {sp.width:5d} {sp.ratio:6.3f} {kept:5d}  "
                     + " ".join(f"{sp.drops[r]:+.3f}" for r in GRID))
    return "\n".join(lines)
