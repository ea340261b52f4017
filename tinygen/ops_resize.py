"""Op-table entries of the resizes (registered into :data:`tinygen.opdefs.TABLE`).

RESIZE_NEAREST_NEIGHBOR is a remap (:func:`tinygen.ops_shape.remap`: the source row and column of
each output index computed here with TFLite's float32 GetNearestNeighbor). RESIZE_BILINEAR int8
is TFLite's integer interpolation (reference_ops::ResizeBilinear for int8: 10-bit fixed-point
source positions, four products in int64, rounded half away from zero by 2^20): the per-row and
per-column source indices and weights are computed here, ``tg_ref_resize_bilinear_s8`` does the
products. Both copy the raw int8 scale (TFLite does not requantize).
"""

from __future__ import annotations

import numpy as np

from .opdefs import Arr, Lowered, _dims, _fail, _opt, register
from .ops_shape import _data_io, _ints, _shape_is, remap

# ---- RESIZE_NEAREST_NEIGHBOR -------------------------------------------------------------------


def nearest_indices(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> list[int]:
    """TFLite's GetNearestNeighbor for each output index (float32 arithmetic, as the kernel).

    >>> nearest_indices(3, 6, False, False), nearest_indices(3, 6, False, True), nearest_indices(3, 5, True, False)
    ([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2])
    """
    f = np.float32
    scale = f(in_size - 1) / f(out_size - 1) if align_corners and out_size > 1 else f(in_size) / f(out_size)
    off = f(0.5) if half_pixel_centers else f(0.0)
    out = []
    for i in range(out_size):
        v = (f(i) + off) * scale
        r = int(np.floor(v)) if not align_corners else int(np.trunc(v + np.copysign(f(0.5), v)))
        r = min(r, in_size - 1)
        out.append(max(0, r) if half_pixel_centers else r)
    return out


def _resize_io(g, op):
    """The checks both resizes make: int8 data in and out, a 4-D NHWC input and a constant size
    [h, w] of positive ints; returns (input tensor, size)."""
    _data_io(g, op)
    x = g.t(op.inputs[0])
    size = _ints(g, op, 1, "size")
    if len(x.shape) != 4 or len(size) != 2 or min(size) < 1:
        _fail(op, f"expects a 4-D NHWC input and a size [h, w] (got {x.describe()}, size {size})")
    return x, size


def _check_resize_nn(g, op):
    """RESIZE_NEAREST_NEIGHBOR: int8 4-D NHWC, constant output size, align_corners and half_pixel_centers as TFLite computes them."""
    x, size = _resize_io(g, op)
    _shape_is(g, op, [x.shape[0], size[0], size[1], x.shape[3]])
    _lower_resize_nn(g, op)


def _lower_resize_nn(g, op):
    x = g.t(op.inputs[0])
    n, h, w, c = x.shape
    oh, ow = _ints(g, op, 1, "size")
    a = op.attrs
    ys = np.array(nearest_indices(h, oh, a["align_corners"], a["half_pixel_centers"]), np.int64)
    xs = np.array(nearest_indices(w, ow, a["align_corners"], a["half_pixel_centers"]), np.int64)
    return remap(x.size, [np.arange(n, dtype=np.int64) * h * w * c, ys * w * c, xs * c, np.arange(c, dtype=np.int64)])


register("RESIZE_NEAREST_NEIGHBOR",
         lambda t: {"align_corners": bool(_opt(t, 0, "B")), "half_pixel_centers": bool(_opt(t, 1, "B"))},
         _check_resize_nn, _lower_resize_nn, roles=("input", "size"), required=2, doc=_check_resize_nn.__doc__)


# ---- RESIZE_BILINEAR ---------------------------------------------------------------------------


def bilinear_table(in_size: int, out_size: int, align_corners: bool, half_pixel_centers: bool) -> np.ndarray:
    """Per output index (lower source index, upper source index, weight of the upper in 1/1024):
    TFLite's ComputeInterpolationValues with its 10-bit scale (C division truncates toward zero).

    >>> bilinear_table(2, 4, False, False).tolist()
    [[0, 0, 0], [0, 1, 512], [1, 1, 0], [1, 1, 512]]
    >>> bilinear_table(2, 4, False, True)[0].tolist()
    [0, 0, -256]
    """
    def tdiv(a, b):
        q = abs(a) // b
        return q if a >= 0 else -q

    scale = ((1 << 10) * in_size + out_size // 2) // out_size
    if align_corners and out_size > 1:
        scale = ((1 << 10) * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    rows = []
    for v in range(out_size):
        s = v * scale + scale // 2 - (1 << 9) if half_pixel_centers else v * scale
        lo = max(tdiv(s, 1 << 10), 0)
        hi = min(tdiv(s + (1 << 10) - 1, 1 << 10), in_size - 1)
        rows.append((lo, hi, s - (1 << 10) * lo))
    return np.array(rows, np.int64)


def _check_resize_bilinear(g, op):
    """RESIZE_BILINEAR: int8 4-D NHWC, constant output size, align_corners / half_pixel_centers, TFLite's integer interpolation exactly (values interpolated in the input's scale)."""
    x, size = _resize_io(g, op)
    if op.attrs["align_corners"] and op.attrs["half_pixel_centers"]:
        _fail(op, "align_corners and half_pixel_centers together are not valid (TFLite refuses them too)")
    _shape_is(g, op, [x.shape[0], size[0], size[1], x.shape[3]])


def _lower_resize_bilinear(g, op):
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    a = op.attrs
    n, h, w, c = x.shape
    ys = bilinear_table(h, y.shape[1], a["align_corners"], a["half_pixel_centers"])
    xs = bilinear_table(w, y.shape[2], a["align_corners"], a["half_pixel_centers"])
    p = {"in": _dims(x.shape), "out": _dims(y.shape), "rows": Arr("rows"), "cols": Arr("cols")}
    return Lowered(p, {"rows": ys.reshape(-1).astype(np.int32), "cols": xs.reshape(-1).astype(np.int32)},
                   "tg_resize_params_t")


register("RESIZE_BILINEAR",
         lambda t: {"align_corners": bool(_opt(t, 2, "B")), "half_pixel_centers": bool(_opt(t, 3, "B"))},
         _check_resize_bilinear, _lower_resize_bilinear, lambda g, op: 4 * g.t(op.outputs[0]).size,
         roles=("input", "size"), required=2, doc=_check_resize_bilinear.__doc__)
