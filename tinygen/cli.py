"""Command line: ``tinygen build | run | flash | bench | analyze | report | optimize``.

Every user-facing failure is a :class:`tinygen.errors.TinygenError`: printed as
one line ``tinygen: error: ...`` with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from .errors import TinygenError

DEFAULT_PROJECT = "tinygen_project"


def _quiet_tf() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GLOG_minloglevel", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
    warnings.filterwarnings("ignore", category=DeprecationWarning)


def log(msg: str) -> None:
    print(msg, flush=True)


def cmd_build(a) -> int:
    from . import driver
    from .optimize.commands import history, run_optimize, wants_optimize

    model, opt = a.model, None
    if wants_optimize(a):
        work = Path(a.out + ".optimize")
        work.mkdir(parents=True, exist_ok=True)
        opt = run_optimize(a, str(work / "optimized.h5"), log=log)
        model = str(opt.tflite_path)
    dump = (lambda s: print(s, file=sys.stderr)) if a.dump_ir else None
    extra = {"optimize.json": json.dumps(history(opt), indent=2, sort_keys=True) + "\n"} if opt else None
    c, out, _ = driver.build(model, a.board, a.out, a.backend, a.calib, dump=dump, log=log, extra_files=extra)
    log(driver.summary(c))
    log(f"project written to {out}/")
    if a.no_compile:
        return 0
    if a.board == "host":
        from . import hostbuild

        exe = hostbuild.build(out, c.backend)
        got = hostbuild.run(exe, c.test_input[None])
        ok = got.tobytes() == c.test_expected.tobytes()
        log(f"host program {exe}: reference test vector {'matches the TFLite reference' if ok else 'DIFFERS from the reference'}")
        return 0 if ok else 1
    from . import firmware_project

    firmware_project.compile_and_report(c, out, a.board, log=log)
    return 0


def cmd_run(a) -> int:
    """Boot the project's firmware on its emulated board and print the self-test result."""
    import json

    from . import boards, qemu, toolchain

    proj = Path(a.project)
    man = proj / "manifest.json"
    if not man.exists():
        from .errors import OutputError

        raise OutputError(f"{proj} is not a tinygen project (no manifest.json); run tinygen build first")
    m = json.loads(man.read_text())
    board = boards.load_board(a.board or m.get("board"))
    if not board.emulated:
        from .errors import BoardError

        raise BoardError(f"{board.name} is real hardware: use tinygen flash / tinygen bench --port; "
                         "tinygen run boots emulated boards (mps2-an505, mps2-an386, netduinoplus2)")
    elf = proj / "build" / "firmware.elf"
    if not elf.exists() or a.rebuild:
        toolchain.make_firmware(proj, m["backend"], board=board)
    r = qemu.run_selftest(elf, board, timeout=a.timeout)
    log(f"{m['model']} on {board.name} (QEMU {board.qemu_machine}, backend {m['backend']}):")
    log(f"  output checksum {r.checksum:08x}, matches the TFLite reference: {'yes' if r.match else 'NO'}")
    if r.instructions is not None:
        log(f"  {r.instructions:,} instructions per inference (QEMU -icount proxy, not cycles); "
            f"{m['macs'] / max(r.instructions, 1):.3f} MACs/instruction")
    for ly in r.layers:
        log(f"    layer {ly.index:>3} {ly.name[:50]:<50} {ly.instructions or ly.cycles:>12,}")
    log("TG_OK" if r.ok and r.match else "TG_FAIL")
    return 0 if r.ok and r.match else 1


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tinygen", description="TinyML firmware generator: Keras/TFLite -> CMSIS-NN firmware")
    ap.add_argument("--version", action="version", version="tinygen 0.1.0")
    sub = ap.add_subparsers(dest="cmd", required=True)

    b = sub.add_parser("build", help="compile a model into a firmware project (and build it when the toolchain is present)")
    b.add_argument("model", help=".h5 / .keras / SavedModel folder / int8 .tflite")
    b.add_argument("--board", default="mps2-an505", help="target board (default mps2-an505, emulated Cortex-M33); 'host' for a host program")
    b.add_argument("--backend", choices=["generated", "cmsis-nn", "portable"], default=None,
                   help="kernel set: generated (per-layer specialized kernels, falling back to CMSIS-NN when "
                        "CMSIS_NN_PATH is set, else to portable C), cmsis-nn, or portable C")
    b.add_argument("-o", "--out", default=DEFAULT_PROJECT, help=f"project folder (default ./{DEFAULT_PROJECT})")
    b.add_argument("--calib", help="calibration data .npz (array 'x' or 'x_train') for quantizing a float model")
    from .optimize.commands import add_optimize_flags

    add_optimize_flags(b)
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--dump-ir", action="store_true", help="print the IR after each pass (stderr)")
    b.add_argument("--no-compile", action="store_true", help="only write the project, do not run the compiler")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="boot a project on its emulated board (QEMU) and check the reference vector")
    r.add_argument("project", nargs="?", default=DEFAULT_PROJECT)
    r.add_argument("--board", default=None, help="override the board recorded in the project")
    r.add_argument("--rebuild", action="store_true")
    r.add_argument("--timeout", type=float, default=120.0)
    r.set_defaults(func=cmd_run)

    for mod in PLUGINS:
        _load(mod).add_commands(sub)
    return ap


# Modules that add their own subcommands: each defines add_commands(subparsers), whose parsers
# set_defaults(func=handler); handlers take the argparse namespace and return an exit code.
PLUGINS = ("tinygen.device.commands", "tinygen.analyze", "tinygen.report", "tinygen.optimize.commands")


def _load(name: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is None or not name.startswith(e.name):
            raise

        class _Missing:
            @staticmethod
            def add_commands(sub) -> None:
                return None

        return _Missing


def main(argv: list[str] | None = None) -> int:
    _quiet_tf()
    ap = parser()
    a = ap.parse_args(argv)
    try:
        return int(a.func(a) or 0)
    except TinygenError as e:
        print(f"tinygen: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("tinygen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tinygen run | head`: the reader went away, not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
