"""Planned arena and instructions per inference, per model and kernel set, in one run.

    CMSIS_NN_PATH=... python benchmarks/arena_vs_tflm.py [--no-qemu] [--board mps2-an505]

Per model (the MLPerf Tiny KWS / ResNet-8 / AD and a MobileNetV1-0.25 96x96 with random weights):

- ``bound``: the live-set lower bound of a tensor-level planner (the most bytes of tensors live at one
  step, every tensor whole until its last reader; no scratch);
- per kernel set (generated = the default, cmsis-nn, portable): tinygen's arena with whole tensors
  and with overlaps (an op's output over the consumed part of a dying input, at the distance its
  kernel's access contract allows, :mod:`tinygen.overlap`); tinygen's arena holds every activation,
  the input and output and the kernels' scratch, no persistent structures;
- TFLite Micro's whole arena (head: tensors + scratch, tail: persistent structures) and ST X-CUBE-AI's
  published activation pool (U575, I/O included; none published for the MobileNet);
- instructions per inference under QEMU (``-icount shift=0``: instructions, a proxy for cycles), for
  the generated set: ``speed`` = kernels chosen for speed, whole tensors (the previous default);
  ``same`` = the kernels the overlap plan runs, with whole tensors; ``overlap`` = the default build.
  Every firmware's self-test must match the TFLite reference. The arena-driven kernel choice
  (:func:`tinygen.overlap_plan.trade`) may cost at most 3% estimated instructions.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tinygen import boards, driver, frontend, overlap_plan, plan, project, qemu, toolchain  # noqa: E402
from tinygen.analyze import tflm_arena  # noqa: E402

MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"
XCUBE = {"kws_ref_model": 28572, "pretrainedResnet_quant": 63912, "ad01_int8": 6544}  # ST X-CUBE-AI, U575, I/O incl.
NAMES = ("kws_ref_model", "pretrainedResnet_quant", "ad01_int8", "mobilenet_025_96")


def model_bytes(name: str) -> bytes:
    if name == "mobilenet_025_96":
        from arena_mobilenet import mobilenet_025_96

        return mobilenet_025_96()
    return frontend.load(MODELS / f"{name}.tflite", log=lambda m: None)[0]


def live_set_bound(g) -> int:
    """Most bytes of whole tensors live at one step (tensor-level lower bound, no scratch)."""
    rng = plan.live_ranges(g)
    steps = {s for s, _ in rng.values()} | {e for _, e in rng.values()}
    return max(sum(g.t(r).nbytes for r, (s, e) in rng.items() if s <= t <= e) for t in steps)


@contextmanager
def mode(which: str):
    """``overlap`` (the default build), ``whole`` (whole tensors, kernels chosen for speed alone: the
    arena-driven choice off), ``budget=<x>`` (the default build with that trade budget) or ``same`` (the kernels the overlap build chose, planned with whole tensors)."""
    orig_plan, orig_trade = plan.plan, overlap_plan.trade
    if which == "whole":
        plan.plan = functools.partial(orig_plan, overlap=False)
        overlap_plan.trade = lambda g, calls, plan_fn, regen, **kw: (calls, plan_fn(g, calls))
    elif which.startswith("budget="):
        b = float(which.split("=")[1])
        overlap_plan.trade = lambda g, calls, plan_fn, regen, **kw: orig_trade(g, calls, plan_fn, regen, budget=b)
    elif which == "same":
        def same(g, calls, plan_fn, regen, **kw):
            calls, _ = orig_trade(g, calls, plan_fn, regen, **kw)
            return calls, orig_plan(g, calls, overlap=False)

        overlap_plan.trade = same
    try:
        yield
    finally:
        plan.plan, overlap_plan.trade = orig_plan, orig_trade


def compiled(buf: bytes, name: str, kset: str, which: str, board=None):
    arch = board.arch_features if board is not None else ("none" if kset == "portable" else "dsp")
    with mode(which):
        if board is None:
            return driver.compile_model(buf, name, kset, arch, stop_after="plan")
        return driver.compile_model(buf, name, kset, arch, board_name=board.name)


def instructions(buf: bytes, name: str, kset: str, which: str, board, tmp: Path) -> int:
    c = compiled(buf, name, kset, which, board)
    out = tmp / f"{name}-{kset}-{which}"
    project.write(out, driver.board_project(c, board))
    info = toolchain.make_firmware(out, kset, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=900)
    if not (r.ok and r.match):
        raise SystemExit(f"{name}/{kset}/{which}: the self-test does not match the reference")
    return int(r.instructions or 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-qemu", action="store_true", help="arena only (no firmware builds)")
    ap.add_argument("--board", default="mps2-an505")
    ap.add_argument("--models", default=",".join(NAMES))
    args = ap.parse_args()
    board = boards.load_board(args.board)
    ksets = ["generated"] + (["cmsis-nn"] if os.environ.get("CMSIS_NN_PATH") else []) + ["portable"]
    rows, speed = [], []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models.split(","):
            buf = model_bytes(name)
            t = tflm_arena(buf)
            arenas = {}
            for kset in ksets:
                c = compiled(buf, name, kset, "overlap")
                whole = plan.plan(c.graph, c.calls, overlap=False).arena_size if kset != "generated" else \
                    compiled(buf, name, kset, "whole").plan.arena_size
                arenas[kset] = (whole, c.plan.arena_size)
                bound = live_set_bound(c.graph)
            rows.append((name, bound, arenas, t["total"], XCUBE.get(name)))
            if not args.no_qemu:
                n = {w: instructions(buf, name, "generated", w, board, Path(d)) for w in ("whole", "same", "overlap")}
                speed.append((name, n))
            print(f"done {name}", file=sys.stderr, flush=True)
    cols = "".join(f"{k + ' whole':>16}{k:>11}" for k in ksets)
    hdr = f"{'model':<24}{'bound':>8}{cols}{'TFLM':>9}{'X-CUBE':>9}{'gen/bound':>10}{'gen/TFLM':>9}{'gen/X-CUBE':>11}"
    print(hdr)
    print("-" * len(hdr))
    for name, bound, arenas, tflm, xc in rows:
        a = "".join(f"{w:>16,}{o:>11,}" for w, o in (arenas[k] for k in ksets))
        g = arenas["generated"][1]
        xs = f"{xc:>9,}" if xc else f"{'-':>9}"
        xr = f"{g / xc:>11.2f}" if xc else f"{'-':>11}"
        print(f"{name:<24}{bound:>8,}{a}{tflm:>9,}{xs}{g / bound:>10.2f}{g / tflm:>9.2f}{xr}")
    print("\nbound: live-set lower bound of whole tensors; gen = generated set (default) with overlaps; ratios of bytes.")
    if speed:
        print(f"\n{'model':<24}{'instr speed/whole':>18}{'instr same/whole':>18}{'instr overlap':>15}"
              f"{'overlap/same':>13}{'overlap/speed':>14}")
        for name, n in speed:
            print(f"{name:<24}{n['whole']:>18,}{n['same']:>18,}{n['overlap']:>15,}"
                  f"{n['overlap'] / n['same']:>13.4f}{n['overlap'] / n['whole']:>14.4f}")
        print(f"\ninstructions per inference, generated set, QEMU {board.name} -icount (a proxy for cycles): "
              "overlap/same = the cost of overlapping buffers with the same kernels; overlap/speed = the default "
              "build against kernels chosen for speed alone with whole tensors.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
