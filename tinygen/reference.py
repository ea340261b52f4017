"""The golden reference: TFLite's reference interpreter (BUILTIN_REF kernels).

The default resolver's optimized kernels differ from the reference by 1 LSB on
some ops; BUILTIN_REF is what tinygen's generated code must equal byte for byte.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def interpreter(model_bytes: bytes, preserve_all_tensors: bool = False):
    tf = _tf()
    try:
        it = tf.lite.Interpreter(model_content=bytes(model_bytes),
                                 experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF,
                                 experimental_preserve_all_tensors=preserve_all_tensors)
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


def run_tensors(model_bytes: bytes, inputs, tensor_ids: list[int]) -> list[dict[int, np.ndarray]]:
    """Every listed tensor (TFLite tensor index) of the reference run, per sample: the intermediate
    results the generated code must equal too (in the child process, like :func:`run`)."""
    return _worker().call(bytes(model_bytes), inputs, tuple(int(t) for t in tensor_ids))


def run_tensors_here(model_bytes: bytes, inputs, tensor_ids) -> list[dict[int, np.ndarray]]:
    it = interpreter(model_bytes, preserve_all_tensors=True)
    dins = it.get_input_details()
    xs = _as_list(inputs)
    res = []
    for n in range(len(xs[0])):
        it.reset_all_variables()  # every sample from the initial state (stateful=False: what the firmware does)
        for x, d in zip(xs, dins):
            it.set_tensor(d["index"], x[n])
        it.invoke()
        res.append({t: it.get_tensor(t).copy() for t in tensor_ids})
    return res


def run_here(model_bytes: bytes, inputs):
    """:func:`run` in this process (the child's side)."""
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
        it.reset_all_variables()  # every sample from the initial state (stateful=False: what the firmware does)
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

    def call(self, model_bytes: bytes, inputs, tensor_ids=None):
        import pickle
        import struct

        try:
            data = pickle.dumps((model_bytes, inputs, tensor_ids), protocol=4)
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
        model_bytes, inputs, tensor_ids = pickle.loads(rd.read(n))
        try:
            res = ("ok", run_here(model_bytes, inputs) if tensor_ids is None
                   else run_tensors_here(model_bytes, inputs, tensor_ids))
        except (InputError, ModelError) as e:
            res = ("err", (type(e).__name__, str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the parent as a model error
            res = ("err", ("ModelError", f"the TFLite reference interpreter failed: {type(e).__name__}: {e}"))
        data = pickle.dumps(res, protocol=4)
        wr.write(struct.pack("<Q", len(data)) + data)
        wr.flush()


if __name__ == "__main__":
    _serve()


# ---- self-test vectors ------------------------------------------------------------------------

SELFTEST_VECTORS = 4
# Candidate inputs: uniform over a window of the int8 range around the input's zero point, the
# window a fraction ("span") of the full range; a few seeds each. Full-range noise drives most
# classifiers to a saturated one-hot output, which proves little: narrower windows usually don't.
SPANS = (1.0, 0.5, 0.25, 0.125, 0.0625, 0.03125)
SEEDS_PER_SPAN = 4


@dataclass
class SelftestVectors:
    inputs: np.ndarray      # [n, input bytes] int8, every graph input's bytes concatenated
    outputs: np.ndarray     # [n, output bytes] int8: the reference interpreter's outputs
    manifest: dict          # what the manifest records (recipe, CRCs, saturation per vector)


def _candidate(details: list[dict], span: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    xs = []
    for d in details:
        shape = (1, *(int(v) for v in d["shape"]))
        if d["dtype"] == np.int8:
            zp = int(d["quantization"][1])
            half = max(1, int(round(127.5 * span)))
            center = min(max(zp, -128 + half), 127 - half)
            xs.append(rng.integers(center - half, center + half + 1, size=shape).astype(np.int8))
        elif d["dtype"] == np.float32:
            xs.append((rng.standard_normal(size=shape) * 4.0 * span).astype(np.float32))
        else:
            raise InputError(f"cannot make self-test inputs of type {np.dtype(d['dtype'])}")
    return xs


def _unsaturated(y: np.ndarray, dtypes: list) -> int:
    """Output elements strictly inside the int8 range (every element of a non-int8 output counts)."""
    n, k = 0, 0
    for dt, size in dtypes:
        part = y[k:k + size]
        n += int(np.count_nonzero((part > -128) & (part < 127))) if dt == np.int8 else size // np.dtype(dt).itemsize
        k += size
    return n


def io_details(model_bytes: bytes) -> tuple[list[dict], list[dict]]:
    """Input and output details (shape, dtype, quantization) as the interpreter's get_*_details give
    them, read from the flatbuffer, so that no TFLite interpreter runs in this process."""
    from .flatbuf import read_model
    from .ir import DTYPES, NP_DTYPES

    sg = read_model(model_bytes).subgraphs[0]

    def det(tid: int) -> dict:
        t = sg.tensors[tid]
        dt = DTYPES.get(t.type, "?")
        if dt not in NP_DTYPES:
            raise InputError(f"graph edge tensor {tid} has type {dt}; tinygen's models have int8 or float32 edges")
        q = t.quant
        return {"shape": np.array(t.shape, np.int32), "dtype": NP_DTYPES[dt],
                "quantization": (float(q.scale[0]) if len(q.scale) else 0.0, int(q.zero_point[0]) if len(q.zero_point) else 0)}

    return [det(t) for t in sg.inputs], [det(t) for t in sg.outputs]


def selftest_vectors(model_bytes: bytes, n: int = SELFTEST_VECTORS, seed: int = 0) -> SelftestVectors:
    """``n`` inputs whose reference outputs are as little saturated as the model allows.

    Candidates (every span x SEEDS_PER_SPAN seeds, deterministic) run through the reference;
    ranked by the number of output values not at -128/127 (ties: the wider span first), the
    best ``n`` with pairwise different outputs are kept. The manifest entry records each one's
    recipe (span, seed), CRC-32 of input and output, and its saturated output count; ``checksum``
    is the CRC-32 of all expected outputs concatenated, what the device prints.
    """
    import zlib

    dins, douts = io_details(model_bytes)  # from the flatbuffer: no interpreter in this process
    cands = [(span, seed + 1000 * si + k) for si, span in enumerate(SPANS) for k in range(SEEDS_PER_SPAN)]
    xs = [_candidate(dins, span, s) for span, s in cands]
    stacked = [np.concatenate([x[i] for x in xs]) for i in range(len(dins))]
    ys = run(model_bytes, stacked if len(dins) > 1 else stacked[0])
    X, Y = pack(stacked), pack(ys)
    odt = [(np.dtype(d["dtype"]), int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize) for d in douts]
    score = [_unsaturated(Y[i], odt) for i in range(len(cands))]
    order = sorted(range(len(cands)), key=lambda i: -score[i])  # stable: wider span, then seed order
    chosen: list[int] = []
    for i in order:
        if len(chosen) < n and all(Y[i].tobytes() != Y[j].tobytes() for j in chosen):
            chosen.append(i)
    for i in order:  # fewer distinct outputs than n: fill with distinct inputs
        if len(chosen) < n and i not in chosen:
            chosen.append(i)
    inputs, outputs = X[chosen], Y[chosen]
    total = Y.shape[1]
    man = {
        "vectors": len(chosen),
        "checksum": f"{zlib.crc32(outputs.tobytes()):08x}",
        "chosen_by": (f"least saturated reference outputs of {len(cands)} candidates: uniform int8 inputs over "
                      "span x 256 values around the input zero point, seeds per span"),
        "items": [{"span": cands[i][0], "seed": cands[i][1], "input_crc32": f"{zlib.crc32(X[i].tobytes()):08x}",
                   "output_crc32": f"{zlib.crc32(Y[i].tobytes()):08x}",
                   "saturated": total - score[i] if all(dt == np.int8 for dt, _ in odt) else 0,
                   "output_values": total}
                  for i in chosen],
    }
    return SelftestVectors(inputs, outputs, man)


def selftest_input(model_bytes: bytes, span: float, seed: int) -> np.ndarray:
    """The packed input [input bytes] of one manifest "selftest" item, from its recipe (span, seed)."""
    cand = _candidate(io_details(model_bytes)[0], span, seed)
    return pack(cand)[0]
