"""CLI: ``tinygen flash`` and ``tinygen bench`` (heavy modules are imported inside the handlers)."""

from __future__ import annotations

import sys
import time

from ..project import DEFAULT_PROJECT, resolve

PROJECT_HELP = f"project folder (default: the current folder if it is a tinygen project, else ./{DEFAULT_PROJECT})"


def _log(msg: str) -> None:
    print(msg, flush=True)


def cmd_flash(a) -> int:
    from .. import qemu
    from . import flash

    proj = resolve(a.project)
    m, board = flash.project_board(proj)
    if not board.emulated:
        def build() -> None:
            flash.ensure_built(proj, m, board, a.rebuild, log=_log)
        tool = flash.flash_real(proj, board, proj / "build" / "firmware.elf", a.tool, log=_log, build=build)
        _log(f"flashed {board.name} with {tool}; bench it with: tinygen bench --port <serial port> {proj}")
        return 0
    elf = flash.ensure_built(proj, m, board, a.rebuild, log=_log)
    if a.detach:
        pid, pty = flash.start_detached(elf, board, proj / "build" / "qemu.log")
        _log(f"{board.name} (QEMU {board.qemu_machine}, pid {pid}) serial port: {pty}")
        _log(f"bench it with: tinygen bench --port {pty} {proj}; stop it with: kill {pid}")
        return 0
    proc, pty = flash.start_emulator(elf, board, paused=False)
    try:  # from here on QEMU is stopped however we leave (Ctrl-C, SIGTERM/SIGHUP even while printing)
        _log(f"{board.name} (QEMU {board.qemu_machine}) serial port: {pty}")
        _log(f"bench it with: tinygen bench --port {pty} {proj}   (Ctrl-C stops the emulator)")
        while proc.poll() is None:
            time.sleep(0.5)
        _log(f"QEMU exited with code {proc.returncode}")
        return 0 if proc.returncode == 0 else 1
    except KeyboardInterrupt:
        _log("stopping the emulator")
        return 0
    finally:
        qemu.stop(proc)


def cmd_bench(a) -> int:
    from .. import qemu
    from . import bench

    proj = resolve(a.project)
    kw = dict(runs=a.runs, warmup=a.warmup, inputs=a.inputs, vectors=a.vectors, seed=a.seed, timeout=a.timeout,
              retries=a.retries, baud=a.baud, log=_log, progress=not a.no_progress and sys.stderr.isatty())
    if a.sim:
        from . import flash

        if a.port:
            from ..errors import InputError

            raise InputError("--sim starts its own emulated board: give --sim or --port, not both")
        m, board = flash.project_board(proj)
        if not board.emulated:
            from ..errors import BoardError

            raise BoardError(f"--sim needs an emulated board; {proj} is for {board.name}: "
                             "flash it and use --port, or build for mps2-an505/mps2-an386/netduinoplus2")
        elf = flash.ensure_built(proj, m, board, a.rebuild, log=_log)
        proc, pty = flash.start_emulator(elf, board, paused=True)
        try:
            r = bench.run_bench(proj, pty, after_open=lambda: qemu.resume(proc), **kw)
        finally:
            qemu.stop(proc)
    else:
        if not a.port:
            from ..errors import InputError
            from .serialport import available_ports

            have = available_ports()
            raise InputError("give the board's serial port with --port (available: "
                             f"{', '.join(have) if have else 'none found'}), or --sim for the emulated board")
        r = bench.run_bench(proj, a.port, **kw)
    _log(f"wrote {proj / 'bench.json'}")
    return 0 if r["outputs_match"] else 1


def add_commands(sub) -> None:
    f = sub.add_parser("flash", help="upload a project's firmware (PlatformIO, st-flash, openocd, pyocd) or start "
                                     "its emulated board on a pty")
    f.add_argument("project", nargs="?", default=None, help=PROJECT_HELP)
    f.add_argument("--tool", choices=["pio", "st-flash", "openocd", "pyocd"], help="uploader to use (default: first that works)")
    f.add_argument("--rebuild", action="store_true", help="rebuild the firmware first")
    f.add_argument("--detach", action="store_true", help="emulated boards: leave QEMU running in the background")
    f.set_defaults(func=cmd_flash)

    b = sub.add_parser("bench", help="measure latency and check outputs bit-exactly over the board's serial port")
    b.add_argument("project", nargs="?", default=None, help=PROJECT_HELP)
    b.add_argument("--port", help="serial port of the board, e.g. /dev/ttyACM0 (or the pty of tinygen flash)")
    b.add_argument("--sim", action="store_true", help="start the emulated board (QEMU), bench it, stop it")
    b.add_argument("-n", "--runs", type=int, default=20, help="timed inferences (default 20)")
    b.add_argument("-w", "--warmup", type=int, default=3, help="warm-up inferences before timing (default 3)")
    b.add_argument("--inputs", help=".npy test vectors [N, *input shape] in the model's input dtype")
    b.add_argument("--vectors", type=int, default=4, help="random test vectors when --inputs is not given (default 4)")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--baud", type=int, default=115200)
    b.add_argument("--timeout", type=float, default=10.0, help="seconds allowed per reply line (default 10)")
    b.add_argument("--retries", type=int, default=3, help="retries after corruption/reset/timeout (default 3)")
    b.add_argument("--rebuild", action="store_true", help="--sim: rebuild the firmware first")
    b.add_argument("--no-progress", action="store_true")
    b.set_defaults(func=cmd_bench)
