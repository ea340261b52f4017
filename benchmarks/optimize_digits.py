"""Benchmark ``tinygen optimize`` on scikit-learn's digits (8x8x1, 10 classes).

Trains a small seeded CNN (Conv 3x3 16 -> Conv 3x3 32 -> MaxPool -> Dense) on a 60/20/20
split, then optimizes it to half its latency on mps2-an505 (compiler cost; --measure: QEMU)
losing at most 1 point, PTQ vs QAT at equal epochs, and prints the before/after table.

    .venv/bin/python benchmarks/optimize_digits.py [--epochs N] [--frac 2] [--measure] [--backend B] [--out DIR]
    .venv/bin/python benchmarks/optimize_digits.py --budgets   # latency and arena at 1/2 and 1/4, run under QEMU
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


def run_on_board(tflite_path: Path, out: Path, backend: str, board_name: str = "mps2-an505"):
    """Build the firmware of ``tflite_path`` and run its self-test under QEMU (``-icount``), as
    ``tinygen build`` + ``tinygen run`` do: (ms at the board clock, instructions, manifest)."""
    from tinygen import boards, driver, qemu, toolchain

    board = boards.load_board(board_name)
    c, proj, _ = driver.build(str(tflite_path), board_name, out, backend, log=lambda m: None)
    toolchain.make_firmware(proj, backend, board=board)
    r = qemu.run_selftest(proj / "build" / "firmware.elf", board, timeout=300)
    if not (r.ok and r.match):
        raise SystemExit(f"{tflite_path}: the self-test failed under QEMU")
    return 1e3 * r.instructions / board.clock_hz, r.instructions, c.emitted.manifest


def budget_table(work: Path, backend: str, epochs: int, fracs=(2, 4), what=("latency", "ram"),
                 extra: dict | None = None, log=print, only=None) -> list[dict]:
    """`tinygen optimize --board mps2-an505 --measure --target-latency X --max-acc-drop 0.01` (and
    --target-ram) for X = original / frac, each shipped model rebuilt and run under QEMU."""
    import json

    from tinygen import cli
    from tinygen.optimize.metrics import to_int8_tflite

    npz = digits_npz(work / "digits.npz", test=True)
    h5 = train_baseline(npz, work / "digits_cnn.h5")
    base = work / "base_int8.tflite"
    base.write_bytes(to_int8_tflite(keras.models.load_model(h5, compile=False), np.load(npz)["x_train"]))
    ms0, _, man0 = run_on_board(base, work / "p_base", backend)
    rows = [dict(budget="original", target="", ms=ms0, arena=man0["arena_bytes"], acc=None, drop=None, met="",
                 why="", extra="")]
    for w, frac in [(w, f) for w in what for f in fracs if only is None or f"{w}:{f}" in only]:
        if True:
            want = f"{ms0 / frac:.3f}" if w == "latency" else str(man0["arena_bytes"] // frac)
            more = (extra or {}).get((w, frac), [])
            out = work / f"opt_{w}_{frac}.h5"
            t0 = time.time()
            rc = cli.main(["optimize", str(h5), "--data", str(npz), "--board", "mps2-an505", "--backend", backend,
                           f"--target-{w}", want, "--max-acc-drop", "0.01", "--epochs", str(epochs), "--measure",
                           *more, "-o", str(out)])
            if rc:
                raise SystemExit(f"optimize --target-{w} {want} failed ({rc})")
            ms, _, man = run_on_board(out.with_name(out.stem + "_int8.tflite"), work / f"p_{w}_{frac}", backend)
            hist = json.loads(out.with_suffix(".json").read_text())
            b0 = hist["steps"][0]
            ship = [s for s in hist["steps"] if s["note"] in ("", "shipped")][-1]
            if rows[0]["acc"] is None:
                rows[0].update(acc=b0["int8_acc"], val=b0["val_int8"])
            rows.append(dict(budget=f"{w} 1/{frac}", target=(f"{float(want):.2f} ms" if w == "latency"
                                                             else f"{int(want):,} B"),
                             ms=ms, arena=man["arena_bytes"], acc=ship["int8_acc"], val=ship["val_int8"],
                             drop=b0["int8_acc"] - ship["int8_acc"], val_drop=b0["val_int8"] - ship["val_int8"],
                             met="met" if not hist["budget_misses"] else "NOT met: " + "; ".join(hist["budget_misses"]),
                             why=hist.get("budget_why", ""), extra=" ".join(more), s=time.time() - t0))
            log(format_budget_table(rows))
    return rows


def format_budget_table(rows: list[dict]) -> str:
    head = (f"{'budget':<13} {'flags':<14} {'target':>10} {'run ms':>8} {'arena B':>8} {'val drop':>8} "
            f"{'test int8':>9} {'test drop':>9}  result")
    lines = [head, "-" * len(head)]
    for r in rows:
        acc = f"{r['acc']:.4f}" if r.get("acc") is not None else ""
        drop = f"{r['drop']:+.4f}" if r.get("drop") is not None else ""
        vdrop = f"{r['val_drop']:+.4f}" if r.get("val_drop") is not None else ""
        lines.append(f"{r['budget']:<13} {r['extra']:<14} {r['target']:>10} {r['ms']:8.2f} {r['arena']:8,} {vdrop:>8} "
                     f"{acc:>9} {drop:>9}  {r['met']}" + (f" ({r['why']})" if r.get("why") else ""))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6, help="fine-tune epochs per step")
    ap.add_argument("--frac", type=float, default=2.0, help="latency budget = original / FRAC (default 2)")
    ap.add_argument("--measure", action="store_true", help="cost latency under QEMU instead of the estimate")
    ap.add_argument("--backend", default="generated", help="kernel set (default generated, as tinygen build)")
    ap.add_argument("--budgets", action="store_true",
                    help="the budget table: latency and arena at 1/2 and 1/4 of the original, each run through "
                         "`tinygen optimize --measure` and the shipped model run under QEMU")
    ap.add_argument("--only", default=None, help="with --budgets: some of latency:2,latency:4,ram:2,ram:4")
    ap.add_argument("--out", type=Path, default=None, help="folder for the models (default: temporary)")
    args = ap.parse_args(argv)
    from tinygen.optimize.budget import Budget
    from tinygen.optimize.cost import compiler_cost, target_for
    from tinygen.optimize.metrics import to_int8_tflite

    with tempfile.TemporaryDirectory() as tmp:
        work = args.out or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        if args.budgets:
            rows = budget_table(work, args.backend, args.epochs, extra={("latency", 4): ["--rewrite", "dws"]},
                                log=lambda t: None, only=args.only.split(",") if args.only else None)
            print(f"\n=== digits CNN on mps2-an505 ({args.backend}), tinygen optimize --measure "
                  f"--max-acc-drop 0.01 --epochs {args.epochs}; ms = QEMU -icount instructions / 20 MHz ===")
            print(format_budget_table(rows))
            print(f"total {time.time() - t0:.0f} s")
            return 0
        npz = digits_npz(work / "digits.npz", test=True)
        base = train_baseline(npz, work / "digits_cnn.h5")
        target = target_for("mps2-an505", args.backend, args.measure)
        full = compiler_cost(to_int8_tflite(keras.models.load_model(base, compile=False), np.load(npz)["x_train"]),
                             "digits", target)
        budget = Budget(latency_ms=full.est_ms / args.frac, max_drop=0.01)
        res = optimize(str(base), str(npz), qat=True, epochs=args.epochs, seed=0, board="mps2-an505",
                       backend=args.backend, measure=args.measure, budget=budget,
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
