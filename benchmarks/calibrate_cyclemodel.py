"""Fit tinygen/cyclemodel.json from real QEMU runs: instructions per kernel call, code bytes per kernel.

    CMSIS_NN_PATH=/path/to/CMSIS-NN .venv/bin/python benchmarks/calibrate_cyclemodel.py [--quick]

Builds every shared MLPerf Tiny model and a set of medium-sized op nets (tests/opnets.py)
for the emulated Cortex-M33 (mps2-an505) and Cortex-M4 (mps2-an386), with the portable
backend and (when CMSIS_NN_PATH is set) cmsis-nn, runs each self-test under QEMU
(``-icount shift=0``) and reads the per-layer instruction counts (resolution: one SysTick
tick, 50 instructions on an505, 40 on an386). Then, per backend / core / kernel (the
CMSIS-NN sub-kernel tinygen.analyze says the wrapper picks), fits
``instructions = a * MACs + b * output bytes + c``; code bytes = base + one cost per kernel
used (least squares over the builds). Prints the fit error per layer and per model
(in-sample, and leave-one-model-out for the shared models) and writes the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from tinygen import analyze, boards, cyclemodel, driver, kernels, project, qemu, toolchain  # noqa: E402

MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"
SHARED = ("kws_ref_model", "pretrainedResnet_quant", "ad01_int8")
# depthwise-heavy: MobileNetV1-0.25 96x96 of benchmarks/arena_mobilenet.py (random weights), built here
DEPTHWISE = ("mobilenet_025_96",)
CHECK = ("mobilenet_025_96", "kws_ref_model", "pretrainedResnet_quant", "ad01_int8")
BOARDS = ("mps2-an505", "mps2-an386")

# medium-sized single-op nets: big enough that one SysTick tick (40-50 instructions) is noise
OPNETS = [
    ("conv3x3_16", "conv2d", dict(in_shape=(16, 16, 8), filters=16, kernel=(3, 3), padding="same")),
    ("conv3x3_s2", "conv2d", dict(in_shape=(16, 16, 16), filters=32, kernel=(3, 3), strides=(2, 2), padding="same")),
    ("conv5x5_valid", "conv2d", dict(in_shape=(12, 12, 4), filters=8, kernel=(5, 5), padding="valid")),
    ("conv1x1_16_32", "conv2d", dict(in_shape=(16, 16, 16), filters=32, kernel=(1, 1))),
    ("conv1x1_s2", "conv2d", dict(in_shape=(16, 16, 16), filters=16, kernel=(1, 1), strides=(2, 2))),
    ("conv1xn", "conv2d", dict(in_shape=(1, 64, 16), filters=16, kernel=(1, 3), padding="same")),
    ("dw3x3", "dwconv2d", dict(in_shape=(16, 16, 16), kernel=(3, 3), padding="same")),
    ("dw3x3_s2", "dwconv2d", dict(in_shape=(16, 16, 32), kernel=(3, 3), strides=(2, 2), padding="same")),
    ("dw5x5", "dwconv2d", dict(in_shape=(12, 12, 16), kernel=(5, 5), padding="same")),
    ("dw3x3_m2", "dwconv2d", dict(in_shape=(12, 12, 8), kernel=(3, 3), padding="same", depth_multiplier=2)),
    ("fc_256_64", "fc", dict(in_shape=(256,), units=64)),
    ("fc_512_128", "fc", dict(in_shape=(512,), units=128)),
    ("fc_rows", "fc", dict(in_shape=(8, 64), units=32)),
    ("avgpool2", "avgpool", dict(in_shape=(16, 16, 16), pool=(2, 2), strides=(2, 2), padding="valid")),
    ("avgpool_global", "avgpool", dict(in_shape=(8, 8, 32), pool=(8, 8), strides=(1, 1), padding="valid")),
    ("maxpool2", "maxpool", dict(in_shape=(16, 16, 16), pool=(2, 2), strides=(2, 2), padding="valid")),
    ("maxpool3_s1", "maxpool", dict(in_shape=(12, 12, 16), pool=(3, 3), strides=(1, 1), padding="same")),
    ("add", "add", dict(shape1=(16, 16, 16), shape2=(16, 16, 16))),
    ("add_bcast", "add", dict(shape1=(16, 16, 16), shape2=(1, 1, 16))),
    ("mul", "mul", dict(shape1=(16, 16, 16), shape2=(16, 16, 16))),
    ("softmax", "softmax", dict(in_shape=(8, 100))),
    ("logistic", "logistic", dict(in_shape=(16, 16, 16))),
    ("mean", "mean", dict(in_shape=(8, 8, 32), keepdims=False)),
    ("pad", "pad", dict(in_shape=(16, 16, 8), pads=((1, 1), (1, 1), (0, 0)))),
    ("concat", "concat", dict(shapes=((16, 16, 8), (16, 16, 8)), axis=-1)),
]


def measure(buf: bytes, name: str, backend: str, board, work: Path) -> dict:
    """Build, run, and pair each layer's QEMU count with its kernel and MACs."""
    arch = board.arch_features if backend != "portable" else "none"  # as tinygen build
    c = driver.compile_model(buf, name, backend, arch, board_name=board.name)
    out = work / f"{name}-{backend}-{board.name}"
    project.write(out, driver.board_project(c, board))
    t0 = time.time()
    info = toolchain.make_firmware(out, backend, board=board)
    build_s = time.time() - t0
    r = qemu.run_selftest(info.elf, board, timeout=300)
    if not (r.ok and r.match):
        raise SystemExit(f"{name} {backend} {board.name}: self-test failed")
    a = analyze.analyze_bytes(buf, name, backend, arch, with_tflm=False, boards=[])
    calls = [ly for ly in a.layers if ly.kernel]
    if len(calls) != len(r.layers):
        raise SystemExit(f"{name}: {len(calls)} calls but {len(r.layers)} timed layers")
    model = cyclemodel.load()
    raw = [None if x.generated is None else x.cost / model.generated_scale(x.kernel.name)
           for x in c.calls if x is not None]  # a generated family's own estimate, before its calibration
    layers = [{"kernel": ly.kernel, "op": ly.op, "macs": ly.macs, "out_bytes": int(np.prod(ly.output)),
               "instructions": t.instructions, "gen_raw": g,
               "taps": cyclemodel.taps_of(ly.op, ly.macs, ly.inputs[0] if ly.inputs else None)}
              for ly, t, g in zip(calls, r.layers, raw)]
    est = analyze.analyze_bytes(buf, name, backend, arch, with_tflm=False, boards=[board]).boards[0]
    return {"model": name, "backend": backend, "board": board.name, "core": board.core, "layers": layers,
            "instructions": r.instructions, "kernels": a.kernels, "code_bytes": info.code_bytes,
            "flash_bytes": info.flash_bytes, "weights_bytes": info.weights_bytes, "n_layers": len(calls),
            "ram_bytes": info.ram_bytes, "arena_bytes": info.arena_bytes, "stack": info.stack_reserved,
            "analysis_weights": a.weights_bytes + a.params_bytes, "build_s": build_s,
            "analyze_instructions": est["est_instructions"]}


def _measure_retry(buf, name, backend, board, work, tries: int = 3):
    """measure(); a failed build is retried (the checkout may be mid-edit) and then skipped."""
    from tinygen.errors import TinygenError

    for k in range(tries):
        try:
            return measure(buf, name, backend, board, work)
        except TinygenError as e:
            print(f"  {name} {backend} {board.name}: {str(e).splitlines()[0]} (try {k + 1}/{tries})", flush=True)
            time.sleep(15)
    return None


def fit_instructions(runs: list[dict]) -> dict:
    groups: dict = defaultdict(list)
    for r in runs:
        if r["backend"] == "generated":  # its own kernels are fitted by fit_generated
            continue
        for ly in r["layers"]:
            s = (ly["macs"], ly["out_bytes"], ly.get("taps", 0), ly["instructions"])
            for key in (ly["kernel"], f"op:{ly['op']}", "all"):
                groups[(r["backend"], r["core"], key)].append(s)
    out: dict = {}
    for (backend, core, key), samples4 in sorted(groups.items()):
        samples = [(m, o, i) for m, o, _, i in samples4]
        distinct = {(m, o) for m, o, _ in samples}
        if key != "all" and all(t > 0 for _, _, t, _ in samples4) and len({x[:3] for x in samples4}) >= 4:
            f = cyclemodel.fit_taps(samples4)  # convolutions: the per-tap overhead of few input channels
        elif len(distinct) >= 3:
            f = cyclemodel.fit(samples)
        else:  # too few shapes for three coefficients: instructions per MAC (or per output byte)
            tot = sum(i for *_, i in samples)
            macs = sum(m for m, _, _ in samples)
            outs = sum(o for _, o, _ in samples)
            f = {"a": tot / macs, "b": 0.0, "c": 0.0} if macs else {"a": 0.0, "b": tot / max(outs, 1), "c": 0.0}
            f["n"] = len(samples)
        out.setdefault(backend, {}).setdefault(core, {})[key] = {k: (round(v, 5) if isinstance(v, float) else v)
                                                                 for k, v in f.items()}
    return out


def fit_generated(runs: list[dict]) -> dict:
    """Per generated family (gen.conv, gen.dwconv, ...): the scale of its own estimate that
    minimises the relative error over the layers it ran (Cortex-M33 builds, layers of at least
    5,000 instructions: one SysTick tick is 50)."""
    num, den, n = defaultdict(float), defaultdict(float), defaultdict(int)
    for r in runs:
        if r["backend"] != "generated" or r["core"] != "cortex-m33":
            continue
        for ly in r["layers"]:
            if ly.get("gen_raw") and ly["instructions"] >= 5000:
                q = ly["gen_raw"] / ly["instructions"]
                num[ly["kernel"]] += q
                den[ly["kernel"]] += q * q
                n[ly["kernel"]] += 1
    return {k: {"scale": round(num[k] / den[k], 4), "n": n[k]} for k in sorted(num)}


def predict_total(m: cyclemodel.CycleModel, r: dict) -> int:
    """What analyze estimates for run ``r`` with the cycle model ``m`` (same kernels chosen)."""
    tot = 0
    for ly in r["layers"]:
        if ly.get("gen_raw") is not None:
            tot += int(ly["gen_raw"] * m.generated_scale(ly["kernel"]))
        else:
            kset = kernels.by_name(ly["kernel"]).kset  # the table analyze reads (the kernel's own set)
            tot += m.instructions(kset, r["core"], ly["kernel"], ly["op"], ly["macs"], ly["out_bytes"], ly.get("taps", 0))
    return tot


def fit_code(runs: list[dict]) -> tuple[dict, dict, dict]:
    code: dict = {}
    other: dict = {}
    ram: dict = {}
    by = defaultdict(list)
    for r in runs:
        if r["backend"] != "generated":  # analyze sizes the generated set by its fallback's tables
            by[(r["backend"], r["core"])].append(r)
    for (backend, core), rs in by.items():
        kernels = sorted({k for r in rs for k in r["kernels"]})
        X = np.array([[1.0] + [1.0 if k in r["kernels"] else 0.0 for k in kernels] for r in rs])
        y = np.array([float(r["code_bytes"]) for r in rs])
        coef = cyclemodel._nnls(X, y)
        code.setdefault(backend, {})[core] = {"base": round(float(coef[0])),
                                              "kernels": {k: round(float(v)) for k, v in zip(kernels, coef[1:])}}
        # flash besides code and the analysed constants: vectors, tables, test data, per-layer strings
        X2 = np.array([[1.0, r["n_layers"]] for r in rs])
        y2 = np.array([r["flash_bytes"] - r["code_bytes"] - r["analysis_weights"] for r in rs], float)
        c2 = cyclemodel._nnls(X2, y2)
        other.setdefault(backend, {})[core] = {"base": round(float(c2[0])), "per_layer": round(float(c2[1]), 1)}
        ram.setdefault(backend, {})[core] = int(max(r["ram_bytes"] - r["stack"] - r["arena_bytes"] for r in rs))
    return code, other, ram


def accuracy(runs: list[dict], table: dict, gen: dict | None = None) -> dict:
    m = cyclemodel.CycleModel({"instructions": table, "generated": gen or {}})
    rel_layers, per_model = [], {}
    for r in runs:
        for ly in r["layers"]:
            p = predict_total(m, {**r, "layers": [ly]})
            if ly["instructions"] >= 5000:
                rel_layers.append(abs(p - ly["instructions"]) / ly["instructions"])
        per_model[f"{r['model']}/{r['backend']}/{r['board']}"] = round(predict_total(m, r) / r["instructions"] - 1, 4)
    return {"layer_median_abs_rel_err": round(float(np.median(rel_layers)), 4),
            "layer_p90_abs_rel_err": round(float(np.percentile(rel_layers, 90)), 4),
            "model_total_rel_err": per_model}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shared models only (no op nets)")
    ap.add_argument("--out", type=Path, default=cyclemodel.DATA)
    ap.add_argument("--raw", type=Path, default=None, help="also write the raw measurements here")
    ap.add_argument("--refit", type=Path, default=None, metavar="RAW",
                    help="fit again from the raw measurements of an earlier --raw run (no builds)")
    ap.add_argument("--check", action="store_true",
                    help="fit nothing: build MobileNetV1-0.25, KWS, ResNet-8 and AD with each kernel set for "
                         "mps2-an505, run them under QEMU and print tinygen analyze's estimate against the count")
    args = ap.parse_args(argv)
    toolchain.find_arm_gcc()
    toolchain.find_qemu()
    backends = ["portable"] + (["cmsis-nn"] if os.environ.get("CMSIS_NN_PATH") else []) + ["generated"]
    if "cmsis-nn" not in backends:
        print("CMSIS_NN_PATH not set: calibrating the portable backend only")
    if args.check:
        return check(backends)
    if args.refit:
        runs = json.loads(args.refit.read_text())
        t0 = time.time()
        return _fit_and_write(runs, backends, args, t0)
    items = [(n, _model(n), True) for n in DEPTHWISE]
    for name in SHARED:
        p = MODELS / f"{name}.tflite"
        if p.exists():
            items.append((name, p.read_bytes(), True))
        else:
            print(f"skip {name}: {p} not found")
    if not args.quick:
        from opnets import make_opnet

        items += [(f"opnet_{n}", make_opnet(kind, **spec), False) for n, kind, spec in OPNETS]
    runs = []
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tg_calib_") as tmp:
        for board_name in BOARDS:
            board = boards.load_board(board_name)
            for backend in backends:
                for name, buf, _ in items:
                    r = _measure_retry(buf, name, backend, board, Path(tmp))
                    if r is None:
                        continue
                    r["shared"] = name in SHARED or name in DEPTHWISE
                    runs.append(r)
                    print(f"{time.time() - t0:6.0f}s {board_name:<11} {backend:<9} {name:<24} "
                          f"{r['instructions']:>12,} instructions, code {r['code_bytes']:,} B", flush=True)
    if args.raw:
        args.raw.write_text(json.dumps(runs, indent=1) + "\n")
    return _fit_and_write(runs, backends, args, t0)


def _fit_and_write(runs, backends, args, t0) -> int:
    table = fit_instructions(runs)
    gen = fit_generated(runs)
    code, other, ram = fit_code(runs)
    acc = accuracy(runs, table, gen)
    # leave-one-model-out on the shared models: fit without the model, predict its total
    loo = {}
    for r in [r for r in runs if r["shared"]]:
        rest = [x for x in runs if x["model"] != r["model"]]
        m = cyclemodel.CycleModel({"instructions": fit_instructions(rest), "generated": fit_generated(rest)})
        loo[f"{r['model']}/{r['backend']}/{r['board']}"] = round(predict_total(m, r) / r["instructions"] - 1, 4)
    acc["shared_model_leave_one_out_rel_err"] = loo
    data = {
        "note": ("estimate from QEMU instruction counts (-icount, emulated Cortex-M33 mps2-an505 / Cortex-M4 "
                 "mps2-an386), assuming 1 instruction per cycle at the board clock; Cortex-M7 uses the M4 fit"),
        "generated_by": "benchmarks/calibrate_cyclemodel.py",
        "samples": {f"{b}/{c}": sum(len(r["layers"]) for r in runs if r["backend"] == b and r["core"] == c)
                    for b in backends for c in ("cortex-m33", "cortex-m4")},
        "instructions": table, "generated": gen, "code": code, "flash_other": other, "ram_other": ram, "accuracy": acc,
    }
    args.out.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(json.dumps(acc, indent=1))
    print(format_check([r for r in runs if r["model"] in CHECK and r["board"] == "mps2-an505"],
                       {k: v for k, v in acc["model_total_rel_err"].items()}))
    print(f"wrote {args.out} ({time.time() - t0:.0f} s)")
    return 0


def _model(name: str) -> bytes:
    if name == "mobilenet_025_96":
        from arena_mobilenet import mobilenet_025_96

        return mobilenet_025_96()
    return (MODELS / f"{name}.tflite").read_bytes()


def format_check(runs: list[dict], fitted: dict | None = None) -> str:
    """analyze's estimate vs the QEMU count per model and kernel set."""
    head = f"{'model':<24} {'kernel set':<10} {'QEMU instr.':>12} {'analyze':>12} {'error':>7}"
    lines = [head, "-" * len(head)]
    for r in runs:
        key = f"{r['model']}/{r['backend']}/{r['board']}"
        est = round(r["instructions"] * (1 + fitted[key])) if fitted and key in fitted else r["analyze_instructions"]
        lines.append(f"{r['model']:<24} {r['backend']:<10} {r['instructions']:>12,} {est:>12,} "
                     f"{est / r['instructions'] - 1:>+7.1%}")
    return "\n".join(lines)


def check(backends) -> int:
    """Build each CHECK model with each kernel set for mps2-an505 and compare analyze with QEMU."""
    board = boards.load_board("mps2-an505")
    runs = []
    with tempfile.TemporaryDirectory(prefix="tg_calib_") as tmp:
        for backend in ("generated", *[b for b in backends if b != "generated"]):
            for name in CHECK:
                if name in SHARED and not (MODELS / f"{name}.tflite").exists():
                    continue
                r = _measure_retry(_model(name), name, backend, board, Path(tmp))
                if r is not None:
                    runs.append(r)
    print("tinygen analyze's latency estimate vs QEMU -icount instructions per inference (mps2-an505, Cortex-M33):")
    print(format_check(runs))
    worst = max(abs(r["analyze_instructions"] / r["instructions"] - 1) for r in runs)
    print(f"worst error {worst:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
