"""The driver: one list of stages used by build, analyze and the tests; the reference interpreter
never takes the process down."""

from __future__ import annotations

import pytest
from conftest import shared_model
from opnets import _keras, int8_convert, uniform_calib

from tinygen import cli, driver, frontend, reference
from tinygen.errors import ModelError

pytestmark = pytest.mark.tf


def _tiny_softmax_model(weight_scale: float) -> bytes:
    """Dense -> Softmax, full int8; a tiny weight scale gives a softmax input scale TFLite aborts on."""
    K = _keras()
    x = K.Input((8,), batch_size=1)
    y = K.layers.Dense(10, kernel_initializer=K.initializers.RandomNormal(stddev=weight_scale),
                       bias_initializer="zeros")(x)
    return int8_convert(K.Model(x, K.layers.Softmax()(y)), uniform_calib((8,), 8))


def _mobilenetv2_int8() -> bytes:
    """The issue's case: keras.applications.MobileNetV2(alpha=0.35, 96x96, weights=None) -> full int8."""
    K = _keras()
    m = K.applications.MobileNetV2(alpha=0.35, input_shape=(96, 96, 3), weights=None)
    return int8_convert(m, uniform_calib((96, 96, 3), 2))


def test_stages_are_one_list_and_stop_after_ends_early():
    names = [n for n, _ in driver.STAGES]
    assert names == ["import", "passes", "schedule", "lower", "patch", "plan", "reference", "emit"]
    buf = frontend.load(shared_model("ad01_int8.tflite"), log=lambda m: None)[0]
    c = driver.compile_model(buf, "ad", "portable", stop_after="plan")
    assert c.plan is not None and c.emitted is None and c.test_expected is None
    full = driver.compile_model(buf, "ad", "portable")
    assert full.plan.arena_size == c.plan.arena_size and full.emitted is not None
    with pytest.raises(ValueError, match="unknown stage"):
        driver.compile_model(buf, "ad", "portable", stop_after="nope")


def test_reference_abort_is_a_one_line_model_error_and_the_process_survives():
    bad = _tiny_softmax_model(1e-9)
    x = reference.random_inputs(bad, 1)
    with pytest.raises(ModelError, match="TFLite reference interpreter aborted"):
        reference.run(bad, x)
    # the worker is restarted on the next call and works
    good = _tiny_softmax_model(0.5)
    assert reference.run(good, reference.random_inputs(good, 2)).shape == (2, 1, 10)


def test_softmax_scale_tflite_refuses_is_checked_before_the_reference(tmp_path, capsys):
    p = tmp_path / "bad.tflite"
    p.write_bytes(_tiny_softmax_model(1e-9))
    assert cli.main(["build", str(p), "-o", str(tmp_path / "out")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SOFTMAX" in err[0] and "must exceed 1" in err[0], err


@pytest.mark.slow
def test_untrained_mobilenetv2_gives_a_one_line_error(tmp_path, capsys):
    """The issue's case: keras.applications.MobileNetV2(alpha=0.35, 96x96, weights=None) -> full int8."""
    p = tmp_path / "mnv2.tflite"
    p.write_bytes(_mobilenetv2_int8())
    for argv in (["build", str(p), "-o", str(tmp_path / "out")], ["analyze", str(p), "--no-tflm"]):
        code = cli.main(argv)
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and err[0].startswith("tinygen: error:"), (argv, code, err)
