"""Issue 3: the shared MLPerf Tiny models as firmware.

- every board x every model builds with -Wall -Wextra -Werror and fits the board;
- on the emulated Cortex-M33 (mps2-an505) and the emulated STM32F405 (netduinoplus2) the firmware's
  output for the reference test vector equals the TFLite reference byte for byte, with the
  portable backend and the cmsis-nn backend (DSP on; skipped without CMSIS_NN_PATH).
"""

import shutil

import pytest
from conftest import backends, shared_model

from tinygen import boards, driver, frontend, project, qemu, toolchain

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"]

needs_arm = pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc"),
                               reason="arm-none-eabi-gcc not installed (sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(not shutil.which("qemu-system-arm"),
                                reason="qemu-system-arm not installed (sudo apt-get install qemu-system-arm)")

_bytes: dict = {}


def _compiled(model: str, backend: str, board: boards.Board):
    key = (model, backend, board.arch_features)
    if key not in _bytes:
        buf, name = frontend.load(shared_model(model), log=lambda m: None)
        _bytes[key] = driver.compile_model(buf, name, backend, board.arch_features, board_name=board.name)
    return _bytes[key]


def _firmware(model, backend, board_name, tmp_path):
    board = boards.load_board(board_name)
    c = _compiled(model, backend, board)
    out = tmp_path / f"{board_name}-{backend}"
    project.write(out, driver.board_project(c, board))
    info = toolchain.make_firmware(out, backend, board=board)
    return c, board, info


@needs_arm
@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("board_name", boards.known_boards())
@pytest.mark.parametrize("model", MODELS)
def test_builds_werror_and_fits(model, board_name, backend, tmp_path):
    c, board, info = _firmware(model, backend, board_name, tmp_path)
    assert "-Werror" in (tmp_path / f"{board_name}-{backend}" / "Makefile").read_text()
    assert info.flash_bytes <= board.flash_size and info.ram_bytes <= board.ram_size
    # the arena in the ELF is the planned one (+ guard words, if any), and the weights are in flash
    assert c.plan.arena_size <= info.arena_bytes <= c.plan.arena_size + 64
    assert info.flash_bytes >= c.emitted.manifest["weights_bytes"]


@needs_arm
@needs_qemu
@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("board_name", ["mps2-an505", "netduinoplus2"])
@pytest.mark.parametrize("model", MODELS)
def test_firmware_output_equals_reference(model, board_name, backend, tmp_path):
    c, board, info = _firmware(model, backend, board_name, tmp_path)
    r = qemu.run_selftest(info.elf, board, timeout=300)
    assert r.model_hash == c.emitted.manifest["model_sha256_16"]
    assert r.match, f"{model} on {board_name}/{backend}: output differs from the TFLite reference"
    assert r.ok and r.instructions and r.instructions > c.emitted.manifest["macs"] // 8
    assert len(r.layers) == len(c.emitted.layers)
