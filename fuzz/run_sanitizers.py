"""Generated C under AddressSanitizer + UndefinedBehaviorSanitizer, with the arena guard words.

Every test model (the 3 shared int8 .tflite models, a VWW-class MobileNetV1-0.25 96x96, every
case of tests/opnets.py OPNET_CASES) is compiled with every kernel set (generated, portable,
cmsis-nn), built on the host with ``SAN_CFLAGS`` (the CMSIS-NN library too, when
``CMSIS_NN_PATH`` is set) and run on random inputs; the outputs must still equal the TFLite
reference byte for byte and the sanitizers must stay silent. Prints a table model/backend/result;
exits 1 if any row failed.

    .venv/bin/python fuzz/run_sanitizers.py                  # everything (portable; + cmsis-nn with CMSIS_NN_PATH)
    .venv/bin/python fuzz/run_sanitizers.py --quick          # 6 opnets + 1 shared model
    .venv/bin/python fuzz/run_sanitizers.py -k conv --backend portable -n 20
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SAN_CFLAGS = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -DTG_ARENA_GUARD"
SAN_ENV = {"ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:halt_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
# CMSIS-NN v7.0.0 itself left-shifts negative values (arm_nnsupportfunctions.h:1831,
# arm_nn_exp_on_negative_values, used by arm_softmax_s8): undefined in C, arithmetic in gcc.
# Waived for the cmsis-nn backend only, and said so in the table; the portable run keeps every check.
CMSIS_WAIVER = "-fno-sanitize=shift-base"
SHARED = ROOT.parent / "shared" / "models" / "mlperf-tiny"
SHARED_MODELS = ["kws_ref_model.tflite", "ad01_int8.tflite", "pretrainedResnet_quant.tflite"]
QUICK = ["conv_3x3_s2_same_relu", "dw_5x5_s2_same_relu6_m3", "fc_rows", "avgpool_3x3_s2_same", "add_bcast_hw",
         "softmax_rows", "mean_odd", "pad_hwc", "concat_width3", "quant_io", "kws_ref_model"]


VWW = "vww_mobilenet_025_96"


def vww_model() -> bytes:
    """A VWW-class model: MobileNetV1-0.25 96x96 + Dense(10), full int8, random weights
    (benchmarks/arena_mobilenet.py builds it with Keras), converted once and cached on disk."""
    from opnets import cache_dir

    p = cache_dir() / f"{VWW}-v1.tflite"
    if not p.is_file():
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from arena_mobilenet import mobilenet_025_96

        tmp = p.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(mobilenet_025_96())
        tmp.replace(p)
    return p.read_bytes()


def models(quick: bool = False, pattern: str = "") -> list[tuple[str, callable]]:
    """(name, () -> int8 tflite bytes) for every test model."""
    from opnets import OPNET_CASES, make_opnet

    out = []
    for name in SHARED_MODELS:
        if (SHARED / name).exists():
            out.append((name.removesuffix(".tflite"), lambda p=SHARED / name: p.read_bytes()))
    out.append((VWW, vww_model))
    for case_id, kind, spec in OPNET_CASES:
        out.append((case_id, lambda k=kind, s=spec: make_opnet(k, **s)))
    if quick:
        out = [m for m in out if m[0] in QUICK]
    return [m for m in out if pattern in m[0]]


def backends() -> list[str]:
    """Every kernel set: generated (falling back to CMSIS-NN with CMSIS_NN_PATH), portable, cmsis-nn."""
    return ["generated", "portable", "cmsis-nn"] if os.environ.get("CMSIS_NN_PATH") else ["generated", "portable"]


def flags_for(link: str) -> str:
    """The sanitizer flags of a build linking ``link``: CMSIS_WAIVER only when CMSIS-NN is in."""
    return SAN_CFLAGS + (f" {CMSIS_WAIVER}" if link == "cmsis-nn" else "")


def check(buf: bytes, name: str, backend: str, work: Path, n_inputs: int = 10, seed: int = 11,
          cflags: str | None = None) -> str:
    """Build ``buf`` with the sanitizers (default :func:`flags_for` what the build links) and
    compare with the reference; returns 'ok' or raises."""
    from tinygen import driver, hostbuild, project, reference

    c = driver.compile_model(buf, name, backend, arch="none")
    cflags = flags_for(c.link) if cflags is None else cflags
    out = work / f"{name}-{backend}"
    project.write(out, driver.host_project(c))
    exe = hostbuild.build(out, backend, extra_cflags=cflags, cflags="-O1 -g")
    x = reference.random_inputs(buf, n_inputs, seed=seed)
    want = reference.pack(reference.run(buf, x))
    got = hostbuild.run(exe, reference.pack(x))  # non-zero exit (a sanitizer report) raises ToolchainError
    bad = (got != want).nonzero()
    if len(bad[0]):
        raise AssertionError(f"{len(bad[0])} bytes differ from the TFLite reference (first: sample {bad[0][0]}, byte {bad[1][0]})")
    return "ok"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a small subset (for CI smoke runs)")
    ap.add_argument("-k", default="", help="only models whose name contains this")
    ap.add_argument("--backend", choices=["generated", "portable", "cmsis-nn"],
                    help="one kernel set (default: generated and portable, + cmsis-nn with CMSIS_NN_PATH)")
    ap.add_argument("-n", type=int, default=10, help="random inputs per model (default 10)")
    a = ap.parse_args(argv)
    os.environ.update({k: v for k, v in SAN_ENV.items() if k not in os.environ})
    rows, failed = [], 0
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="tinygen-san-") as d:
        for name, get in models(a.quick, a.k):
            for backend in [a.backend] if a.backend else backends():
                t = time.time()
                try:
                    result = check(get(), name, backend, Path(d), a.n)
                    if backend == "cmsis-nn" or (backend == "generated" and os.environ.get("CMSIS_NN_PATH")):
                        result += f" ({CMSIS_WAIVER} when CMSIS-NN is linked: CMSIS-NN's own shift)"
                except Exception as e:  # noqa: BLE001 - every failure is a row of the table
                    failed += 1
                    result = f"FAIL {type(e).__name__}: {' '.join(str(e).split())[:300]}"
                rows.append((name, backend, result, time.time() - t))
                print(f"{name:<32} {backend:<9} {rows[-1][3]:6.1f}s  {result}", flush=True)
    print("\n| model | backend | result |\n|---|---|---|")
    for name, backend, result, _ in rows:
        print(f"| {name} | {backend} | {result} |")
    print(f"\n{len(rows) - failed}/{len(rows)} clean under {SAN_CFLAGS} ({time.time() - t0:.0f} s)")
    return 1 if failed or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
