"""Training data for ``tinygen optimize``: ``data.npz`` loading and validation, synthetic inputs.

``data.npz`` holds four arrays: ``x_train`` and ``x_val`` (float, shape ``(N, *model input
shape)``, already scaled the way the model expects) and ``y_train`` and ``y_val`` (integer
class indices ``0..classes-1``, shape ``(N,)``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygen.errors import InputError

KEYS = ("x_train", "y_train", "x_val", "y_val")


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray | None  # None for synthetic data (soft targets only)
    x_val: np.ndarray
    y_val: np.ndarray | None
    synthetic: bool = False


def load_data(path: str | Path, input_shape: tuple | None = None, n_classes: int | None = None) -> Data:
    """Read and validate ``data.npz``; with ``input_shape`` (without batch) and ``n_classes``
    also check it against the model. Raises :class:`InputError` naming the key at fault."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such data file; give a .npz with {', '.join(KEYS)} (see docs/optimize.md)")
    import zipfile

    from tinygen.npyread import read_samples

    try:
        with zipfile.ZipFile(path) as z:
            names = sorted(n[:-4] for n in z.namelist() if n.endswith(".npy"))
    except (zipfile.BadZipFile, OSError) as e:
        raise InputError(f"{path}: not a readable .npz file ({e}); save it with numpy.savez") from None
    missing = [k for k in KEYS if k not in names]
    if missing:
        raise InputError(
            f"{path}: missing key(s) {', '.join(missing)}; data.npz needs {', '.join(KEYS)} "
            f"(found {', '.join(names) or 'nothing'})"
        )
    # bounded reads: a compressed file expanding beyond npyread.MAX_BYTES per array is refused
    data = Data(*(read_samples(path, (k,))[1] for k in KEYS))
    check_data(data, input_shape, n_classes, source=str(path))
    return data


def check_data(data: Data, input_shape: tuple | None = None, n_classes: int | None = None, source: str = "data") -> None:
    for split in ("train", "val"):
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        xk, yk = f"x_{split}", f"y_{split}"
        if x.dtype.kind not in "fiu":
            raise InputError(f"{source}: {xk} has dtype {x.dtype}; it must be a float (or integer) array")
        if x.ndim < 2 or len(x) == 0:
            raise InputError(f"{source}: {xk} has shape {x.shape}; expected (N, ...) with N > 0 samples")
        if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
            raise InputError(
                f"{source}: {xk} has sample shape {tuple(x.shape[1:])} but the model input is "
                f"{tuple(input_shape)}; reshape the data to (N, {', '.join(map(str, input_shape))})"
            )
        if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
            bad = int(np.sum(~np.isfinite(x)))
            raise InputError(f"{source}: {xk} contains {bad} NaN/inf value(s); clean the data first")
        if y is None:
            raise InputError(f"{source}: {yk} (labels) missing; give integer class labels or use --synthetic")
        if y.dtype.kind not in "iu":
            raise InputError(
                f"{source}: {yk} has dtype {y.dtype}; labels must be integer class indices "
                "(not one-hot, not float): use y.argmax(-1).astype('int64') for one-hot labels"
            )
        if y.shape != (len(x),):
            raise InputError(f"{source}: {yk} has shape {y.shape}; expected ({len(x)},) to match {xk}")
        if y.min() < 0 or (n_classes is not None and y.max() >= n_classes):
            hi = f"{n_classes - 1}" if n_classes is not None else "classes-1"
            raise InputError(
                f"{source}: {yk} has labels in [{y.min()}, {y.max()}]; the model has "
                f"{n_classes if n_classes is not None else '?'} classes, labels must be in [0, {hi}]"
            )
    data.x_train = data.x_train.astype(np.float32)
    data.x_val = data.x_val.astype(np.float32)


def synthetic_data(input_shape: tuple, n_train: int, n_val: int, seed: int,
                   value_range: tuple[float, float] = (0.0, 1.0)) -> Data:
    """Gaussian inputs centred in ``value_range`` (std a quarter of it, clipped to it);
    labels come from the teacher (soft targets), so ``y`` is None here."""
    rng = np.random.default_rng(seed)
    lo, hi = value_range
    mean, std = (lo + hi) / 2, (hi - lo) / 4

    def draw(n):
        return np.clip(rng.normal(mean, std, (n, *input_shape)), lo, hi).astype(np.float32)

    return Data(draw(n_train), None, draw(n_val), None, synthetic=True)
