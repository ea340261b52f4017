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


def _as_list(x) -> list[np.ndarray]:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def run(model_bytes: bytes, inputs):
    """Run N samples through the reference. ``inputs``: an array [N, *shape] (one-input models) or a
    list of such arrays, one per graph input. Returns an array [N, *shape] for one-output models,
    else a list, one per graph output."""
    it = interpreter(model_bytes)
    try:
        dins, douts = it.get_input_details(), it.get_output_details()
    except UnicodeDecodeError as e:  # TFLite's Python API decodes tensor names as UTF-8
        raise ModelError(f"a tensor name is not valid UTF-8 (byte 0x{e.object[e.start]:02x} in "
                         f"{e.object[:60]!r}): the TFLite interpreter cannot read it; rename the tensor and "
                         "re-export the model") from None
    xs = _as_list(inputs)
    if len(xs) != len(dins):
        raise InputError(f"{len(xs)} input arrays given, the model has {len(dins)} inputs")
    for x, d in zip(xs, dins):
        shape = tuple(int(v) for v in d["shape"])
        if x.shape[1:] != shape or x.dtype != d["dtype"]:
            raise InputError(f"inputs are {x.dtype}{list(x.shape[1:])}, the model wants {np.dtype(d['dtype'])}{list(shape)}")
    outs: list[list[np.ndarray]] = [[] for _ in douts]
    for n in range(len(xs[0])):
        for x, d in zip(xs, dins):
            it.set_tensor(d["index"], x[n])
        it.invoke()
        for k, d in enumerate(douts):
            outs[k].append(it.get_tensor(d["index"]).copy())
    res = [np.stack(o) for o in outs]
    return res[0] if len(res) == 1 else res


def pack(arrays) -> np.ndarray:
    """Per-sample concatenation of every tensor's bytes: [N, total bytes] int8 (the host harness format)."""
    xs = _as_list(arrays)
    n = len(xs[0])
    return np.concatenate([np.ascontiguousarray(x).reshape(n, -1).view(np.int8) for x in xs], axis=1)


def random_inputs(model_bytes: bytes, n: int, seed: int = 0) -> np.ndarray:
    """Deterministic random inputs covering the input type's full range (array, or list for several inputs)."""
    from .flatbuf import read_model
    from .ir import DTYPES

    fb = read_model(model_bytes)
    sg = fb.subgraphs[0]
    rng = np.random.default_rng(seed)
    xs = []
    for tid in sg.inputs:
        t = sg.tensors[tid]
        shape = (n, *t.shape)
        if DTYPES[t.type] == "int8":
            xs.append(rng.integers(-128, 128, size=shape, dtype=np.int8))
        elif DTYPES[t.type] == "float32":
            xs.append(rng.standard_normal(size=shape).astype(np.float32))
        else:
            raise InputError(f"cannot make random inputs of type {DTYPES[t.type]}")
    return xs[0] if len(xs) == 1 else xs
