"""The portable C reference kernels against TFLite's BUILTIN_REF interpreter, byte for byte.

firmware/tg_kernels_ref.c (the portable kernel set, tg_ref_*) is compiled into a host shared library and
called through ctypes. For every model in ``opnets.OPNET_CASES`` of the kinds below (``KERNEL_KINDS``:
the kernels mirrored here in ctypes; the later ops, from TANH to the data movement and reductions,
are checked end to end by test_e2e_opnets.py and their kernels' argument checks by
test_kernels_more.py) the interpreter runs on random
int8 (or float) inputs with all intermediate tensors preserved; each operator is then re-run by
the matching ``tg_*`` kernel on the interpreter's own input tensors, with parameters computed from
the model's tensors by ``tinygen.quant``, and the outputs must be identical.
"""

from __future__ import annotations

import ctypes as C
import os
import re
import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from opnets import OPNET_CASES, make_opnet  # noqa: E402

from tinygen import quant  # noqa: E402
from tinygen.flatbuf import read_model  # noqa: E402

FW = ROOT / "firmware"
SOURCES = [FW / "tg_kernels_ref.c"]
TRIALS = int(os.environ.get("TG_KERNEL_TRIALS", "24"))
TG_OK, TG_ERR_ARG = 0, -1

# ctypes mirrors of tg_nn.h: tests/tg_structs.py (checked against the C by test_struct_mirrors_match_tg_nn_h)
from tg_structs import STRICT_CFLAGS as CFLAGS  # noqa: E402
from tg_structs import (  # noqa: E402
    BinaryParams,
    ConvParams,
    Dims,
    FcParams,
    MeanParams,
    PadParams,
    PoolParams,
    SoftmaxParams,
    host_lib,  # noqa: E402
)

i32, P32, P8 = C.c_int32, C.POINTER(C.c_int32), C.POINTER(C.c_int8)


@pytest.fixture(scope="session")
def lib(tmp_path_factory):
    sigs = {
        "tg_ref_conv2d_s8": [C.POINTER(ConvParams), P8, P8],
        "tg_ref_dwconv2d_s8": [C.POINTER(ConvParams), P8, P8],
        "tg_ref_fully_connected_s8": [C.POINTER(FcParams), P8, P8],
        "tg_ref_avgpool_s8": [C.POINTER(PoolParams), P8, P8],
        "tg_ref_maxpool_s8": [C.POINTER(PoolParams), P8, P8],
        "tg_ref_add_s8": [C.POINTER(BinaryParams), P8, P8, P8],
        "tg_ref_mul_s8": [C.POINTER(BinaryParams), P8, P8, P8],
        **{f"tg_ref_{k}_s8": [C.POINTER(BinaryParams), P8, P8, P8]
           for k in ("maximum", "minimum", "squared_difference", "prelu")},
        "tg_ref_softmax_s8": [C.POINTER(SoftmaxParams), P8, P8],
        "tg_ref_lut_s8": [P8, P8, P8, i32],
        "tg_ref_mean_s8": [C.POINTER(MeanParams), P8, P8],
        "tg_ref_pad_s8": [C.POINTER(PadParams), P8, P8],
        "tg_ref_concat_s8": [i32, C.POINTER(P8), P32, i32, P8],
        "tg_ref_quantize_f32_s8": [C.POINTER(C.c_float), P8, i32, C.c_float, i32],
        "tg_ref_dequantize_s8_f32": [P8, C.POINTER(C.c_float), i32, C.c_float, i32],
    }
    return host_lib(tmp_path_factory.mktemp("tgref") / "libtgref.so", SOURCES, CFLAGS, sigs)


def p8(a: np.ndarray):
    assert a.dtype == np.int8 and a.flags.c_contiguous
    return a.ctypes.data_as(P8)


def p32(a: np.ndarray):
    assert a.dtype == np.int32 and a.flags.c_contiguous
    return a.ctypes.data_as(P32)


def pf(a: np.ndarray):
    assert a.dtype == np.float32 and a.flags.c_contiguous
    return a.ctypes.data_as(C.POINTER(C.c_float))


def dims4(shape) -> Dims:
    s = [1] * (4 - len(shape)) + [int(d) for d in shape]
    assert len(s) == 4, shape
    return Dims(*s)


# ---- model access ------------------------------------------------------------------------------

ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
PADDING = {0: "SAME", 1: "VALID"}
NP_TYPE = {0: np.float32, 2: np.int32, 9: np.int8, 3: np.uint8, 4: np.int64, 7: np.int16}


class Model:
    def __init__(self, data: bytes):
        self.fb = read_model(data)
        self.sg = self.fb.subgraphs[0]

    def t(self, i):
        return self.sg.tensors[i]

    def qp(self, i):
        q = self.t(i).quant
        return float(q.scale[0]), int(q.zero_point[0])

    def const(self, i):
        t = self.t(i)
        raw = self.fb.buffers[t.buffer]
        assert raw, f"tensor {t.name} is not constant"
        return np.frombuffer(raw, dtype=NP_TYPE[t.type]).reshape(t.shape).copy()

    def opname(self, op):
        from tinygen.tflite_names import BUILTIN_OPS

        return BUILTIN_OPS[self.fb.opcodes[op.opcode_index].builtin]


def _conv_like(lib, m: Model, op, vals, depthwise: bool):
    o = op.options
    x = vals[op.inputs[0]]
    in_shape, w_shape, out_shape = m.t(op.inputs[0]).shape, m.t(op.inputs[1]).shape, m.t(op.outputs[0]).shape
    weights = np.ascontiguousarray(m.const(op.inputs[1]))
    bias = m.const(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if depthwise:
        padding, sw, sh, ch_mult, act = o.scalar(0, "b"), o.scalar(1, "i"), o.scalar(2, "i"), o.scalar(3, "i"), o.scalar(4, "b")
        dw, dh = o.scalar(5, "i", 1), o.scalar(6, "i", 1)
    else:
        padding, sw, sh, act = o.scalar(0, "b"), o.scalar(1, "i"), o.scalar(2, "i"), o.scalar(3, "b")
        dw, dh = o.scalar(4, "i", 1), o.scalar(5, "i", 1)
        ch_mult = 0
    out_c = out_shape[3]
    in_s, in_zp = m.qp(op.inputs[0])
    out_s, out_zp = m.qp(op.outputs[0])
    fq = m.t(op.inputs[1]).quant
    assert all(z == 0 for z in fq.zero_point)
    fscales = list(fq.scale) if len(fq.scale) > 1 else [fq.scale[0]] * out_c
    mult, shift = quant.conv_multipliers(in_s, fscales, out_s)
    oh, pad_h = quant.conv_pad(in_shape[1], w_shape[1], sh, dh, PADDING[padding])
    ow, pad_w = quant.conv_pad(in_shape[2], w_shape[2], sw, dw, PADDING[padding])
    assert (oh, ow) == (out_shape[1], out_shape[2])
    lo, hi = quant.activation_range(ACT[act], out_s, out_zp)
    mult, shift = np.array(mult, np.int32), np.array(shift, np.int32)
    bias = None if bias is None else np.ascontiguousarray(bias.astype(np.int32))
    p = ConvParams(
        dims4(in_shape), dims4(w_shape), dims4(out_shape), sh, sw, pad_h, pad_w, dh, dw, ch_mult,
        -in_zp, out_zp, lo, hi, p32(mult), p32(shift), p8(weights), None if bias is None else p32(bias),
    )
    out = np.zeros(out_shape, np.int8)
    fn = lib.tg_ref_dwconv2d_s8 if depthwise else lib.tg_ref_conv2d_s8
    assert fn(C.byref(p), p8(x), p8(out)) == TG_OK
    return out


def run_conv(lib, m, op, vals):
    return _conv_like(lib, m, op, vals, False)


def run_dwconv(lib, m, op, vals):
    return _conv_like(lib, m, op, vals, True)


def run_fc(lib, m, op, vals):
    x = vals[op.inputs[0]]
    weights = np.ascontiguousarray(m.const(op.inputs[1]))
    out_depth, in_depth = weights.shape
    bias = m.const(op.inputs[2]).astype(np.int32) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    act = op.options.scalar(0, "b")
    in_s, in_zp = m.qp(op.inputs[0])
    out_s, out_zp = m.qp(op.outputs[0])
    fq = m.t(op.inputs[1]).quant
    per_channel = len(fq.scale) > 1
    mult, shift = quant.conv_multipliers(in_s, list(fq.scale), out_s)
    mult, shift = np.array(mult, np.int32), np.array(shift, np.int32)
    lo, hi = quant.activation_range(ACT[act], out_s, out_zp)
    p = FcParams(x.size // in_depth, in_depth, out_depth, -in_zp, out_zp, lo, hi, int(per_channel),
                 p32(mult), p32(shift), p8(weights), None if bias is None else p32(bias))
    out = np.zeros(m.t(op.outputs[0]).shape, np.int8)
    assert lib.tg_ref_fully_connected_s8(C.byref(p), p8(x), p8(out)) == TG_OK
    return out


def _pool(lib, m, op, vals, is_max):
    o = op.options
    padding, sw, sh, fw, fh, act = (o.scalar(0, "b"), o.scalar(1, "i"), o.scalar(2, "i"), o.scalar(3, "i"),
                                    o.scalar(4, "i"), o.scalar(5, "b"))
    x = vals[op.inputs[0]]
    in_shape, out_shape = m.t(op.inputs[0]).shape, m.t(op.outputs[0]).shape
    assert m.qp(op.inputs[0]) == m.qp(op.outputs[0])
    oh, pad_h = quant.conv_pad(in_shape[1], fh, sh, 1, PADDING[padding])
    ow, pad_w = quant.conv_pad(in_shape[2], fw, sw, 1, PADDING[padding])
    assert (oh, ow) == (out_shape[1], out_shape[2])
    lo, hi = quant.activation_range(ACT[act], *m.qp(op.outputs[0]))
    p = PoolParams(dims4(in_shape), dims4(out_shape), fh, fw, sh, sw, pad_h, pad_w, lo, hi)
    out = np.zeros(out_shape, np.int8)
    if is_max:
        assert lib.tg_ref_maxpool_s8(C.byref(p), p8(x), p8(out)) == TG_OK
    else:
        assert lib.tg_ref_avgpool_s8(C.byref(p), p8(x), p8(out)) == TG_OK
    return out


def run_avgpool(lib, m, op, vals):
    return _pool(lib, m, op, vals, False)


def run_maxpool(lib, m, op, vals):
    return _pool(lib, m, op, vals, True)


_MINMAX = dict(in1_offset=0, in1_mult=0, in1_shift=0, in2_offset=0, in2_mult=0, in2_shift=0, left_shift=0,
               out_offset=0, out_mult=0, out_shift=0, act_min=-128, act_max=127)
_BINARY_Q = {"add": quant.add_params, "sub": quant.sub_params, "mul": quant.mul_params,
             "squared_difference": lambda *a, act: quant.squared_difference_params(*a),
             "prelu": lambda *a, act: quant.prelu_params(*a),
             "maximum": lambda *a, act: _MINMAX, "minimum": lambda *a, act: _MINMAX}


def _binary(lib, m, op, vals, kind):
    """ADD / SUB (the add kernel, input 2's multiplier negated), MUL, MAXIMUM, MINIMUM, SQUARED_DIFFERENCE, PRELU."""
    a = vals[op.inputs[0]]
    b = vals[op.inputs[1]] if op.inputs[1] in vals else m.const(op.inputs[1])  # PRELU's alpha is constant
    out_shape = m.t(op.outputs[0]).shape
    act = ACT[op.options.scalar(0, "b")] if op.options is not None and kind in ("add", "sub", "mul") else "NONE"
    args = (*m.qp(op.inputs[0]), *m.qp(op.inputs[1]), *m.qp(op.outputs[0]))
    q = _BINARY_Q[kind](*args, act=act)
    p = BinaryParams(dims4(m.t(op.inputs[0]).shape), dims4(m.t(op.inputs[1]).shape), dims4(out_shape), **q)
    out = np.zeros(out_shape, np.int8)
    fn = getattr(lib, f"tg_ref_{'add' if kind == 'sub' else kind}_s8")
    assert fn(C.byref(p), p8(a), p8(b), p8(out)) == TG_OK
    return out


def run_add(lib, m, op, vals):
    return _binary(lib, m, op, vals, "add")


def run_mul(lib, m, op, vals):
    return _binary(lib, m, op, vals, "mul")


def run_softmax(lib, m, op, vals):
    x = vals[op.inputs[0]]
    beta = op.options.scalar(0, "f", 1.0)
    in_s, _ = m.qp(op.inputs[0])
    assert m.qp(op.outputs[0]) == (1.0 / 256, -128)
    mult, shift, diff_min = quant.softmax_params(beta, in_s)
    p = SoftmaxParams(x.size // x.shape[-1], x.shape[-1], mult, shift, diff_min)
    out = np.zeros(x.shape, np.int8)
    assert lib.tg_ref_softmax_s8(C.byref(p), p8(x), p8(out)) == TG_OK
    return out


def _lut(lib, table, x):
    assert table.dtype == np.int8 and table.shape == (256,)
    out = np.zeros(x.shape, np.int8)
    assert lib.tg_ref_lut_s8(p8(np.ascontiguousarray(table)), p8(x), p8(out), x.size) == TG_OK
    return out


def run_logistic(lib, m, op, vals):
    return _lut(lib, quant.lut_logistic(*m.qp(op.inputs[0]), *m.qp(op.outputs[0])), vals[op.inputs[0]])


def run_relu(lib, m, op, vals):
    return _lut(lib, quant.lut_relu(*m.qp(op.inputs[0]), *m.qp(op.outputs[0]), "RELU"), vals[op.inputs[0]])


def run_relu6(lib, m, op, vals):
    return _lut(lib, quant.lut_relu(*m.qp(op.inputs[0]), *m.qp(op.outputs[0]), "RELU6"), vals[op.inputs[0]])


def run_quantize(lib, m, op, vals):
    x = vals[op.inputs[0]]
    out_s, out_zp = m.qp(op.outputs[0])
    if x.dtype == np.int8:  # requantize
        return _lut(lib, quant.lut_requantize(*m.qp(op.inputs[0]), out_s, out_zp), x)
    assert x.dtype == np.float32
    out = np.zeros(x.shape, np.int8)
    assert lib.tg_ref_quantize_f32_s8(pf(x), p8(out), x.size, out_s, out_zp) == TG_OK
    return out


def run_dequantize(lib, m, op, vals):
    x = vals[op.inputs[0]]
    s, zp = m.qp(op.inputs[0])
    out = np.zeros(x.shape, np.float32)
    assert lib.tg_ref_dequantize_s8_f32(p8(x), pf(out), x.size, s, zp) == TG_OK
    return out


def run_mean(lib, m, op, vals):
    x = vals[op.inputs[0]]
    axes = m.const(op.inputs[1]).ravel().tolist()
    keep = bool(op.options.scalar(0, "B"))
    q = quant.mean_params(x.shape, *m.qp(op.inputs[0]), *m.qp(op.outputs[0]), keep_dims=keep, axes=axes)
    dims = q.pop("in_dims")
    p = MeanParams(Dims(*dims), **q)
    out = np.zeros(m.t(op.outputs[0]).shape, np.int8)
    assert lib.tg_ref_mean_s8(C.byref(p), p8(x), p8(out)) == TG_OK
    return out


def run_pad(lib, m, op, vals):
    x = vals[op.inputs[0]]
    pads = m.const(op.inputs[1]).reshape(-1, 2)
    assert m.qp(op.inputs[0]) == m.qp(op.outputs[0])
    value = m.const(op.inputs[2]).ravel()[0] if len(op.inputs) > 2 else m.qp(op.outputs[0])[1]
    before = [0] * (4 - len(pads)) + [int(v) for v in pads[:, 0]]
    out_shape = m.t(op.outputs[0]).shape
    p = PadParams(dims4(x.shape), dims4(out_shape), Dims(*before), int(value))
    out = np.zeros(out_shape, np.int8)
    assert lib.tg_ref_pad_s8(C.byref(p), p8(x), p8(out)) == TG_OK
    return out


def run_concat(lib, m, op, vals):
    out_shape = m.t(op.outputs[0]).shape
    axis = op.options.scalar(0, "i") % len(out_shape)
    for i in op.inputs:
        assert m.qp(i) == m.qp(op.outputs[0]), "CONCATENATION inputs must share the output's quantization"
    ins = [vals[i] for i in op.inputs]
    outer = int(np.prod(out_shape[:axis], dtype=np.int64))
    sizes = np.array([int(np.prod(a.shape[axis:], dtype=np.int64)) for a in ins], np.int32)
    ptrs = (P8 * len(ins))(*[p8(a) for a in ins])
    out = np.zeros(out_shape, np.int8)
    assert lib.tg_ref_concat_s8(len(ins), ptrs, p32(sizes), outer, p8(out)) == TG_OK
    return out


RUNNERS = {
    "CONV_2D": run_conv, "DEPTHWISE_CONV_2D": run_dwconv, "FULLY_CONNECTED": run_fc,
    "AVERAGE_POOL_2D": run_avgpool, "MAX_POOL_2D": run_maxpool, "ADD": run_add, "MUL": run_mul,
    "SOFTMAX": run_softmax, "LOGISTIC": run_logistic, "RELU": run_relu, "RELU6": run_relu6,
    "QUANTIZE": run_quantize, "DEQUANTIZE": run_dequantize, "MEAN": run_mean, "PAD": run_pad,
    "PADV2": run_pad, "CONCATENATION": run_concat,
    **{k.upper(): (lambda kk: lambda lib, m, op, vals: _binary(lib, m, op, vals, kk))(k)
       for k in ("sub", "maximum", "minimum", "squared_difference", "prelu")},
}


def _interpreter(data: bytes):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        it = tf.lite.Interpreter(
            model_content=data,
            experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
            experimental_preserve_all_tensors=True,
        )
    it.allocate_tensors()
    return it


def _random_input(rng, detail, trial):
    shape, dtype = detail["shape"], detail["dtype"]
    if dtype == np.int8:
        if trial == 0:
            return np.full(shape, -128, np.int8)
        if trial == 1:
            return np.full(shape, 127, np.int8)
        if trial == 2:  # few distinct values: ties in max/softmax, exact halves in averages
            return rng.choice(np.array([-128, -1, 0, 1, 127], np.int8), size=shape)
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    assert dtype == np.float32
    s, zp = detail["quantization"]
    q = rng.integers(-140, 141, size=shape)
    if trial % 2:  # exact quantization-step halves: round-half-away-from-zero
        return ((q - zp + 0.5 * rng.choice([-1, 1], size=shape)) * np.float32(s)).astype(np.float32)
    return ((q - zp + rng.uniform(-0.5, 0.5, size=shape)) * s).astype(np.float32)


KERNEL_KINDS = {"conv2d", "dwconv2d", "fc", "avgpool", "maxpool", "add", "sub", "mul", "softmax", "logistic", "relu",
                "relu6", "mean", "pad", "concat", "requantize", "quant_io", "maximum", "minimum", "sqdiff", "prelu"}
# (unknown-batch nets hold SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND, which only the compiler's fold removes)
KERNEL_CASES = [c for c in OPNET_CASES if c[1] in KERNEL_KINDS and not c[2].get("unknown_batch")]


@pytest.mark.parametrize("case_id,kind,spec", KERNEL_CASES, ids=[c[0] for c in KERNEL_CASES])
def test_kernel_matches_tflite_reference(lib, case_id, kind, spec):
    data = make_opnet(kind, **spec)
    m = Model(data)
    it = _interpreter(data)
    rng = np.random.default_rng(zlib.crc32(case_id.encode()))
    ops = m.sg.operators
    names = [m.opname(op) for op in ops]
    assert names, "empty model"
    for name in names:
        assert name in RUNNERS, f"{case_id}: no kernel for {name}"
    checked = 0
    for trial in range(TRIALS):
        for d in it.get_input_details():
            it.set_tensor(d["index"], _random_input(rng, d, trial))
        it.invoke()
        vals = {}
        for op in ops:
            for i in (*op.inputs, *op.outputs):
                if i >= 0 and i not in vals and not m.fb.buffers[m.t(i).buffer]:
                    vals[i] = np.ascontiguousarray(it.get_tensor(i))
        for op, name in zip(ops, names):
            expect = vals[op.outputs[0]]
            got = RUNNERS[name](lib, m, op, vals)
            assert got.dtype == expect.dtype
            got = got.reshape(expect.shape)
            if not np.array_equal(got.view(np.uint8) if got.dtype == np.int8 else got.view(np.uint32),
                                  expect.view(np.uint8) if expect.dtype == np.int8 else expect.view(np.uint32)):
                bad = np.argwhere(got != expect)
                first = tuple(bad[0])
                pytest.fail(
                    f"{case_id}/{name} trial {trial}: {len(bad)} of {expect.size} elements differ; "
                    f"first at {first}: kernel {got[first]!r} vs TFLite {expect[first]!r}"
                )
            checked += 1
    assert checked == TRIALS * len(ops)


# ---- argument validation -----------------------------------------------------------------------


def test_struct_mirrors_match_tg_nn_h(tmp_path):
    """Every ctypes mirror in tests/tg_structs.py has the C struct's size and field offsets."""
    import tg_structs

    shim = tmp_path / "shim.c"
    shim.write_text(tg_structs.layout_shim())
    tg_structs.check_layout(host_lib(tmp_path / "libshim.so", [shim], CFLAGS))
    assert set(tg_structs.STRUCTS) >= {t for t in re.findall(r"\}\s*(tg_\w+_t);", (FW / "tg_nn.h").read_text())}


def test_invalid_arguments_return_err_arg(lib):
    canary = np.full(4096, 0x5A, np.uint8).view(np.int8)
    x = np.zeros(4096, np.int8)
    one = np.array([1 << 30], np.int32)
    zero = np.array([0], np.int32)
    w = np.ones(64, np.int8)

    def conv(**kw):
        base = dict(in_=Dims(1, 4, 4, 2), filter=Dims(3, 3, 3, 2), out=Dims(1, 4, 4, 3), stride_h=1, stride_w=1,
                    pad_h=1, pad_w=1, dil_h=1, dil_w=1, ch_mult=1, in_offset=0, out_offset=0, act_min=-128,
                    act_max=127, mult=None, shift=None, weights=p8(w), bias=None)
        base.update(kw)
        base["in"] = base.pop("in_")  # the C field is `in`
        return ConvParams(**base)

    mult3, shift3 = np.repeat(one, 3), np.repeat(zero, 3)
    shift_bad = np.array([0, 40, 0], np.int32)
    good = conv(mult=p32(mult3), shift=p32(shift3))
    assert lib.tg_ref_conv2d_s8(C.byref(good), p8(x), p8(canary)) == TG_OK
    canary[:] = 0x5A
    bad_convs = [
        conv(mult=p32(mult3), shift=p32(shift3), in_=Dims(1, 0, 4, 2)),
        conv(mult=p32(mult3), shift=p32(shift3), in_=Dims(1, -4, 4, 2)),
        conv(mult=p32(mult3), shift=p32(shift3), filter=Dims(3, 3, 3, 5)),   # in_c mismatch
        conv(mult=p32(mult3), shift=p32(shift3), out=Dims(1, 4, 4, 7)),      # out_c mismatch
        conv(mult=p32(mult3), shift=p32(shift3), out=Dims(1, 40, 4, 3)),     # output too large
        conv(mult=p32(mult3), shift=p32(shift3), stride_h=0),
        conv(mult=p32(mult3), shift=p32(shift3), dil_w=0),
        conv(mult=p32(mult3), shift=p32(shift3), pad_h=-1),
        conv(mult=p32(mult3), shift=p32(shift3), act_min=10, act_max=0),
        conv(mult=p32(mult3), shift=p32(shift_bad)),     # shift out of range
        conv(mult=None, shift=p32(shift3)),
        conv(mult=p32(mult3), shift=p32(shift3), weights=None),
    ]
    for i, p in enumerate(bad_convs):
        assert lib.tg_ref_conv2d_s8(C.byref(p), p8(x), p8(canary)) == TG_ERR_ARG, i
    assert lib.tg_ref_conv2d_s8(None, p8(x), p8(canary)) == TG_ERR_ARG
    assert lib.tg_ref_conv2d_s8(C.byref(good), None, p8(canary)) == TG_ERR_ARG
    assert lib.tg_ref_conv2d_s8(C.byref(good), p8(x), None) == TG_ERR_ARG
    dw = conv(mult=p32(mult3), shift=p32(shift3), filter=Dims(1, 3, 3, 3), ch_mult=2)  # 2 * 2 != 3
    assert lib.tg_ref_dwconv2d_s8(C.byref(dw), p8(x), p8(canary)) == TG_ERR_ARG

    fc = FcParams(1, 8, 0, 0, 0, -128, 127, 0, p32(one), p32(zero), p8(w), None)
    assert lib.tg_ref_fully_connected_s8(C.byref(fc), p8(x), p8(canary)) == TG_ERR_ARG
    fc = FcParams(1, 8, 4, 0, 0, -128, 127, 0, p32(one), p32(zero), None, None)
    assert lib.tg_ref_fully_connected_s8(C.byref(fc), p8(x), p8(canary)) == TG_ERR_ARG

    pool = PoolParams(Dims(1, 4, 4, 2), Dims(1, 2, 2, 3), 2, 2, 2, 2, 0, 0, -128, 127)  # channel mismatch
    assert lib.tg_ref_avgpool_s8(C.byref(pool), p8(x), p8(canary)) == TG_ERR_ARG
    assert lib.tg_ref_maxpool_s8(C.byref(pool), p8(x), p8(canary)) == TG_ERR_ARG
    pool = PoolParams(Dims(1, 4, 4, 2), Dims(1, 9, 2, 2), 2, 2, 2, 2, 0, 0, -128, 127)  # too many rows
    assert lib.tg_ref_maxpool_s8(C.byref(pool), p8(x), p8(canary)) == TG_ERR_ARG

    q = quant.add_params(0.1, 0, 0.2, 0, 0.3, 0)
    binp = BinaryParams(Dims(1, 2, 2, 3), Dims(1, 2, 2, 2), Dims(1, 2, 2, 3), **q)  # 2 does not broadcast to 3
    assert lib.tg_ref_add_s8(C.byref(binp), p8(x), p8(x), p8(canary)) == TG_ERR_ARG
    assert lib.tg_ref_mul_s8(C.byref(binp), p8(x), p8(x), p8(canary)) == TG_ERR_ARG
    binp = BinaryParams(Dims(1, 2, 2, 3), Dims(1, 1, 1, 3), Dims(1, 2, 2, 3), **q)
    assert lib.tg_ref_add_s8(C.byref(binp), p8(x), None, p8(canary)) == TG_ERR_ARG

    sm = SoftmaxParams(0, 10, 1 << 30, 20, -100)
    assert lib.tg_ref_softmax_s8(C.byref(sm), p8(x), p8(canary)) == TG_ERR_ARG
    sm = SoftmaxParams(1, 10, 1 << 30, 40, -100)
    assert lib.tg_ref_softmax_s8(C.byref(sm), p8(x), p8(canary)) == TG_ERR_ARG

    lut = np.zeros(256, np.int8)
    assert lib.tg_ref_lut_s8(p8(lut), p8(x), p8(canary), 0) == TG_ERR_ARG
    assert lib.tg_ref_lut_s8(None, p8(x), p8(canary), 4) == TG_ERR_ARG

    mp = MeanParams(Dims(1, 3, 3, 2), 0, 0, 1 << 30, 0, 8)  # num_elements != 9
    assert lib.tg_ref_mean_s8(C.byref(mp), p8(x), p8(canary)) == TG_ERR_ARG
    mp = MeanParams(Dims(1, 3, 3, 2), 0, 0, 1 << 30, -40, 9)  # shift out of range
    assert lib.tg_ref_mean_s8(C.byref(mp), p8(x), p8(canary)) == TG_ERR_ARG

    pad = PadParams(Dims(1, 3, 3, 2), Dims(1, 4, 4, 2), Dims(0, 2, 0, 0), 0)  # before + in > out
    assert lib.tg_ref_pad_s8(C.byref(pad), p8(x), p8(canary)) == TG_ERR_ARG
    pad = PadParams(Dims(1, 3, 3, 2), Dims(1, 4, 4, 2), Dims(0, -1, 0, 0), 0)
    assert lib.tg_ref_pad_s8(C.byref(pad), p8(x), p8(canary)) == TG_ERR_ARG

    ptrs = (P8 * 2)(p8(x), None)
    assert lib.tg_ref_concat_s8(2, ptrs, p32(np.array([2, 2], np.int32)), 3, p8(canary)) == TG_ERR_ARG
    ptrs = (P8 * 2)(p8(x), p8(x))
    assert lib.tg_ref_concat_s8(2, ptrs, p32(np.array([2, -2], np.int32)), 3, p8(canary)) == TG_ERR_ARG
    assert lib.tg_ref_concat_s8(0, ptrs, p32(np.array([2, 2], np.int32)), 3, p8(canary)) == TG_ERR_ARG

    f = np.zeros(16, np.float32)
    assert lib.tg_ref_quantize_f32_s8(pf(f), p8(canary), 16, 0.0, 0) == TG_ERR_ARG
    assert lib.tg_ref_quantize_f32_s8(pf(f), p8(canary), 16, 0.1, 300) == TG_ERR_ARG
    assert lib.tg_ref_quantize_f32_s8(pf(f), p8(canary), -1, 0.1, 0) == TG_ERR_ARG
    fo = np.full(16, 7.0, np.float32)
    assert lib.tg_ref_dequantize_s8_f32(p8(x), pf(fo), 16, -1.0, 0) == TG_ERR_ARG
    assert np.all(fo == 7.0)

    assert np.all(canary.view(np.uint8) == 0x5A), "a rejected call wrote to its output"


def test_kernels_compile_for_cortex_m33(tmp_path):
    cc = shutil.which("arm-none-eabi-gcc")
    if cc is None:
        pytest.skip("arm-none-eabi-gcc not installed")
    for src in SOURCES:
        cmd = [cc, "-std=c99", "-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16", "-O2",
               "-Wall", "-Wextra", "-Werror", "-Wshadow", "-I", str(FW), "-c", str(src), "-o", str(tmp_path / "k.o")]
        res = subprocess.run(cmd, capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
