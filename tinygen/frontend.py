"""Frontend: read a model file and return full-int8 TFLite bytes.

Accepts an int8 ``.tflite`` as is, or a Keras model (``.h5`` from tf.keras 2
via tf_keras, ``.keras`` via Keras 3, or a SavedModel folder) which is
quantized to full int8 (TFLite int8 spec: per-channel weights, per-tensor
activations, int8 input and output) with a representative dataset.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from .errors import InputError, ModelError

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def kind_of(path: Path) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").exists():
            return "savedmodel"
        raise ModelError(f"{path}: a folder without saved_model.pb is not a SavedModel")
    if not path.exists():
        raise ModelError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            head = f.read(8)
    except OSError as e:
        raise ModelError(f"{path}: cannot read the model file ({e.strerror or e})") from None
    if not head:
        raise ModelError(f"{path}: the file is empty (0 bytes); give a .tflite, .h5, .keras or SavedModel folder")
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    if head == HDF5_MAGIC:
        return "h5"
    if head[:2] == b"PK" and path.suffix == ".keras":
        return "keras"
    suffix = path.suffix.lower()
    if suffix in (".tflite", ".h5", ".hdf5", ".keras"):
        raise ModelError(f"{path}: the contents are not a valid {suffix} file (corrupt or truncated? first bytes {head!r})")
    raise ModelError(f"{path}: unknown model format; give a .tflite, .h5, .keras or SavedModel folder")


CALIB_SAMPLES = 256  # calibration samples used (and read) at most


def load_calibration(path: str | None, input_shape: tuple, n_synthetic: int = 64, log=print,
                     synthetic_range: tuple[float, float] | None = None) -> np.ndarray:
    """Calibration inputs: ``x`` (or ``x_train``, ``x_calib``) from an .npz, an .npy array, or loud
    synthetic data (standard normal, or uniform in ``synthetic_range``). Only the first
    :data:`CALIB_SAMPLES` samples are read (see :mod:`tinygen.npyread`)."""
    from .npyread import read_samples

    if path is None:
        rng = np.random.default_rng(0)
        shape = (n_synthetic, *input_shape[1:])
        if synthetic_range is not None:
            lo, hi = (float(v) for v in synthetic_range)
            if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
                raise InputError(f"--synthetic-range {lo:g} {hi:g}: give two finite numbers LO < HI")
            log(f"WARNING: no --calib data given: quantizing with SYNTHETIC calibration data (uniform in "
                f"[{lo:g}, {hi:g}], --synthetic-range).\n"
                "         Give real samples for the best int8 accuracy: --calib data.npz (array 'x' or 'x_train').")
            return rng.uniform(lo, hi, shape).astype(np.float32)
        log("WARNING: no --calib data given: quantizing with SYNTHETIC calibration data (standard normal).\n"
            "         Activation ranges may not match real inputs and int8 accuracy can suffer.\n"
            "         Give real samples: tinygen build model.h5 --calib data.npz (array 'x' or 'x_train'), or\n"
            "         the range of the model's inputs: --synthetic-range LO HI.")
        return rng.standard_normal(shape).astype(np.float32)
    key, x = read_samples(path, ("x", "x_train", "x_calib"), max_samples=CALIB_SAMPLES)
    what = f"{path}: '{key}'" if key else str(path)
    if x.shape[1:] != tuple(input_shape[1:]):
        raise InputError(f"{what} samples are {list(x.shape[1:])}, the model input is {list(input_shape[1:])}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contains NaN or inf (or values beyond float32)")
    return x


def load_keras(path: Path, kind: str):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        if kind == "h5":
            import tf_keras

            return tf_keras.models.load_model(str(path), compile=False)
        if kind == "keras":
            import keras

            return keras.models.load_model(str(path), compile=False)
    except Exception as e:  # h5py/keras raise many types for damaged files
        raise ModelError(f"{path}: cannot load the Keras model ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    return None


def quantize(path: Path, kind: str, calib: str | None, log=print, synthetic_range=None) -> bytes:
    """Full-int8 post-training quantization with the TFLite converter."""
    from .reference import _tf

    tf = _tf()

    if kind == "savedmodel":
        conv = tf.lite.TFLiteConverter.from_saved_model(str(path))
        model = None
        try:
            input_shape = tuple(tf.saved_model.load(str(path)).signatures["serving_default"].inputs[0].shape)
        except Exception:
            raise ModelError(f"{path}: cannot read the SavedModel's serving signature") from None
    else:
        model = load_keras(path, kind)
        input_shape = tuple(model.inputs[0].shape)
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise ModelError(f"{path}: {len(model.inputs)} inputs / {len(model.outputs)} outputs; tinygen needs one of each")
        if kind == "keras":
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
        else:
            conv = tf.lite.TFLiteConverter.from_keras_model(model)
    if any(d is None for d in input_shape[1:]):
        raise ModelError(f"{path}: input shape {list(input_shape)} is not fixed; rebuild the model with a fixed input size")
    x = load_calibration(calib, input_shape, log=log, synthetic_range=synthetic_range)

    def rep():
        for i in range(len(x)):
            yield [x[i : i + 1]]

    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = rep
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    try:
        from .quiet import native_stderr

        with native_stderr():  # the converter's C++ chatter, unless --verbose
            return conv.convert()
    except Exception as e:
        raise ModelError(f"{path}: the TFLite converter could not quantize the model to int8: {str(e).splitlines()[0][:300]}") from None


def load(path: str | os.PathLike, calib: str | None = None, log=print, synthetic_range=None) -> tuple[bytes, str]:
    """Return (full-int8 tflite bytes, model name)."""
    p = Path(path)
    kind = kind_of(p)
    name = p.stem if p.is_file() else p.name
    if kind == "tflite":
        if calib is not None:
            log(f"warning: --calib {calib} is ignored: {p} is already a quantized .tflite (calibration data "
                "is for quantizing a Keras model)")
        return p.read_bytes(), name
    log(f"quantizing {p} to full int8 with the TFLite converter ...")
    return quantize(p, kind, calib, log=log, synthetic_range=synthetic_range), name


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
