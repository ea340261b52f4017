"""Op-table entry of BATCH_MATMUL (registered into :data:`tinygen.opdefs.TABLE`).

What the converter writes for ``tf.matmul`` / einsum-style layers whose batch dims survive
(a batched constant operand, a constant left operand, attention's ``q @ k^T``). As TFLite 2.21's
int8 reference (batch_matmul.cc + reference/batch_matmul.h): per-tensor int8 operands,
``requant(sum_k (lhs - lhs_zp) * (rhs - rhs_zp)) + out_zp`` with the multiplier of
GetQuantizedConvolutionMultipler (the two scales multiplied in float32), the 32-bit double
rounding MultiplyByQuantizedMultiplier, up to three broadcast batch dims, ``adj_x`` / ``adj_y``.
Either operand may be constant (a flash array) or computed.
"""

from __future__ import annotations

import numpy as np

from . import quant
from .errors import ModelError
from .opdefs import Lowered, _fail, _int8_io, _opt, _params_in_range, register


def _parse(t):
    return {"adj_x": bool(_opt(t, 0, "B")), "adj_y": bool(_opt(t, 1, "B"))}


def _geometry(g, op) -> dict:
    """Batch dims (padded to 3), steps, rows/cols/depth of the product; ModelError if inconsistent."""
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    sa, sb = list(a.shape), list(b.shape)
    if not 2 <= len(sa) <= 5 or not 2 <= len(sb) <= 5:
        _fail(op, f"operands {a.describe()} and {b.describe()} must have 2 to 5 dimensions")
    rows, da = (sa[-1], sa[-2]) if op.attrs["adj_x"] else (sa[-2], sa[-1])
    db, cols = (sb[-1], sb[-2]) if op.attrs["adj_y"] else (sb[-2], sb[-1])
    if da != db:
        raise ModelError(f"{op.where()}: {a.describe()} x {b.describe()}: inner dims {da} and {db} differ")
    ba, bb = [1] * (3 - len(sa[:-2])) + sa[:-2], [1] * (3 - len(sb[:-2])) + sb[:-2]
    if any(x != z and 1 not in (x, z) for x, z in zip(ba, bb)):
        raise ModelError(f"{op.where()}: batch dims of {a.describe()} and {b.describe()} do not broadcast")
    batch = [max(x, z) for x, z in zip(ba, bb)]
    want = batch[5 - max(len(sa), len(sb)):] + [rows, cols]
    if list(y.shape) != want:
        raise ModelError(f"{op.where()}: {a.describe()} x {b.describe()} gives {want}, the output is {y.describe()}")

    def steps(bd, mat):
        return [0 if bd[k] == 1 else int(np.prod(bd[k + 1:], dtype=np.int64)) * mat for k in range(3)]

    return {"batch": batch, "lhs": steps(ba, rows * da), "rhs": steps(bb, da * cols),
            "rows": int(rows), "cols": int(cols), "depth": int(da)}


def _check(g, op):
    """BATCH_MATMUL: int8 per-tensor operands (either one constant, or both computed) and output, 2 to 5 dimensions with up to three broadcast batch dims, adj_x / adj_y; computed as TFLite's int8 reference (int32 accumulation, per-tensor requantization)."""
    if len(op.inputs) != 2 or min(op.inputs) < 0:
        _fail(op, "expects two inputs")
    _int8_io(g, op, 2)
    _geometry(g, op)
    _params_in_range(op, _lower, g, op)


def _lower(g, op):
    a, b, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    geo = _geometry(g, op)
    (sa, za), (sb, zb), (sy, zy) = a.q(), b.q(), y.q()
    mult, shift = quant.fc_per_tensor_multiplier(sa, sb, sy)
    if not -31 <= shift <= 30:
        raise ValueError(f"requantization shift {shift} outside [-31, 30]")
    p = {"batch0": geo["batch"][0], "batch1": geo["batch"][1], "batch2": geo["batch"][2]}
    p.update({f"lhs_step{k}": geo["lhs"][k] for k in range(3)})
    p.update({f"rhs_step{k}": geo["rhs"][k] for k in range(3)})
    p.update(rows=geo["rows"], cols=geo["cols"], depth=geo["depth"], adj_x=int(op.attrs["adj_x"]),
             adj_y=int(op.attrs["adj_y"]), lhs_offset=-za, rhs_offset=-zb, out_offset=zy, mult=mult, shift=shift)
    return Lowered(p, {}, "tg_bmm_params_t")


def _macs(g, op):
    return g.t(op.outputs[0]).size * _geometry(g, op)["depth"]


register("BATCH_MATMUL", _parse, _check, _lower, _macs, roles=("input 1", "input 2"), required=2, doc=_check.__doc__)
