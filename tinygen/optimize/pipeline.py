"""``tinygen optimize``: baseline -> depthwise-separable rewrite -> channel pruning -> QAT,
each step fine-tuned by distillation from the original model and measured before/after."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.errors import InputError

from ._tf import seed_everything
from .data import load_data, synthetic_data
from .distill import fine_tune
from .metrics import StepRow, format_table, measure, predict, to_int8_tflite
from .modelio import load_model
from .prune import Space, check_ratio, plan_and_prune
from .qat import quantize_aware
from .rewrite import Candidate, plan_and_rewrite

REWRITES = ("dws",)


@dataclass
class OptimizeResult:
    rows: list[StepRow]  # one per step: baseline, rewrite, prune, qat
    model_path: str  # the optimized float Keras model (tf_keras), input of PTQ or QAT
    tflite_path: str  # full-int8 model (int8 input/output): QAT when qat, else PTQ
    tflite: bytes
    ptq_int8_acc: float  # PTQ of the final float model, for comparison with QAT
    qat_int8_acc: float | None = None
    rewrite_report: list[Candidate] = field(default_factory=list)
    prune_report: list[Space] = field(default_factory=list)
    synthetic: bool = False  # accuracies are agreement with the original model's top-1

    def table(self) -> str:
        return format_table(self.rows)


def _check_args(rewrite, prune, epochs, data_path, synthetic):
    if rewrite not in (None, *REWRITES):
        raise InputError(f"--rewrite {rewrite!r}: unknown rewrite; choose one of {', '.join(REWRITES)}")
    if prune is not None:
        check_ratio(prune)
    if epochs < 0:
        raise InputError(f"--epochs {epochs}: must be 0 or more")
    if data_path is None and not synthetic:
        raise InputError("no training data: give --data data.npz (x_train, y_train, x_val, y_val; "
                         "see docs/optimize.md) or --synthetic to distil on synthetic inputs")
    if data_path is not None and synthetic:
        raise InputError("give either --data or --synthetic, not both")


def optimize(model_path: str, data_path: str | None, *, rewrite: str | None = None,
             prune: float | None = None, qat: bool = False, epochs: int = 5, seed: int = 0,
             out_path: str, synthetic: bool = False, log=print,
             synthetic_range: tuple[float, float] = (0.0, 1.0), synthetic_samples: int = 2048,
             temperature: float = 4.0, alpha: float = 0.7, batch_size: int = 64,
             lr: float | None = None, rewrite_budget: float = 0.1) -> OptimizeResult:
    """Run the requested steps on the Keras model at ``model_path`` and save the result.

    ``synthetic``: no data; distil on Gaussian inputs in ``synthetic_range`` (the model's
    input scale, e.g. (0, 255) for MLPerf-Tiny ResNet-8) and report agreement with the
    original model instead of accuracy. Writes ``out_path`` (Keras) and
    ``<out_path stem>_int8.tflite``. ``lr`` defaults to 1e-3 with real data and 1e-4 with
    synthetic data (soft targets on off-distribution inputs: stay near the pretrained weights).
    """
    _check_args(rewrite, prune, epochs, data_path, synthetic)
    out = Path(out_path)
    if out.suffix not in (".h5", ".keras"):
        raise InputError(f"{out}: the output model must end in .h5 or .keras")
    seed_everything(seed)
    teacher = load_model(model_path)
    input_shape, n_classes = tuple(teacher.input_shape[1:]), int(teacher.output_shape[-1])
    if synthetic:
        data = synthetic_data(input_shape, synthetic_samples, max(256, synthetic_samples // 8), seed, synthetic_range)
        data.y_val = np.argmax(predict(teacher, data.x_val), -1)
        log(f"synthetic data: {len(data.x_train)} train / {len(data.x_val)} val Gaussian inputs in "
            f"{synthetic_range}; 'acc' below is top-1 agreement with the original model")
    else:
        data = load_data(data_path, input_shape, n_classes)
    xv, yv, rep = data.x_val, data.y_val, data.x_train
    lr = lr if lr is not None else (1e-4 if synthetic else 1e-3)

    def tune(student, what):
        return fine_tune(student, teacher, data, epochs, temperature=temperature, alpha=alpha,
                         lr=lr, batch_size=batch_size, log=log, what=what)

    rows: list[StepRow] = []

    def record(step, model, tflite=None, acc_model=None):
        row, tfl = measure(step, model, xv, yv, tflite=tflite, x_rep=rep, acc_model=acc_model)
        rows.append(row)
        log(format_table(rows))
        return tfl

    tflite = record("baseline", teacher)
    model = teacher
    result = OptimizeResult(rows, str(out), "", b"", 0.0, synthetic=synthetic)
    if rewrite == "dws":
        model, result.rewrite_report = plan_and_rewrite(model, xv, yv, data.x_train[:256],
                                                        budget=rewrite_budget, log=log)
        if model is not teacher:
            tflite = record("rewrite (dws)", tune(model, "rewrite"))
        else:
            log("rewrite: no layer chosen; model unchanged")
    if prune is not None:
        pruned, result.prune_report = plan_and_prune(model, prune, xv, yv, log=log)
        if pruned is not model:
            model = pruned
            tflite = record(f"prune ({prune:g})", tune(model, "prune"))
        else:
            log("prune: nothing prunable; model unchanged")
    result.ptq_int8_acc = rows[-1].int8_acc
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(out)
    if qat:
        qmodel = tune(quantize_aware(model), "qat")
        tflite = record("qat", model, tflite=to_int8_tflite(qmodel, rep), acc_model=qmodel)
        result.qat_int8_acc = rows[-1].int8_acc
        log(f"int8 accuracy of the final model: PTQ {result.ptq_int8_acc:.4f}   QAT {result.qat_int8_acc:.4f}")
    tfl_path = out.with_name(out.stem + "_int8.tflite")
    tfl_path.write_bytes(tflite)
    result.tflite, result.tflite_path = tflite, str(tfl_path)
    log(f"saved {out} and {tfl_path} ({len(tflite):,} bytes)")
    return result
