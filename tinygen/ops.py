"""The op table: one :class:`OpDef` per supported TFLite op.

The core ops are here; further entries live in :mod:`tinygen.ops_elementwise` (TANH, HARD_SWISH,
LEAKY_RELU, MAXIMUM, ...), :mod:`tinygen.ops_shape` (slices, transposes, splits...) and
:mod:`tinygen.ops_reduce` (MEAN/REDUCE_MAX/REDUCE_MIN), :mod:`tinygen.ops_resize`, imported at the end of this module; all register
into :data:`tinygen.opdefs.TABLE` (the building blocks and shared helpers live there).
Adding an op = one entry (parse options, check support, count MACs, lower to
kernel-independent parameters, the op's facts: input roles, fuses an activation,
shape-only, in-place) + a kernel entry in :mod:`tinygen.kernels` + its test net in
``tests/opnets.py``. Each check's docstring is the user's error message;
``SUPPORTED_OPS.md`` is generated from this table (``python -m tinygen.ops``).
Which C function runs a layer is not decided here: :mod:`tinygen.kernels` picks it.
"""

from __future__ import annotations

import numpy as np

from . import quant
from .errors import ModelError, UnsupportedError
from .flatbuf import Table
from .ir import Graph, Op
from .opdefs import (  # noqa: F401 - Arr, Lowered, OpDef, TABLE, register, facts are this module's API too
    ACT,
    LUTS,
    PADDING,
    TABLE,
    Arr,
    Lowered,
    OpDef,
    _act,
    _add_bias,
    _bias,
    _binary_io,
    _broadcastable,
    _check_spatial,
    _const,
    _dims,
    _dims4,
    _expected_out,
    _fail,
    _int8_io,
    _opt,
    _pads,
    _params_in_range,
    _requant_in_range,
    _same_pad,
    _same_size,
    _weights,
    check_lut,
    facts,
    lower_lut,
    register,
)

# ---- CONV_2D / DEPTHWISE_CONV_2D ---------------------------------------------------------------


def _parse_conv(t):
    return {"padding": PADDING.get(_opt(t, 0, "b"), "?"), "stride_w": _opt(t, 1, "i"), "stride_h": _opt(t, 2, "i"),
            "act": ACT.get(_opt(t, 3, "b"), "?"), "dil_w": _opt(t, 4, "i", 1), "dil_h": _opt(t, 5, "i", 1)}


def _parse_dw(t):
    return {"padding": PADDING.get(_opt(t, 0, "b"), "?"), "stride_w": _opt(t, 1, "i"), "stride_h": _opt(t, 2, "i"),
            "depth_multiplier": _opt(t, 3, "i"), "act": ACT.get(_opt(t, 4, "b"), "?"),
            "dil_w": _opt(t, 5, "i", 1), "dil_h": _opt(t, 6, "i", 1)}


def _check_conv(g, op):
    """CONV_2D: int8 NHWC input/output (per-tensor), int8 OHWI weights (per-channel or per-tensor, symmetric), int32 bias, SAME/VALID padding, any stride/dilation, fused NONE/RELU/RELU6/RELU_N1_TO_1. Grouped convolution is not supported."""
    _int8_io(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4:
        _fail(op, f"expects 4-D NHWC tensors, got {x.describe()} -> {y.describe()}")
    w = _weights(g, op, 1, y.shape[3])
    if len(w.shape) != 4 or w.shape[0] != y.shape[3]:
        raise ModelError(f"{op.where()}: weights {w.describe()} do not match output channels {y.shape[3]}")
    if w.shape[3] != x.shape[3]:
        _fail(op, f"grouped convolution (weights {w.describe()} for {x.shape[3]} input channels) is not supported")
    if op.attrs["padding"] not in ("SAME", "VALID", "EXPLICIT"):
        raise ModelError(f"{op.where()}: unknown padding")
    _bias(g, op, 2, y.shape[3])
    _act(g, op)
    _check_spatial(op, g, w.shape[1], w.shape[2])
    _requant_in_range(g, op, (1, 2, 3))


def _check_dw(g, op):
    """DEPTHWISE_CONV_2D: int8 input/output (per-tensor), int8 1HWO weights (per-channel or per-tensor), any depth multiplier, stride, dilation, SAME/VALID padding, fused NONE/RELU/RELU6/RELU_N1_TO_1."""
    _int8_io(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4:
        _fail(op, f"expects 4-D NHWC tensors, got {x.describe()} -> {y.describe()}")
    w = _weights(g, op, 1, y.shape[3])
    if len(w.shape) != 4 or w.shape[0] != 1 or w.shape[3] != y.shape[3] or y.shape[3] % x.shape[3]:
        raise ModelError(f"{op.where()}: weights {w.describe()} do not fit {x.describe()} -> {y.describe()}")
    if op.attrs["padding"] not in ("SAME", "VALID", "EXPLICIT"):
        raise ModelError(f"{op.where()}: unknown padding")
    _bias(g, op, 2, y.shape[3])
    _act(g, op)
    _check_spatial(op, g, w.shape[1], w.shape[2])
    _requant_in_range(g, op, (0, 1, 2))


def _conv_params(g, op, depthwise):
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    cout = y.shape[3]
    (sx, zx), (sy, zy) = x.q(), y.q()
    wscales = np.broadcast_to(w.scale, (cout,))
    mult, shift = quant.conv_multipliers(sx, wscales, sy)
    mult, shift = quant.flush_unreachable(mult, shift, quant.accumulator_bounds(
        w.data, (0, 1, 2) if depthwise else (1, 2, 3), zx, _bias(g, op, 2, cout)))  # no shift -31 reaches CMSIS-NN
    lo, hi = _act(g, op)
    kh, kw = w.shape[1], w.shape[2]
    ph, pw = _pads(op, g, kh, kw)
    a = op.attrs
    params = {
        "in": _dims(x.shape), "filter": _dims(w.shape), "out": _dims(y.shape),
        "stride_h": a["stride_h"], "stride_w": a["stride_w"], "pad_h": ph, "pad_w": pw,
        "dil_h": a["dil_h"], "dil_w": a["dil_w"], "ch_mult": cout // x.shape[3] if depthwise else 1,
        "in_offset": -zx, "out_offset": zy, "act_min": lo, "act_max": hi,
        "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights"),
    }
    arrays = {"mult": np.array(mult, np.int32), "shift": np.array(shift, np.int32), "weights": w.data.reshape(-1)}
    _add_bias(params, arrays, _bias(g, op, 2, cout))
    return params, arrays


def _lower_conv(g, op):
    params, arrays = _conv_params(g, op, False)
    return Lowered(params, arrays, "tg_conv_params_t")


def _lower_dw(g, op):
    params, arrays = _conv_params(g, op, True)
    return Lowered(params, arrays, "tg_conv_params_t")


def _macs_conv(g, op):
    y, w = g.t(op.outputs[0]), g.t(op.inputs[1])
    return y.size * w.shape[1] * w.shape[2] * w.shape[3]


def _macs_dw(g, op):
    y, w = g.t(op.outputs[0]), g.t(op.inputs[1])
    return y.size * w.shape[1] * w.shape[2]


_WEIGHTED = dict(roles=("input", "weights", "bias"), required=2, fuses_act=True)
register("CONV_2D", _parse_conv, _check_conv, _lower_conv, _macs_conv, **_WEIGHTED, doc=_check_conv.__doc__)
register("DEPTHWISE_CONV_2D", _parse_dw, _check_dw, _lower_dw, _macs_dw, **_WEIGHTED, doc=_check_dw.__doc__)


# ---- FULLY_CONNECTED ---------------------------------------------------------------------------


def _parse_fc(t):
    return {"act": ACT.get(_opt(t, 0, "b"), "?"), "weights_format": _opt(t, 1, "b"), "keep_num_dims": bool(_opt(t, 2, "B"))}


def _check_fc(g, op):
    """FULLY_CONNECTED: int8 input/output (per-tensor), constant int8 [out, in] weights (per-tensor or per-channel, symmetric), optional int32 bias, fused NONE/RELU/RELU6/RELU_N1_TO_1, default weights format."""
    _int8_io(g, op)
    if op.attrs["weights_format"] != 0:
        _fail(op, "shuffled weights format is not supported")
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    w = _const(g, op, 1, "weights")
    if len(w.shape) != 2:
        raise ModelError(f"{op.where()}: weights {w.describe()} must be 2-D [out, in]")
    _weights(g, op, 1, w.shape[0])
    if x.size % w.shape[1] or y.size != (x.size // w.shape[1]) * w.shape[0]:
        raise ModelError(f"{op.where()}: input {x.describe()} and weights {w.describe()} give no output {y.describe()}")
    _bias(g, op, 2, w.shape[0])
    _act(g, op)
    _requant_in_range(g, op, (1,))


def _lower_fc(g, op):
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    out_d, in_d = w.shape
    (sx, zx), (sy, zy) = x.q(), y.q()
    if w.scale.size > 1:
        mult, shift = quant.conv_multipliers(sx, w.scale, sy)
    else:
        m, s = quant.fc_per_tensor_multiplier(sx, float(w.scale[0]), sy)
        mult, shift = [m], [s]
    lo, hi = _act(g, op)
    params = {"batches": x.size // in_d, "in_depth": in_d, "out_depth": out_d, "in_offset": -zx, "out_offset": zy,
              "act_min": lo, "act_max": hi, "per_channel": int(w.scale.size > 1),
              "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights")}
    arrays = {"mult": np.array(mult, np.int32), "shift": np.array(shift, np.int32), "weights": w.data.reshape(-1)}
    _add_bias(params, arrays, _bias(g, op, 2, out_d))
    return Lowered(params, arrays, "tg_fc_params_t")


def _macs_fc(g, op):
    x, w = g.t(op.inputs[0]), g.t(op.inputs[1])
    return (x.size // w.shape[1]) * w.shape[0] * w.shape[1]


register("FULLY_CONNECTED", _parse_fc, _check_fc, _lower_fc, _macs_fc, **_WEIGHTED, doc=_check_fc.__doc__)


# ---- pooling -----------------------------------------------------------------------------------


def _parse_pool(t):
    return {"padding": PADDING.get(_opt(t, 0, "b"), "?"), "stride_w": _opt(t, 1, "i"), "stride_h": _opt(t, 2, "i"),
            "filter_w": _opt(t, 3, "i"), "filter_h": _opt(t, 4, "i"), "act": ACT.get(_opt(t, 5, "b"), "?")}


def _check_pool(g, op):
    """AVERAGE_POOL_2D / MAX_POOL_2D: int8 4-D NHWC, input and output with the same scale and zero point, SAME/VALID padding, any filter and stride, fused NONE/RELU/RELU6/RELU_N1_TO_1."""
    _int8_io(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if len(x.shape) != 4 or len(y.shape) != 4 or x.shape[3] != y.shape[3]:
        _fail(op, f"expects 4-D NHWC input and output with the same channels, got {x.describe()} -> {y.describe()}")
    if x.q() != y.q():
        _fail(op, f"input {x.describe()} and output {y.describe()} must share scale and zero point")
    if op.attrs["filter_h"] < 1 or op.attrs["filter_w"] < 1:
        raise ModelError(f"{op.where()}: filter size {op.attrs['filter_h']}x{op.attrs['filter_w']}")
    _act(g, op)
    _check_spatial(op, g, op.attrs["filter_h"], op.attrs["filter_w"])


def _pool_params(g, op):
    a = op.attrs
    lo, hi = _act(g, op)
    ph, pw = _pads(op, g, a["filter_h"], a["filter_w"])
    return {"in": _dims(g.t(op.inputs[0]).shape), "out": _dims(g.t(op.outputs[0]).shape),
            "filter_h": a["filter_h"], "filter_w": a["filter_w"], "stride_h": a["stride_h"], "stride_w": a["stride_w"],
            "pad_h": ph, "pad_w": pw, "act_min": lo, "act_max": hi}


def _lower_pool(g, op):
    return Lowered(_pool_params(g, op), {}, "tg_pool_params_t")


def _macs_pool(g, op):
    return g.t(op.outputs[0]).size * op.attrs["filter_h"] * op.attrs["filter_w"]


register("AVERAGE_POOL_2D", _parse_pool, _check_pool, _lower_pool, _macs_pool, fuses_act=True, doc=_check_pool.__doc__)
register("MAX_POOL_2D", _parse_pool, _check_pool, _lower_pool, _macs_pool, fuses_act=True, doc=_check_pool.__doc__)


# ---- element-wise binary -----------------------------------------------------------------------


def _parse_act0(t):
    return {"act": ACT.get(_opt(t, 0, "b"), "?")}


_BINARY_QUANT = {"ADD": quant.add_params, "SUB": quant.sub_params, "MUL": quant.mul_params}


def _check_binary(g, op):
    """ADD / SUB / MUL: two int8 inputs (constant or computed, per-tensor) broadcast over up to 4 dimensions, int8 output, fused NONE/RELU/RELU6/RELU_N1_TO_1."""
    a, b, y = _binary_io(g, op)
    _act(g, op)
    (sa, za), (sb, zb), (sy, zy) = a.q(), b.q(), y.q()
    _params_in_range(op, _BINARY_QUANT[op.kind], sa, za, sb, zb, sy, zy)


def _lower_binary(g, op):
    a, b, y = (g.t(i) for i in (*op.inputs, op.outputs[0]))
    (sa, za), (sb, zb), (sy, zy) = a.q(), b.q(), y.q()
    fn = _BINARY_QUANT[op.kind]
    p = {"in1": _dims(a.shape), "in2": _dims(b.shape), "out": _dims(y.shape)}
    p.update(fn(sa, za, sb, zb, sy, zy))
    p["act_min"], p["act_max"] = _act(g, op)
    return Lowered(p, {}, "tg_binary_params_t")


_BINARY = dict(roles=("input 1", "input 2"), required=2, inplace=True, fuses_act=True)
register("ADD", _parse_act0, _check_binary, _lower_binary, lambda g, op: g.t(op.outputs[0]).size, **_BINARY,
         doc=_check_binary.__doc__)
register("MUL", _parse_act0, _check_binary, _lower_binary, lambda g, op: g.t(op.outputs[0]).size, **_BINARY,
         doc=_check_binary.__doc__)
register("SUB", _parse_act0, _check_binary, _lower_binary, lambda g, op: g.t(op.outputs[0]).size, **_BINARY,
         doc=_check_binary.__doc__)


# ---- SOFTMAX -----------------------------------------------------------------------------------


def _check_softmax(g, op):
    """SOFTMAX: int8 input, int8 output with scale 1/256 and zero point -128 (TFLite int8 spec), over the last dimension, any beta > 0."""
    _int8_io(g, op)
    y = g.t(op.outputs[0])
    s, z = y.q()
    if abs(s - 1 / 256) > 1e-8 or z != -128:
        _fail(op, f"output {y.describe()} must have scale 1/256 and zero point -128, has {s} and {z}")
    x = g.t(op.inputs[0])
    if x.shape != y.shape or not x.shape:
        raise ModelError(f"{op.where()}: input {x.describe()} and output {y.describe()} must have the same shape, rank >= 1")
    _params_in_range(op, quant.softmax_params, op.attrs["beta"], x.q()[0])


def _lower_softmax(g, op):
    x = g.t(op.inputs[0])
    mult, shift, diff_min = quant.softmax_params(op.attrs["beta"], x.q()[0])
    p = {"rows": x.size // x.shape[-1], "row_size": x.shape[-1], "mult": mult, "shift": shift, "diff_min": diff_min}
    return Lowered(p, {}, "tg_softmax_params_t")


# beta absent = the schema default 0.0 (what TFLite reads, and aborts on), not 1.0
register("SOFTMAX", lambda t: {"beta": _opt(t, 0, "f", 0.0)}, _check_softmax, _lower_softmax,
         lambda g, op: g.t(op.outputs[0]).size, doc=_check_softmax.__doc__)


# ---- element-wise unary via a 256-entry table --------------------------------------------------


def _check_unary(g, op):
    """LOGISTIC / RELU / RELU6 / RELU_N1_TO_1 / QUANTIZE (int8 -> int8): int8 per-tensor input and output; computed by a 256-entry table built with TFLite's exact arithmetic."""
    check_lut(g, op)


LUTS["LOGISTIC"] = lambda sx, zx, sy, zy, attrs: quant.lut_logistic(sx, zx, sy, zy)
LUTS["QUANTIZE"] = lambda sx, zx, sy, zy, attrs: (quant.lut_float_requantize if attrs.get("via_float")
                                                   else quant.lut_requantize)(sx, zx, sy, zy)
for _k in ("RELU", "RELU6", "RELU_N1_TO_1"):
    LUTS[_k] = lambda sx, zx, sy, zy, attrs, _k=_k: quant.lut_relu(sx, zx, sy, zy, _k)


register("LOGISTIC", lambda t: {}, _check_unary, lower_lut, inplace=True, doc=_check_unary.__doc__)
for _k in ("RELU", "RELU6", "RELU_N1_TO_1"):
    register(_k, lambda t: {}, _check_unary, lower_lut, inplace=True, activation=True, doc=_check_unary.__doc__)


# ---- QUANTIZE / DEQUANTIZE at the graph edges --------------------------------------------------


def _check_quantize(g, op):
    """QUANTIZE: float32 -> int8 (at the graph input) or int8 -> int8 (requantize); per-tensor."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.dtype == "int8":
        return _check_unary(g, op)
    if x.dtype != "float32" or y.dtype != "int8":
        _fail(op, f"QUANTIZE {x.dtype} -> {y.dtype} is not supported (float32 -> int8 and int8 -> int8 are)")
    _int8_io(g, Op(op.kind, [], op.outputs, {}, op.op_index, op.name))
    _same_size(g, op)


def _lower_quantize(g, op):
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.dtype == "int8":
        return lower_lut(g, op)
    s, z = y.q()
    return Lowered(imm={"size": x.size, "scale": _cfloat(s), "zero_point": z, "float_in": True})


def _check_dequantize(g, op):
    """DEQUANTIZE: int8 -> float32 (at the graph output), per-tensor."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.dtype != "int8" or y.dtype != "float32":
        _fail(op, f"DEQUANTIZE {x.dtype} -> {y.dtype} is not supported (int8 -> float32 is)")
    _int8_io(g, Op(op.kind, op.inputs, [], {}, op.op_index, op.name))
    _same_size(g, op)


def _lower_dequantize(g, op):
    x = g.t(op.inputs[0])
    s, z = x.q()
    return Lowered(imm={"size": x.size, "scale": _cfloat(s), "zero_point": z})


def _cfloat(v: float) -> str:
    """An exact C float literal (hex) for a float32 value.

    >>> _cfloat(0.5)
    '0x1.0000000000000p-1f'
    """
    return f"{float(np.float32(v)).hex()}f" if v else "0.0f"


register("QUANTIZE", lambda t: {}, _check_quantize, _lower_quantize, doc=_check_quantize.__doc__)
register("DEQUANTIZE", lambda t: {}, _check_dequantize, _lower_dequantize, doc=_check_dequantize.__doc__)


# ---- shape-only ops: aliases, no copy ----------------------------------------------------------


def _check_alias(g, op):
    """RESHAPE / SQUEEZE / EXPAND_DIMS: same bytes, new shape; compiled as an alias of the input (no copy, no time, no memory)."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.nbytes != y.nbytes or x.dtype != y.dtype:
        raise ModelError(f"{op.where()}: {x.describe()} -> {y.describe()} changes the data size")
    if x.dtype == "int8" and (x.scale.tolist(), x.zero_point.tolist()) != (y.scale.tolist(), y.zero_point.tolist()):
        _fail(op, f"{x.describe()} -> {y.describe()} changes quantization")


def _lower_alias(g, op):
    return Lowered(alias=True)


for _k in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
    register(_k, lambda t: {}, _check_alias, _lower_alias, shape_only=True, doc=_check_alias.__doc__)


# ---- PAD / PADV2 -------------------------------------------------------------------------------


def _check_pad(g, op):
    """PAD / PADV2: int8 up to 4-D, constant int32/int64 paddings, non-negative; PADV2's constant value must use the output's quantization."""
    _int8_io(g, op)
    p = _const(g, op, 1, "paddings")
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if p.data.shape != (len(x.shape), 2) or np.any(p.data < 0):
        _fail(op, f"paddings {p.data.tolist()} must be non-negative [rank, 2]")
    if len(x.shape) > 4:
        _fail(op, f"input {x.describe()} has more than 4 dimensions")
    if tuple(int(d) + int(a) + int(b) for d, (a, b) in zip(x.shape, p.data)) != y.shape:
        raise ModelError(f"{op.where()}: paddings {p.data.tolist()} on {x.describe()} do not give {y.describe()}")
    if x.q() != y.q():
        _fail(op, "input and output must share scale and zero point")
    if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        v = _const(g, op, 2, "constant value")
        if v.dtype != "int8" or v.size != 1:
            _fail(op, f"constant value {v.describe()} must be one int8")


def _lower_pad(g, op):
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    pads = np.asarray(g.t(op.inputs[1]).data).reshape(-1, 2)
    before = [0] * (4 - len(x.shape)) + [int(a) for a, _ in pads]
    value = y.q()[1]
    if op.kind == "PADV2" and len(op.inputs) > 2 and op.inputs[2] >= 0:
        value = int(np.asarray(g.t(op.inputs[2]).data).reshape(-1)[0])
    p = {"in": _dims(x.shape), "out": _dims(y.shape),
         "before": dict(zip("nhwc", before)), "pad_value": value}
    return Lowered(p, {}, "tg_pad_params_t")


register("PAD", lambda t: {}, _check_pad, _lower_pad, roles=("input", "paddings"), required=2, doc=_check_pad.__doc__)
register("PADV2", lambda t: {}, _check_pad, _lower_pad, roles=("input", "paddings", "constant value"), required=2,
         doc=_check_pad.__doc__)


# ---- CONCATENATION -----------------------------------------------------------------------------


def _check_concat(g, op):
    """CONCATENATION: int8 inputs sharing the output's scale and zero point (TFLite int8 requirement), any axis, no fused activation."""
    _int8_io(g, op, len(op.inputs))
    y = g.t(op.outputs[0])
    if op.attrs["act"] != "NONE":
        _fail(op, f"fused activation {op.attrs['act']} on CONCATENATION is not supported")
    if not y.shape or not -len(y.shape) <= op.attrs["axis"] < len(y.shape):
        raise ModelError(f"{op.where()}: axis {op.attrs['axis']} does not exist in output {y.describe()}")
    axis = op.attrs["axis"] % len(y.shape)
    if any(i < 0 for i in op.inputs):
        raise ModelError(f"{op.where()}: an input is missing (inputs {op.inputs})")
    if sum(g.t(i).shape[axis] if len(g.t(i).shape) == len(y.shape) else -1 for i in op.inputs) != y.shape[axis]:
        raise ModelError(f"{op.where()}: the inputs' sizes on axis {axis} do not add up to output {y.describe()}")
    for i in op.inputs:
        x = g.t(i)
        if x.q() != y.q():
            _fail(op, f"input {x.describe()} has different quantization from the output")
        if len(x.shape) != len(y.shape) or any(a != b for k, (a, b) in enumerate(zip(x.shape, y.shape)) if k != axis):
            raise ModelError(f"{op.where()}: input {x.describe()} does not fit output {y.describe()} on axis {axis}")


def _lower_concat(g, op):
    y = g.t(op.outputs[0])
    axis = op.attrs["axis"] % len(y.shape)
    outer = int(np.prod(y.shape[:axis], dtype=np.int64))
    sizes = np.array([int(np.prod(g.t(i).shape[axis:], dtype=np.int64)) for i in op.inputs], np.int32)
    return Lowered(arrays={"sizes": sizes}, imm={"n_inputs": len(op.inputs), "outer": outer})


register("CONCATENATION", lambda t: {"axis": _opt(t, 0, "i"), "act": ACT.get(_opt(t, 1, "b"), "?")},
         _check_concat, _lower_concat, roles=("input 1", "input 2"), doc=_check_concat.__doc__)


# ---- entry points ------------------------------------------------------------------------------


# what to do about an op kind tinygen does not compile (the refusal names it beside the kind)
HINTS = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "build the LSTM/GRU layer with unroll=True",
    "BIDIRECTIONAL_SEQUENCE_LSTM": "build the LSTM/GRU layers with unroll=True",
    "UNIDIRECTIONAL_SEQUENCE_RNN": "build the RNN layer with unroll=True",
    "SHAPE": "the model computes shapes at run time: export with a fixed batch size (Input(..., batch_size=1))",
    "REDUCE_PROD": "dynamic-shape arithmetic: export with a fixed batch size",
    "CUSTOM": "tinygen compiles TFLite builtin ops only",
}


def unsupported_ops_error(source: str, unknown: list[tuple[str, int, str]]) -> UnsupportedError:
    """One error naming every op kind of the model tinygen cannot compile: its count, first location
    and a hint where one exists. ``unknown``: (kind, op index, output name) per op, in model order.

    >>> str(unsupported_ops_error("m.tflite", [("EXP", 3, "a"), ("EXP", 5, "b"), ("SHAPE", 0, "s")]))[:98]
    "m.tflite: 3 ops are not supported by tinygen: EXP x2 (first: op #3, output 'a'); SHAPE x1 (first: "
    """
    kinds: dict[str, list[tuple[int, str]]] = {}
    for kind, oi, name in unknown:
        kinds.setdefault(kind, []).append((oi, name))
    parts = []
    for kind, where in kinds.items():
        base = "CUSTOM" if kind.startswith("custom op") else kind
        hint = f": {HINTS[base]}" if base in HINTS else ""
        parts.append(f"{kind} x{len(where)} (first: op #{where[0][0]}, output '{where[0][1]}'{hint})")
    n = len(unknown)
    return UnsupportedError(f"{source}: {n} op{'s are' if n > 1 else ' is'} not supported by tinygen: "
                            f"{'; '.join(parts)}; see SUPPORTED_OPS.md")


def parse(op: Op, options: Table | None, tensors) -> None:
    """Decode the builtin options of ``op`` (called by the importer for the kinds of :data:`TABLE`)."""
    d = TABLE.get(op.kind)
    if d is None:
        raise unsupported_ops_error("model", [(op.kind, op.op_index, op.name)])
    try:
        op.attrs = d.parse(options)
    except ModelError:
        raise
    except Exception as e:  # malformed option tables
        raise ModelError(f"op #{op.op_index} {op.kind}: cannot read its options ({e})") from None


def check(g: Graph, op: Op) -> None:
    TABLE[op.kind].check(g, op)


def lower(g: Graph, op: Op) -> Lowered:
    """The layer's kernel-independent parameters (:class:`Lowered`); the kernel is chosen by tinygen.kernels."""
    return TABLE[op.kind].lower(g, op)


def macs(g: Graph, op: Op) -> int:
    return int(TABLE[op.kind].macs(g, op))


def supported_ops_markdown() -> str:
    from .tflm_ops import NOT_INT8, SOURCE, TFLM_OPS

    tflm = set(TFLM_OPS)
    lines = ["# Supported ops", "", "Generated from `tinygen/ops.py` (`python -m tinygen.ops`).", "",
             "| op | in TFLite Micro | constraints |", "|---|---|---|"]
    for k in sorted(TABLE):
        where = "yes" if k in tflm else "no (tinygen only)"
        lines.append(f"| {k} | {where} | {' '.join((TABLE[k].doc or '').split())} |")
    int8 = sorted(tflm - NOT_INT8)
    have = [k for k in int8 if k in TABLE]
    missing = [k for k in int8 if k not in TABLE]
    lines += ["", "## Coverage of TFLite Micro's int8 ops", "",
              f"TFLite Micro's builtin ops (`tinygen/tflm_ops.py`, from {SOURCE}), less the "
              f"{len(tflm & NOT_INT8)} that are not int8 tensor arithmetic there (control flow, variables, "
              f"shape, bool and float-only ops): **tinygen compiles {len(have)} of {len(int8)}.**", "",
              "| TFLite Micro op | tinygen |", "|---|---|"]
    lines += [f"| {k} | {('only folded into a dilated convolution' if TABLE[k].folded else 'yes') if k in TABLE else 'no'} |"
              for k in int8]
    lines += ["", f"Not compiled by tinygen: {', '.join(missing) if missing else 'none'}.",
              f"Not int8 arithmetic in TFLite Micro (not counted): {', '.join(sorted(tflm & NOT_INT8))}."]
    return "\n".join(lines) + "\n"


# ---- further entries live in their own modules and register into TABLE when imported ----------

# they register into TABLE
from . import (  # noqa: E402,F401
    ops_elementwise,
    ops_lstm,
    ops_matmul,
    ops_reduce,
    ops_resize,
    ops_shape,
    ops_transpose_conv,
)

if __name__ == "__main__":
    from tinygen.ops import supported_ops_markdown as _markdown  # the package's table (this file runs as __main__)

    print(_markdown(), end="")
