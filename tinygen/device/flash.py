"""``tinygen flash``: put a project's firmware on its board.

Real boards, in order: PlatformIO (``pio run -t upload``; offline it cannot download the
ST platform: that failure is detected and the next uploader is tried), then ``st-flash``,
``openocd`` or ``pyocd``, whichever is installed. Emulated boards: the firmware is built
if needed and QEMU starts with the board's UART on a pseudo-terminal, in bench mode
(``-append tg-bench``: the firmware stays in its command loop after the self-test).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable

from .. import qemu
from ..boards import Board, load_board
from ..errors import DeviceError, OutputError, ToolchainError

BENCH_ARG = "tg-bench"      # on the semihosting command line: tg_main.c stays in the bench loop
INSTALL = {
    "pio": "pip install platformio (needs internet once to download the ST platform)",
    "st-flash": "sudo apt-get install stlink-tools (STM32U5 needs stlink-tools >= 1.8.0)",
    "openocd": "sudo apt-get install openocd",
    "pyocd": "pip install pyocd",
}
# PlatformIO messages when it cannot fetch a platform/tool package (offline).
_PIO_OFFLINE = re.compile(r"HTTPClientError|Could not resolve|Name or service not known|Max retries exceeded|"
                          r"ConnectionError|Temporary failure in name resolution|UnknownPackageError|"
                          r"Network is unreachable|InternetConnectionError|PackageException", re.I)
_OPENOCD_TARGET = {"STM32F4": "stm32f4x", "STM32H7": "stm32h7x", "STM32L4": "stm32l4x", "STM32U5": "stm32u5x",
                   "STM32F7": "stm32f7x"}
# pyOCD target names: built in (stm32h743xx), or from the device's CMSIS pack (pack device names,
# lower case), which `pyocd pack install <target>` fetches once.
_PYOCD_TARGET = {"STM32H743": ("stm32h743xx", True), "STM32U575ZI": ("stm32u575zitxq", False),
                 "STM32F446RE": ("stm32f446retx", False), "STM32L4R5ZI": ("stm32l4r5zitx", False)}
_STFLASH_MIN = {"STM32U5": ((1, 8, 0), "0x482")}   # stlink-tools 1.7.0 (Debian 12) has no U5 support


def project_board(project: Path) -> tuple[dict, Board]:
    man = project / "manifest.json"
    if not man.is_file():
        raise OutputError(f"{project} is not a tinygen project (no manifest.json); run tinygen build first")
    m = json.loads(man.read_text())
    return m, load_board(m.get("board") or None)


def ensure_built(project: Path, m: dict, board: Board, rebuild: bool = False, log: Callable[[str], None] = print) -> Path:
    elf = project / "build" / "firmware.elf"
    if rebuild or not elf.is_file() or _stale(project, elf):
        from ..toolchain import make_firmware

        log(f"building {elf} ...")
        make_firmware(project, m["backend"], board=board)
    return elf


def _stale(project: Path, elf: Path) -> bool:
    t = elf.stat().st_mtime
    return any(p.stat().st_mtime > t for p in (project / "src").glob("*") if p.is_file())


# -- emulated boards ------------------------------------------------------------------------

def start_emulator(elf: Path, board: Board, *, paused: bool = True, timeout: float = 10.0
                   ) -> tuple[subprocess.Popen[bytes], str]:
    """QEMU in bench mode with the UART on a pty: (process, "/dev/pts/N").

    The monitor is on stdin: :func:`tinygen.qemu.resume` starts a paused CPU, ``system_reset``
    resets the board; stop it with :func:`tinygen.qemu.stop`.
    """
    return qemu.start_pty(elf, board, paused=paused, monitor=True, extra=("-append", BENCH_ARG), timeout=timeout)


def reset_emulator(proc: subprocess.Popen[bytes]) -> None:
    """Resets the emulated board (QEMU monitor ``system_reset``), as a reset button would."""
    if proc.stdin is None or proc.poll() is not None:
        raise DeviceError("QEMU is not running")
    proc.stdin.write(b"system_reset\n")
    proc.stdin.flush()


def start_detached(elf: Path, board: Board, log_path: Path, timeout: float = 10.0) -> tuple[int, str]:
    """QEMU left running after tinygen exits: (pid, pty). Its output goes to ``log_path``."""
    cmd = qemu.qemu_command(elf, board, "-append", BENCH_ARG, "-display", "none", "-monitor", "none",
                            "-chardev", "pty,id=c0", "-serial", "chardev:c0")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mt = qemu._PTY_RE.search(log_path.read_text(errors="replace"))
        if mt:
            return proc.pid, mt.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    qemu.stop(proc)
    raise DeviceError(f"QEMU did not report its pty within {timeout:.0f} s; see {log_path}")


# -- real boards ----------------------------------------------------------------------------

def uploaders(project: Path, board: Board, elf: Path) -> list[tuple[str, list[str]]]:
    """(tool, command) candidates for ``board``, in order of preference."""
    out: list[tuple[str, list[str]]] = []
    if (project / "platformio.ini").is_file():
        out.append(("pio", ["pio", "run", "-d", str(project), "-t", "upload"]))
    binf = elf.with_suffix(".bin")
    family = next((v for k, v in _OPENOCD_TARGET.items() if board.mcu.upper().startswith(k)), None)
    if "stlink" in board.upload_protocols or not board.upload_protocols:
        out.append(("st-flash", ["st-flash", "--reset", "write", str(binf), f"0x{board.flash_origin:08x}"]))
        if family:
            out.append(("openocd", ["openocd", "-f", "interface/stlink.cfg", "-f", f"target/{family}.cfg",
                                    "-c", f"program {elf} verify reset exit"]))
        # -W: do not wait for a probe to be plugged in (pyOCD's default waits forever)
        out.append(("pyocd", ["pyocd", "flash", "-W", "-t", pyocd_target(board)[0], str(elf)]))
    return out


def pyocd_target(board: Board) -> tuple[str, bool]:
    """(pyOCD target name, built in?) for the board's MCU."""
    mcu = board.mcu.upper()
    for k, v in _PYOCD_TARGET.items():
        if mcu.startswith(k):
            return v
    return re.sub(r"\d(q?)$", r"x\1", board.mcu.lower()), False


def _version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"v?(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else None


def precheck(name: str, exe: str, board: Board, timeout: float = 20.0) -> str | None:
    """Why ``name`` cannot flash ``board`` (the fix in the message), or None. Checks the tool's
    version / target support before it runs."""
    mcu = board.mcu.upper()
    try:
        if name == "st-flash":
            for fam, (least, chip) in _STFLASH_MIN.items():
                if mcu.startswith(fam):
                    r = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=timeout)
                    v = _version(r.stdout + r.stderr)
                    if v is None or v < least:
                        have = ".".join(map(str, v)) if v else "unknown"
                        return (f"st-flash {have} cannot flash {fam} (chip id {chip}): needs stlink-tools >= "
                                f"{'.'.join(map(str, least))} (Debian 12 ships 1.7.0: build github.com/stlink-org/stlink "
                                "v1.8.0, or use openocd / pyocd / PlatformIO)")
        elif name == "pyocd":
            target, builtin = pyocd_target(board)
            if not builtin:
                r = subprocess.run([exe, "list", "--targets"], capture_output=True, text=True, timeout=timeout)
                if not re.search(rf"^\s*{re.escape(target)}\s", r.stdout, re.M | re.I):
                    return (f"pyocd has no target {target} (it comes from the device's CMSIS pack): run "
                            f"`pyocd pack install {target}` once (needs internet)")
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{name} did not answer its version/target query ({e})"
    return None


_ERROR_LINE = re.compile(r"^\s*(Error|error|ERROR|FATAL|Fatal|CRITICAL)\b.*", re.M)


def error_line(text: str, returncode: int) -> str:
    """The line that says what went wrong: the first "Error: ..." line (OpenOCD's real error comes
    before its closing "** OpenOCD init failed **"), else the last line."""
    m = _ERROR_LINE.search(text)
    if m:
        return m.group(0).strip()
    return text.splitlines()[-1].strip() if text.strip() else f"exit {returncode}"


def flash_real(project: Path, board: Board, elf: Path, tool: str | None = None, timeout: float = 300.0,
               log: Callable[[str], None] = print, build: Callable[[], object] | None = None) -> str:
    """Uploads with the first tool that works; returns its name. ToolchainError names what is missing."""
    cands = uploaders(project, board, elf)
    if tool:
        cands = [c for c in cands if c[0] == tool]
        if not cands:
            raise ToolchainError(f"--tool {tool} cannot flash {board.name}; choose one of "
                                 f"{', '.join(n for n, _ in uploaders(project, board, elf))}")
    missing, failures = [], []
    for name, cmd in cands:
        exe = shutil.which(cmd[0]) or (shutil.which("platformio") if name == "pio" else None)
        if exe is None:
            missing.append(name)
            continue
        problem = precheck(name, exe, board)
        if problem:
            log(f"{name}: {problem}")
            failures.append(f"{name}: {problem}")
            continue
        if name != "pio" and build is not None:
            build()                          # st-flash/openocd/pyocd take the ELF/.bin from make
            build = None
        log(f"flashing {board.name} with {name}: {' '.join(cmd)}")
        try:
            r = subprocess.run([exe, *cmd[1:]], capture_output=True, text=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            failures.append(f"{name} timed out after {timeout:.0f} s")
            continue
        text = (r.stdout + r.stderr).strip()
        if r.returncode == 0:
            return name
        if name == "pio" and _PIO_OFFLINE.search(text):
            log("PlatformIO cannot download the platform packages (offline?): trying the next uploader")
            failures.append("pio: offline, cannot download the ST platform")
            continue
        failures.append(f"{name}: {error_line(text, r.returncode)}")
    if failures:
        raise ToolchainError(f"flashing {board.name} failed: {'; '.join(failures)}"
                             + (f"; not installed: {', '.join(missing)}" if missing else ""))
    hints = "; ".join(f"{n}: {INSTALL[n]}" for n in missing)
    raise ToolchainError(f"no uploader for {board.name} is installed ({', '.join(missing)}); install one: {hints}")
