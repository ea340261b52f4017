"""Keras-level MAC counts (for the rewrite's candidate table), int8 conversion, reference-kernel
inference and the before/after table. Costs in the table come from the compiler (:mod:`.cost`)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from tinygen.errors import ModelError

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


def to_int8_tflite(model: keras.Model, x_rep: np.ndarray) -> bytes:
    """Full-int8 TFLite flatbuffer (int8 input and output). Post-training quantization with
    ``x_rep`` as representative data, or conversion of a tfmot quantization-aware model.
    The converter's own chatter on stderr is swallowed (shown only when it fails)."""
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    rep = np.asarray(x_rep[:200], np.float32)
    conv.representative_dataset = lambda: ([rep[i : i + 1]] for i in range(len(rep)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    with _quiet_stderr() as chatter, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return conv.convert()
        except Exception as e:
            detail = (chatter.read() or str(e)).strip().splitlines()
            raise ModelError(f"model {model.name!r}: the TFLite converter could not quantize it to int8: "
                             f"{(detail[-1] if detail else type(e).__name__)[:300]}") from None


@contextlib.contextmanager
def _quiet_stderr():
    """Send fd 2 to a temporary file for the duration (native converter logs); yields a
    reader of what was written."""
    sys.stderr.flush()
    saved = os.dup(2)
    tmp = tempfile.TemporaryFile(mode="w+b")

    class _Reader:
        def read(self) -> str:
            tmp.seek(0)
            return tmp.read().decode(errors="replace")

    os.dup2(tmp.fileno(), 2)
    try:
        yield _Reader()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        tmp.close()


def tflite_predict(tflite: bytes, x: np.ndarray, batch: int = 256) -> np.ndarray:
    """Dequantized outputs of an int8 model run with the TFLite reference kernels."""
    with warnings.catch_warnings():  # tf.lite.Interpreter's deprecation notice, once per candidate
        warnings.simplefilter("ignore")
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
    """One line of the before/after table. Quality numbers are the task's metric
    (:mod:`.task`): ``val_*`` on the validation split (which chooses), ``float_acc`` /
    ``int8_acc`` on the held-out test split (which only reports). Costs are the compiler's
    (:mod:`.cost`): ``arena`` planned arena bytes, ``flash`` weight bytes, ``est_ms`` the
    board's latency estimate."""

    step: str
    float_acc: float | None
    int8_acc: float | None
    macs: int
    params: int
    conv_macs: int
    arena: int
    flash: int
    val_float: float | None = None
    val_int8: float | None = None
    est_ms: float | None = None
    est_instructions: int | None = None
    metric: str = "acc"
    note: str = ""

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def row_for(step: str, cost, val_float, val_int8, test_float, test_int8, metric: str, note: str = "") -> StepRow:
    return StepRow(step, test_float, test_int8, cost.macs, cost.params, cost.conv_macs, cost.arena_bytes,
                   cost.weights_bytes, val_float, val_int8, cost.est_ms, cost.est_instructions, metric, note)


def _f(v, metric) -> str:
    if v is None:
        return f"{'-':>9}"
    return f"{v:9.3g}" if metric.startswith("mse") else f"{v:9.4f}"


def format_table(rows, baseline: StepRow | None = None) -> str:
    """A fixed-width before/after table; ratios are against the first row (or ``baseline``)."""
    rows = [r if isinstance(r, StepRow) else StepRow(**r) for r in rows]
    if not rows:
        return "(no steps)"
    base = baseline or rows[0]
    m = base.metric
    head = (f"{'step':<20} {'val f32':>9} {'val int8':>9} {'test int8':>9} {'MACs':>11} {'xMACs':>6} "
            f"{'params':>8} {'arena B':>8} {'weights B':>9} {'est. ms':>8}")
    lines = [f"metric: {m} (val chooses, test only reports); costs from the compiler", head, "-" * len(head)]
    for r in rows:
        ms = f"{r.est_ms:8.2f}" if r.est_ms is not None else f"{'-':>8}"
        lines.append(
            f"{r.step[:20]:<20} {_f(r.val_float, m)} {_f(r.val_int8, m)} {_f(r.int8_acc, m)} {r.macs:11,d} "
            f"{base.macs / max(r.macs, 1):5.2f}x {r.params:8,d} {r.arena:8,d} {r.flash:9,d} {ms}"
            + (f"  {r.note}" if r.note else "")
        )
    return "\n".join(lines)
