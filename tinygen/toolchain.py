"""External tools: finding them, building firmware with the rendered Makefile, sizes.

Every missing tool raises :class:`~tinygen.errors.ToolchainError` naming the Debian
package to install; a firmware that does not fit its board raises
:class:`~tinygen.errors.BoardError` with the bytes of weights, arena and code.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .boards import BACKENDS, Board
from .errors import BoardError, ToolchainError

INSTALL = {
    "arm-none-eabi-gcc": "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi",
    "arm-none-eabi-size": "sudo apt-get install binutils-arm-none-eabi",
    "arm-none-eabi-objcopy": "sudo apt-get install binutils-arm-none-eabi",
    "gcc": "sudo apt-get install gcc",
    "make": "sudo apt-get install make",
    "qemu-system-arm": "sudo apt-get install qemu-system-arm",
}

# Sections of the tinygen linker script (templates/linker.ld.j2).
FLASH_SECTIONS = (".isr_vector", ".text", ".rodata", ".ARM.extab", ".ARM.exidx", ".data")
RAM_SECTIONS = (".data", ".bss", ".tg_stack")


def find_tool(name: str) -> str:
    """Absolute path of ``name`` on PATH, or a ToolchainError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        how = INSTALL.get(name, "install it and put it on PATH")
        raise ToolchainError(f"'{name}' was not found on PATH; install it with: {how}")
    return path


def find_arm_gcc() -> str:
    return find_tool("arm-none-eabi-gcc")


def find_host_gcc() -> str:
    return find_tool("gcc")


def find_qemu() -> str:
    return find_tool("qemu-system-arm")


def have_tool(name: str) -> bool:
    return shutil.which(name) is not None


@dataclass(frozen=True)
class FirmwareInfo:
    """Sizes of a linked firmware (bytes). ``flash_bytes`` = text + data;
    ``ram_bytes`` = data + bss + reserved stack."""

    elf: Path
    text: int                 # .isr_vector + .text + .rodata + .ARM.* (code and constants)
    data: int                 # initialised RAM (copied from flash)
    bss: int                  # zeroed RAM (arena, buffers), stack excluded
    stack_reserved: int       # the board's stack, reserved at the end of RAM
    flash_bytes: int
    ram_bytes: int
    max_stack_frame: int      # largest single function frame from the .su files (no call graph)
    max_stack_function: str
    weights_bytes: int        # read-only data of the model objects (model*.c, tests excluded)
    arena_bytes: int          # RAM of the model objects
    code_bytes: int           # .text of everything


def parse_size_a(text: str) -> dict[str, int]:
    """``arm-none-eabi-size -A`` output -> {section: size}.

    >>> parse_size_a("fw.elf  :\\nsection  size  addr\\n.text  100  0\\n.bss  8  536870912\\nTotal  108\\n")
    {'.text': 100, '.bss': 8}
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith(".") and parts[1].isdigit():
            out[parts[0]] = out.get(parts[0], 0) + int(parts[1])
    return out


def parse_stack_usage(root: Path) -> tuple[int, str]:
    """Largest frame in the ``-fstack-usage`` files under ``root``: (bytes, function)."""
    best = (0, "")
    for su in sorted(root.rglob("*.su")):
        for line in su.read_text(encoding="utf-8", errors="replace").splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].strip().isdigit():
                n, func = int(parts[1]), parts[0].rsplit(":", 1)[-1]
                if n > best[0]:
                    best = (n, func)
    return best


_MAP_ENTRY = re.compile(r"^ (\.[^\s*]+)\s+0x([0-9a-fA-F]+)\s+0x([0-9a-fA-F]+)\s+(\S+\.o\)?)\s*$")


def parse_map_objects(map_text: str) -> dict[str, dict[str, int]]:
    """Linker map -> {object file name: {"text"|"rodata"|"data"|"bss": bytes}} (kept sections only)."""
    start = map_text.find("Linker script and memory map")
    lines = map_text[start if start >= 0 else 0:].splitlines()
    joined: list[str] = []
    for line in lines:  # a long section name puts address/size/file on the next line
        if joined and re.match(r"^ \.\S+$", joined[-1]) and re.match(r"^\s+0x", line):
            joined[-1] = joined[-1] + " " + line.strip()
        else:
            joined.append(line)
    out: dict[str, dict[str, int]] = {}
    for line in joined:
        m = _MAP_ENTRY.match(line)
        if not m:
            continue
        sec, size, obj = m.group(1), int(m.group(3), 16), Path(m.group(4).rstrip(")")).name.split("(")[-1]
        kind = next((k for k in ("text", "rodata", "data", "bss") if sec.startswith("." + k)), None)
        if kind is None or size == 0:
            continue
        d = out.setdefault(obj, {"text": 0, "rodata": 0, "data": 0, "bss": 0})
        d[kind] += size
    return out


def _is_model_object(name: str) -> bool:
    return name.startswith("model") and not name.startswith("model_test")


def _object_breakdown(obj_dir: Path) -> tuple[int, int, int]:
    """(weights, arena, code) bytes from the compiled objects (before --gc-sections)."""
    size = shutil.which("arm-none-eabi-size")
    weights = arena = code = 0
    if size is None or not obj_dir.is_dir():
        return 0, 0, 0
    for obj in sorted(obj_dir.rglob("*.o")):
        r = subprocess.run([size, "-A", str(obj)], capture_output=True, text=True, check=False)
        for sec, n in parse_size_a(r.stdout).items():
            if sec.startswith(".text"):
                code += n
            elif _is_model_object(obj.name) and sec.startswith(".rodata"):
                weights += n
            elif _is_model_object(obj.name) and sec.startswith((".bss", ".data")):
                arena += n
    return weights, arena, code


def _too_big(board: Board | None, what: str, weights: int, arena: int, code: int, detail: str) -> BoardError:
    name = board.name if board else "the board"
    return BoardError(
        f"the firmware does not fit {name}: {detail} "
        f"(weights {weights} B, arena {arena} B, code {code} B"
        + (f"; board flash {board.flash_size} B, RAM {board.ram_size} B incl. {board.stack_size} B stack"
           if board else "")
        + f"); {what}"
    )


def cmsis_target_lib(board: Board, root: Path) -> Path:
    """CMSIS-NN for the board's core, built once and cached (same flags as the project Makefile)."""
    from . import hostbuild

    flags = " ".join([*board.cpu_flags, "-std=c99", "-O2", "-g", "-ffunction-sections", "-fdata-sections"])
    return hostbuild.cmsis_lib("arm-none-eabi-gcc", flags, INSTALL["arm-none-eabi-gcc"], "arm-none-eabi-ar", root)


def make_firmware(
    project_dir: Path | str,
    backend: str = "portable",
    *,
    board: Board | None = None,
    cmsis_nn_path: Path | str | None = None,
    jobs: int = 2,
    timeout: float = 900.0,
    cache_nn: bool = True,
) -> FirmwareInfo:
    """Builds ``<project_dir>/build/firmware.elf`` with the rendered Makefile and returns its sizes.

    ``backend``: "portable" or "cmsis-nn" (needs ``cmsis_nn_path`` or $CMSIS_NN_PATH).
    Raises ToolchainError (tool missing, compile error) or BoardError (does not fit).
    """
    project = Path(project_dir)
    from .project import link_of

    backend = link_of(project, backend)
    if backend not in BACKENDS:
        raise ToolchainError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
    if not (project / "Makefile").is_file():
        raise ToolchainError(f"{project}/Makefile is missing: render the project first")
    make = find_tool("make")
    find_arm_gcc()
    size = find_tool("arm-none-eabi-size")
    cmd = [make, "-C", str(project), f"-j{jobs}", f"BACKEND={backend}"]
    nn = cmsis_nn_path or os.environ.get("CMSIS_NN_PATH")
    if backend == "cmsis-nn":
        if not nn:
            raise ToolchainError(
                "the cmsis-nn backend needs CMSIS-NN v7.0.0: set CMSIS_NN_PATH (git clone --branch v7.0.0 "
                "https://github.com/ARM-software/CMSIS-NN.git) or use the portable backend")
        cmd.append(f"CMSIS_NN_PATH={Path(nn).resolve()}")
        if board is not None and cache_nn:
            cmd.append(f"NN_LIB={cmsis_target_lib(board, Path(nn))}")
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"make in {project} did not finish within {timeout:.0f} s") from None
    obj_dir = project / "build" / f"obj-{backend}"
    if r.returncode != 0:
        log = (r.stdout + r.stderr).strip()
        m = re.search(r"region `?(\w+)'? overflowed by (\d+) bytes", log)
        if m:
            w, a, c = _object_breakdown(obj_dir)
            raise _too_big(board, "use a smaller model or a board with more memory", w, a, c,
                           f"{m.group(1)} overflowed by {m.group(2)} bytes")
        if "do not fit in RAM" in log:
            w, a, c = _object_breakdown(obj_dir)
            raise _too_big(board, "use a smaller model or a board with more memory", w, a, c,
                           "data + bss + stack exceed RAM")
        tail = "\n".join(log.splitlines()[-25:])
        raise ToolchainError(f"firmware build failed in {project} (exit {r.returncode}):\n{tail}")
    elf = project / "build" / "firmware.elf"
    sr = subprocess.run([size, "-A", str(elf)], capture_output=True, text=True, check=False)
    if sr.returncode != 0:
        raise ToolchainError(f"arm-none-eabi-size failed on {elf}: {sr.stderr.strip()}")
    secs = parse_size_a(sr.stdout)
    text = sum(n for s, n in secs.items() if s in FLASH_SECTIONS and s != ".data")
    data, bss, stack = secs.get(".data", 0), secs.get(".bss", 0), secs.get(".tg_stack", 0)
    frame, func = parse_stack_usage(obj_dir)
    mapfile = project / "build" / "firmware.map"
    objs = parse_map_objects(mapfile.read_text(errors="replace")) if mapfile.is_file() else {}
    weights = sum(d["rodata"] for o, d in objs.items() if _is_model_object(o))
    arena = sum(d["bss"] + d["data"] for o, d in objs.items() if _is_model_object(o))
    code = sum(d["text"] for d in objs.values())
    info = FirmwareInfo(elf=elf, text=text, data=data, bss=bss, stack_reserved=stack,
                        flash_bytes=text + data, ram_bytes=data + bss + stack,
                        max_stack_frame=frame, max_stack_function=func,
                        weights_bytes=weights, arena_bytes=arena, code_bytes=code)
    if board is not None:
        check_fits(info, board)
    return info


def check_fits(info: FirmwareInfo, board: Board) -> None:
    """BoardError with numbers when the firmware exceeds the board's flash, RAM or stack."""
    w, a, c = info.weights_bytes, info.arena_bytes, info.code_bytes
    if info.flash_bytes > board.flash_size:
        raise _too_big(board, "use a smaller model", w, a, c,
                       f"flash needs {info.flash_bytes} B of {board.flash_size} B")
    if info.ram_bytes > board.ram_size:
        raise _too_big(board, "use a smaller model", w, a, c,
                       f"RAM needs {info.ram_bytes} B of {board.ram_size} B")
    if info.max_stack_frame > board.stack_size:
        raise BoardError(f"function {info.max_stack_function} needs a {info.max_stack_frame} B stack frame, "
                         f"more than the {board.stack_size} B stack of {board.name}")
