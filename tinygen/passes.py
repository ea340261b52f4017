"""Graph passes: plain functions over the IR, applied in a named order by :func:`run`.

Each pass returns True when it changed the graph; :func:`run` repeats the list
until nothing changes and verifies the IR after every pass. ``--dump-ir``
prints the graph after each named stage.
"""

from __future__ import annotations

from typing import Callable

from . import ops as optable
from .errors import UnsupportedError
from .ir import Graph, verify
from .passes_dilated import fold_dilated_conv1d, fold_dilated_convs
from .passes_float_split import fold_float_split


def check_supported(g: Graph) -> bool:
    """Run every op's support check. Every unsupported op is reported at once (the first of each
    kind in full, with how many more of that kind); a malformed model stops at its first error."""
    errors: dict[str, list[str]] = {}
    for op in g.ops:
        try:
            optable.check(g, op)
        except UnsupportedError as e:
            errors.setdefault(op.kind, []).append(str(e))
    if len(errors) == 1 and len(next(iter(errors.values()))) == 1:
        raise UnsupportedError(next(iter(errors.values()))[0])
    if errors:
        n = sum(len(v) for v in errors.values())
        parts = [v[0] + (f" (and {len(v) - 1} more {k})" if len(v) > 1 else "") for k, v in errors.items()]
        raise UnsupportedError(f"{g.source}: {n} ops cannot be compiled: " + " | ".join(parts))
    return False


def fold_constant_shapes(g: Graph) -> bool:
    """A reshape of a constant is a constant: fold it (weights stay in flash, no op)."""
    for op in list(g.ops):
        if optable.facts(op.kind).shape_only and g.t(op.inputs[0]).is_const:
            out = g.t(op.outputs[0])
            out.data = g.t(op.inputs[0]).data.reshape(out.shape)
            g.ops.remove(op)
            return True
    return False


def fuse_activations(g: Graph) -> bool:
    """RELU/RELU6/RELU_N1_TO_1 right after an op that can clamp, with unchanged quantization,
    becomes that op's fused activation (exactly what TFLite computes: the requantized ReLU with
    equal scales is the identity before the clamp)."""
    for op in g.ops:
        if not optable.facts(op.kind).activation:
            continue
        x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
        prod = g.producer(x.id)
        if (prod is None or not optable.facts(prod.kind).fuses_act or prod.attrs.get("act") != "NONE"
                or len(g.consumers(x.id)) != 1 or x.id in g.outputs or x.dtype != "int8"
                or (x.scale.tolist(), x.zero_point.tolist()) != (y.scale.tolist(), y.zero_point.tolist())):
            continue
        prod.attrs["act"] = op.kind
        prod.outputs[prod.outputs.index(x.id)] = y.id
        g.ops.remove(op)
        return True
    return False


def alias_reshapes(g: Graph) -> bool:
    """RESHAPE/SQUEEZE/EXPAND_DIMS outputs share their input's storage: no copy."""
    changed = False
    for op in g.ops:
        if optable.facts(op.kind).shape_only:
            x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
            root = x.alias_of if x.alias_of is not None else x.id
            if y.alias_of != root:
                y.alias_of = root
                changed = True
    return changed


def check_io(g: Graph) -> bool:
    """Graph inputs and outputs are int8 or float32 (float only through QUANTIZE/DEQUANTIZE)."""
    if len(set(g.inputs)) != len(g.inputs) or len(set(g.outputs)) != len(g.outputs):
        raise UnsupportedError(f"{g.source}: a tensor appears twice among the graph inputs or outputs")
    for tid in g.outputs:
        if tid in g.inputs or g.t(tid).is_const:
            raise UnsupportedError(f"{g.source}: output {g.t(tid).describe()} is an input or a constant; nothing to compute")
    for tid in g.inputs + g.outputs:
        t = g.t(tid)
        if t.dtype not in ("int8", "float32"):
            raise UnsupportedError(f"{g.source}: graph edge {t.describe()} must be int8 (or float32 with QUANTIZE/DEQUANTIZE)")
        if t.dtype == "float32":
            users = g.consumers(tid) if tid in g.inputs else [g.producer(tid)]
            if not all(u is not None and u.kind in ("QUANTIZE", "DEQUANTIZE") for u in users):
                raise UnsupportedError(
                    f"{g.source}: float32 graph edge {t.describe()} feeds float ops; this is a float model: "
                    "give the Keras model (tinygen quantizes it) or a full-int8 .tflite"
                )
    for op in g.ops:
        for tid in op.inputs + op.outputs:
            t = g.t(tid) if tid >= 0 else None
            if t is not None and t.dtype == "float32" and not t.is_const and op.kind not in ("QUANTIZE", "DEQUANTIZE"):
                raise UnsupportedError(
                    f"{op.where()}: computes in float32 ({t.describe()}); give a full-int8 model "
                    "(TFLite converter with a representative dataset and TFLITE_BUILTINS_INT8)"
                )
    return False


PASSES: list[tuple[str, Callable[[Graph], bool]]] = [
    ("fold_float_split", fold_float_split),
    ("check_io", check_io),
    ("fold_constant_shapes", fold_constant_shapes),
    ("fold_dilated_convs", fold_dilated_convs),
    ("fold_dilated_conv1d", fold_dilated_conv1d),
    ("fuse_activations", fuse_activations),
    ("alias_reshapes", alias_reshapes),
    ("check_supported", check_supported),
]


def run(g: Graph, dump: Callable[[str], None] | None = None) -> Graph:
    for name, fn in PASSES:
        for _ in range(10_000):
            if not fn(g):
                break
        verify(g, name)
        if dump:
            dump(f"--- after {name} ---\n{g.dump()}")
    return g


