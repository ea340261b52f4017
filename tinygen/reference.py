"""The golden reference: TFLite's reference interpreter (BUILTIN_REF kernels).

The default resolver's optimized kernels differ from the reference by 1 LSB on
some ops; BUILTIN_REF is what tinygen's generated code must equal byte for byte.
"""

from __future__ import annotations

import os

import numpy as np

from .errors import InputError, ModelError


def _tf():
    """Import TensorFlow with its C++ start-up chatter (absl, oneDNN, CUDA probes) kept off the terminal."""
    import sys

    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tf


def interpreter(model_bytes: bytes):
    tf = _tf()
    try:
        it = tf.lite.Interpreter(model_content=bytes(model_bytes),
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
        it.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ModelError(f"the TFLite reference interpreter rejects the model: {str(e).splitlines()[0]}") from None
    return it


def run(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    """Run each row of ``inputs`` (shape [N, *input_shape]) through the reference; returns [N, *output_shape]."""
    it = interpreter(model_bytes)
    din, dout = it.get_input_details()[0], it.get_output_details()[0]
    shape = tuple(int(d) for d in din["shape"])
    if inputs.shape[1:] != shape or inputs.dtype != din["dtype"]:
        raise InputError(f"inputs are {inputs.dtype}{list(inputs.shape[1:])}, the model wants {np.dtype(din['dtype'])}{list(shape)}")
    outs = []
    for x in inputs:
        it.set_tensor(din["index"], x)
        it.invoke()
        outs.append(it.get_tensor(dout["index"]).copy())
    return np.stack(outs)


def random_inputs(model_bytes: bytes, n: int, seed: int = 0) -> np.ndarray:
    """Deterministic random inputs covering the input type's full range."""
    from .flatbuf import read_model
    from .ir import DTYPES

    fb = read_model(model_bytes)
    sg = fb.subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    rng = np.random.default_rng(seed)
    shape = (n, *t.shape)
    if DTYPES[t.type] == "int8":
        return rng.integers(-128, 128, size=shape, dtype=np.int8)
    if DTYPES[t.type] == "float32":
        return rng.standard_normal(size=shape).astype(np.float32)
    raise InputError(f"cannot make random inputs of type {DTYPES[t.type]}")
