"""Op-table entry of TRANSPOSE_CONV (Keras Conv2DTranspose), registered into
:data:`tinygen.opdefs.TABLE`.

TFLite 2.21's int8 reference (reference_integer_ops::TransposeConv) scatters
``(in + in_offset) * w`` into an int32 buffer of the output's size, adds the bias, requantizes
per channel and clamps to the fused activation. ``tg_ref_transpose_conv_s8`` computes the same
sums as a gather (each output sums the inputs that reach it: integer sums do not depend on the
order), so it needs no scratch. The padding is TFLite's: that of a convolution from the output
size with the same filter and stride.
"""

from __future__ import annotations

import numpy as np

from . import quant
from .errors import ModelError
from .ir import Op
from .opdefs import (
    ACT,
    PADDING,
    Arr,
    Lowered,
    _act,
    _add_bias,
    _bias,
    _const,
    _dims,
    _fail,
    _int8_io,
    _opt,
    _same_pad,
    _weights,
    register,
)


def _parse(t):
    return {"padding": PADDING.get(_opt(t, 0, "b"), "?"), "stride_w": _opt(t, 1, "i"), "stride_h": _opt(t, 2, "i"),
            "act": ACT.get(_opt(t, 3, "b"), "?")}


def _data(op: Op) -> Op:
    """The op seen with its data input first (TRANSPOSE_CONV's inputs are output_shape, weights, input, bias)."""
    return Op(op.kind, [op.inputs[2]], op.outputs, op.attrs, op.op_index, op.name)


def _pads(g, op) -> tuple[int, int]:
    a, y, w = op.attrs, g.t(op.outputs[0]), g.t(op.inputs[1])
    if a["padding"] != "SAME":
        return 0, 0
    (oh, ow), (kh, kw) = y.shape[1:3], w.shape[1:3]
    return (_same_pad(oh, kh, a["stride_h"], 1, -(-oh // a["stride_h"])),
            _same_pad(ow, kw, a["stride_w"], 1, -(-ow // a["stride_w"])))


def _check(g, op):
    """TRANSPOSE_CONV: int8 NHWC input/output (per-tensor), constant int8 OHWI weights (per-channel or per-tensor, symmetric), optional int32 bias, constant output shape, SAME/VALID padding, any stride, fused NONE/RELU/RELU6/RELU_N1_TO_1."""
    _int8_io(g, _data(op))
    x, y = g.t(op.inputs[2]), g.t(op.outputs[0])
    shape = [int(v) for v in np.asarray(_const(g, op, 0, "output shape").data).reshape(-1)]
    if len(x.shape) != 4 or shape != list(y.shape):
        _fail(op, f"expects a 4-D NHWC input and a constant output shape equal to {y.describe()} (got {shape})")
    w = _weights(g, op, 1, y.shape[3])
    if len(w.shape) != 4 or w.shape[0] != y.shape[3] or w.shape[3] != x.shape[3]:
        raise ModelError(f"{op.where()}: weights {w.describe()} do not fit {x.describe()} -> {y.describe()}")
    a = op.attrs
    if a["padding"] not in ("SAME", "VALID") or min(a["stride_h"], a["stride_w"]) < 1:
        raise ModelError(f"{op.where()}: padding {a['padding']} / strides {a['stride_h']}x{a['stride_w']}")
    if y.shape[0] != x.shape[0]:
        raise ModelError(f"{op.where()}: batch {x.shape[0]} in, {y.shape[0]} out")
    _bias(g, op, 3, y.shape[3])
    _act(g, op)


def _lower(g, op):
    x, w, y = g.t(op.inputs[2]), g.t(op.inputs[1]), g.t(op.outputs[0])
    (sx, zx), (sy, zy) = x.q(), y.q()
    cout = y.shape[3]
    mult, shift = quant.conv_multipliers(sx, np.broadcast_to(w.scale, (cout,)), sy)
    lo, hi = _act(g, op)
    ph, pw = _pads(g, op)
    a = op.attrs
    params = {"in": _dims(x.shape), "filter": _dims(w.shape), "out": _dims(y.shape),
              "stride_h": a["stride_h"], "stride_w": a["stride_w"], "pad_h": ph, "pad_w": pw, "dil_h": 1, "dil_w": 1,
              "ch_mult": 1, "in_offset": -zx, "out_offset": zy, "act_min": lo, "act_max": hi,
              "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights")}
    arrays = {"mult": np.array(mult, np.int32), "shift": np.array(shift, np.int32), "weights": w.data.reshape(-1)}
    _add_bias(params, arrays, _bias(g, op, 3, cout))
    return Lowered(params, arrays, "tg_conv_params_t")


def _macs(g, op):
    x, w = g.t(op.inputs[2]), g.t(op.inputs[1])
    return x.size * w.shape[0] * w.shape[1] * w.shape[2]


register("TRANSPOSE_CONV", _parse, _check, _lower, _macs, roles=("output shape", "weights", "input", "bias"),
         required=3, fuses_act=True, doc=_check.__doc__)
