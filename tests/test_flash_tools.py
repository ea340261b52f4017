"""tinygen flash with stand-in uploaders that behave as the real ones do on this kind of machine:
Debian's stlink-tools 1.7.0 (no STM32U5, chip id 0x482), pyOCD without the device's CMSIS pack
(and waiting for a probe unless -W), OpenOCD whose real error ("Error: open failed") comes before
its last line. Each failure: one line with the fix; the next uploader is tried."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import pytest

from tinygen.boards import load_board
from tinygen.cli import main
from tinygen.device import flash

OPENOCD_NO_PROBE = """Open On-Chip Debugger 0.12.0
Licensed under GNU GPL v2
For bug reports, read
	http://openocd.org/doc/doxygen/bugs.html
Info : auto-selecting first available session transport "hla_swd". To override use 'transport select <transport>'.
Info : The selected transport took over low-level target control.
Info : clock speed 2000 kHz
Error: open failed
in procedure 'program'
** OpenOCD init failed **
shutdown command invoked
"""
PYOCD_TARGETS = """  Name                      Vendor                   Part Number                  Families                     Source
------------------------------------------------------------------------------------------------------------------------------
  stm32f439xi               STMicroelectronics       STM32F439xI                                               builtin
  stm32h743xx               STMicroelectronics       STM32H743xx                                               builtin
  stm32l475xg               STMicroelectronics       STM32L475xG                                               builtin
"""


def tool(bin_dir: Path, name: str, script: str) -> None:
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(p.stat().st_mode | stat.S_IEXEC)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    d = tmp_path / "bin"
    d.mkdir()
    monkeypatch.setenv("PATH", f"{d}:/usr/bin")
    return d


def project(tmp_path: Path, board: str) -> Path:
    p = tmp_path / board
    (p / "build").mkdir(parents=True)
    (p / "manifest.json").write_text(json.dumps({"tinygen_version": "0.1.0", "board": board, "backend": "portable", "model": "m"}))
    for f in ("firmware.elf", "firmware.bin"):
        (p / "build" / f).write_bytes(b"\x7fELF")
    return p


def flash_cli(capsys, proj, *extra) -> tuple[int, str, str]:
    rc = main(["flash", str(proj), *extra])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err.strip()


def test_stlink_tools_1_7_cannot_flash_u5(tmp_path, tools, capsys):
    tool(tools, "st-flash", 'case "$1" in --version) echo "v1.7.0";; *) echo "unknown chip id! 0x482" >&2; exit 255;; esac\n')
    rc, _, err = flash_cli(capsys, project(tmp_path, "nucleo-u575"), "--tool", "st-flash")
    assert rc != 0 and "\n" not in err and err.startswith("tinygen: error:")
    assert "st-flash 1.7.0 cannot flash STM32U5 (chip id 0x482): needs stlink-tools >= 1.8.0" in err


def test_stlink_tools_1_8_flashes_u5(tmp_path, tools):
    tool(tools, "st-flash", 'case "$1" in --version) echo "v1.8.0";; *) echo "Flash written and verified!";; esac\n')
    b = load_board("nucleo-u575")
    proj = project(tmp_path, "nucleo-u575")
    assert flash.flash_real(proj, b, proj / "build" / "firmware.elf", log=lambda s: None) == "st-flash"


def test_stlink_version_not_needed_for_f4(tmp_path, tools):
    tool(tools, "st-flash", 'case "$1" in --version) echo "v1.7.0";; *) exit 0;; esac\n')
    b = load_board("nucleo-f446re")
    proj = project(tmp_path, "nucleo-f446re")
    assert flash.flash_real(proj, b, proj / "build" / "firmware.elf", log=lambda s: None) == "st-flash"


@pytest.mark.parametrize("board, target", [("nucleo-u575", "stm32u575zitxq"), ("nucleo-f446re", "stm32f446retx"),
                                           ("nucleo-l4r5zi", "stm32l4r5zitx")])
def test_pyocd_needs_the_cmsis_pack(tmp_path, tools, capsys, board, target):
    tool(tools, "pyocd", f'if [ "$1" = list ]; then cat <<"EOF"\n{PYOCD_TARGETS}EOF\nelse exit 0; fi\n')
    rc, _, err = flash_cli(capsys, project(tmp_path, board), "--tool", "pyocd")
    assert rc != 0 and "\n" not in err
    assert f"pyocd has no target {target}" in err and f"`pyocd pack install {target}`" in err


def test_pyocd_h743_builtin_target_and_no_waiting_for_a_probe(tmp_path, tools, capsys):
    # the real pyOCD waits for a probe to be plugged in unless -W (--no-wait) is given
    tool(tools, "pyocd", 'for a in "$@"; do [ "$a" = -W ] && nowait=1; done\n'
                         'echo "$@" > "$(dirname "$0")/args"\n'
                         '[ -n "$nowait" ] || sleep 600\n'
                         'echo "0000717 C No available debug probes are connected [__main__]" >&2; exit 1\n')
    t0 = time.monotonic()
    rc, _, err = flash_cli(capsys, project(tmp_path, "nucleo-h743zi"), "--tool", "pyocd")
    assert time.monotonic() - t0 < 30 and rc != 0
    assert "-t stm32h743xx" in (tools / "args").read_text() and "No available debug probes are connected" in err


def test_openocd_real_error_reaches_the_user(tmp_path, tools, capsys):
    (tools / "openocd.out").write_text(OPENOCD_NO_PROBE)
    tool(tools, "openocd", 'cat "$(dirname "$0")/openocd.out" >&2; exit 1\n')
    rc, _, err = flash_cli(capsys, project(tmp_path, "nucleo-l4r5zi"), "--tool", "openocd")
    assert rc != 0 and "\n" not in err and "openocd: Error: open failed" in err
    assert "shutdown command invoked" not in err


def test_failures_fall_through_to_the_next_uploader(tmp_path, tools):
    tool(tools, "st-flash", 'case "$1" in --version) echo "v1.7.0";; *) exit 0;; esac\n')
    tool(tools, "openocd", "exit 0\n")
    b = load_board("nucleo-u575")
    proj = project(tmp_path, "nucleo-u575")
    logs: list[str] = []
    assert flash.flash_real(proj, b, proj / "build" / "firmware.elf", log=logs.append) == "openocd"
    assert any("stlink-tools >= 1.8.0" in ln for ln in logs)


def test_error_line_helper():
    assert flash.error_line(OPENOCD_NO_PROBE, 1) == "Error: open failed"
    assert flash.error_line("a\nlast words\n", 2) == "last words"
    assert flash.error_line("", 3) == "exit 3"
