"""UNIDIRECTIONAL_SEQUENCE_LSTM: Keras LSTM layers (not unrolled) converted by TF 2.21 to full int8
(TFLite's integer 8x8_16 LSTM: int8 activations, int16 cell state), through the whole compiler,
byte for byte against TFLite's BUILTIN_REF on random inputs (host, and once as firmware on the
emulated Cortex-M33); the 16-bit fixed-point logistic/tanh of tg_kernels_lstm.c against gemmlowp
over every input; the refusals of LSTM variants Keras never builds, and of WHILE loops (a GRU or
SimpleRNN that is not unrolled)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from hostcheck import assert_host_bit_exact
from opnets import cache_dir, int8_convert

from tinygen import FIRMWARE, boards, driver, ops, project, qemu, reference, toolchain
from tinygen.errors import UnsupportedError
from tinygen.flatbuf import read_model
from tinygen.importer import from_tflite
from tinygen.tflite_names import BUILTIN_OPS

VERSION = 1

# id -> spec: time steps t, features f, units per stacked LSTM (all but the last return sequences),
# seq (the last returns sequences), dense (a Dense head), gain (weights x gain), alternate (calibration
# inputs flip sign every step)
CASES = {
    "seq_t5_f3_u4": dict(t=5, f=3, units=[4], seq=True),
    "last_t7_f5_u9": dict(t=7, f=5, units=[9], seq=False),
    "seq_t3_f1_u1": dict(t=3, f=1, units=[1], seq=True),
    "stacked_t6_f4_u7_u5": dict(t=6, f=4, units=[7, 5], seq=False),
    "stacked_seq_t4_f3_u3_u6": dict(t=4, f=3, units=[3, 6], seq=True),
    "dense_head_t9_f2_u6": dict(t=9, f=2, units=[6], seq=False, dense=3),
    "time_major_t5_b3_f2_u4": dict(t=5, f=2, units=[4], seq=True, time_major=True, batch=3),
    "batch2_t4_f3_u5": dict(t=4, f=3, units=[5], seq=True, batch=2),
    "saturate_t16_f3_u5": dict(t=16, f=3, units=[5], seq=True, alternate=True, gain=2.0),
}


def _convert(spec: dict) -> bytes:
    import tensorflow as tf
    import tf_keras as keras

    tf.random.set_seed(spec.get("seed", 0))
    tm = spec.get("time_major", False)  # input [t, batch, f] (else [batch, t, f])
    shape = (spec.get("batch", 1), spec["f"]) if tm else (spec["t"], spec["f"])
    inp = keras.Input(shape, batch_size=spec["t"] if tm else spec.get("batch", 1))
    x = inp
    for k, u in enumerate(spec["units"]):
        last = k == len(spec["units"]) - 1
        x = keras.layers.LSTM(u, return_sequences=spec["seq"] if last else True, time_major=tm,
                              activation=spec.get("activation", "tanh"))(x)
    if spec.get("dense"):
        x = keras.layers.Dense(spec["dense"])(x)
    m = keras.Model(inp, x)
    if spec.get("gain"):
        m.set_weights([w * spec["gain"] for w in m.get_weights()])
    rng = np.random.default_rng(spec.get("seed", 0))
    r = spec.get("calib", 3.0)

    def representative():
        for _ in range(40):
            x = rng.uniform(-r, r, (spec["t"] if tm else spec.get("batch", 1), *shape))
            if spec.get("alternate"):  # the sign flips every step: the cell state never builds up
                x = np.abs(x) * np.where(np.arange(spec["t"]) % 2, -1.0, 1.0)[None, :, None]
            yield [x.astype(np.float32)]

    return int8_convert(m, representative)


def make_lstm(spec: dict) -> bytes:
    """The converted full-int8 model of ``spec`` (cached like the op nets)."""
    import tensorflow as tf

    key = hashlib.sha256(json.dumps([VERSION, tf.__version__, spec], sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"lstm-{key}.tflite"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = _convert(spec)
        tmp = path.with_suffix(".part")
        tmp.write_bytes(buf)
        tmp.replace(path)
    return path.read_bytes()


def _kinds(buf: bytes) -> list[str]:
    fb = read_model(buf)
    return [BUILTIN_OPS.get(fb.opcodes[o.opcode_index].builtin, "?") for o in fb.subgraphs[0].operators]


def _host_bit_exact(buf: bytes, name: str, tmp_path: Path, n: int = 8, seed: int = 3, x=None) -> None:
    c = driver.compile_model(buf, name, "portable", arch="none")
    assert "tg_ref_lstm_s8" in {call.symbol for call in c.calls if call is not None}
    assert_host_bit_exact(c, buf, tmp_path / "p", "portable", n=n, seed=seed, x=x, what=name)


@pytest.mark.parametrize("case", list(CASES))
def test_lstm_host_bit_exact(case, tmp_path):
    spec = CASES[case]
    buf = make_lstm(spec)
    kinds = _kinds(buf)
    assert kinds.count("UNIDIRECTIONAL_SEQUENCE_LSTM") == len(spec["units"]), kinds
    g = from_tflite(buf, case)
    assert all(op.attrs["time_major"] == spec.get("time_major", False) for op in g.ops
               if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    _host_bit_exact(buf, case.replace("_", ""), tmp_path)


def test_reference_restarts_the_state_per_sample():
    """The TFLite interpreter keeps an LSTM's state across invokes; the reference resets it per
    sample (stateful=False, what the firmware computes): the same sample twice gives the same output."""
    buf = make_lstm(CASES["seq_t5_f3_u4"])
    x = reference.random_inputs(buf, 1, seed=1)
    out = reference.run(buf, np.concatenate([x, x]))
    assert (out[0] == out[1]).all()


def _saturating_inputs(buf: bytes) -> np.ndarray:
    """Inputs that keep one sign over all time steps (the calibration data flipped it every step),
    so the cell state builds up past its calibrated range; and a few random ones."""
    rnd = reference.random_inputs(buf, 4, seed=3)
    n, t, f = rnd.shape[0], rnd.shape[2], rnd.shape[3]
    const = np.stack([np.full((1, t, f), v, np.int8) for v in (127, -128, 100, -100)])
    mixed = np.stack([np.where(np.arange(f) % 2, 127, -128).astype(np.int8)[None, None, :].repeat(t, 1)])
    assert n == 4
    return np.concatenate([const, mixed, rnd])


def test_cell_state_saturates(tmp_path):
    """With amplified weights, calibrated on inputs whose sign flips every step, inputs of one sign
    drive the int16 cell state to its limits (the saturating add of UpdateLstmCellInteger); the
    kernel still matches on them."""
    buf = make_lstm(CASES["saturate_t16_f3_u5"])
    g = from_tflite(buf, "sat")
    cell = next(op for op in g.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM").inputs[19]
    it = reference.interpreter(buf)
    x = _saturating_inputs(buf)
    peak = 0
    for k in range(len(x)):
        it.reset_all_variables()
        it.set_tensor(it.get_input_details()[0]["index"], x[k])
        it.invoke()
        peak = max(peak, int(np.abs(it.get_tensor(cell).astype(np.int32)).max()))
    assert peak >= 32767, f"the cell state peaked at {peak}: the case no longer saturates"
    _host_bit_exact(buf, "sat", tmp_path, x=x)


def test_fixedpoint_logistic_tanh_match_gemmlowp(tmp_path):
    """tg_fx16_logistic / tg_fx16_tanh equal gemmlowp's FixedPoint<int16_t, IB> logistic and tanh for
    every int16 input and IB 0..6 (gemmlowp's fixedpoint.h as shipped in TensorFlow's wheel)."""
    import tensorflow as tf

    inc = Path(tf.__file__).parent / "include" / "external" / "gemmlowp"
    if not (inc / "fixedpoint" / "fixedpoint.h").is_file() or not (shutil.which("g++") and shutil.which("gcc")):
        pytest.skip("gemmlowp's fixedpoint.h (TensorFlow wheel) or g++/gcc not available")
    (tmp_path / "fx.cc").write_text(r"""
#include <cstdio>
#include <cstdint>
#include "fixedpoint/fixedpoint.h"
extern "C" { int16_t tg_fx16_logistic(int16_t a, int32_t ib); int16_t tg_fx16_tanh(int16_t a, int32_t ib); }
template <int IB> long run() {
  using FX = gemmlowp::FixedPoint<int16_t, IB>;
  long bad = 0;
  for (int v = -32768; v < 32768; v++) {
    bad += gemmlowp::logistic(FX::FromRaw((int16_t)v)).raw() != tg_fx16_logistic((int16_t)v, IB);
    bad += gemmlowp::tanh(FX::FromRaw((int16_t)v)).raw() != tg_fx16_tanh((int16_t)v, IB);
  }
  return bad;
}
int main() { printf("%ld\n", run<0>() + run<1>() + run<2>() + run<3>() + run<4>() + run<5>() + run<6>()); }
""")
    obj = tmp_path / "lstm.o"
    subprocess.run(["gcc", "-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-c", "-I", str(FIRMWARE),
                    str(FIRMWARE / "tg_kernels_lstm.c"), "-o", str(obj)], check=True)
    subprocess.run(["g++", "-O1", "-I", str(inc), str(tmp_path / "fx.cc"), str(obj), "-o", str(tmp_path / "fx")],
                   check=True)
    out = subprocess.run([str(tmp_path / "fx")], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "0", f"{out.strip()} of {7 * 2 * 65536} values differ from gemmlowp"


@pytest.mark.parametrize("index, feature", [(16, "projection"), (9, "peephole"), (21, "layer normalization"),
                                            (1, "CIFG")])
def test_variants_keras_never_builds_are_refused(index, feature):
    """Projection, peephole, layer norm and CIFG LSTMs: one line naming the feature."""
    buf = make_lstm(CASES["seq_t5_f3_u4"])
    g = from_tflite(buf, "lstm")
    op = next(op for op in g.ops if op.kind == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    ops.check(g, op)  # as converted: supported
    op.inputs = list(op.inputs) + [-1] * (24 - len(op.inputs))
    op.inputs[index] = -1 if index == 1 else op.inputs[13]  # some constant tensor in that slot
    with pytest.raises(UnsupportedError) as e:
        ops.check(g, op)
    msg = str(e.value)
    assert feature in msg and "\n" not in msg and "not supported" in msg


def test_while_loop_says_unroll(tmp_path):
    """A GRU that is not unrolled converts to a WHILE loop over more subgraphs: the error says to build
    the layer with unroll=True (tinygen compiles the unrolled graph). TF 2.21's full-int8 converter
    crashes on such a GRU / SimpleRNN, so the float conversion stands in (the importer refuses the
    loop before it looks at types)."""
    import tensorflow as tf
    import tf_keras as keras

    inp = keras.Input((5, 3), batch_size=1)
    m = keras.Model(inp, keras.layers.GRU(4)(inp))
    buf = tf.lite.TFLiteConverter.from_keras_model(m).convert()
    assert "WHILE" in _kinds(buf)
    with pytest.raises(UnsupportedError) as e:
        from_tflite(buf, "gru.tflite")
    msg = str(e.value)
    assert "WHILE" in msg and "unroll=True" in msg and "\n" not in msg


@pytest.mark.qemu
@pytest.mark.skipif(not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")),
                    reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_lstm_on_qemu_m33(tmp_path):
    """An LSTM + Dense model as firmware on mps2-an505 (Cortex-M33): the self-test output equals the
    TFLite reference byte for byte; prints the QEMU -icount instruction count (a proxy for cycles)."""
    buf = make_lstm(CASES["dense_head_t9_f2_u6"])
    board = boards.load_board("mps2-an505")
    c = driver.compile_model(buf, "lstm", "portable", board.arch_features, board_name=board.name)
    project.write(tmp_path / "fw", driver.board_project(c, board))
    info = toolchain.make_firmware(tmp_path / "fw", "portable", board=board)
    r = qemu.run_selftest(info.elf, board, timeout=300)
    assert r.model_hash == c.emitted.manifest["model_sha256_16"]
    assert r.match and r.ok, "firmware output differs from the TFLite reference"
    print(f"lstm dense_head_t9_f2_u6 on mps2-an505: {r.instructions} instructions (QEMU -icount proxy)")
