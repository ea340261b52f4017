"""Bad input gives one clear line (tinygen: error: ...) and a non-zero exit code, never a traceback."""

import re

import numpy as np
import pytest
from conftest import shared_model
from opnets import int8_convert

from tinygen import cli, frontend, reference
from tinygen.errors import InputError


def run_cli(capsys, *args):
    code = cli.main(list(args))
    err = capsys.readouterr().err.strip()
    return code, err


def _one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("tinygen: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _tflite_with(layer_fn, shape=(8,)) -> bytes:
    tf = reference._tf()
    inp = tf.keras.Input(shape=shape)
    model = tf.keras.Model(inp, layer_fn(inp))
    return int8_convert(model, lambda: ([np.random.default_rng(i).standard_normal((1, *shape)).astype(np.float32)]
                                        for i in range(8)))


def test_unsupported_op(tmp_path, capsys):
    tf = reference._tf()
    m = tmp_path / "logsm.tflite"
    logsm = tf.keras.layers.Lambda(tf.nn.log_softmax)
    m.write_bytes(_tflite_with(lambda x: logsm(tf.keras.layers.Dense(4)(x))))
    code, err = run_cli(capsys, "build", str(m), "--board", "host", "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 3
    assert "LOG_SOFTMAX x1" in line and "not supported" in line and "SUPPORTED_OPS.md" in line


def test_every_unsupported_op_reported_at_once(tmp_path, capsys):
    """One line lists each unsupported kind with its count and first location, not only the first op."""
    tf = reference._tf()

    def net(x):
        L = tf.keras.layers
        h = L.Dense(6)(x)
        a = L.Lambda(tf.nn.log_softmax)(L.Dense(4)(h))
        b = L.Lambda(tf.nn.log_softmax)(L.Dense(4)(h))
        c = L.Lambda(lambda t: tf.math.l2_normalize(t, axis=-1))(L.Dense(4)(h))
        return L.Concatenate()([a, b, c])

    m = tmp_path / "many.tflite"
    m.write_bytes(_tflite_with(net))
    code, err = run_cli(capsys, "build", str(m), "--board", "host", "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 3
    assert "3 ops are not supported" in line, line
    assert "LOG_SOFTMAX x2 (first: op #" in line and "L2_NORMALIZATION x1 (first: op #" in line, line


@pytest.mark.parametrize("cut", [3, 20, 200, 0.5, 0.9])
def test_truncated_tflite(tmp_path, capsys, cut):
    src = shared_model("kws_ref_model.tflite").read_bytes()
    n = int(len(src) * cut) if isinstance(cut, float) else cut
    m = tmp_path / "cut.tflite"
    m.write_bytes(src[:n])
    code, err = run_cli(capsys, "build", str(m), "--board", "host", "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 2
    assert "cut.tflite" in line or "truncated" in line or "corrupt" in line


def test_corrupt_h5(tmp_path, capsys):
    src = shared_model("ad01.h5").read_bytes()
    m = tmp_path / "bad.h5"
    m.write_bytes(src[: len(src) // 3])
    code, err = run_cli(capsys, "build", str(m), "--board", "host", "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 2 and "bad.h5" in line


def test_wrong_file_type(tmp_path, capsys):
    m = tmp_path / "notes.txt"
    m.write_text("hello")
    code, err = run_cli(capsys, "build", str(m), "--board", "host", "-o", str(tmp_path / "o"))
    assert "unknown model format" in _one_line_error(err) and code == 2


def test_float_only_tflite(tmp_path, capsys):
    code, err = run_cli(capsys, "build", str(shared_model("kws_ref_model_float32.tflite")), "--board", "host",
                        "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 3 and "float" in line and "int8" in line


def test_wrong_calibration_shape(tmp_path, capsys):
    np.savez(tmp_path / "calib.npz", x=np.zeros((4, 7, 7), np.float32))
    code, err = run_cli(capsys, "build", str(shared_model("ad01.h5")), "--calib", str(tmp_path / "calib.npz"),
                        "--board", "host", "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 4 and "[7, 7]" in line and "[640]" in line


def test_wrong_input_shape_for_reference():
    buf = shared_model("ad01_int8.tflite").read_bytes()
    with pytest.raises(InputError, match="the model wants int8\\[1, 640\\]"):
        reference.run(buf, np.zeros((2, 1, 64), np.int8))


def test_missing_model(tmp_path, capsys):
    code, err = run_cli(capsys, "build", str(tmp_path / "nope.h5"), "--board", "host", "-o", str(tmp_path / "o"))
    assert "no such file" in _one_line_error(err) and code == 2


def test_frontend_kind_rejects_directory_without_savedmodel(tmp_path):
    from tinygen.errors import ModelError

    with pytest.raises(ModelError, match="saved_model.pb"):
        frontend.kind_of(tmp_path)


def test_model_too_big_for_board(tmp_path, capsys):
    from opnets import make_opnet

    m = tmp_path / "big.tflite"
    m.write_bytes(make_opnet("conv2d", in_shape=(128, 128, 8), filters=8, kernel=(3, 3), padding="same"))
    code, err = run_cli(capsys, "build", str(m), "--board", "netduinoplus2", "--backend", "portable",
                        "-o", str(tmp_path / "o"))
    line = _one_line_error(err)
    assert code == 5
    assert "does not fit netduinoplus2" in line and "131,072 B RAM" in line
    arena = int(re.search(r"arena ([\d,]+) B \+ stack", line).group(1).replace(",", ""))
    assert arena > 128 * 128 * 8, line  # at least the input (the output overlaps it at the contract distance)
