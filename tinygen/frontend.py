"""Frontend: read a model file and return full-int8 TFLite bytes.

Accepts an int8 ``.tflite`` as is, or a Keras model (``.h5`` from tf.keras 2
via tf_keras, ``.keras`` via Keras 3, or a SavedModel folder) which is
quantized to full int8 (TFLite int8 spec: per-channel weights, per-tensor
activations, int8 input and output) with a representative dataset.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class InputRange:
    """The input range a Keras model declares by its first layer (Rescaling or Normalization)."""

    lo: float
    hi: float
    source: str  # for the log: which layer said so
    pixels: bool = False  # a Rescaling layer: the model takes raw pixel values (images feed as 0..255)
    mean: np.ndarray | None = None  # Normalization: per-channel normal(mean, std) instead of uniform
    std: np.ndarray | None = None


def declared_input_range(model) -> InputRange | None:
    """The input range of ``model`` from a Rescaling / Normalization layer right after its input, or None.

    Rescaling(scale, offset) maps the input onto [0, 1] (offset >= 0) or [-1, 1] (offset < 0), so the
    input range is that interval mapped back; Normalization(mean, variance): mean +- 3 std.
    """
    for layer in getattr(model, "layers", [])[:3]:
        kind = type(layer).__name__
        if kind == "InputLayer":
            continue
        if kind == "Rescaling":
            scale = float(np.mean(np.asarray(layer.scale, np.float64)))
            offset = float(np.mean(np.asarray(layer.offset, np.float64)))
            if not np.isfinite(scale) or scale == 0:
                return None
            targets = (-1.0, 1.0) if offset < 0 else (0.0, 1.0)
            lo, hi = sorted((t - offset) / scale for t in targets)
            return InputRange(lo, hi, f"its Rescaling layer '{layer.name}' (scale {scale:g}, offset {offset:g})",
                              pixels=True)
        if kind == "Normalization" and not getattr(layer, "invert", False):
            try:
                mean = np.asarray(layer.mean, np.float64).reshape(-1)
                std = np.sqrt(np.asarray(layer.variance, np.float64).reshape(-1))
            except (AttributeError, TypeError, ValueError):
                return None
            if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
                return None
            return InputRange(float(np.min(mean - 3 * std)), float(np.max(mean + 3 * std)),
                              f"its Normalization layer '{layer.name}' (mean {np.round(mean, 4).tolist()}, "
                              f"std {np.round(std, 4).tolist()})", mean=mean, std=std)
        return None
    return None


def _check_range(flag: str, r) -> tuple[float, float]:
    lo, hi = (float(v) for v in r)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise InputError(f"{flag} {lo:g} {hi:g}: give two finite numbers LO < HI")
    return lo, hi


def load_calibration(path: str | None, input_shape: tuple, n_synthetic: int = 64, log=print,
                     synthetic_range: tuple[float, float] | None = None, calib_range=None,
                     declared: InputRange | None = None) -> np.ndarray:
    """Calibration inputs: ``x`` (or ``x_train``, ``x_calib``) from an .npz, an .npy array, a folder of
    images (:mod:`tinygen.imgread`: resized, pixels mapped onto ``calib_range``, or fed raw when the
    model starts with a Rescaling layer), or loud synthetic data (uniform in ``synthetic_range``, else
    in the model's ``declared`` input range, else standard normal). Only the first
    :data:`CALIB_SAMPLES` samples are read (see :mod:`tinygen.npyread`). A flag that cannot apply to
    the data given is reported (warning), never dropped silently."""
    from .npyread import read_samples

    if calib_range is not None:
        calib_range = _check_range("--calib-range", calib_range)
    if synthetic_range is not None:
        synthetic_range = _check_range("--synthetic-range", synthetic_range)
    if path is None:
        if calib_range is not None:
            log(f"warning: --calib-range {calib_range[0]:g} {calib_range[1]:g} has no effect without --calib FOLDER "
                "(it scales the pixels of a folder of images); for synthetic data use --synthetic-range")
        return _synthetic(input_shape, n_synthetic, log, synthetic_range, declared)
    if synthetic_range is not None:
        log(f"warning: --synthetic-range {synthetic_range[0]:g} {synthetic_range[1]:g} has no effect: "
            f"calibrating on --calib {path}")
    if Path(path).is_dir():
        from .imgread import read_folder

        if calib_range is None and (declared is None or not declared.pixels):
            raise InputError(f"--calib {path}: a folder of images needs --calib-range LO HI (the input range the "
                             "model expects, e.g. 0 1 or -1 1; pixels 0..255 are mapped onto it), unless the model "
                             "starts with a Rescaling layer")
        rng_ = calib_range if calib_range is not None else (0.0, 255.0)
        how = (f"--calib-range {rng_[0]:g} {rng_[1]:g}" if calib_range is not None
               else f"raw pixels 0..255, scaled by {declared.source}")
        x = read_folder(Path(path), tuple(input_shape[1:]), rng_, CALIB_SAMPLES)
        log(f"calibrating on {len(x)} image(s) of {path} ({how})")
        return x
    if calib_range is not None:
        log(f"warning: --calib-range {calib_range[0]:g} {calib_range[1]:g} has no effect on {path} (it scales the "
            "pixels of a folder of images; .npz/.npy samples are used as they are)")
    key, x = read_samples(path, ("x", "x_train", "x_calib"), max_samples=CALIB_SAMPLES)
    what = f"{path}: '{key}'" if key else str(path)
    if x.shape[1:] != tuple(input_shape[1:]):
        raise InputError(f"{what} samples are {list(x.shape[1:])}, the model input is {list(input_shape[1:])}")
    x = x.astype(np.float32)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{what} contains NaN or inf (or values beyond float32)")
    return x


def _synthetic(input_shape, n, log, synthetic_range, declared: InputRange | None) -> np.ndarray:
    rng = np.random.default_rng(0)
    shape = (n, *input_shape[1:])
    advice = ("         Give real samples for the best int8 accuracy: --calib data.npz (array 'x' or 'x_train'), "
              "or --calib FOLDER of images.")
    if synthetic_range is not None:
        lo, hi = synthetic_range
        log(f"WARNING: no --calib data given: quantizing with SYNTHETIC calibration data (uniform in "
            f"[{lo:g}, {hi:g}], --synthetic-range).\n" + advice)
        return rng.uniform(lo, hi, shape).astype(np.float32)
    if declared is not None and declared.mean is not None:
        log(f"WARNING: no --calib data given: quantizing with SYNTHETIC calibration data drawn from the input "
            f"range the model declares by {declared.source}: normal per channel, about [{declared.lo:g}, "
            f"{declared.hi:g}].\n" + advice)
        mean = np.broadcast_to(declared.mean, shape[-1:]) if declared.mean.size in (1, shape[-1]) else declared.mean.mean()
        std = np.broadcast_to(declared.std, shape[-1:]) if declared.std.size in (1, shape[-1]) else declared.std.mean()
        return (mean + std * rng.standard_normal(shape)).astype(np.float32)
    if declared is not None:
        log(f"WARNING: no --calib data given: quantizing with SYNTHETIC calibration data, uniform in "
            f"[{declared.lo:g}, {declared.hi:g}]: the input range the model declares by {declared.source}.\n" + advice)
        return rng.uniform(declared.lo, declared.hi, shape).astype(np.float32)
    log("WARNING: no --calib data given: quantizing with SYNTHETIC calibration data, ASSUMING the input is "
        "standard normal (mean 0, std 1, about [-3, 3]).\n"
        "         Activation ranges may not match real inputs and int8 accuracy can suffer.\n"
        "         Give real samples: tinygen build model.h5 --calib data.npz (array 'x' or 'x_train') or a folder\n"
        "         of images (with --calib-range LO HI), or the range of the model's inputs: --synthetic-range LO HI.")
    return rng.standard_normal(shape).astype(np.float32)


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


def quantize(path: Path, kind: str, calib: str | None, log=print, synthetic_range=None, calib_range=None) -> bytes:
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
    x = load_calibration(calib, input_shape, log=log, synthetic_range=synthetic_range, calib_range=calib_range,
                         declared=declared_input_range(model) if model is not None else None)

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


def load(path: str | os.PathLike, calib: str | None = None, log=print, synthetic_range=None,
         calib_range=None) -> tuple[bytes, str]:
    """Return (full-int8 tflite bytes, model name)."""
    p = Path(path)
    kind = kind_of(p)
    name = p.stem if p.is_file() else p.name
    if kind == "tflite":
        for flag, v in (("--calib", calib), ("--calib-range", calib_range), ("--synthetic-range", synthetic_range)):
            if v is not None:
                shown = v if isinstance(v, str) else " ".join(f"{float(u):g}" for u in v)
                log(f"warning: {flag} {shown} is ignored: {p} is already a quantized .tflite (calibration "
                    "is for quantizing a Keras model)")
        return p.read_bytes(), name
    log(f"quantizing {p} to full int8 with the TFLite converter ...")
    return quantize(p, kind, calib, log=log, synthetic_range=synthetic_range, calib_range=calib_range), name


def stderr(msg: str) -> None:
    print(msg, file=sys.stderr)
