"""Tiny single-op int8 TFLite models for kernel and end-to-end tests.

``make_opnet(kind, **spec)`` builds a one-op Keras model (tf_keras, i.e. Keras 2) with
random weights and converts it to a fully int8 ``.tflite`` (int8 input and output, random
representative data). ``OPNET_CASES`` lists ``(id, kind, spec)`` covering every op and variant
the reference kernels implement. Converted models are cached under
``$TINYGEN_TEST_CACHE`` (default ``~/.cache/tinygen-tests/opnets``) keyed by a hash of
(kind, spec, generator version, TensorFlow version), so reruns do not reconvert.

Kinds and their spec keys (all optional except where noted):

====================  =====================================================================
conv2d                in_shape (h,w,c), filters, kernel (kh,kw), strides, padding, dilation,
                      act ('linear'|'relu'|'relu6'), use_bias, per_tensor, unknown_batch (Input
                      without batch_size: the converter writes a dilated conv as
                      SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND)
dwconv2d              in_shape, kernel, strides, padding, dilation, depth_multiplier, act,
                      use_bias, per_tensor, unknown_batch
conv1d                in_shape (w,c), filters, kernel, strides, padding (same|valid|causal), dilation,
                      act, unknown_batch
deconv                in_shape, filters, kernel, strides, padding, act, use_bias (Conv2DTranspose)
fc                    in_shape ((d,) or (t,d)), units, act, use_bias, per_tensor
avgpool / maxpool     in_shape, pool (ph,pw), strides, padding
add / mul             shape1, shape2 (broadcast, without batch), act, ranges ((lo,hi),(lo,hi))
softmax               in_shape
logistic/relu/relu6   in_shape
tanh / hard_swish     in_shape (hard_swish: x * relu6(x + 3) / 6, fused by the converter)
leaky_relu            in_shape, alpha
prelu                 in_shape, shared_axes (alpha drawn from [-0.6, 0.9])
maximum / minimum     shape1, shape2, ranges (as add)
sqdiff                shape1, shape2, ranges (tf.math.squared_difference)
move                  in_shape, expr: a TF expression of the input `t` (slices, tf.split, tf.transpose,
                      tf.gather, tf.image.resize...); upsample (h, w): a Keras UpSampling2D instead
pack                  shape, n inputs, axis (tf.stack)
reduce                in_shape, op (mean|sum|max|min), axes, keepdims; gap1d: Keras GlobalAveragePooling1D
rnn                   cell (gru|lstm|simplernn), in_shape (t, d), units, sequences: unroll=True
matmul_const          in_shape, units: tf.matmul by a constant
bmm                   in_shape, const_b / const_a (shape of a constant operand; neither: x @ x^T),
                      adj_a, adj_b: tf.matmul that the converter keeps as BATCH_MATMUL
zoo                   arch (a key of ZOO_BUILDERS: whole small architectures for tests/test_e2e_zoo.py)
mobilenet_v3_small    size, minimalistic (tf_keras.applications, random weights; not in OPNET_CASES:
                      tests/test_e2e_zoo.py)
mean                  in_shape, keepdims
pad                   in_shape, pads (((t,b),(l,r),(front,back)) over H,W,C)
concat                shapes (list of shapes), axis, ranges
requantize            in_shape, ranges: one input feeding two CONCATENATIONs whose partners
                      have different ranges, so the graph holds an int8->int8 QUANTIZE
quant_io              in_shape: float32 input/output, so the graph is QUANTIZE -> MAX_POOL_2D
                      -> DEQUANTIZE (tests f32<->s8 conversion at the graph edges)
====================  =====================================================================

Every spec may also carry ``seed`` (weights and calibration data) and ``range`` (the
calibration range of a single input, default (-3, 3)).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

GENERATOR_VERSION = 1

_DEFAULT_RANGE = (-3.0, 3.0)


def cache_dir() -> Path:
    d = Path(os.environ.get("TINYGEN_TEST_CACHE", Path.home() / ".cache" / "tinygen-tests")) / "opnets"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    return tf


def _keras():
    _tf()
    import tf_keras

    return tf_keras


def uniform_calib(shape: tuple, samples: int, lo: float = -1.0, hi: float = 1.0, seed: int = 0):
    """A representative dataset for a one-input model: ``samples`` batches of one float32 input of
    ``shape`` drawn uniform from [lo, hi) by ``np.random.default_rng(seed)`` (one generator for all)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(samples):
            yield [rng.uniform(lo, hi, (1,) + tuple(shape)).astype(np.float32)]

    return representative


def int8_convert(model, calib, *, float_io: bool = False, per_tensor: bool = False) -> bytes:
    """Full-int8 TFLite conversion of the Keras ``model`` (TFLITE_BUILTINS_INT8), calibrated on
    ``calib`` (a representative dataset: a callable yielding lists of float32 inputs, e.g.
    :func:`uniform_calib`); int8 input and output unless ``float_io`` (float32 at the edges);
    ``per_tensor``: weights quantized per tensor rather than per channel."""
    tf = _tf()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calib
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.float32 if float_io else tf.int8
    if per_tensor:
        conv._experimental_disable_per_channel = True
    return bytes(conv.convert())


def _key(kind: str, spec: dict) -> str:
    tf = _tf()
    blob = json.dumps([GENERATOR_VERSION, tf.__version__, kind, spec], sort_keys=True, default=list)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _seed(kind: str, spec: dict) -> int:
    blob = json.dumps([kind, spec], sort_keys=True, default=list)
    return int(hashlib.sha256(blob.encode()).hexdigest()[:8], 16) % (2**31 - 1)


def _act(name):
    return None if name in (None, "linear", "none", "NONE") else name


def _build(kind: str, spec: dict):
    """Keras model and the list of (shape, (lo, hi)) of its inputs for calibration."""
    K = _keras()
    L = K.layers
    rng_default = tuple(spec.get("range", _DEFAULT_RANGE))
    bias_init = K.initializers.RandomUniform(-0.5, 0.5)

    if kind in ("conv2d", "dwconv2d", "avgpool", "maxpool", "softmax", "logistic", "relu", "relu6",
                "mean", "pad", "quant_io", "tanh", "hard_swish", "leaky_relu"):
        in_shape = tuple(spec.get("in_shape", (7, 7, 3)))
        x = K.Input(in_shape, batch_size=None if spec.get("unknown_batch") else 1)
        if kind == "conv2d":
            y = L.Conv2D(
                spec.get("filters", 4), tuple(spec.get("kernel", (3, 3))), strides=tuple(spec.get("strides", (1, 1))),
                padding=spec.get("padding", "same"), dilation_rate=tuple(spec.get("dilation", (1, 1))),
                activation=_act(spec.get("act")), use_bias=spec.get("use_bias", True), bias_initializer=bias_init,
            )(x)
        elif kind == "dwconv2d":
            y = L.DepthwiseConv2D(
                tuple(spec.get("kernel", (3, 3))), strides=tuple(spec.get("strides", (1, 1))),
                padding=spec.get("padding", "same"), dilation_rate=tuple(spec.get("dilation", (1, 1))),
                depth_multiplier=spec.get("depth_multiplier", 1), activation=_act(spec.get("act")),
                use_bias=spec.get("use_bias", True), bias_initializer=bias_init,
            )(x)
        elif kind == "avgpool":
            y = L.AveragePooling2D(tuple(spec.get("pool", (2, 2))), strides=tuple(spec.get("strides", (2, 2))),
                                   padding=spec.get("padding", "valid"))(x)
        elif kind in ("maxpool", "quant_io"):
            y = L.MaxPooling2D(tuple(spec.get("pool", (2, 2))), strides=tuple(spec.get("strides", (2, 2))),
                               padding=spec.get("padding", "valid"))(x)
        elif kind == "softmax":
            y = L.Softmax()(x)
        elif kind == "logistic":
            y = L.Activation("sigmoid")(x)
        elif kind == "relu":
            y = L.ReLU()(x)
        elif kind == "relu6":
            y = L.ReLU(6.0)(x)
        elif kind == "tanh":
            y = L.Activation("tanh")(x)
        elif kind == "hard_swish":  # MobileNetV3's x * relu6(x + 3) / 6: the converter fuses it to HARD_SWISH
            y = L.Multiply()([x, L.ReLU(6.0)(x + 3.0) * (1.0 / 6.0)])
        elif kind == "leaky_relu":
            y = L.LeakyReLU(spec.get("alpha", 0.3))(x)
        elif kind == "mean":
            y = L.GlobalAveragePooling2D(keepdims=bool(spec.get("keepdims", False)))(x)
        elif kind == "pad":
            pads = spec.get("pads", ((1, 2), (0, 1), (0, 0)))
            tf = _tf()
            paddings = [[0, 0]] + [list(p) for p in pads]
            y = L.Lambda(lambda t: tf.pad(t, paddings))(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "conv1d":  # Keras Conv1D (unknown_batch + dilation: S2B -> EXPAND_DIMS -> CONV_2D -> RESHAPE -> B2S)
        in_shape = tuple(spec.get("in_shape", (20, 3)))
        x = K.Input(in_shape, batch_size=None if spec.get("unknown_batch") else 1)
        y = L.Conv1D(spec.get("filters", 4), spec.get("kernel", 3), strides=spec.get("strides", 1),
                     padding=spec.get("padding", "same"), dilation_rate=spec.get("dilation", 1),
                     activation=_act(spec.get("act")), bias_initializer=bias_init)(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "deconv":  # Keras Conv2DTranspose -> TRANSPOSE_CONV
        in_shape = tuple(spec.get("in_shape", (4, 5, 3)))
        x = K.Input(in_shape, batch_size=1)
        y = L.Conv2DTranspose(spec.get("filters", 4), tuple(spec.get("kernel", (3, 3))),
                              strides=tuple(spec.get("strides", (2, 2))), padding=spec.get("padding", "same"),
                              activation=_act(spec.get("act")), use_bias=spec.get("use_bias", True),
                              bias_initializer=bias_init)(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "fc":
        in_shape = tuple(spec.get("in_shape", (16,)))
        x = K.Input(in_shape, batch_size=1)
        y = L.Dense(spec.get("units", 5), activation=_act(spec.get("act")), use_bias=spec.get("use_bias", True),
                    bias_initializer=bias_init)(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "move":  # a data-movement expression of `t` (the input), e.g. "t[:, 1:5:2]" or "tf.split(t, 3, -1)"
        in_shape = tuple(spec.get("in_shape", (4, 5, 3)))
        x = K.Input(in_shape, batch_size=1)
        tf = _tf()
        expr = spec["expr"]
        y = L.Lambda(lambda t: eval(expr, {"tf": tf, "t": t}))(x)  # noqa: S307 - test nets from this file only
        if spec.get("upsample"):
            y = L.UpSampling2D(tuple(spec["upsample"]), interpolation=spec.get("interpolation", "nearest"))(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "reduce":  # tf.reduce_<op>(t, axes, keepdims); op: mean, sum, max, min
        in_shape = tuple(spec.get("in_shape", (4, 5, 3)))
        x = K.Input(in_shape, batch_size=1)
        tf = _tf()
        fn = {"mean": tf.reduce_mean, "sum": tf.reduce_sum, "max": tf.reduce_max, "min": tf.reduce_min}[spec["op"]]
        axes, keep = list(spec["axes"]), bool(spec.get("keepdims", False))
        y = L.GlobalAveragePooling1D()(x) if spec.get("gap1d") else L.Lambda(lambda t: fn(t, axes, keepdims=keep))(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "mix":  # many of the later ops in one small net (unknown batch: the dilated conv is S2B/B2S)
        tf = _tf()
        x = K.Input((12, 10, 3))
        h = L.Conv2D(8, 3, padding="same")(x)
        h = L.Multiply()([h, L.ReLU(6.0)(h + 3.0) * (1.0 / 6.0)])  # HARD_SWISH
        h = L.DepthwiseConv2D(3, dilation_rate=2, padding="same")(h)
        h = L.LeakyReLU(0.2)(h)
        h = L.MaxPooling2D(2)(h)
        a, b = L.Lambda(lambda t: tf.split(t, 2, axis=-1))(h)
        h = L.Lambda(lambda t: tf.maximum(t[0], t[1]))([a, b])
        h = L.Activation("tanh")(h)
        h = L.UpSampling2D(2)(h)
        h = L.Lambda(lambda t: tf.transpose(t[:, 1:11:2, ::-1, :], [0, 2, 1, 3]))(h)
        h = L.Lambda(lambda t: tf.reduce_mean(t, axis=[1]))(h)
        h = L.Dense(6)(L.Flatten()(h))
        return K.Model(x, L.Softmax()(h)), [((12, 10, 3), rng_default)]

    if kind == "rnn":  # a Keras GRU / LSTM / SimpleRNN with unroll=True: FULLY_CONNECTED, SPLIT(_V), UNPACK, TANH...
        in_shape = tuple(spec.get("in_shape", (5, 4)))
        x = K.Input(in_shape, batch_size=1)
        cell = {"gru": L.GRU, "lstm": L.LSTM, "simplernn": L.SimpleRNN}[spec["cell"]]
        y = cell(spec.get("units", 8), unroll=True, return_sequences=bool(spec.get("sequences", False)))(x)
        return K.Model(x, y), [(in_shape, tuple(spec.get("range", (-1.0, 1.0))))]

    if kind == "matmul_const":  # tf.matmul with a constant right operand (the converter writes FULLY_CONNECTED)
        in_shape = tuple(spec.get("in_shape", (5, 4)))
        x = K.Input(in_shape, batch_size=1)
        tf = _tf()
        import numpy as np

        w = np.random.default_rng(0).standard_normal((in_shape[-1], spec.get("units", 3))).astype(np.float32)
        y = L.Lambda(lambda t: tf.matmul(t, tf.constant(w)))(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "bmm":  # tf.matmul that stays BATCH_MATMUL: const_b / const_a (shape of the constant), or x @ x^T
        in_shape = tuple(spec.get("in_shape", (2, 5, 4)))
        x = K.Input(in_shape, batch_size=1)
        tf = _tf()
        import numpy as np

        r = np.random.default_rng(1)
        ta, tb = bool(spec.get("adj_a", False)), bool(spec.get("adj_b", False))
        if spec.get("const_b"):
            w = r.standard_normal(tuple(spec["const_b"])).astype(np.float32)
            y = L.Lambda(lambda t: tf.matmul(t, tf.constant(w), transpose_a=ta, transpose_b=tb))(x)
        elif spec.get("const_a"):
            w = r.standard_normal(tuple(spec["const_a"])).astype(np.float32)
            y = L.Lambda(lambda t: tf.matmul(tf.constant(w), t, transpose_a=ta, transpose_b=tb))(x)
        else:
            y = L.Lambda(lambda t: tf.matmul(t, t, transpose_b=True))(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind == "zoo":  # whole architectures (tests/test_e2e_zoo.py): arch = a key of ZOO_BUILDERS
        return ZOO_BUILDERS[spec["arch"]](K, L, _tf(), spec)

    if kind == "mobilenet_v3_small":  # tf_keras.applications, random weights, no softmax (random logits are tiny)
        size = int(spec.get("size", 64))
        m = K.applications.MobileNetV3Small(input_shape=(size, size, 3), weights=None, classes=10,
                                            minimalistic=bool(spec.get("minimalistic", False)),
                                            include_preprocessing=True, classifier_activation=None)
        return m, [((size, size, 3), (0.0, 255.0))]

    if kind == "pack":
        shapes = [tuple(spec.get("shape", (3, 4)))] * spec.get("n", 2)
        ins = [K.Input(s, batch_size=1) for s in shapes]
        tf = _tf()
        axis = spec.get("axis", 1)
        y = L.Lambda(lambda t: tf.stack(t, axis=axis))(ins)
        return K.Model(ins, y), [(s, rng_default) for s in shapes]

    if kind == "prelu":
        in_shape = tuple(spec.get("in_shape", (4, 5, 3)))
        x = K.Input(in_shape, batch_size=1)
        y = L.PReLU(alpha_initializer=K.initializers.RandomUniform(-0.6, 0.9),
                    shared_axes=spec.get("shared_axes"))(x)
        return K.Model(x, y), [(in_shape, rng_default)]

    if kind in ("add", "sub", "mul", "maximum", "minimum", "sqdiff"):
        s1 = tuple(spec.get("shape1", (4, 5, 3)))
        s2 = tuple(spec.get("shape2", s1))
        ranges = spec.get("ranges", ((-3.0, 3.0), (-1.0, 2.0)))
        a = K.Input(s1, batch_size=1)
        b = K.Input(s2, batch_size=1)
        tf = _tf()
        if kind == "add":
            y = L.Lambda(lambda t: tf.add(t[0], t[1]))([a, b])
        elif kind == "sub":
            y = L.Lambda(lambda t: tf.subtract(t[0], t[1]))([a, b])
        elif kind == "maximum":
            y = L.Lambda(lambda t: tf.maximum(t[0], t[1]))([a, b])
        elif kind == "minimum":
            y = L.Lambda(lambda t: tf.minimum(t[0], t[1]))([a, b])
        elif kind == "sqdiff":
            y = L.Lambda(lambda t: tf.math.squared_difference(t[0], t[1]))([a, b])
        else:
            y = L.Lambda(lambda t: tf.multiply(t[0], t[1]))([a, b])
        act = _act(spec.get("act"))
        if act:
            y = L.Activation(act)(y)
        return K.Model([a, b], y), [(s1, tuple(ranges[0])), (s2, tuple(ranges[1]))]

    if kind == "requantize":
        # x feeds two concatenations whose other inputs have very different ranges: x can only
        # have one scale, so the converter inserts an int8 -> int8 QUANTIZE (requantize) for one
        shape = tuple(spec.get("in_shape", (3, 3, 2)))
        ranges = spec.get("ranges", ((-1.0, 3.0), (-12.0, 4.0), (-0.5, 1.0)))
        ins = [K.Input(shape, batch_size=1) for _ in range(3)]
        y1 = L.Concatenate()([ins[0], ins[1]])
        y2 = L.Concatenate()([ins[0], ins[2]])
        return K.Model(ins, [y1, y2]), [(shape, tuple(r)) for r in ranges]

    if kind == "concat":
        shapes = [tuple(s) for s in spec.get("shapes", ((4, 4, 3), (4, 4, 5)))]
        ranges = spec.get("ranges", [_DEFAULT_RANGE] * len(shapes))
        ins = [K.Input(s, batch_size=1) for s in shapes]
        y = L.Concatenate(axis=spec.get("axis", -1))(ins)
        return K.Model(ins, y), [(s, tuple(r)) for s, r in zip(shapes, ranges)]

    raise ValueError(f"unknown opnet kind {kind!r}")


# ---- the zoo: small whole architectures, random weights (tests/test_e2e_zoo.py) ------------------


def _zoo_mobilenet_v2(K, L, tf, spec):
    m = K.applications.MobileNetV2(input_shape=(32, 32, 3), alpha=0.35, weights=None, classes=10,
                                   classifier_activation=None)
    return m, [((32, 32, 3), (-1.0, 1.0))]


def _zoo_mobilenet_v1(K, L, tf, spec):  # batch 1 given: its top reshapes by the batch size otherwise (SHAPE)
    x = K.Input((32, 32, 3), batch_size=1)
    m = K.applications.MobileNet(input_tensor=x, alpha=0.25, weights=None, classes=10, classifier_activation=None)
    return m, [((32, 32, 3), (-1.0, 1.0))]


def _zoo_audio_conv1d(K, L, tf, spec):  # a Conv1D + GlobalAveragePooling1D keyword spotter on 49x10 MFCCs
    x = K.Input((49, 10), batch_size=1)
    h = L.Conv1D(16, 5, strides=2, padding="same", activation="relu")(x)
    h = L.Conv1D(24, 3, padding="same", activation="relu")(h)
    h = L.MaxPooling1D(2)(h)
    h = L.Conv1D(32, 3, padding="valid", activation="relu")(h)
    return K.Model(x, L.Dense(12)(L.GlobalAveragePooling1D()(h))), [((49, 10), (-3.0, 3.0))]


def _rnn(cell, unroll):
    def build(K, L, tf, spec):
        x = K.Input((8, 6), batch_size=1)
        h = cell(L)(16, unroll=unroll, return_sequences=True)(x)
        h = cell(L)(12, unroll=unroll)(h)
        return K.Model(x, L.Dense(4)(h)), [((8, 6), (-1.0, 1.0))]
    return build


def _zoo_deconv_decoder(K, L, tf, spec):
    x = K.Input((8,), batch_size=1)
    h = L.Reshape((2, 2, 16))(L.Dense(64, activation="relu")(x))
    h = L.Conv2DTranspose(12, 3, strides=2, padding="same", activation="relu")(h)
    h = L.Conv2DTranspose(8, 4, strides=2, padding="same", activation="relu")(h)
    h = L.Conv2DTranspose(1, 3, strides=2, padding="valid")(h)
    return K.Model(x, L.Activation("sigmoid")(h)), [((8,), (-2.0, 2.0))]


def _zoo_upsampling_decoder(K, L, tf, spec):
    x = K.Input((4, 4, 8), batch_size=1)
    h = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    h = L.UpSampling2D(2)(h)
    h = L.Conv2D(8, 3, padding="same", activation="relu")(h)
    h = L.UpSampling2D(2, interpolation="bilinear")(h)
    return K.Model(x, L.Conv2D(3, 3, padding="same")(h)), [((4, 4, 8), (-1.0, 1.0))]


def _zoo_dilated2d(K, L, tf, spec):  # unknown batch: the converter writes SPACE_TO_BATCH_ND/BATCH_TO_SPACE_ND
    x = K.Input((16, 16, 3))
    h = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    h = L.Conv2D(8, 3, dilation_rate=2, padding="same", activation="relu")(h)
    h = L.DepthwiseConv2D(3, dilation_rate=4, padding="same", activation="relu")(h)
    h = L.Conv2D(8, 3, dilation_rate=(2, 3), padding="valid")(h)
    return K.Model(x, L.Dense(5)(L.GlobalAveragePooling2D()(h))), [((16, 16, 3), (-1.0, 1.0))]


def _zoo_tcn1d(K, L, tf, spec):  # a dilated causal Conv1D stack (WaveNet/TCN style), unknown batch
    x = K.Input((32, 4))
    h = x
    for d in (1, 2, 4):
        h = L.Conv1D(8, 3, dilation_rate=d, padding="causal", activation="relu")(h)
    h = L.Conv1D(8, 2, dilation_rate=2, padding="same")(h)
    return K.Model(x, L.Dense(3)(L.GlobalAveragePooling1D()(h))), [((32, 4), (-1.0, 1.0))]


def _zoo_act_heads(K, L, tf, spec):  # tanh / hard-swish / LeakyReLU / PReLU heads on one trunk
    x = K.Input((8, 8, 3), batch_size=1)
    t = L.Conv2D(8, 3, padding="same")(x)
    a = L.Activation("tanh")(L.Conv2D(4, 1)(t))
    u = L.Conv2D(4, 1)(t)
    b = L.Multiply()([u, L.ReLU(6.0)(u + 3.0) * (1.0 / 6.0)])
    c = L.LeakyReLU(0.1)(L.Conv2D(4, 1)(t))
    d = L.PReLU(alpha_initializer=K.initializers.RandomUniform(-0.5, 0.5), shared_axes=[1, 2])(L.Conv2D(4, 1)(t))
    return K.Model(x, L.Concatenate()([a, b, c, d])), [((8, 8, 3), (-2.0, 2.0))]


def _zoo_subtract(K, L, tf, spec):
    x = K.Input((10, 6), batch_size=1)
    a = L.Dense(8, activation="relu")(x)
    b = L.Dense(8)(x)
    return K.Model(x, L.Dense(3)(L.Flatten()(L.Subtract()([a, b])))), [((10, 6), (-2.0, 2.0))]


def _zoo_dense3d(K, L, tf, spec):  # Dense on a 3-D input at batch 1 (FULLY_CONNECTED keeping dims)
    x = K.Input((7, 5), batch_size=1)
    h = L.Dense(16, activation="relu")(x)
    h = L.Dense(6)(h)
    return K.Model(x, L.Softmax()(h)), [((7, 5), (-2.0, 2.0))]


def _zoo_sum_bmm(K, L, tf, spec):  # reduce_sum and a batched constant matmul (BATCH_MATMUL, SUM)
    import numpy as np

    w = np.random.default_rng(2).standard_normal((2, 6, 5)).astype(np.float32)
    x = K.Input((2, 4, 6), batch_size=1)
    h = L.Lambda(lambda t: tf.matmul(t, tf.constant(w)))(x)
    h = L.ReLU()(h)
    s = L.Lambda(lambda t: tf.reduce_sum(t, axis=[2]))(h)
    return K.Model(x, L.Dense(3)(L.Flatten()(s))), [((2, 4, 6), (-1.0, 1.0))]


def _zoo_attention(K, L, tf, spec):  # self-attention: both BATCH_MATMUL operands computed
    x = K.Input((6, 8), batch_size=1)
    h = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    h = L.LayerNormalization()(L.Add()([x, h])) if spec.get("norm") else L.Add()([x, h])
    return K.Model(x, L.Dense(4)(L.GlobalAveragePooling1D()(h))), [((6, 8), (-1.0, 1.0))]


def _zoo_resnet(K, L, tf, spec):  # a small ResNet (two stages of residual blocks)
    x = K.Input((16, 16, 3), batch_size=1)
    h = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    for filters, stride in ((8, 1), (16, 2)):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(h)
        y = L.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or filters != h.shape[-1]:
            h = L.Conv2D(filters, 1, strides=stride)(h)
        h = L.ReLU()(L.Add()([h, y]))
    return K.Model(x, L.Dense(10)(L.GlobalAveragePooling2D()(h))), [((16, 16, 3), (-1.0, 1.0))]


def _zoo_ds_cnn(K, L, tf, spec):  # DS-CNN keyword spotting (MLPerf Tiny KWS shape, narrower)
    x = K.Input((49, 10, 1), batch_size=1)
    h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, (10, 4), strides=(2, 2), padding="same")(x)))
    for _ in range(2):
        h = L.ReLU()(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same")(h)))
        h = L.ReLU()(L.BatchNormalization()(L.Conv2D(16, 1)(h)))
    h = L.AveragePooling2D(pool_size=(h.shape[1], h.shape[2]))(h)
    return K.Model(x, L.Softmax()(L.Dense(12)(L.Flatten()(h)))), [((49, 10, 1), (-3.0, 3.0))]


def _zoo_autoencoder(K, L, tf, spec):  # a dense autoencoder (MLPerf Tiny anomaly-detection shape, smaller)
    x = K.Input((64,), batch_size=1)
    h = x
    for u in (32, 16, 8, 16, 32):
        h = L.ReLU()(L.BatchNormalization()(L.Dense(u)(h)))
    return K.Model(x, L.Dense(64)(h)), [((64,), (-2.0, 2.0))]


def _zoo_vgg(K, L, tf, spec):  # a small VGG-style CNN with a softmax head
    x = K.Input((16, 16, 1), batch_size=1)
    h = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    h = L.MaxPooling2D()(L.Conv2D(8, 3, padding="same", activation="relu")(h))
    h = L.MaxPooling2D()(L.Conv2D(16, 3, padding="same", activation="relu")(h))
    h = L.Dropout(0.2)(L.Flatten()(h))
    return K.Model(x, L.Softmax()(L.Dense(10)(h))), [((16, 16, 1), (0.0, 1.0))]


def _zoo_squeeze_excite(K, L, tf, spec):  # a squeeze-and-excitation block (GAP, Dense, sigmoid, Multiply)
    x = K.Input((8, 8, 8), batch_size=1)
    h = L.Conv2D(16, 3, padding="same", activation="relu")(x)
    se = L.GlobalAveragePooling2D(keepdims=True)(h)
    se = L.Conv2D(4, 1, activation="relu")(se)
    se = L.Conv2D(16, 1, activation="sigmoid")(se)
    h = L.Multiply()([h, se])
    return K.Model(x, L.Dense(5)(L.GlobalAveragePooling2D()(h))), [((8, 8, 8), (-1.0, 1.0))]


def _zoo_unet(K, L, tf, spec):  # a tiny U-Net: skip connections concatenated after upsampling
    x = K.Input((16, 16, 1), batch_size=1)
    e1 = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    e2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(e1))
    d1 = L.Conv2DTranspose(8, 2, strides=2, padding="same")(e2)
    h = L.Conv2D(8, 3, padding="same", activation="relu")(L.Concatenate()([e1, d1]))
    return K.Model(x, L.Conv2D(2, 1, activation="sigmoid")(h)), [((16, 16, 1), (0.0, 1.0))]


ZOO_BUILDERS = {
    "mobilenet_v2": _zoo_mobilenet_v2,
    "mobilenet_v1": _zoo_mobilenet_v1,
    "audio_conv1d": _zoo_audio_conv1d,
    "lstm_unrolled": _rnn(lambda L: L.LSTM, True),
    "gru_unrolled": _rnn(lambda L: L.GRU, True),
    "simplernn_unrolled": _rnn(lambda L: L.SimpleRNN, True),
    "lstm_fused": _rnn(lambda L: L.LSTM, False),
    "deconv_decoder": _zoo_deconv_decoder,
    "upsampling_decoder": _zoo_upsampling_decoder,
    "dilated_conv2d": _zoo_dilated2d,
    "dilated_conv1d_tcn": _zoo_tcn1d,
    "activation_heads": _zoo_act_heads,
    "subtract": _zoo_subtract,
    "dense_3d": _zoo_dense3d,
    "sum_batch_matmul": _zoo_sum_bmm,
    "attention": _zoo_attention,
    "resnet_small": _zoo_resnet,
    "ds_cnn": _zoo_ds_cnn,
    "autoencoder": _zoo_autoencoder,
    "vgg_small": _zoo_vgg,
    "squeeze_excite": _zoo_squeeze_excite,
    "unet_tiny": _zoo_unet,
}


def _convert(kind: str, spec: dict) -> bytes:
    K = _keras()
    import numpy as np

    seed = int(spec.get("seed", _seed(kind, spec)))
    K.utils.set_random_seed(seed)
    model, inputs = _build(kind, spec)
    rng = np.random.default_rng(seed)

    def representative():
        for _ in range(32):
            yield [rng.uniform(lo, hi, (1,) + tuple(shape)).astype(np.float32) for shape, (lo, hi) in inputs]

    return int8_convert(model, representative, float_io=kind == "quant_io", per_tensor=bool(spec.get("per_tensor")))


def opnet_path(kind: str, **spec) -> Path:
    """Path of the cached ``.tflite`` for ``kind`` and ``spec``, converting it on first use."""
    path = cache_dir() / f"{kind}-{_key(kind, spec)}.tflite"
    if not path.exists():
        data = _convert(kind, spec)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: concurrent test runs never see a partial file
    return path


def make_opnet(kind: str, **spec) -> bytes:
    """A converted full-int8 single-op ``.tflite`` (bytes) for ``kind`` and ``spec`` (cached)."""
    return opnet_path(kind, **spec).read_bytes()


OPNET_CASES: list[tuple[str, str, dict]] = [
    # CONV_2D: strides, SAME/VALID, dilation, odd shapes, per-tensor, fused activations
    ("conv_3x3_same", "conv2d", dict(in_shape=(7, 7, 3), filters=4, kernel=(3, 3), padding="same")),
    ("conv_3x3_s2_same_relu", "conv2d", dict(in_shape=(9, 8, 3), filters=5, kernel=(3, 3), strides=(2, 2), padding="same", act="relu")),
    ("conv_5x3_s2x1_valid", "conv2d", dict(in_shape=(11, 6, 2), filters=3, kernel=(5, 3), strides=(2, 1), padding="valid")),
    ("conv_1x1_relu6", "conv2d", dict(in_shape=(5, 5, 8), filters=6, kernel=(1, 1), act="relu6")),
    ("conv_dil2_same", "conv2d", dict(in_shape=(9, 9, 3), filters=4, kernel=(3, 3), dilation=(2, 2), padding="same")),
    ("conv_dil2x3_valid_nobias", "conv2d", dict(in_shape=(10, 12, 2), filters=3, kernel=(2, 3), dilation=(2, 3), padding="valid", use_bias=False)),
    ("conv_4x4_s3_same_even", "conv2d", dict(in_shape=(10, 10, 3), filters=2, kernel=(4, 4), strides=(3, 3), padding="same")),
    ("conv_per_tensor", "conv2d", dict(in_shape=(6, 7, 3), filters=4, kernel=(3, 3), strides=(2, 2), padding="same", per_tensor=True)),
    # DEPTHWISE_CONV_2D: depth multipliers, strides, dilation
    ("dw_3x3_same", "dwconv2d", dict(in_shape=(7, 7, 4), kernel=(3, 3), padding="same")),
    ("dw_3x3_s2_valid_m2", "dwconv2d", dict(in_shape=(9, 8, 3), kernel=(3, 3), strides=(2, 2), padding="valid", depth_multiplier=2)),
    ("dw_5x5_s2_same_relu6_m3", "dwconv2d", dict(in_shape=(10, 9, 2), kernel=(5, 5), strides=(2, 2), padding="same", depth_multiplier=3, act="relu6")),
    ("dw_dil2_same_relu", "dwconv2d", dict(in_shape=(9, 9, 5), kernel=(3, 3), dilation=(2, 2), padding="same", act="relu")),
    ("dw_per_tensor", "dwconv2d", dict(in_shape=(6, 6, 3), kernel=(3, 3), padding="same", per_tensor=True, depth_multiplier=2)),
    # FULLY_CONNECTED: per-channel (default) and per-tensor, batched rows
    ("fc_16x5", "fc", dict(in_shape=(16,), units=5)),
    ("fc_relu_per_tensor", "fc", dict(in_shape=(33,), units=7, act="relu", per_tensor=True)),
    ("fc_rows", "fc", dict(in_shape=(3, 10), units=4)),
    ("fc_nobias_per_tensor", "fc", dict(in_shape=(9,), units=6, use_bias=False, per_tensor=True)),
    # AVERAGE_POOL_2D / MAX_POOL_2D: SAME padding edge counts, odd sizes
    ("avgpool_2x2_valid", "avgpool", dict(in_shape=(8, 8, 3), pool=(2, 2), strides=(2, 2), padding="valid")),
    ("avgpool_3x3_s2_same", "avgpool", dict(in_shape=(7, 9, 4), pool=(3, 3), strides=(2, 2), padding="same")),
    ("avgpool_3x2_s1_same", "avgpool", dict(in_shape=(5, 6, 2), pool=(3, 2), strides=(1, 1), padding="same")),
    ("avgpool_global", "avgpool", dict(in_shape=(5, 7, 3), pool=(5, 7), strides=(1, 1), padding="valid")),
    ("maxpool_2x2_valid", "maxpool", dict(in_shape=(8, 8, 3), pool=(2, 2), strides=(2, 2), padding="valid")),
    ("maxpool_3x3_s2_same", "maxpool", dict(in_shape=(7, 9, 4), pool=(3, 3), strides=(2, 2), padding="same")),
    # ADD / MUL with 4-D broadcasting and different input scales
    ("add_same_shape", "add", dict(shape1=(4, 5, 3), shape2=(4, 5, 3))),
    ("add_bcast_channel_relu", "add", dict(shape1=(4, 5, 3), shape2=(1, 1, 3), act="relu", ranges=((-2, 4), (-0.5, 0.5)))),
    ("add_bcast_hw", "add", dict(shape1=(1, 5, 1), shape2=(4, 5, 3), ranges=((-8, 8), (-1, 1)))),
    ("sub_same_shape", "sub", dict(shape1=(4, 5, 3), shape2=(4, 5, 3), ranges=((-3, 5), (-6, 2)))),
    ("sub_bcast_relu", "sub", dict(shape1=(3, 5, 4), shape2=(1, 1, 4), act="relu", ranges=((-2, 4), (-0.5, 3)))),
    ("mul_same_shape", "mul", dict(shape1=(4, 5, 3), shape2=(4, 5, 3))),
    ("mul_bcast_channel", "mul", dict(shape1=(3, 4, 6), shape2=(1, 1, 6), ranges=((-2, 2), (0, 3)))),
    ("mul_bcast_row_relu", "mul", dict(shape1=(3, 1, 2), shape2=(3, 4, 2), act="relu", ranges=((-5, 1), (-1, 4)))),
    # SOFTMAX over the last dim; LUT ops
    ("softmax_10", "softmax", dict(in_shape=(1, 1, 10))),
    ("softmax_rows", "softmax", dict(in_shape=(3, 4, 7), range=(-8.0, 8.0))),
    ("softmax_wide", "softmax", dict(in_shape=(2, 100), range=(-2.0, 12.0))),
    ("logistic", "logistic", dict(in_shape=(4, 4, 5))),
    ("logistic_wide", "logistic", dict(in_shape=(3, 7), range=(-12.0, 9.0))),
    ("relu", "relu", dict(in_shape=(4, 4, 5))),
    ("relu6", "relu6", dict(in_shape=(4, 4, 5), range=(-4.0, 10.0))),
    # MEAN over H,W (keep_dims integer path and the float path)
    ("mean_keepdims", "mean", dict(in_shape=(6, 6, 3), keepdims=True)),
    ("mean_flat", "mean", dict(in_shape=(6, 6, 3), keepdims=False)),
    ("mean_odd", "mean", dict(in_shape=(5, 3, 7), keepdims=False, range=(-1.0, 5.0))),
    ("mean_odd_keepdims", "mean", dict(in_shape=(3, 7, 4), keepdims=True, range=(-6.0, 1.0))),
    # PAD, CONCATENATION
    ("pad_hw", "pad", dict(in_shape=(4, 5, 3), pads=((1, 2), (0, 1), (0, 0)))),
    ("pad_hwc", "pad", dict(in_shape=(3, 3, 2), pads=((2, 0), (1, 1), (1, 2)))),
    ("concat_channels", "concat", dict(shapes=((4, 4, 3), (4, 4, 5)), axis=-1)),
    ("concat_width3", "concat", dict(shapes=((3, 2, 2), (3, 1, 2), (3, 4, 2)), axis=2)),
    ("concat_height", "concat", dict(shapes=((2, 3, 4), (5, 3, 4)), axis=1)),
    # QUANTIZE f32->s8 and DEQUANTIZE s8->f32 at the graph edges
    ("quant_io", "quant_io", dict(in_shape=(6, 6, 3), pool=(2, 2), strides=(2, 2))),
    ("quant_io_wide", "quant_io", dict(in_shape=(5, 5, 2), pool=(1, 1), strides=(1, 1), range=(-40.0, 7.0))),
]

OPNET_CASES.append(("requantize", "requantize", dict(in_shape=(3, 3, 2))))

# TANH / HARD_SWISH / LEAKY_RELU as tables (tests/test_quant_lut.py checks every table over all 256 inputs)
OPNET_CASES += [
    ("tanh", "tanh", dict(in_shape=(3, 5, 7))),
    ("tanh_narrow", "tanh", dict(in_shape=(5, 3), range=(-0.7, 0.4))),
    ("hard_swish", "hard_swish", dict(in_shape=(3, 5, 7))),
    ("hard_swish_wide", "hard_swish", dict(in_shape=(7, 3, 2), range=(-9.0, 2.0))),
    ("leaky_relu", "leaky_relu", dict(in_shape=(3, 5, 7))),
    ("leaky_relu_a007", "leaky_relu", dict(in_shape=(2, 9), alpha=0.07, range=(-5.0, 1.0))),
    # binary with broadcasting
    ("maximum_same", "maximum", dict(shape1=(3, 5, 7), shape2=(3, 5, 7))),
    ("maximum_bcast", "maximum", dict(shape1=(3, 5, 4), shape2=(1, 1, 4), ranges=((-2, 4), (-0.5, 3)))),
    ("minimum_bcast_row", "minimum", dict(shape1=(3, 1, 2), shape2=(3, 4, 2), ranges=((-5, 1), (-1, 4)))),
    ("sqdiff_same", "sqdiff", dict(shape1=(3, 5, 7), shape2=(3, 5, 7), ranges=((-3, 5), (-6, 2)))),
    ("sqdiff_bcast", "sqdiff", dict(shape1=(1, 5, 1), shape2=(4, 5, 3), ranges=((-1, 1), (-2, 2)))),
    ("prelu_full_alpha", "prelu", dict(in_shape=(3, 5, 7))),
    ("prelu_channel_alpha", "prelu", dict(in_shape=(5, 3, 6), shared_axes=[1, 2], range=(-4.0, 2.0))),
]

# TRANSPOSE_CONV (Keras Conv2DTranspose)
OPNET_CASES += [
    ("deconv_3x3_s2_same", "deconv", dict(in_shape=(4, 5, 3), filters=4, kernel=(3, 3), strides=(2, 2))),
    ("deconv_4x3_s2x1_valid_relu", "deconv", dict(in_shape=(3, 4, 2), filters=5, kernel=(4, 3), strides=(2, 1),
                                                  padding="valid", act="relu")),
    ("deconv_2x2_s2_nobias", "deconv", dict(in_shape=(5, 3, 6), filters=3, kernel=(2, 2), strides=(2, 2),
                                            use_bias=False)),
    ("deconv_5x5_s3_same_per_tensor", "deconv", dict(in_shape=(3, 3, 2), filters=2, kernel=(5, 5), strides=(3, 3),
                                                     per_tensor=True)),
]

# unrolled recurrent layers (FULLY_CONNECTED, SPLIT/SPLIT_V, UNPACK, TANH, LOGISTIC, SUB...), matmul by a constant
OPNET_CASES += [
    ("gru_unroll", "rnn", dict(cell="gru", in_shape=(5, 4), units=8)),
    ("lstm_unroll_seq", "rnn", dict(cell="lstm", in_shape=(4, 3), units=6, sequences=True)),
    ("simplernn_unroll", "rnn", dict(cell="simplernn", in_shape=(6, 5), units=7)),
    ("matmul_const", "matmul_const", dict(in_shape=(5, 4), units=3)),
]

# Keras dilated convolutions converted with an unknown batch: SPACE_TO_BATCH_ND -> conv -> BATCH_TO_SPACE_ND,
# folded into one dilated convolution (tinygen/passes_dilated.py)
OPNET_CASES += [
    ("conv_dil2_same_s2b", "conv2d", dict(in_shape=(9, 9, 3), filters=4, kernel=(3, 3), dilation=(2, 2), padding="same",
                                          unknown_batch=True)),
    ("conv_dil3x2_same_odd_s2b", "conv2d", dict(in_shape=(10, 7, 2), filters=3, kernel=(3, 3), dilation=(3, 2),
                                                padding="same", act="relu", unknown_batch=True)),
    ("conv_dil2_valid_s2b", "conv2d", dict(in_shape=(11, 9, 3), filters=5, kernel=(3, 2), dilation=(2, 2),
                                           padding="valid", unknown_batch=True)),
    ("dw_dil2_same_s2b", "dwconv2d", dict(in_shape=(9, 8, 4), kernel=(3, 3), dilation=(2, 2), padding="same",
                                          unknown_batch=True)),
    ("dw_dil4_same_m2_s2b", "dwconv2d", dict(in_shape=(13, 11, 2), kernel=(3, 3), dilation=(4, 4), padding="same",
                                             depth_multiplier=2, unknown_batch=True)),
]

# data movement: remaps (slices, transposes, gathers, nearest resizes), splits, PACK
_MOVES = [
    ("strided_slice", (6, 7, 5), "t[:, 1:6:2, ::-1, 1:]"),
    ("strided_slice_shrink", (5, 4, 6), "t[:, 2, :, 1::2]"),
    ("strided_slice_neg", (7, 6, 3), "t[:, -2:0:-3, 1:-1]"),
    ("slice", (5, 6, 4), "tf.slice(t, [0, 1, 2, 1], [1, 3, -1, 2])"),
    ("transpose_hw", (3, 5, 4), "tf.transpose(t, [0, 2, 1, 3])"),
    ("transpose_3d", (5, 7), "tf.transpose(t, [0, 2, 1])"),
    ("transpose_chw", (3, 4, 5), "tf.transpose(t, [0, 3, 1, 2])"),
    ("gather_w", (3, 5, 4), "tf.gather(t, [2, 0, 0, 4], axis=2)"),
    ("gather_c", (3, 5, 6), "tf.gather(t, [5, 1, 3], axis=3)"),
    ("split_c", (3, 5, 6), "tf.split(t, 3, axis=-1)"),
    ("split_v_h", (6, 4, 3), "tf.split(t, [1, 3, 2], axis=1)"),
    ("unpack_h", (3, 5, 2), "tf.unstack(t, axis=1)"),
    ("resize_nn_half_pixel", (3, 4, 2), "tf.image.resize(t, (7, 5), 'nearest')"),
    ("resize_nn_align", (4, 3, 2), "tf.compat.v1.image.resize_nearest_neighbor(t, (7, 8), align_corners=True)"),
    ("resize_nn_v1", (3, 5, 2), "tf.compat.v1.image.resize_nearest_neighbor(t, (5, 12))"),
    ("resize_bilinear_half_pixel", (3, 4, 2), "tf.image.resize(t, (7, 9), 'bilinear')"),
    ("resize_bilinear_align", (4, 3, 3), "tf.compat.v1.image.resize_bilinear(t, (7, 8), align_corners=True)"),
    ("resize_bilinear_v1_down", (9, 7, 2), "tf.compat.v1.image.resize_bilinear(t, (4, 5))"),
]
OPNET_CASES += [(cid, "move", dict(in_shape=s, expr=e)) for cid, s, e in _MOVES]
OPNET_CASES += [
    ("upsampling2d", "move", dict(in_shape=(3, 4, 3), expr="t", upsample=(2, 3))),
    ("upsampling2d_bilinear", "move", dict(in_shape=(3, 4, 3), expr="t", upsample=(2, 2), interpolation="bilinear")),
    ("pack_axis1", "pack", dict(shape=(3, 4), n=3, axis=1)),
    ("pack_axis0", "pack", dict(shape=(5,), n=2, axis=0)),
]

# MEAN / REDUCE_MAX / REDUCE_MIN over any axes
OPNET_CASES += [
    ("mean_gap1d", "reduce", dict(in_shape=(9, 5), op="mean", axes=[1], gap1d=True)),
    ("mean_last_keep", "reduce", dict(in_shape=(3, 4, 5), op="mean", axes=[-1], keepdims=True)),
    ("mean_hwc", "reduce", dict(in_shape=(3, 4, 5), op="mean", axes=[1, 2, 3], range=(-1.0, 4.0))),
    ("mean_h_c", "reduce", dict(in_shape=(5, 3, 7), op="mean", axes=[1, 3])),
    ("reduce_max_w", "reduce", dict(in_shape=(4, 5, 3), op="max", axes=[2])),
    ("reduce_max_hw_keep", "reduce", dict(in_shape=(4, 5, 3), op="max", axes=[1, 2], keepdims=True)),
    ("reduce_min_c", "reduce", dict(in_shape=(3, 4, 5), op="min", axes=[-1])),
    ("conv1d_dil2_same_s2b1d", "conv1d", dict(in_shape=(20, 3), filters=4, kernel=3, dilation=2, unknown_batch=True)),
    ("conv1d_dil3_valid_s2b1d", "conv1d", dict(in_shape=(19, 2), filters=5, kernel=3, dilation=3, padding="valid",
                                               unknown_batch=True)),
    ("conv1d_dil2_causal_relu_s2b1d", "conv1d", dict(in_shape=(17, 3), filters=3, kernel=4, dilation=2,
                                                     padding="causal", act="relu", unknown_batch=True)),
    ("conv1d_dil4_same_batch1", "conv1d", dict(in_shape=(21, 2), filters=3, kernel=3, dilation=4)),
    ("bmm_const_b_batched", "bmm", dict(in_shape=(2, 5, 4), const_b=(2, 4, 3))),
    ("bmm_const_b_bcast_4d", "bmm", dict(in_shape=(2, 3, 5, 4), const_b=(3, 4, 6))),
    ("bmm_const_b_adj", "bmm", dict(in_shape=(3, 5, 4), const_b=(3, 7, 4), adj_b=True)),
    ("bmm_const_a", "bmm", dict(in_shape=(5, 4), const_a=(1, 3, 5))),
    ("bmm_const_a_adj", "bmm", dict(in_shape=(5, 4), const_a=(1, 5, 3), adj_a=True)),
    ("bmm_x_xt", "bmm", dict(in_shape=(6, 4))),
    ("sum_w", "reduce", dict(in_shape=(3, 4, 5), op="sum", axes=[2])),
    ("sum_h_c_keep", "reduce", dict(in_shape=(3, 4, 5), op="sum", axes=[1, 3], keepdims=True)),
    ("sum_pos_zp_min", "reduce", dict(in_shape=(6, 5), op="sum", axes=[1], range=(0.0, 4.0))),
    ("sum_all", "reduce", dict(in_shape=(7, 3, 2), op="sum", axes=[0, 1, 2], range=(-5.0, 1.0))),
    ("sum_last_1d", "reduce", dict(in_shape=(9,), op="sum", axes=[-1], range=(-1.0, 1.0))),
]

# inputs calibrated to different ranges: the converter requantizes (int8 QUANTIZE) so the
# concatenated inputs share the output's scale
OPNET_CASES.append(("concat_requant", "concat", dict(shapes=((3, 3, 2), (3, 3, 3)), axis=-1, ranges=((-1.0, 1.0), (-6.0, 10.0)))))
