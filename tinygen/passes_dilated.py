"""The dilated-convolution fold: SPACE_TO_BATCH_ND -> CONV_2D / DEPTHWISE_CONV_2D ->
BATCH_TO_SPACE_ND becomes one dilated convolution.

TFLite's converter writes a Keras dilated convolution this way when the model's batch is unknown
(``Input(shape)`` without ``batch_size``): the input is padded and split into ``bh * bw``
sub-images, a stride-1 undilated convolution runs on each, and the results are interleaved back
and cropped. With batch 1 this is exactly a convolution of dilation (bh, bw) with leading padding
``pad_before - crop_before + inner_pad * block`` (both paddings contribute the zero point, i.e.
nothing): the fold gives the convolution that padding as ``EXPLICIT`` and removes the two
data-movement ops (no copies, no extra arena). Anything else is left alone, and the two ops are
then refused by their support check.

A Keras ``Conv1D(dilation_rate=d)`` with an unknown batch is the same pattern on 3-D tensors:
SPACE_TO_BATCH_ND (one block dim) -> EXPAND_DIMS/RESHAPE to 4-D -> CONV_2D -> RESHAPE/SQUEEZE to
3-D -> BATCH_TO_SPACE_ND. :func:`fold_dilated_conv1d` keeps the two reshapes around one
convolution of dilation (1, d) on the undivided input.
"""

from __future__ import annotations

import numpy as np

from . import opdefs as optable
from .ir import Graph, Op


def _const_ints(g: Graph, op: Op, k: int, shape) -> list[int] | None:
    if k >= len(op.inputs) or op.inputs[k] < 0 or not g.t(op.inputs[k]).is_const:
        return None
    d = np.asarray(g.t(op.inputs[k]).data)
    return [int(v) for v in d.reshape(-1)] if d.shape == shape else None


def _only_consumer(g: Graph, tid: int) -> Op | None:
    users = g.consumers(tid)
    return users[0] if len(users) == 1 and tid not in g.outputs else None


def _fold_plan(g: Graph, s2b: Op) -> tuple[Op, Op, dict] | None:
    """(conv, b2s, the conv's new attrs) when ``s2b`` starts a foldable dilated convolution."""
    x, s = g.t(s2b.inputs[0]), g.t(s2b.outputs[0])
    block, pads = _const_ints(g, s2b, 1, (2,)), _const_ints(g, s2b, 2, (2, 2))
    conv = _only_consumer(g, s.id)
    if block is None or pads is None or conv is None or conv.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return None
    if conv.inputs[0] != s.id or conv.attrs["stride_h"] != 1 or conv.attrs["stride_w"] != 1:
        return None
    if conv.attrs["dil_h"] != 1 or conv.attrs["dil_w"] != 1 or conv.attrs["padding"] not in ("SAME", "VALID"):
        return None
    c = g.t(conv.outputs[0])
    b2s = _only_consumer(g, c.id)
    if b2s is None or b2s.kind != "BATCH_TO_SPACE_ND" or _const_ints(g, b2s, 1, (2,)) != block:
        return None
    crops = _const_ints(g, b2s, 2, (2, 2))
    y = g.t(b2s.outputs[0])
    bh, bw = block
    pt, pb, pl, pr = pads
    if crops is None or min(bh, bw, *pads, *crops) < 0 or min(bh, bw) < 1:
        return None
    if (len(x.shape), len(s.shape), len(c.shape), len(y.shape)) != (4, 4, 4, 4) or x.shape[0] != 1:
        return None
    if (x.dtype, x.q()) != (s.dtype, s.q()) or (c.dtype, c.q()) != (y.dtype, y.q()):
        return None
    n, h, w, ch = x.shape
    # the batch of the two inner tensors is recorded as 1 (the model's batch is unknown; TFLite
    # resizes them to bh * bw at run time): only their spatial shapes are checked
    if s.shape[1:] != ((h + pt + pb) // bh, (w + pl + pr) // bw, ch) or (h + pt + pb) % bh or (w + pl + pr) % bw:
        return None
    ct, cb, cl, cr = crops
    if y.shape != (1, c.shape[1] * bh - ct - cb, c.shape[2] * bw - cl - cr, c.shape[3]):
        return None
    kh, kw = g.t(conv.inputs[1]).shape[1:3]
    inner_h = optable._same_pad(s.shape[1], kh, 1, 1, c.shape[1]) if conv.attrs["padding"] == "SAME" else 0
    inner_w = optable._same_pad(s.shape[2], kw, 1, 1, c.shape[2]) if conv.attrs["padding"] == "SAME" else 0
    attrs = {"padding": "EXPLICIT", "dil_h": bh, "dil_w": bw,
             "pad_h": pt - ct + inner_h * bh, "pad_w": pl - cl + inner_w * bw}
    if not (optable._explicit_fits(h, y.shape[1], kh, 1, bh, attrs["pad_h"])
            and optable._explicit_fits(w, y.shape[2], kw, 1, bw, attrs["pad_w"])):
        return None
    return conv, b2s, attrs


def _single(g: Graph, tid: int, kinds) -> Op | None:
    op = _only_consumer(g, tid)
    return op if op is not None and op.kind in kinds and op.inputs[0] == tid else None


def _fold_plan_1d(g: Graph, s2b: Op) -> tuple | None:
    """(expand, conv, squeeze, b2s, conv attrs) when ``s2b`` starts a foldable dilated Conv1D."""
    x, s = g.t(s2b.inputs[0]), g.t(s2b.outputs[0])
    block, pads = _const_ints(g, s2b, 1, (1,)), _const_ints(g, s2b, 2, (1, 2))
    if block is None or pads is None or len(x.shape) != 3 or len(s.shape) != 3 or x.shape[0] != 1:
        return None
    expand = _single(g, s.id, ("EXPAND_DIMS", "RESHAPE"))
    if expand is None or len(g.t(expand.outputs[0]).shape) != 4 or g.t(expand.outputs[0]).shape[:2] != (1, 1):
        return None
    conv = _single(g, expand.outputs[0], ("CONV_2D", "DEPTHWISE_CONV_2D"))
    if conv is None or conv.attrs["stride_h"] != 1 or conv.attrs["stride_w"] != 1 or conv.attrs["dil_h"] != 1 \
            or conv.attrs["dil_w"] != 1 or conv.attrs["padding"] not in ("SAME", "VALID"):
        return None
    c4 = g.t(conv.outputs[0])
    squeeze = _single(g, c4.id, ("SQUEEZE", "RESHAPE"))
    if squeeze is None or len(c4.shape) != 4 or c4.shape[:2] != (1, 1):
        return None
    c3 = g.t(squeeze.outputs[0])
    b2s = _single(g, c3.id, ("BATCH_TO_SPACE_ND",))
    if b2s is None or _const_ints(g, b2s, 1, (1,)) != block or c3.shape != (1,) + c4.shape[2:]:
        return None
    crops, y = _const_ints(g, b2s, 2, (1, 2)), g.t(b2s.outputs[0])
    (bw,), (pl, pr) = block, pads
    if crops is None or bw < 1 or min(pl, pr, *crops) < 0 or len(y.shape) != 3:
        return None
    if len({(t.dtype, t.q()) for t in (x, s, g.t(expand.outputs[0]))}) != 1 or \
            len({(t.dtype, t.q()) for t in (c4, c3, y)}) != 1:
        return None
    _, w, ch = x.shape
    if s.shape[1:] != ((w + pl + pr) // bw, ch) or (w + pl + pr) % bw:
        return None
    cl, cr = crops
    if y.shape != (1, c3.shape[1] * bw - cl - cr, c3.shape[2]):
        return None
    kw = g.t(conv.inputs[1]).shape[2]
    inner = optable._same_pad(s.shape[1], kw, 1, 1, c4.shape[2]) if conv.attrs["padding"] == "SAME" else 0
    attrs = {"padding": "EXPLICIT", "dil_h": 1, "dil_w": bw, "pad_h": 0, "pad_w": pl - cl + inner * bw}
    if not optable._explicit_fits(w, y.shape[1], kw, 1, bw, attrs["pad_w"]):
        return None
    return expand, conv, squeeze, b2s, attrs


def fold_dilated_conv1d(g: Graph) -> bool:
    """SPACE_TO_BATCH_ND -> EXPAND_DIMS -> CONV_2D -> RESHAPE -> BATCH_TO_SPACE_ND on 3-D tensors (a Keras
    dilated Conv1D converted with an unknown batch) becomes EXPAND_DIMS -> dilated CONV_2D -> RESHAPE."""
    for s2b in g.ops:
        if s2b.kind != "SPACE_TO_BATCH_ND":
            continue
        plan = _fold_plan_1d(g, s2b)
        if plan is None:
            continue
        expand, conv, squeeze, b2s, attrs = plan
        x, y = g.t(s2b.inputs[0]), g.t(b2s.outputs[0])
        x4, y4 = g.t(expand.outputs[0]), g.t(conv.outputs[0])
        expand.inputs[0] = x.id
        if expand.kind == "RESHAPE":
            expand.inputs = expand.inputs[:1]  # the constant new shape would be stale (aliases ignore it)
        x4.shape = (1, 1) + tuple(x.shape[1:])
        y4.shape = (1, 1) + tuple(y.shape[1:])
        conv.attrs.update(attrs)
        squeeze.outputs = list(b2s.outputs)
        if squeeze.kind == "RESHAPE":
            squeeze.inputs = squeeze.inputs[:1]
        g.ops.remove(s2b)
        g.ops.remove(b2s)
        return True
    return False


def fold_dilated_convs(g: Graph) -> bool:
    """SPACE_TO_BATCH_ND -> CONV_2D/DEPTHWISE_CONV_2D -> BATCH_TO_SPACE_ND (a Keras dilated
    convolution converted with an unknown batch) becomes one dilated convolution."""
    for s2b in g.ops:
        if s2b.kind != "SPACE_TO_BATCH_ND":
            continue
        plan = _fold_plan(g, s2b)
        if plan is None:
            continue
        conv, b2s, attrs = plan
        conv.inputs[0] = s2b.inputs[0]
        conv.outputs = list(b2s.outputs)
        conv.attrs.update(attrs)
        g.ops.remove(s2b)
        g.ops.remove(b2s)
        return True
    return False
