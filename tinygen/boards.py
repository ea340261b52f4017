"""Board descriptions (``boards/*.toml``) and the board-specific project files.

A :class:`Board` is plain data read with :mod:`tomllib` and validated once; the
compiler reads ``arch_features`` (CMSIS-NN scratch sizing), the project stage
renders the board templates with :func:`render_board_files`, and
:mod:`tinygen.toolchain` / :mod:`tinygen.qemu` build and run the result.
Compile options (backend, profiling) are arguments, never board data.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import tomllib

from . import BOARDS, FIRMWARE, TEMPLATES
from .errors import BoardError

DEFAULT_BOARD = "mps2-an505"
CORES = ("cortex-m33", "cortex-m4", "cortex-m7")
UART_KINDS = ("cmsdk", "stm32-usart-f4", "stm32-usart-v2", "stm32-lpuart")
CYCLE_COUNTERS = ("dwt", "systick")
CLOCK_INITS = ("none", "stm32u5", "stm32l4p", "stm32f4", "stm32h7")
BACKENDS = ("cmsis-nn", "portable")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_PIN_RE = re.compile(r"^P([A-K])([0-9]|1[0-5])$")


@dataclass(frozen=True)
class Board:
    """One target board; every field comes from ``boards/<name>.toml``."""

    name: str
    description: str
    mcu: str
    core: str                      # cortex-m33 / cortex-m4 / cortex-m7
    cpu_flags: tuple[str, ...]     # -mcpu=... -mthumb -mfloat-abi=hard -mfpu=...
    dsp: bool                      # core has the DSP extension (CMSIS-NN ARM_MATH_DSP)
    clock_hz: int                  # core clock after tg_clock_init (QEMU: SysTick rate)
    clock_init: str                # register-level PLL setup in tg_startup.c, "none" if emulated
    num_irqs: int                  # external interrupt vectors in the table
    stack_size: int                # bytes, reserved at the end of RAM
    flash_origin: int
    flash_size: int
    ram_origin: int
    ram_size: int
    uart_kind: str                 # cmsdk / stm32-usart-f4 / stm32-usart-v2 / stm32-lpuart
    uart_base: int
    uart_baud: int
    uart_clock_hz: int             # kernel clock of the UART (baud-rate divisor input)
    uart_tx: str | None            # "PA9" (real boards: GPIO set-up), None when emulated
    uart_rx: str | None
    uart_af: int | None
    uart_gpio_base: int | None
    uart_rcc_enable: tuple[tuple[int, int], ...]   # (register address, bits to set)
    cycle_counter: str             # dwt / systick (dwt falls back to systick at run time)
    pio_board: str | None          # PlatformIO board id, None for emulated boards
    pio_platform: str | None
    upload_protocols: tuple[str, ...]
    qemu_machine: str | None       # set only for emulated boards
    # MLPerf Tiny energy mode ([mlperf]): the timestamp pin (Arduino D7 on Nucleo boards, as the
    # reference DUT), its GPIO port, the port's clock enable, and the energy-mode baud rate.
    timestamp_pin: str | None = None
    timestamp_gpio_base: int | None = None
    timestamp_rcc_enable: tuple[int, int] | None = None
    energy_baud: int = 9600

    @property
    def emulated(self) -> bool:
        return self.qemu_machine is not None

    @property
    def arch_features(self) -> str:
        """"dsp" or "none": selects CMSIS-NN's DSP or pure-C code paths (scratch sizes differ)."""
        return "dsp" if self.dsp else "none"

    @property
    def uart_tx_pin(self) -> tuple[int, int] | None:
        """(port index A=0, pin) of the TX pin, None when emulated."""
        return _pin(self.uart_tx)

    @property
    def uart_rx_pin(self) -> tuple[int, int] | None:
        return _pin(self.uart_rx)

    @property
    def timestamp_pin_index(self) -> tuple[int, int] | None:
        return _pin(self.timestamp_pin)


def _pin(p: str | None) -> tuple[int, int] | None:
    if p is None:
        return None
    m = _PIN_RE.match(p)
    assert m
    return ord(m.group(1)) - ord("A"), int(m.group(2))


def known_boards(boards_dir: Path = BOARDS) -> list[str]:
    """Names of every board file, sorted."""
    return sorted(p.stem for p in boards_dir.glob("*.toml"))


def load_board(name: str | None = None, boards_dir: Path = BOARDS) -> Board:
    """Read and validate ``boards/<name>.toml`` (``None``: the default board, mps2-an505)."""
    name = name or DEFAULT_BOARD
    path = boards_dir / f"{name}.toml"
    if not _NAME_RE.match(name) or not path.is_file():
        raise BoardError(f"unknown board '{name}'; known boards: {', '.join(known_boards(boards_dir))}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise BoardError(f"{path}: not valid TOML: {e}") from None
    return _parse(data, path)


def all_boards(boards_dir: Path = BOARDS) -> list[Board]:
    return [load_board(n, boards_dir) for n in known_boards(boards_dir)]


class _Reader:
    def __init__(self, data: dict[str, Any], path: Path) -> None:
        self.data, self.path = data, path

    def get(self, key: str, typ: type | tuple[type, ...], default: Any = ..., section: str | None = None) -> Any:
        src = self.data if section is None else self.data.get(section, {})
        where = key if section is None else f"[{section}] {key}"
        if not isinstance(src, dict):
            raise BoardError(f"{self.path}: [{section}] must be a table")
        if key not in src:
            if default is ...:
                raise BoardError(f"{self.path}: missing field {where}")
            return default
        v = src[key]
        if isinstance(v, bool) and typ is not bool and not (isinstance(typ, tuple) and bool in typ):
            raise BoardError(f"{self.path}: {where} must be {_tname(typ)}, got {v!r}")
        if not isinstance(v, typ):
            raise BoardError(f"{self.path}: {where} must be {_tname(typ)}, got {v!r}")
        return v

    def fail(self, msg: str) -> BoardError:
        return BoardError(f"{self.path}: {msg}")


def _tname(t: type | tuple[type, ...]) -> str:
    return " or ".join(x.__name__ for x in t) if isinstance(t, tuple) else t.__name__


def _parse(d: dict[str, Any], path: Path) -> Board:
    r = _Reader(d, path)
    known_sections = {"flash", "ram", "uart", "cycles", "platformio", "qemu", "mlperf"}
    top = {"name", "description", "mcu", "core", "cpu_flags", "dsp", "clock_hz", "clock_init",
           "num_irqs", "stack_size"}
    unknown = sorted(set(d) - known_sections - top)
    if unknown:
        raise r.fail(f"unknown field(s) {', '.join(unknown)}")
    name = r.get("name", str)
    if name != path.stem:
        raise r.fail(f"name '{name}' must equal the file name '{path.stem}'")
    core = r.get("core", str)
    if core not in CORES:
        raise r.fail(f"core '{core}' is not one of {', '.join(CORES)}")
    flags = r.get("cpu_flags", list)
    if not all(isinstance(f, str) for f in flags) or f"-mcpu={core}" not in [f.split("+")[0] for f in flags]:
        raise r.fail(f"cpu_flags must be strings and include -mcpu={core}")
    if "-mthumb" not in flags:
        raise r.fail("cpu_flags must include -mthumb")
    clock_init = r.get("clock_init", str)
    if clock_init not in CLOCK_INITS:
        raise r.fail(f"clock_init '{clock_init}' is not one of {', '.join(CLOCK_INITS)}")
    machine = r.get("machine", str, None, "qemu")
    if machine is not None and clock_init != "none":
        raise r.fail("emulated boards ([qemu] machine) must use clock_init = \"none\"")
    uart_kind = r.get("kind", str, section="uart")
    if uart_kind not in UART_KINDS:
        raise r.fail(f"[uart] kind '{uart_kind}' is not one of {', '.join(UART_KINDS)}")
    counter = r.get("counter", str, section="cycles")
    if counter not in CYCLE_COUNTERS:
        raise r.fail(f"[cycles] counter '{counter}' is not one of {', '.join(CYCLE_COUNTERS)}")
    tx, rx = r.get("tx", str, None, "uart"), r.get("rx", str, None, "uart")
    for p in (tx, rx):
        if p is not None and not _PIN_RE.match(p):
            raise r.fail(f"[uart] pin '{p}' must look like PA9")
    rcc = r.get("rcc_enable", list, [], "uart")
    if not all(isinstance(e, list) and len(e) == 2 and all(isinstance(x, int) for x in e) for e in rcc):
        raise r.fail("[uart] rcc_enable must be a list of [register, bits] integer pairs")
    if machine is None and (tx is None or rx is None or r.get("gpio_base", int, None, "uart") is None):
        raise r.fail("real boards need [uart] tx, rx, af and gpio_base")
    ts_pin = r.get("timestamp_pin", str, None, "mlperf")
    ts_rcc = r.get("timestamp_rcc_enable", list, None, "mlperf")
    ts_base = r.get("timestamp_gpio_base", int, None, "mlperf")
    if ts_pin is not None:
        if not _PIN_RE.match(ts_pin) or ts_base is None or ts_rcc is None or len(ts_rcc) != 2 \
                or not all(isinstance(x, int) for x in ts_rcc):
            raise r.fail("[mlperf] timestamp_pin must look like PF13 and come with timestamp_gpio_base and "
                         "timestamp_rcc_enable = [register, bits]")
    pio_board = r.get("board", str, None, "platformio")
    if machine is None and pio_board is None:
        raise r.fail("real boards need [platformio] board")
    board = Board(
        name=name,
        description=r.get("description", str),
        mcu=r.get("mcu", str),
        core=core,
        cpu_flags=tuple(flags),
        dsp=r.get("dsp", bool),
        clock_hz=r.get("clock_hz", int),
        clock_init=clock_init,
        num_irqs=r.get("num_irqs", int),
        stack_size=r.get("stack_size", int),
        flash_origin=r.get("origin", int, section="flash"),
        flash_size=r.get("size", int, section="flash"),
        ram_origin=r.get("origin", int, section="ram"),
        ram_size=r.get("size", int, section="ram"),
        uart_kind=uart_kind,
        uart_base=r.get("base", int, section="uart"),
        uart_baud=r.get("baud", int, section="uart"),
        uart_clock_hz=r.get("clock_hz", int, section="uart"),
        uart_tx=tx,
        uart_rx=rx,
        uart_af=r.get("af", int, None, "uart"),
        uart_gpio_base=r.get("gpio_base", int, None, "uart"),
        uart_rcc_enable=tuple((a, b) for a, b in rcc),
        cycle_counter=counter,
        pio_board=pio_board,
        pio_platform=r.get("platform", str, None, "platformio"),
        upload_protocols=tuple(r.get("upload", list, [], "platformio")),
        qemu_machine=machine,
        timestamp_pin=ts_pin,
        timestamp_gpio_base=ts_base,
        timestamp_rcc_enable=None if ts_rcc is None else (ts_rcc[0], ts_rcc[1]),
        energy_baud=r.get("energy_baud", int, 9600, "mlperf"),
    )
    for field, lo, hi in (("clock_hz", 1_000_000, 1_000_000_000), ("uart_clock_hz", 1_000_000, 1_000_000_000),
                          ("uart_baud", 1200, 4_000_000), ("energy_baud", 1200, 4_000_000),
                          ("flash_size", 16_384, 1 << 28),
                          ("ram_size", 4096, 1 << 28), ("stack_size", 1024, 1 << 20), ("num_irqs", 0, 496)):
        v = getattr(board, field)
        if not lo <= v <= hi:
            raise r.fail(f"{field} = {v} is outside [{lo}, {hi}]")
    for field in ("flash_origin", "ram_origin", "uart_base"):
        v = getattr(board, field)
        if v % 4 or not 0 <= v < 1 << 32:
            raise r.fail(f"{field} = {v:#x} must be a word-aligned 32-bit address")
    for baud in (board.uart_baud, board.energy_baud):
        problem = baud_problem(board, baud)
        if problem:
            raise r.fail(problem)
    if board.stack_size % 8:
        raise r.fail("stack_size must be a multiple of 8")
    if board.stack_size >= board.ram_size:
        raise r.fail(f"stack_size {board.stack_size} does not fit in RAM ({board.ram_size} bytes)")
    return board


def baud_problem(board: Board, baud: int) -> str | None:
    """Why tg_uart.c cannot make ``baud`` from the UART clock (None: it can, within 2%)."""
    f = board.uart_clock_hz
    if board.uart_kind == "cmsdk":
        return None  # QEMU ignores the divisor
    if board.uart_kind == "stm32-lpuart":  # BRR = 256 f / baud, 0x300..0xFFFFF; tg_uart.c divides f by 4 if needed
        brr = 256 * f // baud
        if brr > 0xFFFFF:
            brr = 256 * (f // 4) // baud
        ok = 0x300 <= brr <= 0xFFFFF
    else:  # USART, 16x oversampling: BRR = f / baud, 16..0xFFFF
        brr = (f + baud // 2) // baud
        ok = 16 <= brr <= 0xFFFF
    if not ok:
        return f"[uart] {baud} baud is out of reach of the {board.uart_kind} divisor at {f:,} Hz (BRR {brr:#x})"
    return None


# ---------------------------------------------------------------------------
# Board templates

# Firmware sources owned by the board/runtime layer (always copied into src/).
FIRMWARE_RUNTIME = ("tg_startup.c", "tg_uart.c", "tg_uart.h", "tg_cycles.c", "tg_cycles.h",
                    "tg_semihost.c", "tg_semihost.h", "tg_board.h", "tg_main.c", "tg_bench.c", "tg_bench.h",
                    "tg_bench_mlperf.c", "tg_bench_internal.h")
FIRMWARE_KERNELS = {"portable": ("tg_nn.h", "tg_kernels_ref.c", "tg_kernels_move.c", "tg_kernels_lstm.c"),
                    "cmsis-nn": ("tg_nn.h", "tg_kernels_ref.c", "tg_kernels_move.c", "tg_kernels_lstm.c", "tg_backend_cmsis.c")}
CMSIS_NN_GIT = "https://github.com/ARM-software/CMSIS-NN.git#v7.0.0"
# PlatformIO pins: platform-ststm32 release, and GCC 12.3 (its optionalVersions entry): the
# platform's default toolchain for a no-framework build is GCC 7.2.1, which lacks the ACLE
# intrinsics CMSIS-NN v7 uses.
PIO = {"platform_version": "19.6.0", "toolchain": "toolchain-gccarmnoneeabi@~1.120301.0"}


def firmware_sources(backend: str, firmware_dir: Path = FIRMWARE, generated: bool = False) -> list[Path]:
    """The firmware/ files a project for ``backend`` needs (those that exist), sorted by name;
    ``generated``: a layer runs a generated kernel (it needs tg_dsp.h)."""
    if backend not in BACKENDS:
        raise BoardError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
    names = sorted(set(FIRMWARE_RUNTIME) | set(FIRMWARE_KERNELS[backend]) | ({"tg_dsp.h"} if generated else set()))
    return [firmware_dir / n for n in names if (firmware_dir / n).is_file()]


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    env.filters["hex32"] = lambda v: f"0x{v:08X}"
    return env


def render_board_files(board: Board, *, backend: str = "cmsis-nn", profile: bool = True,
                       energy: bool = False) -> dict[str, str]:
    """Board-specific project files, relative path -> text; deterministic (no dates, no paths).

    ``platformio.ini`` and its extra script are rendered only for boards PlatformIO knows.
    ``energy``: MLPerf Tiny energy mode (the board's energy baud rate and timestamp pin).
    """
    if backend not in BACKENDS:
        raise BoardError(f"unknown backend '{backend}'; known: {', '.join(BACKENDS)}")
    if energy and board.timestamp_pin is None:
        raise BoardError(f"{board.name} has no MLPerf timestamp pin ([mlperf] timestamp_pin): no energy mode")
    env = _env()
    ctx = {"board": board, "backend": backend, "profile": profile, "cmsis_nn_git": CMSIS_NN_GIT,
           "energy": energy, "baud": board.energy_baud if energy else board.uart_baud,
           "pio": PIO}
    out = {
        "Makefile": env.get_template("Makefile.j2").render(ctx),
        "linker.ld": env.get_template("linker.ld.j2").render(ctx),
        "src/board_config.h": env.get_template("board_config.h.j2").render(ctx),
    }
    if board.pio_board is not None:
        out["platformio.ini"] = env.get_template("platformio.ini.j2").render(ctx)
        out["tg_pio_cmsis_nn.py"] = env.get_template("tg_pio_cmsis_nn.py.j2").render(ctx)
    return out
