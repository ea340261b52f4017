"""Generated kernels vs CMSIS-NN vs the reference, per layer shape, on the emulated Cortex-M33.

    CMSIS_NN_PATH=../shared/deps/CMSIS-NN-7.0.0 PYTHONPATH=. .venv/bin/python benchmarks/kernel_bench.py [-k NAME]

For each layer shape of KWS (DS-CNN), ResNet-8, MobileNetV1-0.25 96x96 and the AD autoencoder
(random int8 weights and input, per-channel conv / per-tensor FC quantization as the shared models),
one firmware (tinygen.kernelgen.harness, backend cmsis-nn, mps2-an505) runs the generated kernel,
the CMSIS-NN kernel the registry picks for the layer (tinygen.kernels, tg_cmsis_* adapters of
firmware/tg_backend_cmsis.c) and tg_ref_*, and checks on the target that generated == reference.
Instructions come from QEMU -icount shift=0 and SysTick (resolution 50 instructions): they are a
proxy, not cycles. ``const B`` is the flash of the kernel's constant arrays (re-laid-out weights,
bias, requantization constants; the CMSIS-NN path needs the int8 weights + bias + mult/shift),
``code B`` its machine code (arm-none-eabi-gcc -O2, cortex-m33). A cycle-weighted estimate is
benchmarks/kernel_cycles.py's job.

Part B adds its cases (DEPTHWISE_CONV_2D, pools, ADD) to CASES: (name, kind, model, builder args).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinygen.kernelgen import conv, dwconv, eltwise, fc, harness, pool  # noqa: E402

# name, kind, model, kwargs for harness.conv_case / harness.fc_case (times: how many such layers in the model)
CASES = [
    # KWS DS-CNN (49x10 MFCC input)
    ("kws_conv1", "CONV_2D", "KWS", dict(h=49, w=10, cin=1, cout=64, kh=10, kw=4, stride=2, act="RELU"), 1),
    ("kws_pw", "CONV_2D", "KWS", dict(h=25, w=5, cin=64, cout=64, kh=1, kw=1, act="RELU"), 4),
    ("kws_fc", "FULLY_CONNECTED", "KWS", dict(in_depth=64, out_depth=12), 1),
    # ResNet-8 (CIFAR-10 32x32x3)
    ("rn_conv1", "CONV_2D", "ResNet-8", dict(h=32, w=32, cin=3, cout=16, kh=3, kw=3, act="RELU"), 1),
    ("rn_3x3_16", "CONV_2D", "ResNet-8", dict(h=32, w=32, cin=16, cout=16, kh=3, kw=3, act="RELU"), 2),
    ("rn_3x3_16_32s2", "CONV_2D", "ResNet-8", dict(h=32, w=32, cin=16, cout=32, kh=3, kw=3, stride=2, act="RELU"), 1),
    ("rn_3x3_32", "CONV_2D", "ResNet-8", dict(h=16, w=16, cin=32, cout=32, kh=3, kw=3), 1),
    ("rn_1x1_16_32s2", "CONV_2D", "ResNet-8", dict(h=32, w=32, cin=16, cout=32, kh=1, kw=1, stride=2,
                                                  padding="VALID"), 1),
    ("rn_3x3_32_64s2", "CONV_2D", "ResNet-8", dict(h=16, w=16, cin=32, cout=64, kh=3, kw=3, stride=2, act="RELU"), 1),
    ("rn_3x3_64", "CONV_2D", "ResNet-8", dict(h=8, w=8, cin=64, cout=64, kh=3, kw=3), 1),
    ("rn_1x1_32_64s2", "CONV_2D", "ResNet-8", dict(h=16, w=16, cin=32, cout=64, kh=1, kw=1, stride=2,
                                                  padding="VALID"), 1),
    ("rn_fc", "FULLY_CONNECTED", "ResNet-8", dict(in_depth=64, out_depth=10), 1),
    # MobileNetV1-0.25 96x96: first conv and the pointwise convs
    ("mn_conv1", "CONV_2D", "MobileNet", dict(h=96, w=96, cin=3, cout=8, kh=3, kw=3, stride=2, act="RELU6"), 1),
    ("mn_pw_8_16", "CONV_2D", "MobileNet", dict(h=48, w=48, cin=8, cout=16, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_16_32", "CONV_2D", "MobileNet", dict(h=24, w=24, cin=16, cout=32, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_32_32", "CONV_2D", "MobileNet", dict(h=24, w=24, cin=32, cout=32, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_32_64", "CONV_2D", "MobileNet", dict(h=12, w=12, cin=32, cout=64, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_64_64", "CONV_2D", "MobileNet", dict(h=12, w=12, cin=64, cout=64, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_64_128", "CONV_2D", "MobileNet", dict(h=6, w=6, cin=64, cout=128, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_128_128", "CONV_2D", "MobileNet", dict(h=6, w=6, cin=128, cout=128, kh=1, kw=1, act="RELU6"), 5),
    ("mn_pw_128_256", "CONV_2D", "MobileNet", dict(h=3, w=3, cin=128, cout=256, kh=1, kw=1, act="RELU6"), 1),
    ("mn_pw_256_256", "CONV_2D", "MobileNet", dict(h=3, w=3, cin=256, cout=256, kh=1, kw=1, act="RELU6"), 1),
    # AD autoencoder (640 -> 128 x4 -> 8 -> 128 x4 -> 640)
    ("ad_640_128", "FULLY_CONNECTED", "AD", dict(in_depth=640, out_depth=128, act="RELU"), 1),
    ("ad_128_128", "FULLY_CONNECTED", "AD", dict(in_depth=128, out_depth=128, act="RELU"), 6),
    ("ad_128_8", "FULLY_CONNECTED", "AD", dict(in_depth=128, out_depth=8, act="RELU"), 1),
    ("ad_8_128", "FULLY_CONNECTED", "AD", dict(in_depth=8, out_depth=128, act="RELU"), 1),
    ("ad_128_640", "FULLY_CONNECTED", "AD", dict(in_depth=128, out_depth=640), 1),
    # part B: depthwise, pooling, ADD (tinygen.kernelgen.dwconv / pool / eltwise)
    ("kws_dw", "DEPTHWISE_CONV_2D", "KWS", dict(h=25, w=5, c=64, act="RELU"), 4),
    ("kws_avgpool", "AVERAGE_POOL_2D", "KWS", dict(h=25, w=5, c=64, fh=25, fw=5, stride_h=25, stride_w=5), 1),
    ("rn_add_16", "ADD", "ResNet-8", dict(h=32, w=32, c=16, act="RELU"), 1),
    ("rn_add_32", "ADD", "ResNet-8", dict(h=16, w=16, c=32, act="RELU"), 1),
    ("rn_add_64", "ADD", "ResNet-8", dict(h=8, w=8, c=64, act="RELU"), 1),
    ("rn_avgpool", "AVERAGE_POOL_2D", "ResNet-8", dict(h=8, w=8, c=64, fh=8, fw=8, stride_h=8, stride_w=8), 1),
    ("mn_dw_8", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=48, w=48, c=8, act="RELU6"), 1),
    ("mn_dw_16s2", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=48, w=48, c=16, stride=2, act="RELU6"), 1),
    ("mn_dw_32", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=24, w=24, c=32, act="RELU6"), 1),
    ("mn_dw_32s2", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=24, w=24, c=32, stride=2, act="RELU6"), 1),
    ("mn_dw_64", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=12, w=12, c=64, act="RELU6"), 1),
    ("mn_dw_64s2", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=12, w=12, c=64, stride=2, act="RELU6"), 1),
    ("mn_dw_128", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=6, w=6, c=128, act="RELU6"), 5),
    ("mn_dw_128s2", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=6, w=6, c=128, stride=2, act="RELU6"), 1),
    ("mn_dw_256", "DEPTHWISE_CONV_2D", "MobileNet", dict(h=3, w=3, c=256, act="RELU6"), 1),
    ("mn_avgpool", "AVERAGE_POOL_2D", "MobileNet", dict(h=3, w=3, c=256, fh=3, fw=3, stride_h=3, stride_w=3), 1),
]

FAMILIES = {"CONV_2D": (harness.conv_case, conv), "FULLY_CONNECTED": (harness.fc_case, fc),
            "DEPTHWISE_CONV_2D": (dwconv.random_layer, dwconv), "AVERAGE_POOL_2D": (pool.random_layer, pool),
            "MAX_POOL_2D": (pool.random_layer, pool),
            "ADD": (lambda rng, name, **kw: eltwise.random_layer(rng, name, kind="ADD", **kw), eltwise)}

# Cortex-M33 TRM-style weights (cycles per instruction class), for the "weighted" estimate
CYCLE_WEIGHTS = {"load": 2, "store": 1, "ldrd": 3, "strd": 2, "ldm": None, "branch": 2, "mul": 1, "other": 1}


def build_case(rng: np.random.Generator, name: str, kind: str, kw: dict) -> harness.Case:
    make, family = FAMILIES[kind]
    params, arrays, x = make(rng, name, **kw)
    reason = family.applies(kind, params, arrays, "dsp")
    if reason is not None:
        raise SystemExit(f"{name}: generated kernel does not apply: {reason}")
    gen = family.generate(kind, params, arrays, "dsp", f"tg_gen_{name}")
    return harness.Case(name, kind, params, arrays, x if isinstance(x, tuple) else (x,), gen)


def selected_cases(prog: str, k: str, seed: int):
    """(CASES rows whose name contains ``k``, their harness Cases built from one generator seeded
    ``seed``), shared with benchmarks/kernel_cycles.py; None, after a one-line error naming
    ``prog``, without CMSIS_NN_PATH (the other side of each comparison is CMSIS-NN)."""
    if not os.environ.get("CMSIS_NN_PATH"):
        print(f"{prog}: error: set CMSIS_NN_PATH (e.g. ../shared/deps/CMSIS-NN-7.0.0)", file=sys.stderr)
        return None
    rng = np.random.default_rng(seed)
    sel = [c for c in CASES if k in c[0]]
    return sel, [build_case(rng, n, kind, kw) for n, kind, _, kw, _ in sel]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("--board", default="mps2-an505")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    picked = selected_cases("kernel_bench", args.k, args.seed)
    if picked is None:
        return 2
    sel, cases = picked
    with tempfile.TemporaryDirectory(prefix="tg_kbench_") as tmp:
        res = harness.qemu_profile(cases, Path(tmp), "cmsis-nn", args.board)
    print(f"board {args.board}; instructions (QEMU -icount proxy, not cycles); generated == reference on target: "
          f"{'yes' if res and res[0]['match'] else 'NO'}")
    hdr = f"{'layer':16} {'model':9} {'x':>2} {'MACs':>9} {'generated':>10} {'cmsis-nn':>10} {'ref':>10} " \
          f"{'gen/nn':>6} {'MAC/ins':>7} {'const B':>8} {'code B':>7} variant"
    print(hdr)
    print("-" * len(hdr))
    totals: dict[str, list[float]] = {}
    M33 = ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"]
    for (name, kind, model, kw, times), c, r in zip(sel, cases, res):
        with tempfile.TemporaryDirectory(prefix="tg_kcode_") as tmp:
            code = harness.code_bytes(harness.arm_compile(c.gen.source, Path(tmp), M33))
        macs = harness.case_macs(c)
        ratio = r["gen"] / r["nn"] if r["gen"] and r["nn"] else float("nan")
        t = totals.setdefault(model, [0.0, 0.0])
        t[0] += times * (r["gen"] or 0)
        t[1] += times * (r["nn"] or 0)
        print(f"{name:16} {model:9} {times:>2} {macs:>9,} {r['gen']:>10,} {r['nn']:>10,} {r['ref']:>10,} "
              f"{ratio:>6.3f} {macs / r['gen']:>7.3f} {c.gen.const_bytes:>8,} {code:>7,} {c.gen.notes.get('variant', '')}")
    print()
    for model, (g, n) in totals.items():
        print(f"{model:9} these layers (x count): generated {g:,.0f}  cmsis-nn {n:,.0f}  ratio {g / n:.3f}")
    return 0 if res and res[0]["match"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
