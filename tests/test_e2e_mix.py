"""A small net mixing the later ops (HARD_SWISH, a dilated depthwise conv written as
SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND, LEAKY_RELU, SPLIT, MAXIMUM, TANH, RESIZE_NEAREST_NEIGHBOR,
STRIDED_SLICE, TRANSPOSE, MEAN over one axis...) through the whole compiler: on the host with
both kernel sets on random inputs, and as firmware on the emulated Cortex-M33 (mps2-an505), each
byte for byte against TFLite's BUILTIN_REF."""

import shutil

import pytest
from conftest import backends
from hostcheck import assert_host_bit_exact
from opnets import make_opnet

from tinygen import boards, driver, project, qemu, toolchain
from tinygen.flatbuf import read_model
from tinygen.tflite_names import BUILTIN_OPS

NEW_OPS = {"HARD_SWISH", "LEAKY_RELU", "SPLIT", "MAXIMUM", "TANH", "RESIZE_NEAREST_NEIGHBOR", "STRIDED_SLICE",
           "TRANSPOSE", "MEAN", "SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}


def _mix() -> bytes:
    buf = make_opnet("mix")
    fb = read_model(buf)
    kinds = {BUILTIN_OPS.get(fb.opcodes[o.opcode_index].builtin) for o in fb.subgraphs[0].operators}
    assert NEW_OPS <= kinds, f"the converter no longer writes {sorted(NEW_OPS - kinds)}"
    return buf


@pytest.mark.parametrize("backend", backends())
def test_mix_on_host(backend, tmp_path):
    buf = _mix()
    c = driver.compile_model(buf, "mix", backend, arch="none")
    assert not {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"} & {op.kind for op in c.graph.ops}
    again = driver.compile_model(buf, "mix", backend, arch="none")
    assert driver.host_project(again) == driver.host_project(c)  # deterministic, byte for byte
    assert_host_bit_exact(c, buf, tmp_path / "p", backend, n=30, seed=5, what=f"mix/{backend}")


@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("backend", backends())
def test_mix_on_qemu_m33(backend, tmp_path):
    board = boards.load_board("mps2-an505")
    c = driver.compile_model(_mix(), "mix", backend, board.arch_features, board_name=board.name)
    project.write(tmp_path / "fw", driver.board_project(c, board))
    info = toolchain.make_firmware(tmp_path / "fw", backend, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=300)
    assert r.model_hash == c.emitted.manifest["model_sha256_16"]
    assert r.match and r.ok, "firmware output differs from the TFLite reference"
    assert len(r.layers) == len(c.emitted.layers)
