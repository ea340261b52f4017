"""Op-table entries of the reductions MEAN / SUM / REDUCE_MAX / REDUCE_MIN over any constant axes
(registered into :data:`tinygen.opdefs.TABLE`).

As TFLite 2.21's reduce.cc computes int8: MEAN goes through QuantizedMeanOrSum,
``requant(sum(x - in_zp), mult, shift) + out_zp`` with 1/n folded into the multiplier
(:func:`tinygen.quant.reduce_multiplier`); REDUCE_MAX / REDUCE_MIN compare raw values (they need
equal quantization). SUM with a rescale (input and output quantization differ, what the converter
writes) runs the same QuantizedMeanOrSum without the 1/n, but TFLite 2.21's reference kernel
instantiates it for uint8 on the int8 data: each byte is summed as uint8 (``x & 0xFF``), and the
result is clamped to [0, 255] and stored as its byte. Established on converted nets (the
interpreter's temporary sum tensor holds 768 for six -128 inputs) and checked exhaustively
against BUILTIN_REF by the op nets; TFLite's optimized kernel computes the true sum (measured:
six inputs of -128 at zero point -128 give -128 there, -37 under BUILTIN_REF), so a model whose
SUM sees bytes >= 128 differs between the two. tinygen follows the
reference (its golden); SUM with equal input/output quantization (the unrescaled int8 path) is
refused. The mean over H, W of a 4-D tensor keeps its own kernel
(``tg_ref_mean_s8``); every other reduction runs ``tg_ref_reduce_s8`` on the input folded to 4
dimensions (adjacent dims reduced alike merge).
"""

from __future__ import annotations

import numpy as np

from . import quant
from .errors import ModelError
from .opdefs import Lowered, _const, _dims, _fail, _int8_io, _opt, _params_in_range, register

MODES = {"MEAN": 0, "REDUCE_MAX": 1, "REDUCE_MIN": 2, "SUM": 3}


def _axes(g, op) -> list[int]:
    x = g.t(op.inputs[0])
    t = _const(g, op, 1, "axes")
    if t.dtype not in ("int32", "int64"):
        _fail(op, f"axes {t.describe()} must be int32")
    r = max(len(x.shape), 1)
    axes = [int(a) for a in np.asarray(t.data).reshape(-1)]
    if any(not -r <= a < r for a in axes):
        raise ModelError(f"{op.where()}: axes {axes} outside the {r} dims of {x.describe()}")
    return sorted({a % r for a in axes})


def fold_reduce(shape, axes) -> tuple[list[int], list[int]]:
    """(dims, reduced flags) of ``shape`` with adjacent dims of the same kind merged, padded to 4.

    >>> fold_reduce((1, 7, 5, 3), [1, 2]), fold_reduce((2, 3, 4, 5), [1, 3])
    (([1, 1, 35, 3], [0, 0, 1, 0]), ([2, 3, 4, 5], [0, 1, 0, 1]))
    """
    dims, red = [], []
    for k, d in enumerate(shape):
        f = int(k in axes)
        if dims and red[-1] == f:
            dims[-1] *= int(d)
        else:
            dims.append(int(d))
            red.append(f)
    while len(dims) < 4:
        dims.insert(0, 1)
        red.insert(0, 0)
    return dims, red


def _is_hw_mean(g, op) -> bool:
    return op.kind == "MEAN" and len(g.t(op.inputs[0]).shape) == 4 and _axes(g, op) == [1, 2]


def _check_reduce(g, op):
    """MEAN / SUM / REDUCE_MAX / REDUCE_MIN: int8 per-tensor, any constant axes (negative too), keep_dims either way, any rank whose reduced and kept dims fold to 4; REDUCE_MAX/MIN need the output to share the input's quantization (as TFLite); SUM needs them to differ (the rescaling path, what the converter writes) and computes what TFLite 2.21's reference kernel does (the int8 bytes summed as uint8, see tinygen/ops_reduce.py)."""
    _int8_io(g, op)
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    axes = _axes(g, op)
    dims, _ = fold_reduce(x.shape, axes)
    if len(dims) > 4:
        _fail(op, f"reducing axes {axes} of {x.describe()} needs {len(dims)} dims after folding (at most 4)")
    want = [1 if k in axes else d for k, d in enumerate(x.shape)]
    if not op.attrs["keep_dims"]:
        want = [d for k, d in enumerate(x.shape) if k not in axes]
    if list(y.shape) != want:
        raise ModelError(f"{op.where()}: reducing {x.describe()} over {axes} gives {want}, the output is {y.describe()}")
    if op.kind in ("REDUCE_MAX", "REDUCE_MIN") and x.q() != y.q():
        _fail(op, f"input {x.describe()} and output {y.describe()} must share scale and zero point")
    if op.kind == "SUM" and x.q() == y.q():
        _fail(op, f"SUM with the same quantization in and out ({x.describe()}) takes TFLite's unrescaled int8 path, "
              "which tinygen does not compile; calibrate so the output range covers the sum")
    _params_in_range(op, _lower_reduce, g, op)


def _lower_reduce(g, op):
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    (sx, zx), (sy, zy) = x.q(), y.q()
    axes = _axes(g, op)
    if _is_hw_mean(g, op):  # global average pooling: its own kernel
        q = quant.mean_params(x.shape, sx, zx, sy, zy, op.attrs["keep_dims"], axes)
        p = {"in": _dims(x.shape), "in_zp": q["in_zp"], "out_zp": q["out_zp"], "mult": q["mult"],
             "shift": q["shift"], "num_elements": q["num_elements"]}
        return Lowered(p, {}, "tg_mean_params_t")
    dims, red = fold_reduce(x.shape, axes)
    num = int(np.prod([d for d, f in zip(dims, red) if f], dtype=np.int64))
    mode = MODES[op.kind]
    mult, shift = (0, 0)
    if mode in (0, 3):
        mult, shift = quant.reduce_multiplier(sx, sy, num if mode == 0 else None)
        if mode == 3 and num > (1 << 22):
            raise ValueError(f"{num} summed elements (at most 2^22)")
        if not -31 <= shift <= 30:
            raise ValueError(f"requantization shift {shift} outside [-31, 30]")
    p = {"in": dict(zip("nhwc", dims)), "reduce": dict(zip("nhwc", red)), "mode": mode, "in_zp": zx, "out_zp": zy,
         "mult": mult, "shift": shift}
    return Lowered(p, {}, "tg_reduce_params_t")


for _k in MODES:
    register(_k, lambda t: {"keep_dims": bool(_opt(t, 0, "B"))}, _check_reduce, _lower_reduce,
             lambda g, op: g.t(op.inputs[0]).size, roles=("input", "axes"), required=2, doc=_check_reduce.__doc__)
