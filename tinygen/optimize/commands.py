"""`tinygen optimize` (and the optimization flags of `tinygen build`); TensorFlow is imported lazily."""

from __future__ import annotations

import json
from pathlib import Path

from tinygen.errors import InputError


def add_optimize_flags(p) -> None:
    """Flags shared by `tinygen optimize` and `tinygen build` (see docs/optimize.md)."""
    p.add_argument("--data", help="data.npz with x_train, y_train, x_val, y_val (optionally x_test, y_test); "
                   "without y_*: unlabeled inputs (a --calib file with x works too)")
    p.add_argument("--synthetic", action="store_true",
                   help="no data: distil on synthetic inputs; the metric becomes fidelity to the original")
    p.add_argument("--synthetic-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="range of the synthetic inputs (the model's input scale, e.g. 0 255; default 0 1); "
                        "also the calibration range of tinygen build without --calib")
    p.add_argument("--rewrite", choices=["dws"], help="depthwise-separable rewrite of k x k convolutions")
    p.add_argument("--prune", type=float, metavar="R", help="structured channel pruning ratio (0 < R < 1)")
    p.add_argument("--prune-layer", action="append", default=[], metavar="NAME=R",
                   help="prune the channels of layer NAME by ratio R (repeatable)")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME",
                   help="never prune layer NAME (repeatable, or comma-separated)")
    p.add_argument("--qat", action="store_true",
                   help="compare quantization-aware training with PTQ at equal epochs and ship the better")
    p.add_argument("--epochs", type=int, default=5, help="distillation epochs per step (default 5)")
    p.add_argument("--recover-epochs", type=int, default=None, metavar="N",
                   help="with --max-acc-drop, every rewrite/prune step is fine-tuned N more epochs (the "
                        "learning rate restarted and decayed again) before it is judged (default 9 x --epochs; "
                        "0 = judged after --epochs)")
    p.add_argument("--target-latency", metavar="MS", help="latency budget on --board, e.g. 20 or 20ms (estimate)")
    p.add_argument("--target-ram", metavar="B", help="tensor-arena budget, e.g. 2048 or 2KB")
    p.add_argument("--target-flash", metavar="B", help="weights budget, e.g. 8KB")
    p.add_argument("--target-macs", metavar="N", help="MACs budget")
    p.add_argument("--max-acc-drop", type=float, default=None, metavar="D",
                   help="reject any step losing more than D of the metric (0.01 = 1 point; default 0.01 with a budget)")


def wants_optimize(a) -> bool:
    return bool(a.rewrite or a.prune or a.qat or a.prune_layer or a.target_latency or a.target_ram
                or a.target_flash or a.target_macs)


def _layer_ratios(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        name, sep, r = item.partition("=")
        try:
            out[name.strip()] = float(r)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"--prune-layer {item}: give NAME=RATIO, e.g. --prune-layer conv2d_1=0.5")
    return out


def run_optimize(a, out_path: str, log=print):
    """Run the requested steps; returns the OptimizeResult (with .tflite_path, .rows)."""
    from . import optimize
    from .budget import from_args

    budget = from_args(a)
    exclude = [n.strip() for e in a.exclude for n in e.split(",") if n.strip()]
    return optimize(a.model, a.data, rewrite=a.rewrite, prune=a.prune, qat=a.qat, epochs=a.epochs, seed=a.seed,
                    out_path=out_path, synthetic=a.synthetic, synthetic_range=tuple(a.synthetic_range or (0.0, 1.0)), log=log,
                    board=a.board, backend=a.backend, budget=budget, max_drop=a.max_acc_drop, exclude=exclude,
                    prune_layers=_layer_ratios(a.prune_layer), measure=getattr(a, "measure", False),
                    resume=getattr(a, "resume", False), recover_epochs=getattr(a, "recover_epochs", None))


def history(res, flags: dict | None = None) -> dict:
    """The optimization record as JSON (optimize.json beside a project, out.json beside -o):
    flags, data used (or "synthetic"), seed, task and metric, every step's row with the
    compiler's cost, the sensitivity tables, the PTQ-vs-QAT pair and what shipped."""
    def clean(v):
        return float(v) if isinstance(v, float) else v

    rows = [{k: clean(v) for k, v in vars(r).items()} for r in res.rows]
    spaces = [{"producers": sp.producers, "width": sp.width, "ratio": sp.ratio, "fixed": sp.fixed,
               "drops": {f"{r:g}": float(d) for r, d in sp.drops.items()}} for sp in res.prune_report]
    cands = [{k: clean(v) for k, v in vars(c).items()} for c in res.rewrite_report]
    return {"steps": rows, "flags": flags or {}, **res.info, "synthetic": res.synthetic,
            "ptq_int8_acc": res.ptq_int8_acc, "qat_int8_acc": res.qat_int8_acc, "shipped": res.shipped,
            "sensitivity": {"prune": spaces, "rewrite": cands}, "warnings": res.warnings,
            "budget_misses": res.budget_misses, "cost": res.cost.as_dict() if res.cost else None}


def flags_of(a) -> dict:
    return {k: v for k, v in sorted(vars(a).items()) if k != "func" and not callable(v)}


def cmd_optimize(a) -> int:
    res = run_optimize(a, a.out)
    Path(a.out).with_suffix(".json").write_text(json.dumps(history(res, flags_of(a)), indent=2, sort_keys=True) + "\n")
    print(f"optimized model: {res.model_path}\nfull-int8 model: {res.tflite_path}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("optimize", help="depthwise-separable rewrite, channel pruning and QAT with distillation, "
                                        "to a latency/RAM/flash budget")
    p.add_argument("model", help="Keras model (.h5 / .keras)")
    add_optimize_flags(p)
    p.add_argument("--board", default="mps2-an505",
                   help="board the candidates are costed for (default mps2-an505; 'host' for no board)")
    p.add_argument("--backend", choices=["generated", "cmsis-nn", "portable"], default=None,
                   help="kernels costed (default: as tinygen build chooses: generated)")
    p.add_argument("--measure", action="store_true",
                   help="emulated boards: measure each candidate's latency under QEMU (instructions) instead of estimating it")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from its checkpoints (OUT.steps/, same model, data and flags)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output Keras model (.h5); the int8 model goes beside it")
    p.set_defaults(func=cmd_optimize)
