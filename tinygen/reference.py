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
    else a list, one per graph output.

    The interpreter runs in a child process (:class:`_Worker`, started once and reused): TFLite
    aborts the whole process on some models (a failed TFLITE_CHECK), which must end in a one-line
    error, not in a silent exit of tinygen."""
    return _worker().call(bytes(model_bytes), inputs)


def run_here(model_bytes: bytes, inputs):
    """:func:`run` in this process (the child's side)."""
    it = interpreter(model_bytes)
    dins, douts = it.get_input_details(), it.get_output_details()
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


# ---- the reference in a child process ---------------------------------------------------------

_KERNEL_OPS = {"softmax": "SOFTMAX", "conv": "CONV_2D", "depthwise_conv": "DEPTHWISE_CONV_2D",
               "fully_connected": "FULLY_CONNECTED", "pooling": "AVERAGE_POOL_2D/MAX_POOL_2D", "add": "ADD",
               "mul": "MUL", "reduce": "MEAN", "activations": "an activation (LOGISTIC, RELU...)",
               "quantize": "QUANTIZE", "dequantize": "DEQUANTIZE", "pad": "PAD", "concatenation": "CONCATENATION"}


def _crash_message(code: int, stderr: str) -> str:
    """One line for a reference interpreter that died: the failed check and the op it names.

    >>> _crash_message(-6, "x\\ntensorflow/lite/kernels/internal/quantization_util.cc:117 "
    ...                "q_fixed <= (1LL << 31) was not true.\\nFatal Python error: Aborted")
    'TFLite reference interpreter aborted (signal 6) at tensorflow/lite/kernels/internal/quantization_util.cc:117 q_fixed <= (1LL << 31) was not true.'
    """
    import re

    what = f"signal {-code}" if code < 0 else f"exit code {code}"
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    checks = [ln for ln in lines if re.search(r"\.(cc|h):\d+", ln)]
    msg = f"TFLite reference interpreter aborted ({what})"
    if checks:
        msg += f" at {checks[-1][:300]}"
        m = re.search(r"kernels/(?:internal/(?:reference/)?)?(?:integer_ops/)?(\w+?)(?:\.cc|\.h)", checks[-1])
        if m and m.group(1) in _KERNEL_OPS:
            msg += f" (op {_KERNEL_OPS[m.group(1)]})"
    else:
        msg += " without a diagnostic (a failed TFLITE_CHECK in one of its kernels)"
    return msg


class _Worker:
    """A child Python that runs :func:`run_here` on request (pickles over its stdin/stdout)."""

    def __init__(self):
        import subprocess
        import sys
        import tempfile
        from pathlib import Path

        self.err = tempfile.TemporaryFile()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.proc = subprocess.Popen([sys.executable, "-m", "tinygen.reference"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.err, env=env)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, model_bytes: bytes, inputs):
        import pickle
        import struct

        try:
            data = pickle.dumps((model_bytes, inputs), protocol=4)
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
            head = self.proc.stdout.read(8)
            if len(head) != 8:
                raise EOFError
            (n,) = struct.unpack("<Q", head)
            status, payload = pickle.loads(self.proc.stdout.read(n))
        except (EOFError, BrokenPipeError, OSError, pickle.UnpicklingError):
            code = self.proc.wait()
            self.err.seek(0)
            text = self.err.read().decode(errors="replace")
            _reset()
            raise ModelError(f"{_crash_message(code, text)}; tinygen needs the reference outputs for the "
                             "self-test vectors: check the model's quantization (an untrained or mis-calibrated "
                             "model can have scales TFLite refuses) and re-export it") from None
        if status == "ok":
            return payload
        cls = {"InputError": InputError, "ModelError": ModelError}.get(payload[0], ModelError)
        raise cls(payload[1])


_WORKER: _Worker | None = None


def _worker() -> _Worker:
    global _WORKER
    if _WORKER is None or not _WORKER.alive():
        _WORKER = _Worker()
    return _WORKER


def _reset() -> None:
    global _WORKER
    _WORKER = None


def _serve() -> None:
    """Child side: read (model, inputs) requests until stdin closes."""
    import pickle
    import struct
    import sys

    rd, wr = sys.stdin.buffer, sys.stdout.buffer
    while True:
        head = rd.read(8)
        if len(head) != 8:
            return
        (n,) = struct.unpack("<Q", head)
        model_bytes, inputs = pickle.loads(rd.read(n))
        try:
            res = ("ok", run_here(model_bytes, inputs))
        except (InputError, ModelError) as e:
            res = ("err", (type(e).__name__, str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as a model error
            res = ("err", ("ModelError", f"the TFLite reference interpreter failed: {type(e).__name__}: {e}"))
        data = pickle.dumps(res, protocol=4)
        wr.write(struct.pack("<Q", len(data)) + data)
        wr.flush()


if __name__ == "__main__":
    _serve()
