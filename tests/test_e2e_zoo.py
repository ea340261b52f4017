"""The zoo: everyday architectures (tf_keras.applications and hand-written layers), random weights,
converted to full int8, through the whole compiler, byte for byte against TFLite's BUILTIN_REF on
random inputs: on the host with both kernel sets, and as mps2-an505 (Cortex-M33) firmware under
QEMU (its self-test vectors: random inputs with the reference's outputs, compared on the board).

Each .tflite is converted once (tests/opnets.py caches conversions on disk, keyed by the
generator and TensorFlow versions) and read once per session (the ``zoo_model`` fixture). Single
ops at odd shapes are the op nets (test_e2e_opnets.py); this file holds whole models."""

import shutil

import pytest
from conftest import backends
from hostcheck import assert_host_bit_exact
from opnets import make_opnet

from tinygen import boards, driver, project, qemu, toolchain
from tinygen.flatbuf import read_model
from tinygen.tflite_names import BUILTIN_OPS

# (id, opnet kind, spec, ops the converted model must contain: the zoo entry is about them)
ZOO = [
    ("mnv3s", "mobilenet_v3_small", dict(size=64), {"HARD_SWISH", "MEAN", "MUL"}),
    ("mnv3s_minimalistic", "mobilenet_v3_small", dict(size=64, minimalistic=True), {"MEAN", "MUL"}),
    ("mobilenet_v2", "zoo", dict(arch="mobilenet_v2"), {"DEPTHWISE_CONV_2D", "ADD", "MEAN"}),
    ("mobilenet_v1", "zoo", dict(arch="mobilenet_v1", batch=1), {"DEPTHWISE_CONV_2D", "CONV_2D"}),
    ("audio_conv1d_gap", "zoo", dict(arch="audio_conv1d"), {"CONV_2D", "MAX_POOL_2D", "MEAN"}),
    ("lstm_unrolled", "zoo", dict(arch="lstm_unrolled"), {"FULLY_CONNECTED", "LOGISTIC", "TANH"}),
    ("gru_unrolled", "zoo", dict(arch="gru_unrolled"), {"FULLY_CONNECTED", "LOGISTIC", "TANH"}),
    ("simplernn_unrolled", "zoo", dict(arch="simplernn_unrolled"), {"UNPACK", "TANH", "PACK"}),
    ("lstm_fused", "zoo", dict(arch="lstm_fused"), {"UNIDIRECTIONAL_SEQUENCE_LSTM"}),
    ("conv2d_transpose_decoder", "zoo", dict(arch="deconv_decoder"), {"TRANSPOSE_CONV", "LOGISTIC"}),
    ("upsampling2d_decoder", "zoo", dict(arch="upsampling_decoder"), {"RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"}),
    ("dilated_conv2d", "zoo", dict(arch="dilated_conv2d"), {"SPACE_TO_BATCH_ND", "BATCH_TO_SPACE_ND"}),
    ("dilated_conv1d_tcn", "zoo", dict(arch="dilated_conv1d_tcn"), {"SPACE_TO_BATCH_ND", "EXPAND_DIMS", "PAD"}),
    ("activation_heads", "zoo", dict(arch="activation_heads"), {"TANH", "HARD_SWISH", "LEAKY_RELU", "PRELU"}),
    ("subtract", "zoo", dict(arch="subtract"), {"SUB"}),
    ("dense_3d_batch1", "zoo", dict(arch="dense_3d"), {"FULLY_CONNECTED", "SOFTMAX"}),
    ("sum_batch_matmul", "zoo", dict(arch="sum_batch_matmul"), {"SUM", "BATCH_MATMUL"}),
    ("attention", "zoo", dict(arch="attention"), {"BATCH_MATMUL", "SOFTMAX", "TRANSPOSE"}),
    ("resnet_small", "zoo", dict(arch="resnet_small"), {"ADD", "CONV_2D"}),
    ("ds_cnn", "zoo", dict(arch="ds_cnn"), {"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "SOFTMAX"}),
    ("autoencoder", "zoo", dict(arch="autoencoder"), {"FULLY_CONNECTED"}),
    ("vgg_small", "zoo", dict(arch="vgg_small"), {"MAX_POOL_2D", "SOFTMAX"}),
    ("squeeze_excite", "zoo", dict(arch="squeeze_excite"), {"MUL", "LOGISTIC", "MEAN"}),
    ("unet_tiny", "zoo", dict(arch="unet_tiny"), {"TRANSPOSE_CONV", "CONCATENATION"}),
]
IDS = [z[0] for z in ZOO]
N_INPUTS = 8
_CACHE: dict[str, bytes] = {}


def _entry(zid):
    return next(z for z in ZOO if z[0] == zid)


@pytest.fixture(scope="session")
def zoo_model():
    """zid -> the converted .tflite bytes (converted once per machine, read once per session)."""

    def get(zid):
        if zid not in _CACHE:
            _, kind, spec, ops = _entry(zid)
            buf = make_opnet(kind, **spec)
            fb = read_model(buf)
            kinds = {BUILTIN_OPS.get(fb.opcodes[o.opcode_index].builtin) for o in fb.subgraphs[0].operators}
            assert ops <= kinds, f"{zid}: the converter no longer writes {sorted(ops - kinds)} (has {sorted(kinds)})"
            _CACHE[zid] = buf
        return _CACHE[zid]

    return get


def test_zoo_is_big_enough():
    assert len(ZOO) >= 20 and len(set(IDS)) == len(IDS)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("zid", IDS)
def test_zoo_on_host(zid, backend, zoo_model, tmp_path):
    buf = zoo_model(zid)
    c = driver.compile_model(buf, zid, backend, arch="none")
    assert_host_bit_exact(c, buf, tmp_path / "p", backend, n=N_INPUTS, seed=7, what=f"{zid}/{backend}")


@pytest.mark.qemu
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("zid", IDS)
def test_zoo_on_qemu_m33(zid, zoo_model, tmp_path):
    board = boards.load_board("mps2-an505")
    backend = driver.default_backend(board)
    c = driver.compile_model(zoo_model(zid), zid, backend, board.arch_features, board_name=board.name)
    driver.check_fits(c, board)
    project.write(tmp_path / "fw", driver.board_project(c, board))
    info = toolchain.make_firmware(tmp_path / "fw", backend, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=600)
    assert r.model_hash == c.emitted.manifest["model_sha256_16"]
    assert r.match and r.ok, f"{zid}: firmware output differs from the TFLite reference"
