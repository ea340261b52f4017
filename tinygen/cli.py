"""Command line: ``tinygen build | run | flash | bench | analyze | report | optimize``.

Every user-facing failure is a :class:`tinygen.errors.TinygenError`: printed as
one line ``tinygen: error: ...`` with a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import TinygenError

DEFAULT_PROJECT = "tinygen_project"


def log(msg: str) -> None:
    print(msg, flush=True)


def cmd_build(a) -> int:
    from . import driver, mlperf, patch
    from .optimize.commands import flags_of, history, run_optimize, wants_optimize

    mopt = mlperf.options(a.mlperf, a.mlperf_energy)
    if mopt is not None and a.board == "host":
        from .errors import BoardError

        raise BoardError("--mlperf builds firmware for a board: choose one with --board (host programs have no serial port)")
    model, opt = a.model, None
    if wants_optimize(a):
        work = Path(a.out + ".optimize")
        work.mkdir(parents=True, exist_ok=True)
        opt = run_optimize(a, str(work / "optimized.h5"), log=log)
        model = str(opt.tflite_path)
    dump = (lambda s: print(s, file=sys.stderr)) if a.dump_ir else None
    extra = {"optimize.json": json.dumps(history(opt, flags_of(a)), indent=2, sort_keys=True) + "\n"} if opt else None
    host_run = a.board == "host" and not a.no_compile  # checked below, by the project's own build
    used = opt is None  # after optimize, --calib / --synthetic-range were its data; the model is an int8 .tflite
    c, out, _ = driver.build(model, a.board, a.out, a.backend, a.calib if used else None, dump=dump, log=log,
                             extra_files=extra, synthetic_range=a.synthetic_range if used else None, mlperf=mopt,
                             calib_range=a.calib_range, verify=not host_run, **patch.options(a))
    if mopt is not None:
        log(f"MLPerf Tiny: {mopt.model} ({mopt.input} db input, result {mopt.result}"
            f"{', energy mode' if mopt.energy else ''}); per-layer profile marks off")
    log(driver.summary(c))
    log(f"project written to {out}/")
    if a.no_compile:
        return 0
    if a.board == "host":
        r = _checked_host_build(out, c)
        log(f"host program {out / 'build' / 'model_host'}:")
        return report_selftest(r, c.emitted.manifest)
    from . import firmware_project

    firmware_project.compile_and_report(c, out, a.board, log=log)
    return 0


def _checked_host_build(out: Path, c):
    """The host project's program, built and its self-test vectors run; a vector that differs
    removes the project just written (nothing that looks valid stays) and raises one line."""
    import shutil

    from . import hostbuild
    from .errors import CompilerBug

    try:
        return hostbuild.check_project(out, c, outcome=f"the project {out} was removed")
    except CompilerBug:
        shutil.rmtree(out, ignore_errors=True)
        raise


def cmd_run(a) -> int:
    """Run the project's self-test vectors on its emulated board (QEMU) or, for a host project,
    as the host program; print the result and check it against the manifest."""
    from . import boards
    from .errors import BoardError
    from .project import resolve

    proj = resolve(a.project)
    m = json.loads((proj / "manifest.json").read_text())
    own = m.get("board") or boards.DEFAULT_BOARD
    target = a.board or own
    if target == "host" or own == "host":
        if target != own:
            raise BoardError(f"{proj} is a {'host' if own == 'host' else own + ' firmware'} project; build one for "
                             f"{target} from its model: tinygen build {proj / 'model.tflite'} --board {target}")
        from . import hostbuild

        r = hostbuild.run_selftest(proj, m["backend"], rebuild=a.rebuild)
        log(f"{m['model']} on the host (gcc program {proj / 'build' / 'model_host'}, backend {m['backend']}):")
    else:
        from . import firmware_project, qemu

        board = boards.load_board(target)
        if not board.emulated:
            raise BoardError(f"{board.name} is real hardware: use tinygen flash / tinygen bench --port; "
                             "tinygen run boots emulated boards: tinygen run --board mps2-an505 (or mps2-an386, "
                             "netduinoplus2) rebuilds the project for one")
        elf = firmware_project.firmware_for(proj, m, board, rebuild=a.rebuild, log=log)
        r = qemu.run_selftest(elf, board, timeout=a.timeout)
        log(f"{m['model']} on {board.name} (QEMU {board.qemu_machine}, backend {m['backend']}):")
    return report_selftest(r, m)


def report_selftest(r, m: dict) -> int:
    """The self-test lines of `tinygen run` (QEMU or host); 0 when every vector matched."""
    want = (m.get("selftest") or {}).get("checksum")
    same = want is None or int(want, 16) == r.checksum
    n = r.vectors
    got = r.matched if r.matched is not None else (n if r.match else 0)
    ok = r.ok and r.match and same
    log(f"  output checksum {r.checksum:08x} over {n} self-test vector{'s' if n != 1 else ''}"
        + ("" if want is None else f" ({'equals' if same else 'DIFFERS from'} the manifest's {want})")
        + f"; {got} of {n} match; matches the TFLite reference: {'yes' if ok else 'NO'}")
    for ln in r.mismatches:
        log(f"  {ln}")
    if r.instructions is not None:
        log(f"  {r.instructions:,} instructions per inference (QEMU -icount proxy, not cycles); "
            f"{m['macs'] / max(r.instructions, 1):.3f} MACs/instruction")
    for ly in r.layers:
        log(f"    layer {ly.index:>3} {ly.name[:50]:<50} {ly.instructions or ly.cycles:>12,}")
    log("TG_OK" if ok else "TG_FAIL")
    return 0 if ok else 1


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
    b.add_argument("--calib", help="calibration data for quantizing a float model: .npz (array 'x' or 'x_train'), .npy, "
                   "or a folder of images (PNG/JPEG with Pillow, else PPM/PGM; resized to the input)")
    b.add_argument("--calib-range", type=float, nargs=2, default=None, metavar=("LO", "HI"),
                   help="with --calib FOLDER: the input range the model expects; pixels 0..255 are mapped onto it "
                        "(not needed when the model starts with a Rescaling layer)")
    from .optimize.commands import add_optimize_flags

    add_optimize_flags(b)
    b.add_argument("--mlperf", choices=["kws01", "ic01", "vww01", "ad01"], default=None,
                   help="MLPerf Tiny benchmark the firmware answers the runner for (profile%% model id, input "
                        "conversion, result format); recorded in the manifest; no per-layer profile marks")
    b.add_argument("--mlperf-energy", action="store_true",
                   help="MLPerf Tiny energy mode: timestamps on the board's GPIO pin, the energy baud rate (real boards)")
    b.add_argument("--seed", type=int, default=0)
    from .patch import add_flags as add_patch_flags

    add_patch_flags(b)
    b.add_argument("--dump-ir", action="store_true", help="print the IR after each pass (stderr)")
    b.add_argument("--no-compile", action="store_true", help="only write the project, do not run the compiler")
    b.set_defaults(func=cmd_build)

    r = sub.add_parser("run", help="run a project's self-test vectors on its emulated board (QEMU) or as the host program")
    r.add_argument("project", nargs="?", default=None,
                   help=f"project folder (default: the current folder if it is a tinygen project, else ./{DEFAULT_PROJECT})")
    r.add_argument("--board", default=None, help="run on another emulated board: the project is rebuilt for it "
                   "(linker script, startup, clock) in PROJECT/build/board-<name>/, or refused with the reason")
    r.add_argument("--rebuild", action="store_true", help="rebuild the firmware (or host program) first")
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


def _where(e: BaseException) -> str:
    """The innermost tinygen function an exception came from (the stage), e.g. tinygen.plan.schedule."""
    tb, where = e.__traceback__, "?"
    while tb is not None:
        mod = tb.tb_frame.f_globals.get("__name__", "")
        if mod.startswith("tinygen"):
            where = f"{mod}.{tb.tb_frame.f_code.co_name}"
        tb = tb.tb_next
    return where


def _signals():
    """SIGTERM/SIGHUP unwind like Ctrl-C (errors.Terminated) while a command runs; returns the old handlers."""
    import signal
    import threading

    from .errors import Terminated

    if threading.current_thread() is not threading.main_thread():
        return {}

    def handler(signum, _frame):
        raise Terminated(signum)

    return {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGHUP)}


def _add_verbose(ap: argparse.ArgumentParser, default) -> None:
    if "--verbose" in ap._option_string_actions:  # a parser built once and reused (tests)
        return
    ap.add_argument("-v", "--verbose", action="store_true", default=default,
                    help="also show TensorFlow's own log lines and warnings (hidden by default)")



def main(argv: list[str] | None = None) -> int:
    import signal

    from . import quiet
    from .errors import INTERNAL_EXIT, SIGNAL_EXIT_BASE, Terminated

    ap = parser()
    _add_verbose(ap, False)
    for sp in _subparsers(ap):  # `tinygen build m.h5 --verbose` works too
        _add_verbose(sp, argparse.SUPPRESS)
    a = ap.parse_args(argv)
    quiet.setup(verbose=a.verbose)  # before anything imports TensorFlow
    old = _signals()
    try:
        return int(a.func(a) or 0)
    except TinygenError as e:
        print(f"tinygen: error: {e}", file=sys.stderr)
        return e.exit_code
    except Terminated as e:
        print(f"tinygen: stopped by {signal.Signals(e.signum).name}", file=sys.stderr)
        return SIGNAL_EXIT_BASE + e.signum
    except KeyboardInterrupt:
        print("tinygen: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tinygen run | head`: the reader went away, not an error of ours
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as e:  # a bug: one line, its own exit code (TINYGEN_TRACEBACK=1 shows the traceback)
        if os.environ.get("TINYGEN_TRACEBACK"):
            raise
        msg = " ".join(str(e).split())[:300]
        print(f"tinygen: internal error (please report): {type(e).__name__}: {msg} in stage {_where(e)} "
              f"(tinygen {a.cmd}; TINYGEN_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        return INTERNAL_EXIT
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _subparsers(ap: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [p for act in ap._actions if isinstance(act, argparse._SubParsersAction) for p in act.choices.values()]


if __name__ == "__main__":
    sys.exit(main())
