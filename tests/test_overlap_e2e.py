"""Overlapping buffers at run time: small chains whose layers overlap their dying inputs (strided,
dilated, depth-multiplier, expanding, pooling, element-wise in place), built on the host for every kernel
set, equal the TFLite reference byte for byte; so do the shared models and a MobileNetV1-0.25 96x96
with the generated set (the default), on the host (normal plan and every overlap the contracts allow)
and under QEMU (mps2-an505, the self-test against BUILTIN_REF vectors)."""

import functools
import shutil
import sys
from pathlib import Path

import pytest
from conftest import backends, shared_model
from hostcheck import assert_host_bit_exact

from tinygen import boards, driver, frontend, overlap, plan, project, qemu, toolchain

pytestmark = pytest.mark.tf


def _chain(which: str) -> bytes:
    from opnets import _keras, int8_convert, uniform_calib

    K = _keras()
    L = K.layers
    K.utils.set_random_seed(3)
    if which == "windows":
        x = K.Input((11, 9, 3), batch_size=1)
        y = L.Conv2D(8, 3, padding="same", activation="relu")(x)
        y = L.DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")(y)
        y = L.DepthwiseConv2D(3, dilation_rate=2, padding="same", depth_multiplier=2)(y)
        y = L.MaxPooling2D(2, strides=1)(y)
        y = L.Conv2D(24, 1, activation="relu")(y)  # expanding 1x1
        y = L.AveragePooling2D(2, strides=1, padding="same")(y)
        y = L.Conv2D(6, 3, strides=2)(y)
        shape = (11, 9, 3)
    else:  # element-wise in place and a residual add
        x = K.Input((8, 8, 4), batch_size=1)
        a = L.Conv2D(8, 3, padding="same")(x)
        b = L.Activation("sigmoid")(a)
        c = L.DepthwiseConv2D(3, padding="same")(b)
        y = L.Add()([b, c])
        y = L.Conv2D(8, 1)(y)
        y = L.Activation("sigmoid")(y)
        shape = (8, 8, 4)
    return int8_convert(K.Model(x, y), uniform_calib(shape, 32, -3, 3))


_cache: dict = {}


@pytest.mark.parametrize("backend", ["generated"] + backends())
@pytest.mark.parametrize("which", ["windows", "elementwise"])
@pytest.mark.parametrize("mode", [True, "all"])
def test_overlapped_chain_bit_exact_on_host(which, backend, mode, tmp_path, monkeypatch):
    """``mode`` "all": every overlap the contracts allow (not only those that shrink the arena)."""
    if which not in _cache:
        _cache[which] = _chain(which)
    buf = _cache[which]
    monkeypatch.setattr(plan, "plan", functools.partial(plan.plan, overlap=mode))
    c = driver.compile_model(buf, which, backend, arch="none")
    g, p = c.graph, c.plan
    shared = []  # (op, input, output) pairs that share bytes in this plan
    for i, op in enumerate(g.ops):
        if c.calls[i] is None or not op.outputs:
            continue
        y = overlap._root(g, op.outputs[0])
        for t in op.inputs:
            if t < 0 or g.t(t).is_const:
                continue
            x = overlap._root(g, t)
            xo, yo = p.offsets[x], p.offsets[y]
            if x != y and yo < xo + g.t(x).nbytes and xo < yo + g.t(y).nbytes:
                shared.append((i, x, y))
    assert shared or mode is True, p.table(g)
    if mode is True:
        assert p.arena_size <= plan.plan(g, c.calls, overlap=False).arena_size
    assert_host_bit_exact(c, buf, tmp_path / "p", backend, n=30, seed=5, what=f"{which}/{backend}",
                          detail=f"\n{p.table(g)}")


# ---- the shared models and MobileNetV1-0.25 96x96, generated kernels ------------------------------

MODELS = ["kws_ref_model", "pretrainedResnet_quant", "ad01_int8", "mobilenet_025_96"]
MOST = {"kws_ref_model": 9_000, "pretrainedResnet_quant": 40_000, "ad01_int8": 800, "mobilenet_025_96": 40_000}


def _model(name: str) -> bytes:
    if name not in _cache:
        if name == "mobilenet_025_96":
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
            from arena_mobilenet import mobilenet_025_96

            _cache[name] = mobilenet_025_96()
        else:
            _cache[name] = frontend.load(shared_model(name + ".tflite"), log=lambda m: None)[0]
    return _cache[name]


def _shared_pairs(c) -> int:
    g, p = c.graph, c.plan
    n = 0
    for i, op in enumerate(g.ops):
        if c.calls[i] is None or not op.outputs:
            continue
        y = overlap._root(g, op.outputs[0])
        for t in op.inputs:
            if t >= 0 and not g.t(t).is_const:
                x = overlap._root(g, t)
                xo, yo = p.offsets[x], p.offsets[y]
                n += x != y and yo < xo + g.t(x).nbytes and xo < yo + g.t(y).nbytes
    return n


def _overlapped_or_whole_optimal(c) -> bool:
    """Buffers share bytes, or need not: the plan of whole buffers already sits at their lower bound
    (AD, whose kernels the arena-driven choice made scratch-free)."""
    return _shared_pairs(c) > 0 or c.plan.arena_size == plan.lower_bound(c.plan.buffers)


@pytest.mark.toolchain
@pytest.mark.parametrize("mode", [True, "all"])
@pytest.mark.parametrize("name", MODELS)
def test_generated_models_overlapped_bit_exact_on_host(name, mode, tmp_path, monkeypatch):
    buf = _model(name)
    monkeypatch.setattr(plan, "plan", functools.partial(plan.plan, overlap=mode))
    c = driver.compile_model(buf, name, "generated", arch="dsp", patches=False)  # overlap alone
    assert _overlapped_or_whole_optimal(c), c.plan.table(c.graph)
    if mode is True:
        assert c.plan.arena_size <= MOST[name], c.plan.table(c.graph)
    assert_host_bit_exact(c, buf, tmp_path / "p", "generated", n=10, seed=7, what=name,
                          detail=f"\n{c.plan.table(c.graph)}")


@pytest.mark.qemu
@pytest.mark.toolchain
@pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                    reason="qemu-system-arm / arm-none-eabi-gcc not installed")
@pytest.mark.parametrize("name", MODELS)
def test_generated_models_overlapped_bit_exact_under_qemu(name, tmp_path):
    buf = _model(name)
    board = boards.load_board("mps2-an505")
    c = driver.compile_model(buf, name, "generated", board.arch_features, board_name=board.name, patches=False)
    assert _overlapped_or_whole_optimal(c)
    project.write(tmp_path / "fw", driver.board_project(c, board))
    info = toolchain.make_firmware(tmp_path / "fw", "generated", board=board)
    r = qemu.run_selftest(info.elf, board, timeout=600)
    assert r.ok and r.match, r


@pytest.mark.toolchain
@pytest.mark.parametrize("mode", [True, "all"])
@pytest.mark.parametrize("name", ["kws_ref_model", "ad01_int8", "windows", "elementwise"])
def test_generated_overlapped_clean_under_sanitizers(name, mode, tmp_path, monkeypatch):
    """ASan + UBSan with the arena guard words (fuzz/run_sanitizers.py's flags) over overlapped plans of
    the generated set: no kernel reads or writes outside its tensors, and the bytes equal TFLite's."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
    import run_sanitizers as san

    for k, v in san.SAN_ENV.items():
        monkeypatch.setenv(k, v)
    buf = _model(name) if name in MODELS else _cache.setdefault(name, _chain(name))
    monkeypatch.setattr(plan, "plan", functools.partial(plan.plan, overlap=mode))
    import os

    # the generated set links CMSIS-NN's fallbacks (KWS's softmax) when it is there: its known UB waived
    flags = san.SAN_CFLAGS + (f" {san.CMSIS_WAIVER}" if os.environ.get("CMSIS_NN_PATH") else "")
    assert san.check(buf, name, "generated", tmp_path, n_inputs=4, cflags=flags) == "ok"
