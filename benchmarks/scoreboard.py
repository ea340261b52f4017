"""The tinygen scoreboard over the shared MLPerf Tiny models.

    [CMSIS_NN_PATH=/path/to/CMSIS-NN] .venv/bin/python benchmarks/scoreboard.py [--boards a,b] [--json out.json]

Per model: tinygen's planned arena against TFLite Micro's (same int8 model, tflite_micro's
allocation report) and against ST X-CUBE-AI's published activation pools on the U575
(inputs/outputs included); weights; generated code size per board (arm-none-eabi-gcc via
toolchain.make_firmware, cmsis-nn when CMSIS_NN_PATH is set, else portable); instructions
per inference on the emulated Cortex-M33 (mps2-an505, QEMU -icount: instructions, not
cycles) for both backends; MACs per instruction; build time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinygen import analyze, boards, driver, project, qemu, toolchain  # noqa: E402
from tinygen.errors import TinygenError  # noqa: E402

MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"
SHARED = ("kws_ref_model", "pretrainedResnet_quant", "ad01_int8")
SHORT = {"kws_ref_model": "KWS", "pretrainedResnet_quant": "ResNet-8", "ad01_int8": "AD"}
# ST X-CUBE-AI activation pools on the NUCLEO-U575 (published; inputs/outputs included)
XCUBE = {"kws_ref_model": 28572, "pretrainedResnet_quant": 63912, "ad01_int8": 6544}
QEMU_BOARD = "mps2-an505"


def build(buf: bytes, name: str, backend: str, board, work: Path) -> tuple:
    arch = board.arch_features if backend == "cmsis-nn" else "none"
    t0 = time.time()
    c = driver.compile_model(buf, name, backend, arch, board_name=board.name)
    out = work / f"{name}-{backend}-{board.name}"
    project.write(out, driver.board_project(c, board))
    info = toolchain.make_firmware(out, backend, board=board)
    return c, info, time.time() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--boards", help="comma-separated boards for the code-size columns (default: all)")
    ap.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = ap.parse_args(argv)
    have_gcc = toolchain.have_tool("arm-none-eabi-gcc")
    have_qemu = toolchain.have_tool("qemu-system-arm")
    backend = "cmsis-nn" if os.environ.get("CMSIS_NN_PATH") else "portable"
    board_list = [boards.load_board(b) for b in args.boards.split(",")] if args.boards else boards.all_boards()
    rows = []
    t_start = time.time()
    with tempfile.TemporaryDirectory(prefix="tg_score_") as tmp:
        for name in SHARED:
            path = MODELS / f"{name}.tflite"
            if not path.exists():
                print(f"skip {name}: {path} not found")
                continue
            buf = path.read_bytes()
            a = analyze.analyze_bytes(buf, name, backend, "dsp", boards=[])
            port = analyze.analyze_bytes(buf, name, "portable", "none", with_tflm=False, boards=[])
            row = {"model": name, "backend": backend, "arena": a.arena_bytes, "arena_portable": port.arena_bytes,
                   "lower_bound": a.arena_lower_bound, "tflm": a.tflm, "weights": a.weights_bytes, "macs": a.macs,
                   "xcube": XCUBE[name], "code": {}, "build_s": {}, "instructions": {}}
            if have_gcc:
                for b in board_list:
                    try:
                        c, info, dt = build(buf, name, backend, b, Path(tmp))
                    except TinygenError as e:
                        row["code"][b.name] = None
                        print(f"  {name} {b.name}: {str(e).splitlines()[0]}")
                        continue
                    row["code"][b.name], row["build_s"][b.name] = info.code_bytes, round(dt, 1)
                    if b.name == QEMU_BOARD and have_qemu:
                        r = qemu.run_selftest(info.elf, b, timeout=300)
                        row["instructions"][backend] = r.instructions if r.match else None
                if have_qemu and backend != "portable":
                    b = boards.load_board(QEMU_BOARD)
                    _, info, _ = build(buf, name, "portable", b, Path(tmp))
                    r = qemu.run_selftest(info.elf, b, timeout=600)
                    row["instructions"]["portable"] = r.instructions if r.match else None
            rows.append(row)
            print(f"  {name}: done ({time.time() - t_start:.0f} s)", flush=True)
    print()
    print(f"tinygen scoreboard: backend {backend}"
          + ("" if backend == "cmsis-nn" else " (CMSIS_NN_PATH not set: portable C kernels)"))
    hdr = (f"{'model':<10}{'tinygen':>9}{'bound':>8}{'TFLM head':>10}{'TFLM tot':>10}{'/TFLM':>7}"
           f"{'X-CUBE':>8}{'/X-CUBE':>8}{'weights':>9}{'MACs':>12}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        t = r["tflm"] if r["tflm"] and "total" in r["tflm"] else {"head": 0, "total": 0}
        print(f"{SHORT[r['model']]:<10}{r['arena']:>9,}{r['lower_bound']:>8,}{t['head']:>10,}{t['total']:>10,}"
              f"{r['arena'] / t['total'] if t['total'] else float('nan'):>7.2f}{r['xcube']:>8,}"
              f"{r['arena'] / r['xcube']:>8.2f}{r['weights']:>9,}{r['macs']:>12,}")
    print("arena bytes incl. input/output and kernel scratch; bound = live-set lower bound; /TFLM = tinygen / TFLM total "
          "(tensors + persistent); X-CUBE = ST X-CUBE-AI activation pool, NUCLEO-U575, I/O included (published).")
    if have_gcc and rows:
        names = [b.name for b in board_list]
        print()
        print(f"code bytes (.text, {backend}) per board; build seconds in brackets")
        print(f"{'model':<10}" + "".join(f"{n[:14]:>18}" for n in names))
        for r in rows:
            cells = []
            for n in names:
                v = r["code"].get(n)
                cells.append(f"{v:,} [{r['build_s'].get(n, 0):.0f}s]" if v else "-")
            print(f"{SHORT[r['model']]:<10}" + "".join(f"{c:>18}" for c in cells))
    if have_qemu and rows:
        print()
        print(f"instructions per inference on {QEMU_BOARD} (Cortex-M33, QEMU -icount: instructions, not cycles)")
        bks = [k for k in ("cmsis-nn", "portable") if any(k in r["instructions"] for r in rows)]
        print(f"{'model':<10}" + "".join(f"{k:>16}{'MACs/instr':>12}" for k in bks) +
              (f"{'speed-up':>10}" if len(bks) == 2 else ""))
        for r in rows:
            line = f"{SHORT[r['model']]:<10}"
            for k in bks:
                n = r["instructions"].get(k)
                line += f"{n:>16,}{r['macs'] / n:>12.3f}" if n else f"{'-':>16}{'-':>12}"
            if len(bks) == 2 and all(r["instructions"].get(k) for k in bks):
                line += f"{r['instructions']['portable'] / r['instructions']['cmsis-nn']:>9.1f}x"
            print(line)
    if not have_gcc:
        print("\narm-none-eabi-gcc not found: code sizes and instruction counts skipped "
              "(sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")
    print(f"\nscoreboard: {time.time() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    worse = [r["model"] for r in rows if r["tflm"] and "total" in r["tflm"] and r["arena"] >= r["tflm"]["total"]]
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
