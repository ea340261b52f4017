"""Golden end-to-end tests: real models -> generated C on the host == TFLite reference, byte for byte."""

import numpy as np
import pytest
from conftest import backends, shared_model
from hostcheck import assert_host_bit_exact

from tinygen import driver, frontend, hostbuild, plan, reference

MODELS = ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite", "pretrainedResnet.h5", "ad01.h5"]
N_INPUTS = 100

_cache: dict = {}


def _model_bytes(name: str) -> bytes:
    if name not in _cache:
        _cache[name] = frontend.load(shared_model(name), log=lambda m: None)[0]
    return _cache[name]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("model", MODELS)
def test_model_bit_exact_on_host(model, backend, tmp_path):
    buf = _model_bytes(model)
    c = driver.compile_model(buf, model.split(".")[0], backend, arch="none")
    plan.verify_plan(c.graph, c.plan, c.calls)  # the planner's own overlap check, again, on every model
    assert_host_bit_exact(c, buf, tmp_path / "p", backend, n=N_INPUTS, seed=7, what=f"{model}/{backend}")


@pytest.mark.parametrize("board", ["host", "mps2-an505", "nucleo-u575"])
@pytest.mark.parametrize("backend", backends())
def test_two_builds_are_byte_identical(tmp_path, board, backend):
    """Same model and flags, byte-identical project (rendering only, no compiler run)."""
    src = shared_model("pretrainedResnet_quant.tflite")
    trees = []
    for k in range(2):
        out = tmp_path / f"b{k}"
        driver.build(str(src), board, out, backend, log=lambda m: None)
        trees.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()})
    assert trees[0].keys() == trees[1].keys()
    assert trees[0] == trees[1]


@pytest.mark.parametrize("fmt", ["keras", "savedmodel"])
def test_keras3_and_savedmodel_frontends(tmp_path, capsys, fmt):
    """A Keras 3 model (.keras or exported SavedModel) is quantized by tinygen and its host build
    reproduces the reference on the built-in test vector and on 50 random inputs."""
    reference._tf()
    import keras

    from tinygen import cli

    m = keras.Sequential([keras.Input((9, 7, 2)), keras.layers.Conv2D(5, 3, strides=2, activation="relu"),
                          keras.layers.DepthwiseConv2D(3, padding="same", activation="relu6"),
                          keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(4, activation="softmax")])
    path = tmp_path / "m.keras"
    if fmt == "keras":
        m.save(path)
    else:
        path = tmp_path / "saved"
        m.export(str(path), verbose=False)
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((32, 9, 7, 2)).astype(np.float32))
    out = tmp_path / "proj"
    code = cli.main(["build", str(path), "--calib", str(tmp_path / "calib.npz"), "--board", "host", "-o", str(out)])
    assert code == 0 and "matches the TFLite reference" in capsys.readouterr().out
    c_bytes = frontend.load(path, calib=str(tmp_path / "calib.npz"), log=lambda m: None)[0]
    x = reference.random_inputs(c_bytes, 50, seed=1)
    exe = out / "build" / "model_host"
    assert (hostbuild.run(exe, reference.pack(x)) == reference.pack(reference.run(c_bytes, x))).all()
