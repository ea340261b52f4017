"""Board bring-up of the real boards (tg_startup.c, tg_uart.c), desk-checked: not testable under
emulation, so each board's startup is compiled with -Werror (its TG_CHECK compile-time checks of
register bits hold) and the register addresses and bits it uses are compared with the values
written down from ST's reference manuals / device headers (stm32u575xx.h, stm32l4r5xx.h,
stm32f446xx.h, stm32h743xx.h). Also: the energy-mode UART divisors fit, the timestamp pin set-up
compiles. Needs arm-none-eabi-gcc."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tinygen import FIRMWARE
from tinygen.boards import baud_problem, load_board, render_board_files

if shutil.which("arm-none-eabi-gcc") is None:
    pytest.skip("arm-none-eabi-gcc not installed (sudo apt-get install gcc-arm-none-eabi)", allow_module_level=True)

HEADERS = ("tg_board.h", "tg_cycles.h", "tg_semihost.h", "tg_uart.h")
# macro -> value, from the reference manuals (RM0456, RM0432, RM0390, RM0433) and ST's headers
MANUAL = {
    "nucleo-u575": {"FLASH_ACR": 0x40022000, "FLASH_ACR_PRFTEN": 1 << 8, "ICACHE_CR": 0x40030400,
                    "ICACHE_SR": 0x40030404, "ICACHE_CR_EN": 1, "ICACHE_SR_BUSYF": 1, "RCC": 0x46020C00,
                    "PWR": 0x46020800},
    "nucleo-l4r5zi": {"FLASH_ACR": 0x40022000, "L4_ACR_PRFTEN": 1 << 8, "L4_ACR_ICEN": 1 << 9,
                      "L4_ACR_DCEN": 1 << 10, "RCC": 0x40021000, "PWR": 0x40007000},
    "nucleo-f446re": {"FLASH_ACR": 0x40023C00, "F4_ACR_PRFTEN": 1 << 8, "F4_ACR_ICEN": 1 << 9,
                      "F4_ACR_DCEN": 1 << 10, "F4_ACR_ICRST": 1 << 11, "F4_ACR_DCRST": 1 << 12,
                      "RCC": 0x40023800, "PWR": 0x40007000},
    "nucleo-h743zi": {"FLASH_ACR": 0x52002000, "TG_SCB_CCR_IC": 1 << 17, "TG_SCB_CCR_DC": 1 << 16,
                      "RCC": 0x58024400, "PWR": 0x58024800},
}


def _project(tmp_path, name, energy=False):
    b = load_board(name)
    d = tmp_path / name
    d.mkdir()
    (d / "board_config.h").write_text(render_board_files(b, backend="portable", energy=energy)["src/board_config.h"])
    for h in HEADERS:
        shutil.copy(FIRMWARE / h, d)
    return b, d


def _macros(b, d, src: str) -> dict[str, int]:
    out = subprocess.run(["arm-none-eabi-gcc", *b.cpu_flags, "-std=c99", "-E", "-dM", f"-I{d}", str(FIRMWARE / src)],
                         capture_output=True, text=True, check=True).stdout
    raw = {m.group(1): re.sub(r"\b(0x[0-9A-Fa-f]+|\d+)[uU]?[lL]*\b", r"\1", m.group(2))
           for m in re.finditer(r"^#define (\w+) (.+)$", out, re.M)}
    vals: dict[str, int] = {}
    for _ in range(4):  # macros naming other macros
        for k, e in raw.items():
            try:
                vals[k] = int(eval(e, {"__builtins__": {}}, dict(vals)))  # noqa: S307 (our own headers)
            except Exception:
                pass
    return vals


@pytest.mark.parametrize("name", sorted(MANUAL))
def test_startup_registers_match_the_manual(tmp_path, name):
    b, d = _project(tmp_path, name)
    r = subprocess.run(["arm-none-eabi-gcc", *b.cpu_flags, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{d}",
                        "-c", str(FIRMWARE / "tg_startup.c"), "-o", str(d / "s.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr                     # includes the TG_CHECK compile-time checks
    got = _macros(b, d, "tg_startup.c")
    assert {k: got.get(k) for k in MANUAL[name]} == MANUAL[name]
    assert got["TG_NUM_IRQS"] == b.num_irqs


def test_u575_enables_icache_and_prefetch():
    src = (FIRMWARE / "tg_startup.c").read_text()
    u5 = src[src.index("#if defined(TG_CLOCK_INIT_STM32U5)"):src.index("#elif defined(TG_CLOCK_INIT_STM32L4P)")]
    body = u5[u5.index("void tg_clock_init(void)"):]
    assert "u5_icache_on();" in body and "FLASH_ACR_PRFTEN" in body
    icache = u5[u5.index("static void u5_icache_on"):u5.index("void tg_clock_init")]
    assert icache.index("ICACHE_SR_BUSYF") < icache.index("ICACHE_CR_EN")   # reset invalidation done first


@pytest.mark.parametrize("name", sorted(MANUAL))
def test_energy_mode_compiles_with_the_timestamp_pin(tmp_path, name):
    b, d = _project(tmp_path, name, energy=True)
    cfg = (d / "board_config.h").read_text()
    assert "#define TG_UART_BAUD 9600u" in cfg and "#define TG_MLPERF_ENERGY 1" in cfg
    r = subprocess.run(["arm-none-eabi-gcc", *b.cpu_flags, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{d}",
                        "-c", str(FIRMWARE / "tg_uart.c"), "-o", str(d / "u.o")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nm = subprocess.run(["arm-none-eabi-nm", str(d / "u.o")], capture_output=True, text=True, check=True).stdout
    assert "T tg_timestamp_pulse" in nm and "T tg_timestamp_init" in nm
    assert baud_problem(b, 9600) is None and baud_problem(b, b.uart_baud) is None


def test_lpuart_energy_baud_needs_the_prescaler():
    b = load_board("nucleo-l4r5zi")   # 256 x 120 MHz / 9600 = 3.2 M > the 20-bit BRR: tg_uart.c divides by 4
    assert 256 * b.uart_clock_hz // 9600 > 0xFFFFF and baud_problem(b, 9600) is None
    assert "TG_REG(TG_UART_BASE + 0x2Cu) = 2u;" in (FIRMWARE / "tg_uart.c").read_text()
