"""`tinygen optimize` (and the optimization flags of `tinygen build`); TensorFlow is imported lazily."""

from __future__ import annotations

import json
from pathlib import Path


def add_optimize_flags(p) -> None:
    """Flags shared by `tinygen optimize` and `tinygen build` (see docs/optimize.md)."""
    p.add_argument("--data", help="data.npz with x_train, y_train, x_val, y_val")
    p.add_argument("--synthetic", action="store_true",
                   help="no data: distil on synthetic inputs; 'accuracy' becomes agreement with the original")
    p.add_argument("--synthetic-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="range of the synthetic inputs (the model's input scale, e.g. 0 255; default 0 1); "
                        "also the calibration range of tinygen build without --calib")
    p.add_argument("--rewrite", choices=["dws"], help="depthwise-separable rewrite of k x k convolutions")
    p.add_argument("--prune", type=float, metavar="R", help="structured channel pruning ratio (0 < R < 1)")
    p.add_argument("--qat", action="store_true", help="quantization-aware training before int8 conversion")
    p.add_argument("--epochs", type=int, default=5, help="distillation epochs per step (default 5)")


def wants_optimize(a) -> bool:
    return bool(a.rewrite or a.prune or a.qat)


def run_optimize(a, out_path: str, log=print):
    """Run the requested steps; returns the OptimizeResult (with .tflite_path, .rows)."""
    from . import format_table, optimize

    res = optimize(a.model, a.data, rewrite=a.rewrite, prune=a.prune, qat=a.qat, epochs=a.epochs, seed=a.seed,
                   out_path=out_path, synthetic=a.synthetic, synthetic_range=tuple(a.synthetic_range or (0.0, 1.0)), log=log)
    log(format_table(res.rows))
    return res


def history(res) -> dict:
    """The optimization history as JSON-able rows (written as optimize.json beside a project)."""
    rows = []
    for r in res.rows:
        rows.append({k: (float(v) if isinstance(v, float) else v) for k, v in vars(r).items()})
    return {"steps": rows, "ptq_int8_acc": getattr(res, "ptq_int8_acc", None),
            "qat_int8_acc": getattr(res, "qat_int8_acc", None)}


def cmd_optimize(a) -> int:
    res = run_optimize(a, a.out)
    Path(a.out).with_suffix(".json").write_text(json.dumps(history(res), indent=2, sort_keys=True) + "\n")
    print(f"optimized model: {res.model_path}\nfull-int8 model: {res.tflite_path}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("optimize", help="depthwise-separable rewrite, channel pruning and QAT with distillation")
    p.add_argument("model", help="Keras model (.h5 / .keras)")
    add_optimize_flags(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output Keras model (.h5); the int8 model goes beside it")
    p.set_defaults(func=cmd_optimize)
