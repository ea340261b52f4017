"""Depthwise-separable rewrite: a k x k Conv2D (Cin -> Cout, k > 1) becomes
DepthwiseConv2D(k x k, same stride/padding/dilation, no bias) + Conv2D(1 x 1, Cout) carrying
the original bias and activation.

Initialization: for each input channel ci the slice W[:, :, ci, :] (k*k x Cout) is replaced by
its best rank-1 approximation from the SVD, u*s -> depthwise kernel, v -> pointwise row; then,
when calibration inputs are given, the pointwise kernel and bias are refitted by least squares
so the pair reproduces the original layer's pre-activation output on real activations.
Layers are chosen by measured sensitivity (metric drop with only that layer rewritten,
before fine-tuning) against what they save in the compiler's own latency estimate for the
target board (a depthwise kernel runs fewer MACs per instruction, so MACs mislead).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._tf import keras, tf
from .graph import Node, call, nodes, rebuild
from .metrics import layer_macs, predict

_MAX_LSTSQ_ROWS = 60_000


@dataclass
class Candidate:
    name: str
    macs_before: int
    macs_after: int
    sensitivity: float | None = None  # accuracy drop, before fine-tuning
    chosen: bool = False
    reason: str = ""
    saving: float = 0.0  # instructions (or MACs) saved
    share: float = 0.0   # saving / the model's total


def why_not(node: Node) -> str | None:
    """Why this Conv2D cannot be rewritten (None when it can)."""
    cfg = node.layer.get_config()
    if tuple(cfg["kernel_size"]) == (1, 1):
        return "1x1 kernel: already pointwise"
    if cfg.get("groups", 1) != 1:
        return f"grouped convolution (groups={cfg['groups']}) is not supported"
    if cfg.get("data_format") == "channels_first":
        return "channels_first layout is not supported"
    if type(node.layer) is not keras.layers.Conv2D:
        return f"{type(node.layer).__name__} is not a plain Conv2D"
    return None


def rank1_split(kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kh, kw, Cin, Cout) kernel -> depthwise (kh, kw, Cin, 1) and pointwise (1, 1, Cin, Cout),
    exactly rank-1 per input channel (the SVD's leading term)."""
    kh, kw, cin, cout = kernel.shape
    dw = np.zeros((kh, kw, cin, 1), np.float32)
    pw = np.zeros((1, 1, cin, cout), np.float32)
    for ci in range(cin):
        u, s, vt = np.linalg.svd(kernel[:, :, ci, :].reshape(kh * kw, cout), full_matrices=False)
        dw[:, :, ci, 0] = (u[:, 0] * s[0]).reshape(kh, kw)
        pw[0, 0, ci, :] = vt[0]
    return dw, pw


def _layers(layer):
    cfg = layer.get_config()
    dw = keras.layers.DepthwiseConv2D(
        cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
        dilation_rate=cfg["dilation_rate"], use_bias=False, name=f"{layer.name}_dw")
    pw = keras.layers.Conv2D(cfg["filters"], 1, use_bias=cfg["use_bias"], activation=cfg["activation"],
                             name=f"{layer.name}_pw")
    return dw, pw


def split_weights(model: keras.Model, name: str, x_calib: np.ndarray | None) -> list[np.ndarray]:
    """[depthwise kernel, pointwise kernel, (bias)] approximating layer ``name``."""
    layer = model.get_layer(name)
    w = layer.get_weights()
    dw_k, pw_k = rank1_split(w[0])
    bias = w[1] if len(w) > 1 else None
    if x_calib is not None and len(x_calib):
        x_in = predict(keras.Model(model.inputs, layer.input), x_calib)
        conv = dict(strides=layer.strides, padding=layer.padding.upper(), dilations=layer.dilation_rate)
        d = tf.nn.depthwise_conv2d(x_in, dw_k, strides=(1, *layer.strides, 1), padding=conv["padding"],
                                   dilations=layer.dilation_rate).numpy().reshape(-1, w[0].shape[2])
        y = tf.nn.convolution(x_in, w[0], **conv).numpy().reshape(-1, w[0].shape[3])
        if len(d) > _MAX_LSTSQ_ROWS:
            idx = np.random.default_rng(0).choice(len(d), _MAX_LSTSQ_ROWS, replace=False)
            d, y = d[idx], y[idx]
        a = np.concatenate([d, np.ones((len(d), 1), np.float32)], 1) if bias is not None else d
        sol, *_ = np.linalg.lstsq(a.astype(np.float64), y.astype(np.float64), rcond=None)
        pw_k = sol[: d.shape[1]].reshape(pw_k.shape).astype(np.float32)
        if bias is not None:
            bias = (sol[-1] + bias).astype(np.float32)  # y above excluded the original bias
    return [dw_k, pw_k] + ([bias] if bias is not None else [])


def rewrite_model(model: keras.Model, weights: dict[str, list[np.ndarray]]) -> keras.Model:
    """``model`` with each Conv2D named in ``weights`` replaced by its depthwise+pointwise pair."""

    def replace(node, ins):
        if node.name not in weights:
            return None
        w = weights[node.name]
        dw, pw = _layers(node.layer)
        return call(pw, [call(dw, ins, w[:1])], w[1:])

    return rebuild(model, replace)


def dws_macs(node: Node) -> int:
    out = node.layer.output_shape
    kh, kw, cin, cout = node.layer.get_weights()[0].shape
    return int(np.prod(out[1:-1])) * (kh * kw * cin + cin * cout)


def plan_and_rewrite(model: keras.Model, judge, x_calib=None, *, budget: float = 0.1,
                     min_saving: float = 0.05, cost_of=None, log=print) -> tuple[keras.Model, list[Candidate]]:
    """Measure each candidate's sensitivity (metric drop on the validation split, before
    fine-tuning) and saving, choose layers, return the rewritten model (not yet fine-tuned)
    and the per-layer report. With ``cost_of`` (model -> compiler :class:`.cost.Cost`) the
    saving is the compiler's latency estimate (else its MACs) with only that layer
    rewritten; without it, Keras-level MACs. The summed sensitivity of the chosen layers
    never exceeds ``budget`` (the first pick included)."""
    total = sum(layer_macs(n.layer) for n in nodes(model))
    base = judge.model(model)
    base_cost = cost_of(model) if cost_of else None
    cands, weights = [], {}
    for node in nodes(model):
        if not isinstance(node.layer, keras.layers.Conv2D):
            continue
        reason = why_not(node)
        if reason:
            log(f"rewrite: skip {node.name}: {reason}")
            continue
        c = Candidate(node.name, layer_macs(node.layer), dws_macs(node))
        weights[node.name] = split_weights(model, node.name, x_calib)
        trial = rewrite_model(model, {node.name: weights[node.name]})
        c.sensitivity = judge.drop(base, judge.model(trial))
        if base_cost is not None:
            after = cost_of(trial)
            c.saving = _unit(base_cost) - _unit(after)
            c.share = c.saving / max(_unit(base_cost), 1e-12)
        else:
            c.saving = c.macs_before - c.macs_after
            c.share = c.saving / max(total, 1)
        log(f"rewrite: scanned {node.name}: sensitivity {c.sensitivity:+.4f}, saves {c.share:.1%}")
        cands.append(c)
    # most saved per point of metric lost first, within the drop budget
    spent = 0.0
    for c in sorted(cands, key=lambda c: -c.saving / max(c.sensitivity, 0.005)):
        if c.saving <= 0 or c.share < min_saving:
            c.reason = f"saves only {c.share:.1%} (< {min_saving:.0%} of the model)"
        elif spent + max(c.sensitivity, 0.0) > budget:
            c.reason = f"drop {c.sensitivity:.3f} would exceed the rewrite budget {budget} (spent {spent:.3f})"
        else:
            c.chosen, c.reason = True, "chosen"
            spent += max(c.sensitivity, 0.0)
    log(format_candidates(cands, "compiler latency estimate" if base_cost is not None and base_cost.est_ms
                          else ("compiler MACs" if base_cost is not None else "Keras MACs")))
    chosen = {c.name: weights[c.name] for c in cands if c.chosen}
    return (rewrite_model(model, chosen) if chosen else model), cands


def _unit(cost) -> float:
    return float(cost.est_instructions) if cost.est_instructions else float(cost.macs)


def format_candidates(cands: list[Candidate], unit: str = "Keras MACs") -> str:
    head = (f"{'layer':<20} {'MACs before':>12} {'MACs after':>12} {'xMACs':>6} {'saves':>7} "
            f"{'sensitivity':>11}  chosen?")
    lines = [f"depthwise-separable rewrite candidates (saves = {unit} with only that layer rewritten; "
             "sensitivity = metric drop before fine-tune, validation split):", head, "-" * len(head)]
    for c in cands:
        lines.append(f"{c.name:<20} {c.macs_before:12,d} {c.macs_after:12,d} "
                     f"{c.macs_before / max(c.macs_after, 1):5.2f}x {c.share:7.1%} {c.sensitivity:11.4f}  "
                     f"{'yes' if c.chosen else 'no'} ({c.reason})")
    return "\n".join(lines)
