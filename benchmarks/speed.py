"""Speed of the three kernel sets (generated / cmsis-nn / portable) on the emulated Cortex-M33 and M4.

    CMSIS_NN_PATH=../shared/deps/CMSIS-NN-7.0.0 .venv/bin/python benchmarks/speed.py [--models KWS,AD]
        [--boards mps2-an505,mps2-an386] [--no-weighted] [--json out.json]

One run, per model (MLPerf Tiny KWS, ResNet-8, AD from ../shared/models/mlperf-tiny, and a
MobileNetV1-0.25 96x96 with random weights: tf_keras.applications.MobileNet(alpha=0.25,
input_shape=(96, 96, 3), weights=None), seeded, quantized to full int8 by tinygen's front end with
seeded calibration data, cached in $TINYGEN_BENCH_CACHE or <tmp>/tinygen_bench_cache):

- instructions per inference (QEMU -icount shift=0 and SysTick: a proxy for cycles, not cycles) on
  each board for each kernel set, with the ratios generated / cmsis-nn (the cmsis-nn set measures
  the same as TFLite Micro + CMSIS-NN, so that is the ratio to TFLM) and portable / cmsis-nn;
- flash per model and set: code (.text of every object) and all of flash (code + constants);
- per layer (mps2-an505, the firmware's profile marks): op, kernel chosen by the generated set,
  MACs, instructions per set, MACs per instruction;
- cycle-weighted counts (benchmarks/cycletrace.py: QEMU's block trace classed per instruction with
  Cortex-M TRM weights) of one inference per model, set and board, whose plain total is checked
  against the firmware's own count (within 1%).

Every run must print the self-test's match (outputs equal to TFLite's BUILTIN_REF reference, every
embedded vector): a mismatch, a failed build or a trace that disagrees by more than 1% is a failure,
printed when it happens and again at the end (the other runs still go on; exit code 1).
Goals of issue 11 (generated / cmsis-nn on mps2-an505): KWS, ResNet-8, MobileNet <= 0.65, AD <=
467,000 instructions; printed, not enforced (speed goals live here, not in timed tests).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import cycletrace  # noqa: E402

from tinygen import boards, driver, project, qemu, toolchain  # noqa: E402
from tinygen.errors import TinygenError  # noqa: E402

SHARED = ROOT.parent / "shared" / "models" / "mlperf-tiny"
MODELS = {"KWS": SHARED / "kws_ref_model.tflite", "ResNet-8": SHARED / "pretrainedResnet_quant.tflite",
          "AD": SHARED / "ad01_int8.tflite", "MobileNet": None}
SETS = ("generated", "cmsis-nn", "portable")
BOARDS = ("mps2-an505", "mps2-an386")
CORE = {"mps2-an505": "cortex-m33", "mps2-an386": "cortex-m4"}
GOALS = {"KWS": 0.65, "ResNet-8": 0.65, "MobileNet": 0.65}
AD_GOAL = 467_000


class BenchError(Exception):
    """A run that must stop the benchmark (build failure, wrong output, trace disagreement)."""


def cache_dir() -> Path:
    d = Path(os.environ.get("TINYGEN_BENCH_CACHE") or Path(tempfile.gettempdir()) / "tinygen_bench_cache")
    d.mkdir(parents=True, exist_ok=True)
    return d


def mobilenet_tflite(seed: int = 0, log=print) -> bytes:
    """MobileNetV1-0.25 96x96 (1000 classes, batch 1) with seeded random weights, full int8 through tinygen's
    front end with 32 seeded calibration images in [-1, 1]; built once, then read from the cache."""
    path = cache_dir() / f"mobilenet_v1_025_96_b1_he_seed{seed}.tflite"
    if path.is_file():
        return path.read_bytes()
    import numpy as np
    import tf_keras

    from tinygen import frontend

    log(f"building MobileNetV1-0.25 96x96 (random weights, seed {seed}) into {path} ...")
    tf_keras.utils.set_random_seed(seed)
    # batch 1 fixed: with a free batch the classifier's Reshape converts to SHAPE/STRIDED_SLICE/PACK ops
    m = tf_keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 3), weights=None,
                                        input_tensor=tf_keras.Input((96, 96, 3), batch_size=1))
    # Keras' default initialisation shrinks the activations layer after layer (the logits end near 1e-6, too
    # small for an int8 SOFTMAX): He-scaled kernels and batch-norm statistics drawn from the same seed instead.
    rng = np.random.default_rng(seed)
    for layer in m.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if isinstance(layer, tf_keras.layers.BatchNormalization):  # gamma, beta, moving mean, moving variance
            g, b, mu, var = (w.shape for w in ws)
            ws = [rng.uniform(0.5, 1.5, g), rng.uniform(-0.2, 0.2, b), rng.uniform(-0.2, 0.2, mu),
                  rng.uniform(0.5, 1.5, var)]
        else:
            k = ws[0]
            fan_in = k.shape[0] * k.shape[1] * (1 if isinstance(layer, tf_keras.layers.DepthwiseConv2D) else k.shape[2])
            ws = [rng.normal(0, (2.0 / fan_in) ** 0.5, k.shape)] + [np.zeros_like(w) for w in ws[1:]]
        layer.set_weights([w.astype(np.float32) for w in ws])
    with tempfile.TemporaryDirectory(prefix="tg_mnet_") as tmp:
        h5, calib = Path(tmp) / "mobilenet_v1_025_96.h5", Path(tmp) / "calib.npz"
        m.save(h5)
        x = np.random.default_rng(seed).uniform(-1, 1, (32, 96, 96, 3)).astype(np.float32)
        np.savez(calib, x=x)
        buf, _ = frontend.load(str(h5), str(calib), log=lambda s: None)
    tmp_path = path.with_suffix(".part")
    tmp_path.write_bytes(buf)
    tmp_path.replace(path)
    return buf


def load_model(name: str, log=print) -> bytes:
    p = MODELS[name]
    if p is None:
        return mobilenet_tflite(log=log)
    if not p.is_file():
        raise BenchError(f"{p} not found (the shared MLPerf Tiny models sit in ../shared/models/mlperf-tiny)")
    return p.read_bytes()


def for_board(c, board):
    """The compiled model rendered for another board of the same feature set (only the manifest's board differs)."""
    c2 = copy.copy(c)
    c2.board_name = board.name
    c2.emitted = copy.copy(c.emitted)
    c2.emitted.manifest = {**c.emitted.manifest, "board": board.name}
    return c2


def run_one(c, board, work: Path, weighted: bool) -> dict:
    """Builds and runs one firmware: instructions, layers, flash and (optionally) the weighted count."""
    out = work / f"{c.name}-{c.backend}-{board.name}"
    project.write(out, driver.board_project(for_board(c, board), board))
    info = toolchain.make_firmware(out, c.link, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=900)
    if not (r.ok and r.match):
        raise BenchError(f"{c.name} --backend {c.backend} on {board.name}: the output is NOT bit-exact with the "
                         f"TFLite reference ({r.matched} of {r.vectors} vectors match): "
                         + ("; ".join(r.mismatches) or r.output[-300:]))
    row = {"instructions": r.instructions, "layers": [(ly.name, ly.instructions) for ly in r.layers],
           "code": info.code_bytes, "flash": info.flash_bytes, "text": info.text, "matched": r.matched,
           "vectors": r.vectors}
    if weighted:
        t0 = time.time()
        try:
            w = cycletrace.weighted_run(info.elf, board)
        except RuntimeError as e:
            raise BenchError(f"{c.name} {c.backend} {board.name}: weighted count: {e}") from None
        diff = (w.instructions - r.instructions) / r.instructions
        if abs(diff) > 0.01:
            raise BenchError(f"{c.name} {c.backend} {board.name}: the block trace counts {w.instructions:,} "
                             f"instructions, the firmware {r.instructions:,} ({diff:+.2%}): over 1%")
        row.update(trace_instructions=w.instructions, trace_diff=diff, cycles=w.cycles, classes=dict(w.classes),
                   trace_s=round(time.time() - t0, 1))
    return row


def _one_line(e: BaseException) -> str:
    """The error in one line; of a compiler's output only its first line and its error lines."""
    lines = str(e).splitlines() or [""]
    errs = [ln.strip() for ln in lines[1:] if " error: " in ln or ln.startswith("make: ***")]
    return f"{type(e).__name__}: {' '.join((lines[0] + ' ' + ' | '.join(errs[:3])).split())}"[:900]


def measure(names, board_names, weighted: bool, log=print) -> tuple[dict, list[str]]:
    """Every model x set x board; a failure is recorded (and printed at once), the others still run."""
    res: dict = {}
    failures: list[str] = []
    bl = [boards.load_board(b) for b in board_names]
    with tempfile.TemporaryDirectory(prefix="tg_speed_") as tmp:
        for name in names:
            try:
                buf = load_model(name, log)
            except (BenchError, TinygenError) as e:
                failures.append(f"{name}: the model: {_one_line(e)}")
                log(f"  {name}: FAILED: {failures[-1]}")
                continue
            res[name] = {"sets": {}, "kernels": {}, "macs": 0, "layer_macs": [], "layer_ops": []}
            for kset in SETS:
                t0 = time.time()
                per = res[name]["sets"].setdefault(kset, {})
                arch = bl[0].arch_features
                try:
                    c = driver.compile_model(buf, name.replace("-", "_"), kset, arch, board_name=bl[0].name)
                except TinygenError as e:
                    failures.append(f"{name} --backend {kset}: compile: {_one_line(e)}")
                    log(f"  {name:9} {kset:9}: FAILED: {failures[-1]}")
                    continue
                res[name]["macs"] = sum(c.macs)
                res[name]["layer_macs"] = [c.macs[ly.op_index] for ly in c.emitted.layers]
                res[name]["layer_ops"] = [ly.kind for ly in c.emitted.layers]
                res[name]["kernels"][kset] = [ly.kernel for ly in c.emitted.layers]
                for b in bl:
                    try:
                        cb = c if b.arch_features == arch else driver.compile_model(
                            buf, name.replace("-", "_"), kset, b.arch_features, board_name=b.name)
                        per[b.name] = run_one(cb, b, Path(tmp), weighted)
                    except (BenchError, TinygenError) as e:
                        failures.append(f"{name} --backend {kset} on {b.name}: {_one_line(e)}")
                        log(f"  {name:9} {kset:9} {b.name}: FAILED: {failures[-1]}")
                        continue
                    n = per[b.name]["instructions"]
                    wtxt = (f", weighted {per[b.name]['cycles'][CORE[b.name]]:,} cycles (trace "
                            f"{per[b.name]['trace_diff']:+.3%})" if weighted else "")
                    log(f"  {name:9} {kset:9} {b.name}: {n:>12,} instructions{wtxt}, bit-exact "
                        f"({per[b.name]['matched']}/{per[b.name]['vectors']} vectors) [{time.time() - t0:.0f} s]")
    return res, failures


def _get(m: dict, kset: str, board: str) -> dict:
    return m["sets"].get(kset, {}).get(board) or {}


def _r(a, b) -> str:
    return f"{a / b:.3f}" if a and b else "-"


def _n(x) -> str:
    return f"{x:,}" if x else "FAIL"


def report(res: dict, board_names, weighted: bool, out=print) -> None:
    for bname in board_names:
        out(f"\ninstructions per inference on {bname} ({CORE[bname]}; QEMU -icount: instructions, a proxy for cycles)")
        hdr = (f"{'model':10}{'MACs':>12}{'generated':>13}{'cmsis-nn':>13}{'portable':>13}{'gen/nn':>8}"
               f"{'port/nn':>8}{'MAC/ins gen':>12}{'MAC/ins nn':>11}")
        out(hdr)
        out("-" * len(hdr))
        for name, m in res.items():
            n = {k: _get(m, k, bname).get("instructions") for k in SETS}
            mi = {k: f"{m['macs'] / n[k]:.3f}" if n[k] and m["macs"] else "-" for k in SETS}
            out(f"{name:10}{m['macs']:>12,}" + "".join(f"{_n(n[k]):>13}" for k in SETS)
                + f"{_r(n['generated'], n['cmsis-nn']):>8}{_r(n['portable'], n['cmsis-nn']):>8}"
                f"{mi['generated']:>12}{mi['cmsis-nn']:>11}")
    out("\nflash bytes per model and kernel set: code (.text of every object) / all flash (code + weights + data)")
    out(f"{'model':10}{'set':11}" + "".join(f"{b + ' code':>20}{'flash':>11}" for b in board_names))
    for name, m in res.items():
        for k in SETS:
            out(f"{name:10}{k:11}" + "".join(f"{_n(_get(m, k, b).get('code')):>20}{_n(_get(m, k, b).get('flash')):>11}"
                                             for b in board_names))
    b0 = board_names[0]
    for name, m in res.items():
        out(f"\nper layer, {name} on {b0} (profile marks; instructions): kernel = the generated set's choice")
        hdr = (f"{'#':>3} {'op':18}{'MACs':>10}{'generated':>11}{'cmsis-nn':>11}{'portable':>11}{'gen/nn':>7}"
               f"{'MAC/i gen':>10}{'MAC/i nn':>9}{'MAC/i port':>11}  kernel")
        out(hdr)
        out("-" * len(hdr))
        lay = {k: _get(m, k, b0).get("layers", []) for k in SETS}
        kern = m["kernels"].get("generated", [])
        for i, (op, macs) in enumerate(zip(m["layer_ops"], m["layer_macs"])):
            v = {k: (lay[k][i][1] if i < len(lay[k]) else None) for k in SETS}

            def mi(x):
                return f"{macs / x:.3f}" if x and macs else "-"
            out(f"{i:>3} {op[:18]:18}{macs:>10,}" + "".join(f"{_n(v[k]):>11}" for k in SETS)
                + f"{_r(v['generated'], v['cmsis-nn']):>7}{mi(v['generated']):>10}{mi(v['cmsis-nn']):>9}"
                f"{mi(v['portable']):>11}  {kern[i] if i < len(kern) else '-'}")
    if weighted:
        out("\ncycle-weighted counts of one inference (QEMU block trace, benchmarks/cycletrace.py; weights per class: "
            "load 2, LDM/STM/PUSH/POP/LDRD/STRD 1+N, taken branch 3 (1 + refill 2), not taken 1, MUL/MLA/SMLAD/"
            "SMLAL/UMULL 1, SDIV/UDIV 12, other 1; 'b2' = taken branch 2)")
        hdr = (f"{'model':10}{'board':12}{'set':11}{'instr (trace)':>14}{'firmware':>12}{'diff':>8}{'cycles':>13}"
               f"{'cyc/ins':>8}{'gen/nn ins':>11}{'gen/nn cyc':>11}{'gen/nn b2':>10}")
        out(hdr)
        out("-" * len(hdr))
        for name, m in res.items():
            for b in board_names:
                core = CORE[b]
                g, nn = _get(m, "generated", b), _get(m, "cmsis-nn", b)
                for k in SETS:
                    s = _get(m, k, b)
                    if not s:
                        out(f"{name:10}{b:12}{k:11}{'FAIL':>14}")
                        continue
                    cyc = s["cycles"][core]
                    ratios = ""
                    if k == "generated" and g and nn:
                        ratios = (f"{_r(g['instructions'], nn['instructions']):>11}"
                                  f"{_r(g['cycles'][core], nn['cycles'][core]):>11}"
                                  f"{_r(g['cycles'][core + '-b2'], nn['cycles'][core + '-b2']):>10}")
                    out(f"{name:10}{b:12}{k:11}{s['trace_instructions']:>14,}{s['instructions']:>12,}"
                        f"{s['trace_diff']:>+8.3%}{cyc:>13,}{cyc / s['trace_instructions']:>8.3f}{ratios}")
        out(f"\ninstruction classes per inference (trace), {b0}: share of instructions")
        short = {"branch_taken": "br taken", "branch_not_taken": "br not"}
        out(f"{'model':10}{'set':11}" + "".join(f"{short.get(c, c):>10}" for c in cycletrace.CLASSES))
        for name, m in res.items():
            for k in SETS:
                cl = _get(m, k, b0).get("classes")
                if cl:
                    tot = sum(cl.values())
                    out(f"{name:10}{k:11}" + "".join(f"{cl.get(c, 0) / tot:>10.1%}" for c in cycletrace.CLASSES))
    out(f"\ngoals (issue 11, generated / cmsis-nn on {b0}, instructions"
        + ("; weighted cycles alongside" if weighted else "") + "):")
    for name, m in res.items():
        g, nn = _get(m, "generated", b0), _get(m, "cmsis-nn", b0)
        if not g or not nn:
            out(f"  {name}: not measured (a run failed)")
        elif name == "AD":
            out(f"  AD: {g['instructions']:,} instructions (goal <= {AD_GOAL:,}): "
                f"{'met' if g['instructions'] <= AD_GOAL else 'NOT met'}")
        elif name in GOALS:
            ri = g["instructions"] / nn["instructions"]
            wtxt = ""
            if weighted:
                core = CORE[b0]
                wtxt = f", weighted {g['cycles'][core] / nn['cycles'][core]:.3f}"
            out(f"  {name}: {ri:.3f}{wtxt} (goal <= {GOALS[name]}): {'met' if ri <= GOALS[name] else 'NOT met'}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, of {', '.join(MODELS)}")
    ap.add_argument("--boards", default=",".join(BOARDS))
    ap.add_argument("--no-weighted", action="store_true", help="skip the block-trace cycle-weighted counts")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    a = ap.parse_args(argv)
    names = [n for n in a.models.split(",") if n]
    bad = [n for n in names if n not in MODELS]
    if bad:
        print(f"speed: error: unknown model {bad[0]!r}; choose from {', '.join(MODELS)}", file=sys.stderr)
        return 2
    if not os.environ.get("CMSIS_NN_PATH"):
        print("speed: error: set CMSIS_NN_PATH to CMSIS-NN v7.0.0 (e.g. ../shared/deps/CMSIS-NN-7.0.0): the cmsis-nn "
              "set is the baseline", file=sys.stderr)
        return 2
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if not toolchain.have_tool(tool):
            print(f"speed: error: {tool} not found: {toolchain.INSTALL[tool]}", file=sys.stderr)
            return 2
    board_names = [b for b in a.boards.split(",") if b]
    if not board_names or any(b not in CORE for b in board_names):
        print(f"speed: error: --boards {a.boards!r}: choose from {', '.join(CORE)} (the emulated boards whose "
              "core has cycle weights)", file=sys.stderr)
        return 2
    t0 = time.time()
    res, failures = measure(names, board_names, not a.no_weighted, log=lambda s: print(s, flush=True))
    report(res, board_names, not a.no_weighted)
    print(f"\nspeed: {time.time() - t0:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"results": res, "failures": failures}, indent=1) + "\n")
    if failures:
        print(f"\nspeed: FAILED: {len(failures)} run(s) failed:", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
