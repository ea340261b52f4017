"""Op-table entries of the data-movement ops (registered into :data:`tinygen.ops.TABLE`).

They copy int8 values without arithmetic (TFLite's reference copies the raw values too), so
they are exact by construction. Most become one *remap*: the compiler computes, per output
dimension, the input byte offset of each index (:func:`remap`), and ``tg_ref_remap_s8`` reads
``in[off_n[n] + off_h[h] + off_w[w] + off_c[c]]``: STRIDED_SLICE, SLICE, TRANSPOSE, GATHER with
constant indices (and RESIZE_NEAREST_NEIGHBOR, :mod:`tinygen.ops_resize`). SPLIT / SPLIT_V / UNPACK are the inverse of
CONCATENATION (``tg_ref_split_s8``, one call writing every output); PACK is a CONCATENATION.
Any rank works as long as the copy folds to 4 dimensions (unit dims dropped, adjacent dims merged).
"""

from __future__ import annotations

import numpy as np

from .errors import ModelError
from .ir import Op
from .opdefs import Arr, Lowered, _const, _fail, _int8_io, _opt, register

# ---- the remap: per-dimension offset tables ----------------------------------------------------


def _strides(shape) -> list[int]:
    out, acc = [], 1
    for d in reversed(tuple(shape)):
        out.append(acc)
        acc *= int(d)
    return out[::-1]


def _affine(t: np.ndarray):
    """The step of an arithmetic progression, or None."""
    if t.size < 2:
        return 0
    d = np.diff(t)
    return int(d[0]) if np.all(d == d[0]) else None


def fold_tables(tables: list[np.ndarray]) -> list[np.ndarray]:
    """Fold per-dimension offset tables (output row-major order) into exactly 4.

    Unit dimensions go into a base offset; adjacent dimensions merge (``t[i * lb + j] = ta[i] +
    tb[j]``), first where both are progressions that continue each other, then the pair with the
    fewest entries, until at most 4 remain.

    >>> [t.tolist() for t in fold_tables([np.array([0, 12]), np.array([0, 4, 8]), np.array([0, 1, 2, 3])])]
    [[0], [0], [0], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]]
    >>> [t.tolist() for t in fold_tables([np.array([5]), np.array([0, 2]), np.array([0, 1])])]
    [[5], [0], [0], [0, 1, 2, 3]]
    """
    base = sum(int(t[0]) for t in tables if t.size == 1)
    ts = [np.asarray(t, np.int64) for t in tables if t.size > 1]
    k = len(ts) - 1
    while k > 0:  # merge progressions that continue each other (a contiguous run becomes one row)
        sa, sb = _affine(ts[k - 1]), _affine(ts[k])
        if sa is not None and sb is not None and sa == sb * ts[k].size:
            ts[k - 1:k + 1] = [(ts[k - 1][:, None] + ts[k][None, :]).reshape(-1)]
        k -= 1
    while len(ts) > 4:
        i = min(range(len(ts) - 1), key=lambda j: ts[j].size * ts[j + 1].size)
        ts[i:i + 2] = [(ts[i][:, None] + ts[i + 1][None, :]).reshape(-1)]
    ts = [np.zeros(1, np.int64)] * (4 - len(ts)) + ts
    ts[0] = ts[0] + base
    return ts


def remap(in_size: int, tables: list[np.ndarray]) -> Lowered:
    """tg_remap_params_t for a copy whose output dimension k reads input offsets ``tables[k]``."""
    ts = fold_tables(tables)
    flat = np.concatenate(ts).astype(np.int64)
    if flat.min() < 0 or sum(int(t.max()) for t in ts) >= in_size or flat.max() > np.iinfo(np.int32).max:
        raise ModelError(f"remap reads outside its {in_size}-byte input")
    p = {"out": dict(zip("nhwc", (int(t.size) for t in ts))), "in_size": int(in_size),
         "c_contiguous": int(ts[3].size == 1 or _affine(ts[3]) == 1), "offsets": Arr("offsets")}
    return Lowered(p, {"offsets": flat.astype(np.int32)}, "tg_remap_params_t")


def _data_io(g, op, data: int = 0) -> None:
    """int8 per-tensor data input ``data`` (computed) and outputs; the other inputs are constants."""
    _int8_io(g, Op(op.kind, [op.inputs[data]], op.outputs, {}, op.op_index, op.name))
    if g.t(op.inputs[data]).is_const:
        _fail(op, "a constant input: the converter should have folded it")


def _ints(g, op, idx, what) -> list[int]:
    t = _const(g, op, idx, what)
    if t.dtype not in ("int32", "int64"):
        _fail(op, f"{what} {t.describe()} must be int32/int64")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def _shape_is(g, op, shape, k: int = 0) -> None:
    y = g.t(op.outputs[k])
    if tuple(int(d) for d in shape) != tuple(y.shape):
        raise ModelError(f"{op.where()}: computes shape {list(shape)} but output is {y.describe()}")


# ---- SLICE / STRIDED_SLICE ---------------------------------------------------------------------


def _slice_ranges(g, op) -> tuple[list[range], list[int]]:
    """Per input dim the indices read, and the output shape (shrunk axes dropped)."""
    x = g.t(op.inputs[0])
    r = len(x.shape)
    if op.kind == "SLICE":
        begin, size = _ints(g, op, 1, "begin"), _ints(g, op, 2, "size")
        if len(begin) != r or len(size) != r:
            raise ModelError(f"{op.where()}: begin {begin} / size {size} do not match rank {r}")
        rngs = []
        for b, s, d in zip(begin, size, x.shape):
            s = d - b if s == -1 else s
            if b < 0 or s < 0 or b + s > d:
                raise ModelError(f"{op.where()}: slice begin {b} size {s} is outside dimension {d}")
            rngs.append(range(b, b + s))
        return rngs, [len(q) for q in rngs]
    a = op.attrs
    if a["ellipsis_mask"] or a["new_axis_mask"] or a["offset"]:
        _fail(op, "ellipsis_mask, new_axis_mask and offset are not supported (constant begin/end/strides "
                  "with begin/end/shrink masks are)")
    begin, end, strides = (_ints(g, op, i, w) for i, w in ((1, "begin"), (2, "end"), (3, "strides")))
    if not len(begin) == len(end) == len(strides) or len(begin) > r:
        raise ModelError(f"{op.where()}: begin/end/strides {begin}/{end}/{strides} do not fit rank {r}")
    rngs, shape = [], []
    for k, d in enumerate(x.shape):
        if k >= len(begin):
            rngs.append(range(d))
            shape.append(d)
            continue
        st = strides[k]
        if st == 0:
            raise ModelError(f"{op.where()}: stride 0 on axis {k}")
        lo, hi = (0, d) if st > 0 else (-1, d - 1)
        start = begin[k] if not a["begin_mask"] >> k & 1 else (-(1 << 31) if st > 0 else (1 << 31) - 1)
        start = min(max(start + d if start < 0 else start, lo), hi)  # TFLite StartForAxis
        if a["shrink_axis_mask"] >> k & 1:
            rngs.append(range(start, start + 1))
            if not 0 <= start < d:
                raise ModelError(f"{op.where()}: shrunk axis {k} index {begin[k]} is outside dimension {d}")
            continue
        stop = end[k] if not a["end_mask"] >> k & 1 else ((1 << 31) - 1 if st > 0 else -(1 << 31))
        stop = min(max(stop + d if stop < 0 else stop, lo), hi)  # TFLite StopForAxis
        rngs.append(range(start, stop, st))
        shape.append(len(rngs[-1]))
    return rngs, shape


def _check_slice(g, op):
    """SLICE / STRIDED_SLICE: int8, constant begin/size (SLICE) or begin/end/strides (any sign) with begin_mask, end_mask and shrink_axis_mask (STRIDED_SLICE; no ellipsis/new-axis masks, no offset), any rank that folds to 4-D; values are copied unchanged."""
    _data_io(g, op)
    rngs, shape = _slice_ranges(g, op)
    if any(len(q) == 0 for q in rngs):
        raise ModelError(f"{op.where()}: the slice is empty")
    _shape_is(g, op, shape)
    remap_of_slice(g, op)


def remap_of_slice(g, op) -> Lowered:
    x = g.t(op.inputs[0])
    rngs, _ = _slice_ranges(g, op)
    return remap(x.size, [np.array(list(q), np.int64) * s for q, s in zip(rngs, _strides(x.shape))])


_SS = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
register("SLICE", lambda t: {}, _check_slice, remap_of_slice, roles=("input", "begin", "size"), required=3,
         doc=_check_slice.__doc__)
register("STRIDED_SLICE", lambda t: {**{k: _opt(t, i, "i") for i, k in enumerate(_SS)}, "offset": bool(_opt(t, 5, "B"))},
         _check_slice, remap_of_slice, roles=("input", "begin", "end", "strides"), required=4, doc=_check_slice.__doc__)


# ---- TRANSPOSE ---------------------------------------------------------------------------------


def _check_transpose(g, op):
    """TRANSPOSE: int8, constant permutation, any rank that folds to 4-D (every 4-D permutation does)."""
    _data_io(g, op)
    x = g.t(op.inputs[0])
    perm = _ints(g, op, 1, "permutation")
    if sorted(perm) != list(range(len(x.shape))):
        raise ModelError(f"{op.where()}: {perm} is not a permutation of the {len(x.shape)} input dims")
    _shape_is(g, op, [x.shape[p] for p in perm])
    _lower_transpose(g, op)


def _lower_transpose(g, op):
    x = g.t(op.inputs[0])
    st = _strides(x.shape)
    return remap(x.size, [np.arange(x.shape[p], dtype=np.int64) * st[p] for p in _ints(g, op, 1, "permutation")])


register("TRANSPOSE", lambda t: {}, _check_transpose, _lower_transpose, roles=("input", "permutation"), required=2,
         doc=_check_transpose.__doc__)


# ---- GATHER ------------------------------------------------------------------------------------


def _check_gather(g, op):
    """GATHER: computed int8 params, constant int32/int64 indices (in range), any axis, batch_dims 0."""
    _data_io(g, op)
    x = g.t(op.inputs[0])
    if op.attrs["batch_dims"] != 0:
        _fail(op, f"batch_dims {op.attrs['batch_dims']} is not supported (0 is)")
    axis = op.attrs["axis"] + (len(x.shape) if op.attrs["axis"] < 0 else 0)
    if not 0 <= axis < len(x.shape):
        raise ModelError(f"{op.where()}: axis {op.attrs['axis']} does not exist in {x.describe()}")
    idx = _ints(g, op, 1, "indices")
    if any(not 0 <= i < x.shape[axis] for i in idx):
        raise ModelError(f"{op.where()}: indices {idx} outside [0, {x.shape[axis]}) (TFLite fails at run time)")
    ishape = list(g.t(op.inputs[1]).shape)
    _shape_is(g, op, list(x.shape[:axis]) + ishape + list(x.shape[axis + 1:]))
    _lower_gather(g, op)


def _lower_gather(g, op):
    x = g.t(op.inputs[0])
    axis = op.attrs["axis"] + (len(x.shape) if op.attrs["axis"] < 0 else 0)
    st = _strides(x.shape)
    idx = np.array(_ints(g, op, 1, "indices"), np.int64)
    tables = [np.arange(d, dtype=np.int64) * s for d, s in zip(x.shape, st)]
    tables[axis] = idx * st[axis]
    return remap(x.size, tables)


register("GATHER", lambda t: {"axis": _opt(t, 0, "i"), "batch_dims": _opt(t, 1, "i")}, _check_gather, _lower_gather,
         roles=("params", "indices"), required=2, doc=_check_gather.__doc__)


# ---- SPLIT / SPLIT_V / UNPACK: one call, every output ------------------------------------------


def _split_plan(g, op) -> tuple[int, int, list[int], list[int]]:
    """(data input index, axis, sizes along the axis, output shape minus the axis for UNPACK)."""
    data = 1 if op.kind == "SPLIT" else 0
    x = g.t(op.inputs[data])
    r = len(x.shape)
    if op.kind == "UNPACK":
        axis = op.attrs["axis"]
    else:
        ax = _ints(g, op, 0 if op.kind == "SPLIT" else 2, "axis")
        if len(ax) != 1:
            raise ModelError(f"{op.where()}: axis must be one value, got {ax}")
        axis = ax[0]
    axis += r if axis < 0 else 0
    if not 0 <= axis < r:
        raise ModelError(f"{op.where()}: axis does not exist in {x.describe()}")
    d, n = x.shape[axis], len(op.outputs)
    if op.kind == "SPLIT_V":
        sizes = _ints(g, op, 1, "size_splits")
        if sizes.count(-1) == 1:
            sizes[sizes.index(-1)] = d - (sum(sizes) + 1)
    else:
        sizes = [d // n] * n if d % n == 0 else []
    if len(sizes) != n or any(s < 1 for s in sizes) or sum(sizes) != d:
        raise ModelError(f"{op.where()}: dimension {d} of {x.describe()} does not split into {n} outputs ({sizes})")
    return data, axis, sizes, list(x.shape[:axis]) + list(x.shape[axis + 1:])


def _check_split(g, op):
    """SPLIT / SPLIT_V / UNPACK: int8, constant axis (and size_splits, one may be -1), any number of outputs; one call writes every output."""
    data, axis, sizes, rest = _split_plan(g, op)
    _data_io(g, op, data)
    x = g.t(op.inputs[data])
    for k, s in enumerate(sizes):
        shape = rest if op.kind == "UNPACK" else list(x.shape[:axis]) + [s] + list(x.shape[axis + 1:])
        y = g.t(op.outputs[k])
        if list(y.shape) != shape:
            raise ModelError(f"{op.where()}: output {k} {y.describe()} should be {shape}")


def _lower_split(g, op):
    data, axis, sizes, _ = _split_plan(g, op)
    x = g.t(op.inputs[data])
    inner = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    return Lowered(arrays={"sizes": np.array([s * inner for s in sizes], np.int32)},
                   imm={"n_outputs": len(sizes), "outer": int(np.prod(x.shape[:axis], dtype=np.int64))})


register("SPLIT", lambda t: {"num_splits": _opt(t, 0, "i")}, _check_split, _lower_split, roles=("axis", "input"),
         required=2, outputs=0, doc=_check_split.__doc__)
register("SPLIT_V", lambda t: {"num_splits": _opt(t, 0, "i")}, _check_split, _lower_split,
         roles=("input", "size_splits", "axis"), required=3, outputs=0, doc=_check_split.__doc__)
register("UNPACK", lambda t: {"num": _opt(t, 0, "i"), "axis": _opt(t, 1, "i")}, _check_split, _lower_split,
         outputs=0, doc=_check_split.__doc__)


# ---- SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND: only around a convolution (folded away) ----------


def _check_s2b(g, op):
    """SPACE_TO_BATCH_ND / BATCH_TO_SPACE_ND: only as the converter writes a dilated convolution with an unknown batch (SPACE_TO_BATCH_ND -> CONV_2D or DEPTHWISE_CONV_2D with stride 1 -> BATCH_TO_SPACE_ND, batch 1, constant block and paddings/crops), which tinygen folds into one dilated convolution; anywhere else they are not supported."""
    _fail(op, "is only supported around a CONV_2D / DEPTHWISE_CONV_2D of stride 1 (a dilated convolution, which "
              "tinygen folds); this one is not such a pattern: give the model a fixed batch size (Input(..., "
              "batch_size=1)) so the converter writes the dilation into the convolution")


register("SPACE_TO_BATCH_ND", lambda t: {}, _check_s2b, lambda g, op: Lowered(), roles=("input", "block_shape", "paddings"),
         required=3, doc=_check_s2b.__doc__, folded=True)
register("BATCH_TO_SPACE_ND", lambda t: {}, _check_s2b, lambda g, op: Lowered(), roles=("input", "block_shape", "crops"),
         required=3, doc=_check_s2b.__doc__, folded=True)


# ---- PACK: a CONCATENATION of the inputs with a new axis ---------------------------------------


def _check_pack(g, op):
    """PACK: int8 inputs of one shape, any axis; compiled as a CONCATENATION (values copied unchanged)."""
    _int8_io(g, op, len(op.inputs))
    shapes = {tuple(g.t(i).shape) for i in op.inputs}
    if len(shapes) != 1 or any(i < 0 for i in op.inputs):
        raise ModelError(f"{op.where()}: inputs of different shapes {sorted(shapes)}")
    s = list(shapes.pop())
    axis = op.attrs["axis"] + (len(s) + 1 if op.attrs["axis"] < 0 else 0)
    if not 0 <= axis <= len(s):
        raise ModelError(f"{op.where()}: axis {op.attrs['axis']} does not fit inputs of rank {len(s)}")
    _shape_is(g, op, s[:axis] + [len(op.inputs)] + s[axis:])


def _lower_pack(g, op):
    s = list(g.t(op.inputs[0]).shape)
    axis = op.attrs["axis"] + (len(s) + 1 if op.attrs["axis"] < 0 else 0)
    row = int(np.prod(s[axis:], dtype=np.int64))
    return Lowered(arrays={"sizes": np.full(len(op.inputs), row, np.int32)},
                   imm={"n_inputs": len(op.inputs), "outer": int(np.prod(s[:axis], dtype=np.int64))})


register("PACK", lambda t: {"values_count": _opt(t, 0, "i"), "axis": _opt(t, 1, "i")}, _check_pack, _lower_pack,
         roles=("input 1",), doc=_check_pack.__doc__)

