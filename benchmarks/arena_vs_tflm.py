"""Planned arena: tinygen vs TFLite Micro, side by side, on the shared MLPerf Tiny models.

    python benchmarks/arena_vs_tflm.py

TFLM's figure is its whole arena (head: tensors + scratch; tail: persistent structures).
tinygen's arena holds every activation, the input and output, and the backend scratch;
it has no persistent structures (parameters live in flash). "whole" is tinygen's plan with every
tensor kept whole until its last reader (the tensor-level bound); the other tinygen columns let an
op's output overlap a dying input at its kernel's safe distance (access contracts, tinygen.overlap).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tflm import tflm_arena  # noqa: E402

from tinygen import driver, frontend, plan  # noqa: E402

MODELS = Path(__file__).resolve().parents[2] / "shared" / "models" / "mlperf-tiny"
XCUBE = {"kws_ref_model": 28572, "pretrainedResnet_quant": 63912, "ad01_int8": 6544}  # ST X-CUBE-AI, U575, I/O incl.


def main() -> int:
    rows = []
    for name in ("kws_ref_model", "pretrainedResnet_quant", "ad01_int8"):
        path = MODELS / f"{name}.tflite"
        if not path.exists():
            print(f"skip {name}: {path} not found")
            continue
        buf, _ = frontend.load(path, log=lambda m: None)
        cp = driver.compile_model(buf, name, "portable")
        cc = driver.compile_model(buf, name, "cmsis-nn", arch="dsp")
        port, cmsis = cp.plan.arena_size, cc.plan.arena_size
        port0 = plan.plan(cp.graph, cp.calls, overlap=False).arena_size
        cmsis0 = plan.plan(cc.graph, cc.calls, overlap=False).arena_size
        t = tflm_arena(buf)
        rows.append((name, port0, port, cmsis0, cmsis, t["head"], t["total"], XCUBE[name]))
    hdr = f"{'model':<24}{'portable whole':>15}{'portable':>10}{'cmsis-nn whole':>15}{'cmsis-nn':>10}" \
          f"{'TFLM head':>11}{'TFLM total':>12}{'ours/TFLM':>10}{'X-CUBE-AI':>11}{'ours/X-CUBE':>12}"
    print(hdr)
    print("-" * len(hdr))
    for name, port0, port, cmsis0, cmsis, head, total, xc in rows:
        print(f"{name:<24}{port0:>15,}{port:>10,}{cmsis0:>15,}{cmsis:>10,}{head:>11,}{total:>12,}"
              f"{cmsis / total:>10.2f}{xc:>11,}{cmsis / xc:>12.2f}")
    print("\nours/TFLM = tinygen cmsis-nn arena / TFLM total arena (bytes); below 1.00 means smaller.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
