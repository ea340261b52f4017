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
