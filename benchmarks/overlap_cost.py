"""Arena and instructions per inference with and without overlapping buffers (same kernels, same run).

    CMSIS_NN_PATH=... python benchmarks/overlap_cost.py [--board mps2-an505]

Each shared model is compiled twice per kernel set: the normal plan (overlaps chosen from the kernels'
access contracts) and the whole-tensor plan (``plan.plan(..., overlap=False)``); both are built for the
emulated board and run under QEMU (``-icount shift=0``: instructions, a proxy for cycles). The self-test
must match the TFLite reference in both. Prints arena bytes and instructions per inference. For the
generated set, whole tensors also means kernels chosen for speed alone (the arena-driven choice has
nothing to gain); benchmarks/arena_vs_tflm.py separates the two.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinygen import boards, driver, frontend, plan, project, qemu, toolchain  # noqa: E402

MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"


def _run(buf: bytes, name: str, kset: str, board, overlap: bool, tmp: Path) -> tuple[int, int]:
    orig = plan.plan
    plan.plan = functools.partial(orig, overlap=overlap)
    try:
        c = driver.compile_model(buf, name, kset, board.arch_features, board_name=board.name)
    finally:
        plan.plan = orig
    out = tmp / f"{name}-{kset}-{overlap}"
    project.write(out, driver.board_project(c, board))
    info = toolchain.make_firmware(out, kset, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=300)
    if not (r.ok and r.match):
        raise SystemExit(f"{name}/{kset} overlap={overlap}: the self-test does not match the reference")
    return c.plan.arena_size, int(r.instructions or 0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="mps2-an505")
    args = ap.parse_args()
    board = boards.load_board(args.board)
    ksets = ["generated", "portable"] + (["cmsis-nn"] if os.environ.get("CMSIS_NN_PATH") else [])
    print(f"{'model':<24}{'set':<10}{'arena whole':>12}{'arena':>9}{'instr whole':>13}{'instr':>13}{'delta':>8}")
    with tempfile.TemporaryDirectory() as d:
        for name in ("kws_ref_model", "pretrainedResnet_quant", "ad01_int8"):
            buf, _ = frontend.load(MODELS / f"{name}.tflite", log=lambda m: None)
            for kset in ksets:
                a0, i0 = _run(buf, name, kset, board, False, Path(d))
                a1, i1 = _run(buf, name, kset, board, True, Path(d))
                print(f"{name:<24}{kset:<10}{a0:>12,}{a1:>9,}{i0:>13,}{i1:>13,}{(i1 - i0) / max(i0, 1):>+8.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
