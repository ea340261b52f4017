"""Tests for ``tinygen optimize``: data validation, the depthwise-separable split, structured
pruning across residual Adds, Keras-3 import, and end-to-end runs on digits and ResNet-8."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf_missing = pytest.importorskip("tf_keras", reason="tf_keras not installed (pip install tinygen[tf])")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESNET8 = SHARED / "models" / "mlperf-tiny" / "pretrainedResnet.h5"
sys.path.insert(0, str(ROOT))

from benchmarks.optimize_digits import digits_npz, train_baseline  # noqa: E402
from tinygen.errors import InputError  # noqa: E402
from tinygen.optimize import format_table, load_data, optimize  # noqa: E402
from tinygen.optimize._tf import keras, tf  # noqa: E402
from tinygen.optimize.graph import nodes  # noqa: E402
from tinygen.optimize.metrics import model_macs, tflite_predict  # noqa: E402
from tinygen.optimize.prune import channel_spaces, prune_model  # noqa: E402
from tinygen.optimize.rewrite import rank1_split, rewrite_model  # noqa: E402


# ---------------------------------------------------------------- data.npz validation
def _npz(tmp_path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.random((20, 8, 8, 1), np.float32), y_train=rng.integers(0, 10, 20),
                  x_val=rng.random((6, 8, 8, 1), np.float32), y_val=rng.integers(0, 10, 6))
    arrays.update(over)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    p = tmp_path / "data.npz"
    np.savez(p, **arrays)
    return p


def test_load_data_accepts_good_file(tmp_path):
    d = load_data(_npz(tmp_path), (8, 8, 1), 10)
    assert d.x_train.shape == (20, 8, 8, 1) and d.x_train.dtype == np.float32
    assert d.y_val.shape == (6,)


@pytest.mark.parametrize("over, words", [
    (dict(y_val=None), ["missing", "y_val"]),
    (dict(x_train=np.zeros((20, 8, 8), np.float32)), ["x_train", "(8, 8)", "(8, 8, 1)"]),
    (dict(x_val=np.array([["a"] * 64] * 6).reshape(6, 8, 8, 1)), ["x_val", "dtype"]),
    (dict(y_train=np.zeros(20, np.float32)), ["y_train", "integer"]),
    (dict(y_train=np.full(20, 10)), ["y_train", "[0, 9]"]),
    (dict(y_val=np.zeros(5, np.int64)), ["y_val", "(6,)"]),
    (dict(x_val=np.full((6, 8, 8, 1), np.nan, np.float32)), ["x_val", "NaN"]),
])
def test_load_data_rejects_bad_file(tmp_path, over, words):
    with pytest.raises(InputError) as e:
        load_data(_npz(tmp_path, **over), (8, 8, 1), 10)
    for w in words:
        assert w in str(e.value)


def test_load_data_missing_file_and_garbage(tmp_path):
    with pytest.raises(InputError, match="no such data file"):
        load_data(tmp_path / "nope.npz")
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .npz"):
        load_data(tmp_path / "bad.npz")


def test_optimize_needs_data_or_synthetic(tmp_path):
    with pytest.raises(InputError, match="no training data"):
        optimize("m.h5", None, out_path=str(tmp_path / "o.h5"))
    with pytest.raises(InputError, match="between 0 and 1"):
        optimize("m.h5", "d.npz", prune=1.5, out_path=str(tmp_path / "o.h5"))
    with pytest.raises(InputError, match="unknown rewrite"):
        optimize("m.h5", "d.npz", rewrite="svd", out_path=str(tmp_path / "o.h5"))


# ---------------------------------------------------------------- rewrite and prune units
def test_rank1_split_is_exact_for_rank1_slices():
    rng = np.random.default_rng(1)
    u, v = rng.normal(size=(3, 3, 4)), rng.normal(size=(4, 6))
    kernel = np.einsum("hwc,co->hwco", u, v).astype(np.float32)  # each W[:,:,ci,:] is rank 1
    dw, pw = rank1_split(kernel)
    assert dw.shape == (3, 3, 4, 1) and pw.shape == (1, 1, 4, 6)
    np.testing.assert_allclose(dw[..., 0][..., None] * pw[0, 0][None, None], kernel, atol=1e-5)


def _residual_model():
    keras.utils.set_random_seed(3)
    i = keras.Input((8, 8, 3))
    a = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="a")(i)
    b = keras.layers.Conv2D(8, 3, padding="same", name="b")(a)
    s = keras.layers.Activation("relu")(keras.layers.Add(name="add")([a, b]))
    c = keras.layers.Conv2D(6, 3, padding="same", name="c")(s)
    c = keras.layers.BatchNormalization(name="bn")(c)
    d = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(keras.layers.ReLU()(c))
    f = keras.layers.Flatten()(keras.layers.MaxPooling2D(2)(d))
    out = keras.layers.Dense(4, activation="softmax", name="out")(f)
    m = keras.Model(i, out)
    bn = m.get_layer("bn")
    bn.set_weights([w + np.linspace(0.5, 1.5, 6) * (k > 1) for k, w in enumerate(bn.get_weights())])
    return m


def test_prune_keeps_add_branches_consistent_and_is_exact_for_dead_channels():
    m = _residual_model()
    roots, spaces = channel_spaces(m)
    assert roots["a"] == roots["b"] == roots["add"], "Add must tie a and b into one channel space"
    assert spaces[roots["out"]].blocked == "reaches the model output"
    # zero channels 1 and 5 in both Add branches: they are dead, so removing them is exact
    for name in ("a", "b"):
        k, bias = m.get_layer(name).get_weights()
        k[..., [1, 5]] = 0
        bias[[1, 5]] = 0
        m.get_layer(name).set_weights([k, bias])
    dead_c = [0, 3]  # and remove two channels of c/bn/dw, checked against zeroing their effect
    pruned = prune_model(m, {roots["a"]: np.array([0, 2, 3, 4, 6, 7]),
                             roots["c"]: np.array([i for i in range(6) if i not in dead_c])})
    assert pruned.get_layer("a").filters == 6 and pruned.get_layer("b").filters == 6
    assert pruned.get_layer("b").get_weights()[0].shape == (3, 3, 6, 6)
    assert pruned.get_layer("c").get_weights()[0].shape == (3, 3, 6, 4)
    assert pruned.get_layer("dw").get_weights()[0].shape == (3, 3, 4, 1)
    assert pruned.get_layer("bn").get_weights()[0].shape == (4,)
    assert pruned.get_layer("out").get_weights()[0].shape == (16 * 4, 4)
    x = np.random.default_rng(0).random((5, 8, 8, 3), np.float32)
    # reference: original model with the c-channels' downstream contribution removed
    ref = keras.models.clone_model(m)
    ref.set_weights(m.get_weights())
    w = ref.get_layer("out").get_weights()
    w[0] = w[0].reshape(16, 6, 4)
    w[0][:, dead_c] = 0
    ref.get_layer("out").set_weights([w[0].reshape(96, 4), w[1]])
    np.testing.assert_allclose(pruned(x).numpy(), ref(x).numpy(), atol=1e-5)
    assert pruned.count_params() < m.count_params()


def test_rewrite_skips_1x1_and_reports_macs():
    m = _residual_model()
    logs = []
    from tinygen.optimize.rewrite import plan_and_rewrite

    x = np.random.default_rng(0).random((32, 8, 8, 3), np.float32)
    y = np.argmax(m(x).numpy(), -1)
    new, cands = plan_and_rewrite(m, x, y, x, budget=1.0, min_saving=0.0, log=logs.append)
    assert {c.name for c in cands} == {"a", "b", "c"}
    assert all(c.macs_after < c.macs_before and c.sensitivity is not None for c in cands)
    assert any("a_dw" == n.name for n in nodes(new)) and model_macs(new) < model_macs(m)
    one = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(3, 1, name="pw"),
                            keras.layers.Flatten(), keras.layers.Dense(2)])
    _, c1 = plan_and_rewrite(one, x[:4, :4, :4, :2], np.zeros(4, int), log=logs.append)
    assert c1 == [] and any("pw" in s and "1x1" in s for s in logs)


def test_rewrite_with_least_squares_matches_rank1_layer_exactly():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((6, 6, 2)), keras.layers.Conv2D(4, 3, padding="same", name="c"),
                          keras.layers.Flatten(), keras.layers.Dense(3)])
    u, v = np.random.default_rng(2).normal(size=(3, 3, 2)), np.random.default_rng(3).normal(size=(2, 4))
    m.get_layer("c").set_weights([np.einsum("hwc,co->hwco", u, v).astype(np.float32), np.arange(4, dtype=np.float32)])
    from tinygen.optimize.rewrite import split_weights

    x = np.random.default_rng(4).random((8, 6, 6, 2), np.float32)
    new = rewrite_model(m, {"c": split_weights(m, "c", x)})
    np.testing.assert_allclose(new(x).numpy(), m(x).numpy(), atol=1e-3)


def test_keras3_model_is_rebuilt_as_tf_keras(tmp_path):
    k3 = pytest.importorskip("keras")
    if not k3.__version__.startswith("3"):
        pytest.skip("Keras 3 not installed")
    i = k3.Input((8, 8, 2))
    a = k3.layers.Conv2D(2, 3, padding="same", activation="relu")(i)
    o = k3.layers.GlobalAveragePooling2D()(k3.layers.Add()([i, k3.layers.BatchNormalization()(a)]))
    src = k3.Model(i, k3.layers.Dense(3, activation="softmax")(o))
    src.save(tmp_path / "m.keras")
    from tinygen.optimize.modelio import load_model

    m = load_model(tmp_path / "m.keras")
    assert isinstance(m, keras.Model)
    x = np.random.default_rng(0).random((4, 8, 8, 2), np.float32)
    np.testing.assert_allclose(m(x).numpy(), np.asarray(src(x)), atol=1e-6)


def test_format_table_ratios():
    rows = [dict(step="baseline", float_acc=0.9, int8_acc=0.89, macs=1000, params=100, conv_macs=900,
                 arena=10, flash=20),
            dict(step="prune", float_acc=0.88, int8_acc=None, macs=250, params=50, conv_macs=200,
                 arena=5, flash=10)]
    text = format_table(rows)
    assert "4.00x" in text and "2.00x" in text and "prune" in text


# ---------------------------------------------------------------- end to end on digits
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    work = tmp_path_factory.mktemp("digits")
    npz = digits_npz(work / "digits.npz")
    base = train_baseline(npz, work / "digits_cnn.h5")
    res = optimize(str(base), str(npz), rewrite="dws", prune=0.3, qat=True, epochs=4, seed=0,
                   out_path=str(work / "digits_opt.h5"))
    return work, npz, res


def test_digits_rewrite_prune_qat(digits, capsys):
    work, npz, res = digits
    steps = {r.step: r for r in res.rows}
    assert list(steps) == ["baseline", "rewrite (dws)", "prune (0.3)", "qat"]
    base, rw = steps["baseline"], steps["rewrite (dws)"]
    assert base.float_acc > 0.9, "the baseline CNN did not train"
    assert rw.conv_macs * 2 <= base.conv_macs, format_table(res.rows)
    assert steps["prune (0.3)"].params < rw.params and steps["prune (0.3)"].macs < rw.macs
    # rewrite + prune + QAT in int8 within 2 points of the float baseline
    assert res.qat_int8_acc >= base.float_acc - 0.02, format_table(res.rows)
    # QAT at least as good as PTQ of the same final model
    assert res.qat_int8_acc >= res.ptq_int8_acc, format_table(res.rows)
    assert any(c.chosen for c in res.rewrite_report)


def test_digits_outputs_are_valid(digits):
    work, npz, res = digits
    saved = keras.models.load_model(res.model_path, compile=False)
    assert any(type(l).__name__ == "DepthwiseConv2D" for l in saved.layers)
    interp = tf.lite.Interpreter(model_content=res.tflite)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert Path(res.tflite_path).read_bytes() == res.tflite
    z = np.load(npz)
    acc = np.mean(np.argmax(tflite_predict(res.tflite, z["x_val"]), -1) == z["y_val"])
    assert acc == pytest.approx(res.qat_int8_acc)


def test_digits_data_shape_mismatch_is_reported(digits, tmp_path):
    work, npz, res = digits
    z = dict(np.load(npz))
    z["x_train"] = z["x_train"].reshape(len(z["x_train"]), 64)
    np.savez(tmp_path / "flat.npz", **z)
    with pytest.raises(InputError, match=r"x_train has sample shape \(64,\).*\(8, 8, 1\)"):
        optimize(str(work / "digits_cnn.h5"), str(tmp_path / "flat.npz"), rewrite="dws",
                 out_path=str(tmp_path / "o.h5"))


# ---------------------------------------------------------------- ResNet-8 (shared model)
@pytest.mark.skipif(not RESNET8.is_file(), reason=f"shared ResNet-8 model not found at {RESNET8}")
def test_resnet8_rewrite_and_prune_on_synthetic_data(tmp_path, capsys):
    out = tmp_path / "resnet8_opt.h5"
    res = optimize(str(RESNET8), None, rewrite="dws", prune=0.3, epochs=1, seed=0, out_path=str(out),
                   synthetic=True, synthetic_range=(0.0, 255.0), synthetic_samples=512)
    base, last = res.rows[0], res.rows[-1]
    assert len(res.rows) == 3
    assert last.macs < base.macs and last.params < base.params
    print(f"ResNet-8 MACs {base.macs:,} -> {last.macs:,} ({base.macs / last.macs:.2f}x)")
    m = keras.models.load_model(out, compile=False)
    assert m.count_params() == last.params
    adds = [l for l in m.layers if type(l).__name__ == "Add"]
    assert adds and all(len({tuple(s) for s in l.input_shape}) == 1 for l in adds)
    interp = tf.lite.Interpreter(model_content=res.tflite)
    assert interp.get_input_details()[0]["dtype"] == np.int8
    assert interp.get_output_details()[0]["dtype"] == np.int8
    assert Path(res.tflite_path).is_file()
    assert "MACs" in capsys.readouterr().out
    _int8_build_is_bit_exact_and_fits(res.tflite, tmp_path)


def _int8_build_is_bit_exact_and_fits(tflite: bytes, tmp_path):
    """The optimized int8 model compiles, its host build equals the TFLite reference on random
    inputs, and it fits every board (planned arena + stack in RAM, weights in flash)."""
    from tinygen import boards, driver, hostbuild, project, reference

    c = driver.compile_model(tflite, "optimized", "portable", "none")
    project.write(tmp_path / "host", driver.host_project(c))
    exe = hostbuild.build(tmp_path / "host", "portable")
    x = reference.random_inputs(tflite, 30, seed=5)
    assert (hostbuild.run(exe, reference.pack(x)) == reference.pack(reference.run(tflite, x))).all()
    m = c.emitted.manifest
    for b in boards.all_boards():
        assert m["arena_bytes"] + b.stack_size < b.ram_size, b.name
        assert m["weights_bytes"] < b.flash_size, b.name


def test_build_cli_runs_optimize_then_compiles(tmp_path, capsys):
    """`tinygen build --rewrite dws --prune 0.3 --qat` optimizes, quantizes, compiles, and the host
    program reproduces the reference on the test vector (exit code 0); the history is kept."""
    from tinygen import cli

    npz = digits_npz(tmp_path / "digits.npz")
    h5 = train_baseline(npz, tmp_path / "digits.h5", epochs=3)
    out = tmp_path / "proj"
    code = cli.main(["build", str(h5), "--data", str(npz), "--rewrite", "dws", "--prune", "0.3", "--qat",
                     "--epochs", "1", "--board", "host", "-o", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "matches the TFLite reference" in text
    hist = json.loads((out / "optimize.json").read_text())
    assert [r["step"] for r in hist["steps"]][0] == "baseline" and len(hist["steps"]) == 4
