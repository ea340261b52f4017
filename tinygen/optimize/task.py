"""What a model is judged by: the metric of its task, and how much of it a step loses.

| task | when | metric (``value``) | ``drop`` (positive = worse) |
|---|---|---|---|
| ``classify`` | integer labels, softmax/logit head | top-1 accuracy | points lost (0.01 = 1 point) |
| ``autoencoder`` + labels | output shape = input shape, 0/1 anomaly labels | AUC of the reconstruction error | AUC points lost |
| ``autoencoder`` | output shape = input shape, no labels | reconstruction MSE | relative increase (0.01 = 1% more error) |
| ``regression`` | float targets of the output's shape | MSE | relative increase |
| ``fidelity`` | synthetic or unlabeled inputs, classifier | top-1 agreement with the original | points lost |
| ``divergence`` | synthetic inputs on which the original is degenerate | mean KL(original || model) | KL increase (nats) |
| ``fidelity`` | synthetic or unlabeled inputs, autoencoder/regression | MSE to the original's outputs (``mse_ref``) | increase / variance of the original's outputs |

The reference for ``drop`` is always the original model's value on the same split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_EPS = 1e-7


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` (higher = more positive) for 0/1 ``labels``
    (Mann-Whitney U with tied ranks averaged).

    >>> auc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    0.75
    """
    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="stable")
    ranks = np.empty(len(scores))
    s = np.asarray(scores)[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def as_probs(pred: np.ndarray, probs: bool) -> np.ndarray:
    return np.clip(pred, _EPS, 1.0) if probs else _softmax(pred)


@dataclass
class Task:
    kind: str          # classify | autoencoder | regression | fidelity | divergence
    metric: str        # acc | auc | mse | agree | kl
    probs: bool = False  # the head ends in softmax (outputs are probabilities)
    scale: float = 1.0   # mse_ref: variance of the original's outputs (set by the Judge)

    @property
    def higher_is_better(self) -> bool:
        return self.metric in ("acc", "auc", "agree")

    @property
    def soft_classes(self) -> bool:
        """Distil temperature-softened class probabilities (else: MSE on the outputs)."""
        return self.kind in ("classify", "divergence") or self.metric == "agree"

    def value(self, pred: np.ndarray, x: np.ndarray, y, ref: np.ndarray | None = None) -> float:
        """The metric of outputs ``pred`` for inputs ``x`` and labels/targets ``y``;
        ``ref`` is the original model's output on ``x`` (fidelity / divergence)."""
        if self.metric in ("acc", "agree"):
            target = y if self.metric == "acc" else np.argmax(ref, -1)
            return float(np.mean(np.argmax(pred, -1) == target))
        if self.metric == "kl":
            p, q = as_probs(ref, self.probs), as_probs(pred, self.probs)
            return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), -1)))
        target = ref if self.metric == "mse_ref" else (x if self.kind == "autoencoder" else y)
        err = np.mean(((pred - target) ** 2).reshape(len(pred), -1), -1)
        if self.metric == "auc":
            return auc(err, y)
        return float(np.mean(err))

    def drop(self, base: float, value: float) -> float:
        """How much worse ``value`` is than ``base`` (positive = worse), in the units of the table above."""
        if self.higher_is_better:
            return base - value
        if self.metric == "kl":
            return value - base
        if self.metric == "mse_ref":
            return (value - base) / max(self.scale, 1e-12)
        return (value - base) / max(abs(base), 1e-12)

    def fmt(self, v: float | None) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if self.metric.startswith("mse") else f"{v:.4f}"

    @property
    def label(self) -> str:
        return {"acc": "accuracy", "auc": "AUC (reconstruction error)", "mse": "MSE",
                "agree": "fidelity: top-1 agreement with the original",
                "kl": "fidelity: KL divergence from the original",
                "mse_ref": "fidelity: MSE to the original's outputs"}[self.metric]


def infer_task(input_shape: tuple, output_shape: tuple, probs: bool, y, synthetic: bool) -> Task:
    """The task of a model from its shapes, its head and the labels (``y``: any labels
    array of the data, or None)."""
    autoenc = tuple(output_shape) == tuple(input_shape)
    if not probs and (synthetic or (y is None and not autoenc)):
        return Task("fidelity", "mse_ref", probs)
    if autoenc:
        labelled = y is not None and not synthetic and y.dtype.kind in "iub" and set(np.unique(y)) <= {0, 1} \
            and len(np.unique(y)) == 2
        return Task("autoencoder", "auc" if labelled else "mse", probs)
    if y is not None and not synthetic and y.dtype.kind == "f":
        return Task("regression", "mse", probs)
    if synthetic or y is None:
        return Task("fidelity", "agree", probs)
    return Task("classify", "acc", probs)


def degenerate(ref: np.ndarray, threshold: float = 0.9) -> tuple[bool, int, float]:
    """(degenerate?, majority class, its share) of the original's top-1 predictions ``ref``:
    degenerate when one class takes more than ``threshold`` of the inputs."""
    top = np.argmax(ref, -1)
    counts = np.bincount(top, minlength=ref.shape[-1])
    cls = int(np.argmax(counts))
    share = float(counts[cls] / max(len(top), 1))
    return share > threshold, cls, share
