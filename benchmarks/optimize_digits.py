"""Benchmark ``tinygen optimize`` on scikit-learn's digits (8x8x1, 10 classes).

Trains a small seeded CNN (Conv 3x3 16 -> Conv 3x3 32 -> MaxPool -> Dense) on a 60/20/20
split, then optimizes it to half its latency on mps2-an505 (compiler cost; --measure: QEMU)
losing at most 1 point, PTQ vs QAT at equal epochs, and prints the before/after table.

    .venv/bin/python benchmarks/optimize_digits.py [--epochs N] [--frac 2] [--measure] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tinygen.optimize import format_table, optimize  # noqa: E402
from tinygen.optimize._tf import keras, seed_everything  # noqa: E402


def digits_npz(path: Path, seed: int = 0, test: bool = False) -> Path:
    """data.npz from sklearn's load_digits: pixels scaled to [0, 1], 80/20 stratified split
    (optimize then holds half of the 20% out as its test split); with ``test`` 60/20/20
    train/val/test, all stratified (359 validation and 360 test samples)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[..., None]
    y = d.target.astype(np.int64)
    if test:
        x, xs, y, ys = train_test_split(x, y, test_size=0.2, random_state=seed, stratify=y)
    xt, xv, yt, yv = train_test_split(x, y, test_size=0.25 if test else 0.2, random_state=seed, stratify=y)
    arrays = dict(x_train=xt, y_train=yt, x_val=xv, y_val=yv)
    if test:
        arrays.update(x_test=xs, y_test=ys)
    np.savez(path, **arrays)
    return path


def train_baseline(npz: Path, out: Path, epochs: int = 12, seed: int = 0) -> Path:
    seed_everything(seed)
    z = np.load(npz)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(z["x_train"], z["y_train"], epochs=epochs, batch_size=32, verbose=0,
              validation_data=(z["x_val"], z["y_val"]))
    model.save(out)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="fine-tune epochs per step")
    ap.add_argument("--frac", type=float, default=2.0, help="latency budget = original / FRAC (default 2)")
    ap.add_argument("--measure", action="store_true", help="cost latency under QEMU instead of the estimate")
    ap.add_argument("--out", type=Path, default=None, help="folder for the models (default: temporary)")
    args = ap.parse_args(argv)
    from tinygen.optimize.budget import Budget
    from tinygen.optimize.cost import compiler_cost, target_for
    from tinygen.optimize.metrics import to_int8_tflite

    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        npz = digits_npz(work / "digits.npz", test=True)
        base = train_baseline(npz, work / "digits_cnn.h5")
        target = target_for("mps2-an505", "cmsis-nn", args.measure)
        full = compiler_cost(to_int8_tflite(keras.models.load_model(base, compile=False), np.load(npz)["x_train"]),
                             "digits", target)
        budget = Budget(latency_ms=full.est_ms / args.frac, max_drop=0.01)
        res = optimize(str(base), str(npz), qat=True, epochs=args.epochs, seed=0, board="mps2-an505",
                       backend="cmsis-nn", measure=args.measure, budget=budget,
                       out_path=str(work / "digits_opt.h5"))
        print(f"\n=== tinygen optimize on digits to {budget.describe()} (latency {full.latency_source}) ===")
        print(format_table(res.rows))
        b = res.rows[0]
        print(f"\nshipped {res.shipped}: PTQ test {res.ptq_int8_acc:.4f} | QAT test {res.qat_int8_acc:.4f} "
              f"(equal {args.epochs} epochs); baseline test int8 {b.int8_acc:.4f}")
        print(f"cost: {res.cost.est_ms:.2f} ms ({res.cost.latency_source}), arena {res.cost.arena_bytes:,} B, "
              f"weights {res.cost.weights_bytes:,} B; budget {'met' if not res.budget_misses else res.budget_misses}")
        print(f"tflite: {res.tflite_path} ({len(res.tflite):,} bytes); total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
