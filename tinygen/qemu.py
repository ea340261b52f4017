"""Running firmware under QEMU: the self-test (parsed TG_ lines) and a pty-backed serial port.

Timing under QEMU: with ``-icount shift=0`` one guest instruction takes 1 ns of virtual
time and runs are deterministic. DWT is not emulated, so the firmware counts SysTick
ticks at the machine's nominal clock (``Board.clock_hz``); one tick is
``1e9 / clock_hz`` instructions. Those figures are reported as
``"instructions (QEMU proxy, not cycles)"``: every instruction counts 1, and the
resolution is one tick (50 instructions on mps2-an505).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from pathlib import Path

from . import faults
from .boards import Board
from .errors import BoardError, DeviceError
from .selftest import (  # noqa: F401  (re-exported: the runner's API)
    EXIT_FAIL,
    EXIT_FAULT,
    EXIT_OK,
    INSTRUCTIONS_LABEL,
    LayerTiming,
    SelftestResult,
    instructions_per_tick,
    parse_selftest,
)
from .toolchain import find_qemu


def qemu_command(elf: Path | str, board: Board, *extra: str) -> list[str]:
    """The qemu-system-arm command line for ``board`` (deterministic timing, semihosting on)."""
    if not board.emulated:
        raise BoardError(f"board '{board.name}' is real hardware, not emulated by QEMU; "
                         "use mps2-an505, mps2-an386 or netduinoplus2")
    return [find_qemu(), "-M", str(board.qemu_machine), "-kernel", str(elf),
            "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", *extra]


def run_selftest(elf: Path | str, board: Board, timeout: float = 60.0) -> SelftestResult:
    """Runs the self-test firmware under QEMU and parses its output.

    Returns the result (``ok`` False on TG_FAIL / mismatch); raises DeviceError on a fault,
    a timeout (QEMU is killed) or output without a result.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise DeviceError(f"{elf} does not exist: build the firmware first")
    # As -nographic, but with the monitor off so that stdout carries only the UART.
    cmd = qemu_command(elf, board, "-display", "none", "-monitor", "none", "-serial", "stdio")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        text = out.decode("utf-8", "replace")
        raise DeviceError(f"QEMU ({board.qemu_machine}) did not finish within {timeout:.0f} s and was "
                          f"killed; last output:\n{text[-800:] or '(none)'}") from None
    text, etext = out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    if faults.is_lockup(etext):  # never QEMU's raw register dump: what locked up, where, why
        raise DeviceError(faults.describe_qemu_lockup(etext, board, elf))
    if proc.returncode not in (EXIT_OK, EXIT_FAIL, EXIT_FAULT) and "TG_" not in text:
        raise DeviceError(f"QEMU failed (exit {proc.returncode}): {etext.strip()[-800:]}")
    return parse_selftest(text, board, proc.returncode)


_PTY_RE = re.compile(r"char device redirected to (/dev/pts/\d+) \(label c0\)")


class _Drain(threading.Thread):
    """Keeps reading QEMU's stdout so that it never blocks on a full pipe."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.proc, self.text, self.lock = proc, "", threading.Lock()

    def run(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self.lock:
                self.text = (self.text + raw.decode("utf-8", "replace"))[-65536:]


def start_pty(elf: Path | str, board: Board, *, paused: bool = False, monitor: bool = False,
              extra: tuple[str, ...] = (), timeout: float = 10.0) -> tuple[subprocess.Popen[bytes], str]:
    """Starts QEMU with the board's UART on a pseudo-terminal: returns (process, "/dev/pts/N").

    Open the port with pyserial like a board's. Bytes written before the port is opened
    can be lost: with ``paused=True`` the CPU waits until :func:`resume` is called (QEMU
    runs with ``-S -monitor stdio``); ``monitor=True`` keeps the monitor on stdin while running
    (``system_reset``). ``extra``: more QEMU arguments. Stop it with :func:`stop`.
    """
    elf = Path(elf)
    if not elf.is_file():
        raise DeviceError(f"{elf} does not exist: build the firmware first")
    mon = (["-S"] if paused else []) + ["-monitor", "stdio" if paused or monitor else "none"]
    cmd = qemu_command(elf, board, *extra, "-display", "none", *mon, "-chardev", "pty,id=c0", "-serial", "chardev:c0")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    drain = _Drain(proc)
    drain.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with drain.lock:
            m = _PTY_RE.search(drain.text)
        if m:
            proc.tg_drain = drain  # type: ignore[attr-defined]
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    stop(proc)
    with drain.lock:
        text = drain.text
    raise DeviceError(f"QEMU did not report its pty within {timeout:.0f} s; output:\n{text[-800:] or '(none)'}")


def resume(proc: subprocess.Popen[bytes]) -> None:
    """Starts the CPU of a QEMU started with ``start_pty(..., paused=True)``."""
    if proc.stdin is None or proc.poll() is not None:
        raise DeviceError("QEMU is not running")
    proc.stdin.write(b"cont\n")
    proc.stdin.flush()


def stop(proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int | None:
    """Ends a QEMU started by start_pty; returns its exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdin is not None and not proc.stdin.closed:
        try:
            proc.stdin.close()
        except OSError:
            pass
    return proc.returncode
