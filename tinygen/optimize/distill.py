"""Knowledge-distillation fine-tuning: the student learns the teacher's temperature-softened
outputs (and the hard labels when there are any) through an ordinary ``model.fit``.

The teacher's soft targets are computed once and packed with the one-hot labels into
``y_true``, so the loss is a plain Keras loss and training shows the usual progress bars.
Models that end in softmax are handled by taking ``log(p)`` as logits.
"""

from __future__ import annotations

import sys

import numpy as np

from ._tf import keras, tf
from .data import Data
from .graph import nodes, output_name
from .metrics import predict

_EPS = 1e-7


def ends_in_softmax(model: keras.Model) -> bool:
    layer = {n.name: n for n in nodes(model)}[output_name(model)].layer
    if type(layer).__name__ == "Softmax":
        return True
    act = layer.get_config().get("activation")
    return act == "softmax" or getattr(act, "__name__", "") == "softmax"


def logits_of(pred: np.ndarray, probs: bool) -> np.ndarray:
    return np.log(np.clip(pred, _EPS, 1.0)) if probs else pred


def soft_targets(teacher: keras.Model, x: np.ndarray, temperature: float) -> np.ndarray:
    z = logits_of(predict(teacher, x), ends_in_softmax(teacher))
    return tf.nn.softmax(z / temperature).numpy()


def kd_loss(n_classes: int, temperature: float, alpha: float, probs: bool, labels: bool):
    """``y_true`` = [teacher soft targets | one-hot labels]; ``alpha`` weighs the soft part."""
    t2 = temperature * temperature

    def loss(y_true, y_pred):
        z = tf.math.log(tf.clip_by_value(y_pred, _EPS, 1.0)) if probs else y_pred
        soft = -tf.reduce_sum(y_true[:, :n_classes] * tf.nn.log_softmax(z / temperature), -1) * t2
        if not labels:
            return soft
        hard = -tf.reduce_sum(y_true[:, n_classes:] * tf.nn.log_softmax(z), -1)
        return alpha * soft + (1.0 - alpha) * hard

    loss.__name__ = "kd_loss"
    return loss


def kd_acc(n_classes: int, labels: bool):
    """Accuracy against the labels, or agreement with the teacher when there are none."""

    def acc(y_true, y_pred):
        ref = y_true[:, n_classes:] if labels else y_true[:, :n_classes]
        return tf.cast(tf.equal(tf.argmax(ref, -1), tf.argmax(y_pred, -1)), tf.float32)

    acc.__name__ = "acc"
    return acc


def freeze_batchnorm(model: keras.Model) -> int:
    """Keep BatchNorm statistics and affine terms fixed (inference mode) while fine-tuning:
    the few fine-tuning batches, or synthetic inputs, would otherwise corrupt the moving
    statistics learned on the real data. Returns how many layers were frozen."""
    count = 0
    for layer in model.layers:
        if type(getattr(layer, "layer", layer)).__name__ == "BatchNormalization":
            layer.trainable = False
            count += 1
    return count


def fine_tune(student: keras.Model, teacher: keras.Model, data: Data, epochs: int, *,
              temperature: float = 4.0, alpha: float = 0.7, lr: float = 1e-3,
              batch_size: int = 64, log=print, what: str = "fine-tune") -> keras.Model:
    """Distil ``teacher`` into ``student`` for ``epochs`` epochs (in place); returns ``student``."""
    if epochs <= 0:
        return student
    n = int(teacher.outputs[0].shape[-1])
    labels = data.y_train is not None and not data.synthetic

    def pack(x, y):
        parts = [soft_targets(teacher, x, temperature)]
        if labels:
            parts.append(np.eye(n, dtype=np.float32)[y])
        return np.concatenate(parts, -1).astype(np.float32)

    frozen = freeze_batchnorm(student)
    y_train = pack(data.x_train, data.y_train)
    y_val = pack(data.x_val, data.y_val)
    student.compile(
        optimizer=keras.optimizers.Adam(lr),
        # the student has the teacher's head; a tfmot-wrapped student hides its activation
        loss=kd_loss(n, temperature, alpha, ends_in_softmax(teacher), labels),
        metrics=[kd_acc(n, labels)],
    )
    log(f"{what}: distilling for {epochs} epoch(s), T={temperature}, {frozen} BatchNorm layer(s) frozen, "
        + (f"alpha={alpha} (soft) + {1 - alpha:.2f} (labels)" if labels else "soft targets only (no labels)"))
    student.fit(data.x_train, y_train, validation_data=(data.x_val, y_val), epochs=epochs,
                batch_size=batch_size, shuffle=True, verbose=1 if sys.stdout.isatty() else 2)
    return student
