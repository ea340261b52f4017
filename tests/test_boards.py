"""Board files, their validation, and the board templates (deterministic, parseable)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tinygen import BOARDS
from tinygen.boards import (
    DEFAULT_BOARD,
    all_boards,
    firmware_sources,
    load_board,
    render_board_files,
)
from tinygen.errors import BoardError

EXPECTED = {"nucleo-u575", "nucleo-l4r5zi", "nucleo-f446re", "nucleo-h743zi",
            "mps2-an505", "mps2-an386", "netduinoplus2"}
EMULATED = {"mps2-an505", "mps2-an386", "netduinoplus2"}


def test_every_board_loads_and_validates():
    boards = {b.name: b for b in all_boards()}
    assert set(boards) == EXPECTED
    for b in boards.values():
        assert b.emulated == (b.name in EMULATED)
        assert f"-mcpu={b.core}" in b.cpu_flags and "-mthumb" in b.cpu_flags
        assert b.arch_features in ("dsp", "none")
        assert b.stack_size < b.ram_size
        if b.emulated:
            assert b.clock_init == "none" and b.qemu_machine == b.name and b.cycle_counter == "systick"
        else:
            assert b.clock_init != "none" and b.pio_board and b.upload_protocols == ("stlink",)
            assert b.cycle_counter == "dwt" and b.uart_tx_pin is not None


def test_board_facts():
    u5 = load_board("nucleo-u575")
    assert (u5.core, u5.clock_hz, u5.pio_board) == ("cortex-m33", 160_000_000, "nucleo_u575zi_q")
    assert (u5.flash_origin, u5.flash_size) == (0x0800_0000, 2 * 1024 * 1024)
    assert (u5.ram_origin, u5.ram_size) == (0x2000_0000, 768 * 1024)   # SRAM1+2+3, contiguous
    assert (u5.uart_kind, u5.uart_base, u5.uart_tx, u5.uart_rx) == ("stm32-usart-v2", 0x40013800, "PA9", "PA10")
    assert "-mfpu=fpv5-sp-d16" in u5.cpu_flags and u5.arch_features == "dsp"
    an505 = load_board(None)
    assert an505.name == DEFAULT_BOARD == "mps2-an505"
    assert (an505.flash_origin, an505.ram_origin, an505.uart_base) == (0x1000_0000, 0x3800_0000, 0x5020_0000)
    assert load_board("mps2-an386").uart_base == 0x4000_4000
    nd = load_board("netduinoplus2")
    assert (nd.uart_kind, nd.uart_base) == ("stm32-usart-f4", 0x4001_1000)
    assert load_board("nucleo-h743zi").core == "cortex-m7"
    assert u5.num_irqs == 126                                          # IRQn 0..125 (stm32u575xx.h)
    # MLPerf Tiny energy mode: Arduino D7 (the reference DUT's timestamp pin), 9600 baud
    for name, pin, base, rcc in (("nucleo-u575", "PF13", 0x42021400, (0x46020C8C, 1 << 5)),
                                 ("nucleo-l4r5zi", "PF13", 0x48001400, (0x4002104C, 1 << 5)),
                                 ("nucleo-h743zi", "PF13", 0x58021400, (0x580244E0, 1 << 5)),
                                 ("nucleo-f446re", "PA8", 0x40020000, (0x40023830, 1 << 0))):
        b = load_board(name)
        assert (b.timestamp_pin, b.timestamp_gpio_base, b.timestamp_rcc_enable, b.energy_baud) == (pin, base, rcc, 9600)
    assert load_board("mps2-an505").timestamp_pin is None


def test_unknown_board_lists_known_ones():
    with pytest.raises(BoardError) as e:
        load_board("nucleo-z999")
    msg = str(e.value)
    assert "nucleo-z999" in msg
    for name in EXPECTED:
        assert name in msg
    with pytest.raises(BoardError):
        load_board("../etc/passwd")


def _broken(tmp_path: Path, old: str, new: str) -> Path:
    text = (BOARDS / "mps2-an505.toml").read_text()
    assert old in text
    (tmp_path / "mps2-an505.toml").write_text(text.replace(old, new, 1))
    return tmp_path


@pytest.mark.parametrize("old,new,needle", [
    ('core = "cortex-m33"', 'core = "cortex-m0"', "core"),
    ('kind = "cmsdk"', 'kind = "pl011"', "kind"),
    ("clock_hz = 20_000_000", "clock_hz = true", "clock_hz"),
    ("stack_size = 16384", "stack_size = 16385", "stack_size"),
    ('name = "mps2-an505"', 'name = "other"', "file name"),
    ('clock_init = "none"', 'clock_init = "stm32u5"', "emulated"),
    ('mcu = "AN505"', 'mcu = "AN505"\ncolour = "red"', "colour"),
    ('counter = "systick"', 'counter = "rdtsc"', "counter"),
    ('mcu = "AN505"\n', "", "mcu"),
    ("[flash]", "[flash\n", "TOML"),
    ("baud = 115200", "baud = 300", "uart_baud"),
])
def test_invalid_board_files_are_rejected(tmp_path, old, new, needle):
    d = _broken(tmp_path, old, new)
    with pytest.raises(BoardError, match=needle):
        load_board("mps2-an505", d)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("backend", ["cmsis-nn", "portable"])
def test_templates_render_deterministically(name, backend):
    b = load_board(name)
    first = render_board_files(b, backend=backend)
    second = render_board_files(load_board(name), backend=backend)
    assert first == second
    assert {"Makefile", "linker.ld", "src/board_config.h"} <= set(first)
    assert ("platformio.ini" in first) == (not b.emulated)
    for text in first.values():
        assert "\t" not in text and str(BOARDS.parent) not in text   # no absolute paths
    ld = first["linker.ld"]
    assert f"ORIGIN = 0x{b.flash_origin:08X}" in ld and f"ORIGIN = 0x{b.ram_origin:08X}" in ld
    assert ld.index("KEEP(*(.isr_vector))") < ld.index("*(.text .text.*)")
    assert f"_stack_size = {b.stack_size};" in ld
    cfg = first["src/board_config.h"]
    assert f'#define TG_BOARD_NAME "{b.name}"' in cfg
    assert f"#define TG_CLOCK_HZ {b.clock_hz}u" in cfg
    assert f"#define TG_EMULATED {int(b.emulated)}" in cfg
    assert f"BACKEND ?= {backend}" in first["Makefile"]
    if "tg_pio_cmsis_nn.py" in first:
        compile(first["tg_pio_cmsis_nn.py"], "tg_pio_cmsis_nn.py", "exec")


@pytest.mark.parametrize("name", sorted(EXPECTED - EMULATED))
@pytest.mark.parametrize("backend", ["cmsis-nn", "portable"])
def test_platformio_ini_parses_with_platformio(tmp_path, name, backend):
    from platformio.project.config import ProjectConfig

    b = load_board(name)
    ini = tmp_path / "platformio.ini"
    ini.write_text(render_board_files(b, backend=backend)["platformio.ini"])
    cfg = ProjectConfig(str(ini), parse_extra=False)
    cfg.validate(envs=[name], silent=True)
    env = f"env:{name}"
    assert cfg.envs() == [name]
    assert cfg.get(env, "platform") == "ststm32@19.6.0"
    assert cfg.get(env, "platform_packages") == ["toolchain-gccarmnoneeabi@~1.120301.0"]  # GCC 12.3, ACLE
    assert cfg.get(env, "board") == b.pio_board
    assert cfg.get(env, "board_build.ldscript") == "linker.ld"
    assert "framework" not in cfg.options(env)
    flags = cfg.get(env, "build_flags")
    for f in (*b.cpu_flags, "-Wall", "-Wextra", "-Werror"):
        assert f in flags
    assert ("-DTG_BACKEND_CMSIS_NN" in flags) == (backend == "cmsis-nn")
    deps = cfg.get(env, "lib_deps")
    assert deps == (["CMSIS-NN=https://github.com/ARM-software/CMSIS-NN.git#v7.0.0"] if backend == "cmsis-nn" else [])
    assert cfg.get(env, "upload_protocol") == "stlink"
    assert cfg.get(env, "monitor_speed") == b.uart_baud
    assert cfg.get(env, "extra_scripts") == ["pre:tg_pio_cmsis_nn.py"]


def test_firmware_sources():
    names = {p.name for p in firmware_sources("portable")}
    assert {"tg_startup.c", "tg_uart.c", "tg_cycles.c", "tg_main.c", "tg_semihost.c"} <= names
    assert "tg_backend_cmsis.c" not in names
    with pytest.raises(BoardError):
        firmware_sources("tvm")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_makefile_explains_missing_cmsis_nn_path(tmp_path):
    files = render_board_files(load_board("mps2-an505"), backend="cmsis-nn")
    (tmp_path / "Makefile").write_text(files["Makefile"])
    env = {"PATH": "/usr/bin:/bin"}
    r = subprocess.run(["make", "-n", "-C", str(tmp_path)], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "CMSIS_NN_PATH" in r.stderr
    r = subprocess.run(["make", "-n", "-C", str(tmp_path), "BACKEND=cuda"], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "BACKEND must be cmsis-nn or portable" in r.stderr
