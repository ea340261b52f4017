"""Benchmark ``tinygen optimize`` on scikit-learn's digits (8x8x1, 10 classes).

Trains a small seeded CNN (Conv 3x3 16 -> Conv 3x3 32 -> MaxPool -> Dense), then runs
rewrite (dws) + prune (0.3) + QAT with distillation and prints the before/after table and
PTQ vs QAT int8 accuracy side by side.

    .venv/bin/python benchmarks/optimize_digits.py [--epochs N] [--out DIR]
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
    ap.add_argument("--epochs", type=int, default=4, help="fine-tune epochs per step")
    ap.add_argument("--out", type=Path, default=None, help="folder for the models (default: temporary)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        npz = digits_npz(work / "digits.npz")
        base = train_baseline(npz, work / "digits_cnn.h5")
        res = optimize(str(base), str(npz), rewrite="dws", prune=0.3, qat=True, epochs=args.epochs,
                       seed=0, out_path=str(work / "digits_opt.h5"))
        conv = {r.step: r for r in res.rows}
        print("\n=== tinygen optimize on digits (rewrite dws + prune 0.3 + QAT) ===")
        print(format_table(res.rows))
        b, last = res.rows[0], res.rows[-1]
        print(f"\nbaseline: float {b.float_acc:.4f}  PTQ int8 {b.int8_acc:.4f}")
        print(f"final model int8:  PTQ {res.ptq_int8_acc:.4f}  |  QAT {res.qat_int8_acc:.4f}")
        print(f"MACs {b.macs:,} -> {last.macs:,} ({b.macs / last.macs:.2f}x), "
              f"params {b.params:,} -> {last.params:,} ({b.params / last.params:.2f}x), "
              f"int8 acc drop vs float baseline {b.float_acc - last.int8_acc:+.4f}")
        if "rewrite (dws)" in conv:
            r = conv["rewrite (dws)"]
            print(f"conv MACs cut by the rewrite: {b.conv_macs:,} -> {r.conv_macs:,} ({b.conv_macs / r.conv_macs:.2f}x)")
        print(f"tflite: {res.tflite_path} ({len(res.tflite):,} bytes); total {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
