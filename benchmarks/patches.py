"""Patch-based first stage: arena and instructions per inference with and without patches (same run).

    CMSIS_NN_PATH=... python benchmarks/patches.py [--board mps2-an505] [--kset generated] [--no-qemu]

Per model (MobileNetV1-0.25 96x96 and MobileNetV2-0.35 96x96, random weights + Dense(10), full int8;
ResNet-8 from the shared MLPerf Tiny models): the arena with whole tensors, with overlaps (the
normal plan without patches), with patches (input in the arena) and with patches reading the input
from the caller's buffer (``external_input``: the arena then excludes the input, whose bytes are
printed too); the chosen stages; and the instructions per inference under QEMU ``-icount`` (a
proxy for cycles) of the builds without patches (input in the arena, today's default) and with
patches (external input), each self-test matching the TFLite reference.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tinygen import boards, driver, plan, project, qemu, toolchain  # noqa: E402

CACHE = Path(tempfile.gettempdir()) / "tinygen_patch_bench"
MODELS = ROOT.parent / "shared" / "models" / "mlperf-tiny"


def mobilenet_v1() -> bytes:
    from arena_mobilenet import mobilenet_025_96

    return mobilenet_025_96()


def mobilenet_v2() -> bytes:
    from arena_mobilenet import keras_app_int8

    return keras_app_int8("MobileNetV2", alpha=0.35)


def resnet8() -> bytes:
    return (MODELS / "pretrainedResnet_quant.tflite").read_bytes()


BUILDERS = {"MobileNetV1-0.25 96x96": mobilenet_v1, "MobileNetV2-0.35 96x96": mobilenet_v2, "ResNet-8": resnet8}


def load(name: str) -> bytes:
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / (name.replace(" ", "_") + ".tflite")
    if not path.is_file():
        path.write_bytes(BUILDERS[name]())
    return path.read_bytes()


def instructions(c, board, out: Path, weighted: bool) -> tuple[int, int | None]:
    """(QEMU instructions of one inference, its cycle-weighted count for the board's core or None)."""
    project.write(out, driver.board_project(c, board))
    info = toolchain.make_firmware(out, c.link, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=600)
    if not (r.ok and r.match):
        raise SystemExit(f"{out.name}: the self-test does not match the TFLite reference")
    w = None
    if weighted:
        import cycletrace

        res = cycletrace.weighted_run(info.elf, board)
        w = int(res.weighted(sorted(res.cycles)[0]) if board.core not in res.cycles else res.weighted(board.core))
    return int(r.instructions or 0), w


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="mps2-an505")
    ap.add_argument("--kset", default="generated")
    ap.add_argument("--no-qemu", action="store_true", help="arena only")
    ap.add_argument("--models", nargs="*", default=list(BUILDERS))
    ap.add_argument("--weighted", action="store_true", help="also the cycle-weighted counts (benchmarks/cycletrace.py)")
    args = ap.parse_args(argv)
    board = boards.load_board(args.board)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tg_patch_") as d:
        for name in args.models:
            buf = load(name)
            kw = dict(backend=args.kset, arch=board.arch_features, board_name=board.name)
            base = driver.compile_model(buf, "m", patches=False, **kw)
            whole = plan.plan(base.graph, base.calls, overlap=False).arena_size
            pin = driver.compile_model(buf, "m", **kw)
            pex = driver.compile_model(buf, "m", external_input=True, **kw)
            nin = base.graph.t(base.graph.inputs[0]).nbytes
            row = {"model": name, "whole": whole, "overlap": base.plan.arena_size, "patch_in": pin.plan.arena_size,
                   "patch_ext": pex.plan.arena_size, "input": nin,
                   "split": pex.patch_choice.describe() if pex.patch_choice else "no patch stage",
                   "split_in": pin.patch_choice.describe() if pin.patch_choice else "no patch stage",
                   "est": pex.patch_choice.ratio if pex.patch_choice and pex.patch_choice.layers else 1.0}
            if not args.no_qemu:
                row["i0"], row["w0"] = instructions(base, board, Path(d) / f"{len(rows)}-base", args.weighted)
                row["i1"], row["w1"] = instructions(pex, board, Path(d) / f"{len(rows)}-patch-ext", args.weighted)
            row["flash0"], row["flash1"] = base.emitted.manifest["weights_bytes"], pex.emitted.manifest["weights_bytes"]
            rows.append(row)
            print(f"{name}: {row}", file=sys.stderr)
    print(f"kernel set {args.kset}, board {args.board}; instructions: QEMU -icount (a proxy for cycles)")
    print(f"{'model':<24}{'whole':>9}{'overlap':>9}{'patches':>9}{'patches, input outside':>24}"
          f"{'instr no patch':>16}{'instr patches':>15}{'ratio':>7}{'est.':>7}")
    for r in rows:
        i0, i1 = r.get("i0"), r.get("i1")
        ratio = f"{i1 / i0:.3f}" if i0 else "-"
        outside = f"{r['patch_ext']:,} (+{r['input']:,} input)"
        print(f"{r['model']:<24}{r['whole']:>9,}{r['overlap']:>9,}{r['patch_in']:>9,}{outside:>24}"
              f"{i0 or 0:>16,}{i1 or 0:>15,}{ratio:>7}{r['est']:>7.3f}")
    print(f"{'model':<24}{'weights B no patch':>20}{'with patches':>14}{'weighted no patch':>19}{'with patches':>14}"
          f"{'ratio':>7}")
    for r in rows:
        w0, w1 = r.get("w0"), r.get("w1")
        print(f"{r['model']:<24}{r['flash0']:>20,}{r['flash1']:>14,}{w0 or 0:>19,}{w1 or 0:>14,}"
              f"{(f'{w1 / w0:.3f}' if w0 else '-'):>7}")
    for r in rows:
        print(f"  {r['model']}: input outside: {r['split']}; input in the arena: {r['split_in']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
