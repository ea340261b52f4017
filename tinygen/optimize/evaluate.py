"""The judge of every candidate: its task metric on a split, float or int8.

The original model's outputs on each split are computed once (``ref``); fidelity and
divergence metrics compare with them. The validation split chooses, the test split only
reports (see :mod:`.data`).
"""

from __future__ import annotations

import numpy as np

from .data import Data
from .metrics import predict, tflite_predict
from .task import Task


class Judge:
    def __init__(self, task: Task, teacher, data: Data):
        self.task, self.data = task, data
        self.ref = {s: predict(teacher, self.x(s)) for s in ("val", "test")}
        if task.metric == "mse_ref":
            task.scale = float(np.var(self.ref["val"]))

    def x(self, split: str) -> np.ndarray:
        return getattr(self.data, f"x_{split}")

    def y(self, split: str):
        y = getattr(self.data, f"y_{split}")
        return None if self.data.synthetic else y

    def value(self, pred: np.ndarray, split: str = "val") -> float:
        return self.task.value(pred, self.x(split), self.y(split), self.ref[split])

    def model(self, model, split: str = "val") -> float:
        return self.value(predict(model, self.x(split)), split)

    def tflite(self, tflite: bytes, split: str = "val") -> float:
        return self.value(tflite_predict(tflite, self.x(split)), split)

    def drop(self, base: float, value: float) -> float:
        return self.task.drop(base, value)
