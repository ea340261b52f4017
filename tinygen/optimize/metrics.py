"""Cost estimates (MACs, params, arena, flash), int8 conversion and accuracy measurement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._tf import keras, tf
from .graph import nodes

_WEIGHTED = ("Conv2D", "DepthwiseConv2D", "Dense")


def _prod(shape) -> int:
    return int(np.prod([d for d in shape if d is not None]))


def _shape(s):
    return s[0] if isinstance(s, list) else s


def layer_macs(layer: keras.layers.Layer) -> int:
    """Multiply-accumulates of one inference through ``layer`` (0 for non-arithmetic layers)."""
    kind = type(layer).__name__
    if kind not in _WEIGHTED:
        return 0
    out = _shape(layer.output_shape)
    kernel = layer.get_weights()[0]
    if kind == "Dense":
        return _prod(out[:-1]) * kernel.shape[0] * kernel.shape[1]
    if kind == "DepthwiseConv2D":  # kernel kh, kw, C, mult ; out HxWx(C*mult)
        return _prod(out[1:]) * kernel.shape[0] * kernel.shape[1]
    return _prod(out[1:-1]) * int(np.prod(kernel.shape))  # kh*kw*Cin/groups*Cout per pixel


def model_macs(model: keras.Model, conv_only: bool = False) -> int:
    kinds = ("Conv2D", "DepthwiseConv2D") if conv_only else _WEIGHTED
    return sum(layer_macs(n.layer) for n in nodes(model) if n.kind in kinds)


def arena_bytes(model: keras.Model) -> int:
    """Rough int8 arena: the largest (inputs + output) activation bytes of any one layer."""
    best = 0
    for n in nodes(model)[1:]:
        ins = n.layer.input_shape if isinstance(n.layer.input_shape, list) else [n.layer.input_shape]
        best = max(best, sum(_prod(s[1:]) for s in ins) + _prod(_shape(n.layer.output_shape)[1:]))
    return best


def flash_bytes(model: keras.Model) -> int:
    """Rough int8 flash: 1 byte per weight of Conv/DepthwiseConv/Dense and 4 per bias
    (BatchNorm is folded into the preceding layer by the converter)."""
    total = 0
    for n in nodes(model):
        if n.kind in _WEIGHTED:
            w = n.layer.get_weights()
            total += w[0].size
            out_ch = _shape(n.layer.output_shape)[-1]
            total += 4 * out_ch  # a bias always exists after BN folding / int8 conversion
    return total


def to_int8_tflite(model: keras.Model, x_rep: np.ndarray) -> bytes:
    """Full-int8 TFLite flatbuffer (int8 input and output). Post-training quantization with
    ``x_rep`` as representative data, or conversion of a tfmot quantization-aware model."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = np.asarray(x_rep[:200], np.float32)
    conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    from ..quiet import native_stderr

    with native_stderr():  # the converter's C++ chatter, unless --verbose
        return conv.convert()


def tflite_predict(tflite: bytes, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Dequantized outputs of an int8 model run with the TFLite reference kernels."""
    interp = tf.lite.Interpreter(
        model_content=tflite,
        experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
    )
    i_det = interp.get_input_details()[0]
    o_det = interp.get_output_details()[0]
    (s_in, z_in), (s_out, z_out) = i_det["quantization"], o_det["quantization"]
    outs = []
    for start in range(0, len(x), batch):
        xb = x[start : start + batch]
        if i_det["dtype"] == np.int8:
            xb = np.clip(np.round(xb / s_in) + z_in, -128, 127).astype(np.int8)
        interp.resize_tensor_input(i_det["index"], list(xb.shape))
        interp.allocate_tensors()
        interp.set_tensor(i_det["index"], xb)
        interp.invoke()
        y = interp.get_tensor(o_det["index"])
        outs.append((y.astype(np.float32) - z_out) * s_out if o_det["dtype"] == np.int8 else y)
    return np.concatenate(outs)


def predict(model: keras.Model, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Batched inference without ``Model.predict`` (which retraces for every new model)."""
    return np.concatenate([model(x[i : i + batch], training=False).numpy() for i in range(0, len(x), batch)])


def accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    return float(np.mean(np.argmax(pred, -1) == labels))


@dataclass
class StepRow:
    """One line of the before/after table."""

    step: str
    float_acc: float
    int8_acc: float | None
    macs: int
    params: int
    conv_macs: int
    arena: int
    flash: int

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def measure(step: str, model, x_val, y_val, tflite: bytes | None = None, x_rep=None,
            acc_model=None) -> tuple[StepRow, bytes]:
    """Row for ``model``: float accuracy (of ``acc_model`` if given, e.g. the fake-quant QAT
    model), int8 accuracy (PTQ with ``x_rep`` unless ``tflite`` is given) and cost
    estimates. Returns the row and the int8 flatbuffer."""
    float_acc = accuracy(predict(acc_model or model, x_val), y_val)
    if tflite is None:
        tflite = to_int8_tflite(model, x_rep)
    int8_acc = accuracy(tflite_predict(tflite, x_val), y_val)
    row = StepRow(step, float_acc, int8_acc, model_macs(model), int(model.count_params()),
                  model_macs(model, conv_only=True),
                  arena_bytes(model), flash_bytes(model))
    return row, tflite


def format_table(rows, baseline: StepRow | None = None) -> str:
    """A fixed-width before/after table; ratios are against the first row (or ``baseline``)."""
    rows = [r if isinstance(r, StepRow) else StepRow(**r) for r in rows]
    if not rows:
        return "(no steps)"
    base = baseline or rows[0]
    head = f"{'step':<16} {'float acc':>9} {'int8 acc':>9} {'MACs':>11} {'xMACs':>6} {'params':>8} {'xparams':>7} {'arena B':>8} {'flash B':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        i8 = f"{r.int8_acc:9.4f}" if r.int8_acc is not None else f"{'-':>9}"
        lines.append(
            f"{r.step:<16} {r.float_acc:9.4f} {i8} {r.macs:11,d} {base.macs / max(r.macs, 1):5.2f}x "
            f"{r.params:8,d} {base.params / max(r.params, 1):6.2f}x {r.arena:8,d} {r.flash:8,d}"
        )
    return "\n".join(lines)
