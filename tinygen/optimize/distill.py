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
LR_FLOOR = 0.02  # every fine-tune decays its learning rate to this fraction of lr (cosine) by its last epoch


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


def mse_loss(width: int, alpha: float, targets: bool):
    """``y_true`` = [teacher outputs | targets], flattened; MSE to each, ``alpha`` on the teacher."""

    def loss(y_true, y_pred):
        z = tf.reshape(y_pred, (tf.shape(y_pred)[0], -1))
        soft = tf.reduce_mean(tf.square(y_true[:, :width] - z), -1)
        if not targets:
            return soft
        return alpha * soft + (1.0 - alpha) * tf.reduce_mean(tf.square(y_true[:, width:] - z), -1)

    loss.__name__ = "kd_mse"
    return loss


def fine_tune(student: keras.Model, teacher: keras.Model, data: Data, epochs: int, task=None, *,
              temperature: float = 4.0, alpha: float = 0.7, lr: float = 1e-3,
              batch_size: int = 64, log=print, what: str = "fine-tune") -> keras.Model:
    """Distil ``teacher`` into ``student`` for ``epochs`` epochs (in place); returns ``student``.
    Adam with the learning rate decaying from ``lr`` to ``lr * LR_FLOOR`` over the epochs (cosine):
    the last epochs settle the weights instead of stopping mid-step.
    Classifiers learn the teacher's softened probabilities (+ labels); regression and
    autoencoder heads the teacher's outputs by MSE (+ the targets: ``y``, or ``x`` itself)."""
    if epochs <= 0:
        return student
    classes = task is None or task.soft_classes
    n = int(np.prod(teacher.outputs[0].shape[1:]))
    if task is not None and task.kind == "autoencoder":
        labels = not data.synthetic  # the target of an autoencoder is its input
    else:
        labels = data.labeled and (task is None or task.kind in ("classify", "regression"))

    def pack(x, y):
        if classes:
            parts = [soft_targets(teacher, x, temperature)]
            if labels:
                parts.append(np.eye(n, dtype=np.float32)[y])
        else:
            parts = [predict(teacher, x).reshape(len(x), -1)]
            if labels:
                parts.append((x if task.kind == "autoencoder" else y).reshape(len(x), -1))
        return np.concatenate(parts, -1).astype(np.float32)

    frozen = freeze_batchnorm(student)
    y_train = pack(data.x_train, data.y_train)
    y_val = pack(data.x_val, data.y_val)
    if classes:
        # the student has the teacher's head; a tfmot-wrapped student hides its activation
        loss, metrics = kd_loss(n, temperature, alpha, ends_in_softmax(teacher), labels), [kd_acc(n, labels)]
        how = f"T={temperature}, " + (f"alpha={alpha} (soft) + {1 - alpha:.2f} (labels)" if labels
                                      else "soft targets only (no labels)")
    else:
        loss, metrics = mse_loss(n, alpha, labels), []
        how = "MSE to the original's outputs" + (f" ({alpha}) + to the targets ({1 - alpha:.2f})" if labels else "")
    steps = epochs * int(np.ceil(len(data.x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(lr, steps, alpha=LR_FLOOR)
    student.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=metrics)
    log(f"{what}: distilling for {epochs} epoch(s), lr {lr:g} decaying to {lr * LR_FLOOR:g} (cosine), "
        f"{frozen} BatchNorm layer(s) frozen, {how}")
    student.fit(data.x_train, y_train, validation_data=(data.x_val, y_val), epochs=epochs,
                batch_size=batch_size, shuffle=True, verbose=1 if sys.stdout.isatty() else 2)
    return student
