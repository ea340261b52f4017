"""A float SPLIT the converter leaves between DEQUANTIZE and QUANTIZE becomes an int8 SPLIT.

Keras GRU cells (unrolled) convert with the recurrent gates split in float: DEQUANTIZE (int8 ->
float32) -> SPLIT / SPLIT_V -> QUANTIZE (float32 -> int8) on each used part. Splitting moves
values without changing them, so the split runs on the int8 input (its parts keep the input's
quantization) and each QUANTIZE becomes an int8 -> int8 table that computes exactly the float
path TFLite runs (float32 dequantize, then float32 quantize: :func:`tinygen.quant.lut_float_requantize`),
so the result stays bit-exact. Any other use of the float parts leaves the graph alone (and the
float ops are then refused by check_io).
"""

from __future__ import annotations

from .ir import Graph

MOVES = ("SPLIT", "SPLIT_V")


def fold_float_split(g: Graph) -> bool:
    for deq in g.ops:
        if deq.kind != "DEQUANTIZE" or g.t(deq.inputs[0]).dtype != "int8" or deq.outputs[0] in g.outputs:
            continue
        x, f = g.t(deq.inputs[0]), g.t(deq.outputs[0])
        users = g.consumers(f.id)
        if len(users) != 1 or users[0].kind not in MOVES or x.scale.size != 1:
            continue
        split = users[0]
        data_pos = 1 if split.kind == "SPLIT" else 0  # SPLIT(axis, input); SPLIT_V(input, sizes, axis)
        if split.inputs[data_pos] != f.id or [i for i in split.inputs if i == f.id] != [f.id]:
            continue
        quants = []
        ok = True
        for out in split.outputs:
            if out in g.outputs:
                ok = False
            for c in g.consumers(out):
                if c.kind != "QUANTIZE" or g.t(c.outputs[0]).dtype != "int8":
                    ok = False
                quants.append(c)
        if not ok:
            continue
        split.inputs[data_pos] = x.id
        for out in split.outputs:
            t = g.t(out)
            t.dtype, t.scale, t.zero_point = "int8", x.scale.copy(), x.zero_point.copy()
        for q in quants:
            q.attrs["via_float"] = True  # int8 -> int8 now, computed as TFLite's float path
        g.ops.remove(deq)
        return True
    return False
