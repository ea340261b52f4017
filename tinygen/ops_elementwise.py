"""Op-table entries of the element-wise ops added after the core set (registered into
:data:`tinygen.ops.TABLE` when :mod:`tinygen.ops` is imported).

Unary ops (TANH, HARD_SWISH, LEAKY_RELU) become 256-entry tables computed with TFLite's exact
arithmetic (:mod:`tinygen.quant_lut`) and run by the table kernel. Binary ops (MAXIMUM, MINIMUM,
SQUARED_DIFFERENCE, PRELU) broadcast over up to 4 dimensions like ADD/MUL and run the portable
binary kernels (``tg_ref_<op>_s8``; CMSIS-NN has no bit-exact function for them).
"""

from __future__ import annotations

import numpy as np

from . import quant, quant_lut
from .opdefs import (
    LUTS,
    Lowered,
    _binary_io,
    _dims,
    _opt,
    _params_in_range,
    check_lut,
    lower_lut,
    register,
)

# ---- unary via a 256-entry table ---------------------------------------------------------------


def _check_lut_unary(g, op):
    """TANH / HARD_SWISH / LEAKY_RELU: int8 per-tensor input and output (any scales, any LEAKY_RELU alpha); computed by a 256-entry table that reproduces TFLite's reference arithmetic (float32 tanhf table for TANH, 16-bit fixed point for HARD_SWISH, two multipliers for LEAKY_RELU)."""
    check_lut(g, op)


LUTS["TANH"] = lambda sx, zx, sy, zy, attrs: quant_lut.lut_tanh(sx, zx, sy, zy)
LUTS["HARD_SWISH"] = lambda sx, zx, sy, zy, attrs: quant_lut.lut_hard_swish(sx, zx, sy, zy)
LUTS["LEAKY_RELU"] = lambda sx, zx, sy, zy, attrs: quant_lut.lut_leaky_relu(sx, zx, sy, zy, attrs["alpha"])


register("TANH", lambda t: {}, _check_lut_unary, lower_lut, inplace=True, doc=_check_lut_unary.__doc__)
register("HARD_SWISH", lambda t: {}, _check_lut_unary, lower_lut, inplace=True, doc=_check_lut_unary.__doc__)
register("LEAKY_RELU", lambda t: {"alpha": float(np.float32(_opt(t, 0, "f", 0.0)))}, _check_lut_unary,
         lower_lut, inplace=True, doc=_check_lut_unary.__doc__)


# ---- binary with broadcasting ------------------------------------------------------------------


def _minmax_params(g, op):
    """MAXIMUM / MINIMUM compare the raw int8 values (TFLite's maximum_minimum.cc: no rescaling)."""
    return dict(in1_offset=0, in1_mult=0, in1_shift=0, in2_offset=0, in2_mult=0, in2_shift=0, left_shift=0,
                out_offset=0, out_mult=0, out_shift=0, act_min=-128, act_max=127)


def _sqdiff_params(g, op):
    (sa, za), (sb, zb), (sy, zy) = (g.t(i).q() for i in (*op.inputs, op.outputs[0]))
    return quant.squared_difference_params(sa, za, sb, zb, sy, zy)


def _prelu_params(g, op):
    (sa, za), (sb, zb), (sy, zy) = (g.t(i).q() for i in (*op.inputs, op.outputs[0]))
    return quant.prelu_params(sa, za, sb, zb, sy, zy)


_PARAMS = {"MAXIMUM": _minmax_params, "MINIMUM": _minmax_params, "SQUARED_DIFFERENCE": _sqdiff_params,
           "PRELU": _prelu_params}


def _check_binary2(g, op):
    """MAXIMUM / MINIMUM / SQUARED_DIFFERENCE / PRELU: two int8 per-tensor inputs (constant or computed; PRELU's second is alpha) broadcast over up to 4 dimensions, int8 output. MAXIMUM/MINIMUM compare raw int8 values as TFLite does (the converter gives inputs and output one quantization)."""
    _binary_io(g, op)
    _params_in_range(op, _PARAMS[op.kind], g, op)


def _lower_binary2(g, op):
    a, b, y = (g.t(i) for i in (*op.inputs, op.outputs[0]))
    p = {"in1": _dims(a.shape), "in2": _dims(b.shape), "out": _dims(y.shape)}
    p.update(_PARAMS[op.kind](g, op))
    return Lowered(p, {}, "tg_binary_params_t")


for _k in _PARAMS:
    register(_k, lambda t: {}, _check_binary2, _lower_binary2, lambda g, op: g.t(op.outputs[0]).size,
             roles=("input", "alpha") if _k == "PRELU" else ("input 1", "input 2"), required=2,
             inplace=True, doc=_check_binary2.__doc__)
