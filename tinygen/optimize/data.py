"""Training data for ``tinygen optimize``: ``data.npz`` loading and validation, the held-out
test split, synthetic inputs.

``data.npz`` holds ``x_train`` and ``x_val`` (float, shape ``(N, *model input shape)``, already
scaled the way the model expects), optionally ``x_test``, and their labels ``y_train``,
``y_val`` (``y_test``): integer class indices ``0..classes-1`` of shape ``(N,)``, 0/1 anomaly
labels for an autoencoder, or float targets of the output's shape for a regression model.
Without any ``y_*`` key the data is *unlabeled*: distillation only, judged by fidelity; a
``--calib``-style file with a single array ``x`` is split 80/10/10 into train/val/test.
Without ``x_test`` half of the validation split is held out as the test split: the
validation split chooses (sensitivities, steps, PTQ or QAT), the test split only reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinygen.errors import InputError

KEYS = ("x_train", "y_train", "x_val", "y_val")
SPLITS = ("train", "val", "test")


@dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray | None  # None for synthetic or unlabeled data (soft targets only)
    x_val: np.ndarray
    y_val: np.ndarray | None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    synthetic: bool = False
    test_source: str = "x_test"  # where the test split came from (for the report)

    @property
    def labeled(self) -> bool:
        return self.y_train is not None and not self.synthetic


def load_data(path: str | Path, input_shape: tuple | None = None, n_classes: int | None = None,
              output_shape: tuple | None = None, seed: int = 0) -> Data:
    """Read and validate ``data.npz``; with ``input_shape`` / ``output_shape`` (without batch)
    and ``n_classes`` also check it against the model. Raises :class:`InputError` naming the
    key at fault. Splits a test set off the validation data when there is no ``x_test``."""
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
    # bounded reads: a compressed file expanding beyond npyread.MAX_BYTES per array is refused
    arrays = {k: read_samples(path, (k,))[1] for k in names}
    if "x_train" not in arrays and "x" in arrays:  # a --calib file: unlabeled inputs, split 80/10/10
        arrays = _split_calib(arrays["x"], seed, path)
    unlabeled = not any(k.startswith("y_") for k in arrays)
    need = ("x_train", "x_val") if unlabeled else KEYS
    missing = [k for k in need if k not in arrays]
    if "x_test" in arrays and not unlabeled and "y_test" not in arrays:
        missing.append("y_test")
    if missing:
        raise InputError(
            f"{path}: missing key(s) {', '.join(missing)}; data.npz needs {', '.join(need)} "
            f"(found {', '.join(sorted(arrays)) or 'nothing'})"
        )
    data = Data(*(arrays.get(k) for k in KEYS), x_test=arrays.get("x_test"), y_test=arrays.get("y_test"))
    check_data(data, input_shape, n_classes, source=str(path), output_shape=output_shape)
    if data.x_test is None:
        hold_out_test(data, seed)
    return data


def _split_calib(x: np.ndarray, seed: int, path: Path) -> dict:
    if x.ndim < 2 or len(x) < 10:
        raise InputError(f"{path}: 'x' has shape {x.shape}; give at least 10 unlabeled samples (N, ...)")
    perm = np.random.default_rng(seed).permutation(len(x))
    n_val = max(1, len(x) // 10)
    return {"x_train": x[np.sort(perm[2 * n_val:])], "x_val": x[np.sort(perm[:n_val])],
            "x_test": x[np.sort(perm[n_val:2 * n_val])]}


def hold_out_test(data: Data, seed: int) -> None:
    """Move half of the validation split (a seeded permutation) to the test split."""
    n = len(data.x_val)
    if n < 2:
        raise InputError(f"x_val has {n} sample(s): give at least 2 (half is held out as the test split) or x_test")
    perm = np.random.default_rng(seed).permutation(n)
    val, test = np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])
    data.x_test, data.x_val = data.x_val[test], data.x_val[val]
    if data.y_val is not None:
        data.y_test, data.y_val = data.y_val[test], data.y_val[val]
    data.test_source = f"half of x_val ({len(test)} samples, seed {seed})"


def check_data(data: Data, input_shape: tuple | None = None, n_classes: int | None = None, source: str = "data",
               output_shape: tuple | None = None) -> None:
    autoenc = output_shape is not None and input_shape is not None and tuple(output_shape) == tuple(input_shape)
    for split in SPLITS:
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        xk, yk = f"x_{split}", f"y_{split}"
        if x is None:
            continue
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
        setattr(data, xk, x.astype(np.float32))
        if y is None:
            continue
        if y.dtype.kind == "f" and output_shape is not None and not autoenc and y.shape == (len(x), *output_shape):
            if not np.all(np.isfinite(y)):
                raise InputError(f"{source}: {yk} contains NaN/inf regression targets; clean the data first")
            continue  # regression targets
        if y.dtype.kind not in "iub":
            want = f", or float regression targets of shape (N, {', '.join(map(str, output_shape))})" \
                if output_shape is not None and not autoenc else ""
            raise InputError(
                f"{source}: {yk} has dtype {y.dtype} and shape {y.shape}; labels must be integer class indices "
                f"(not one-hot, not float: use y.argmax(-1).astype('int64') for one-hot labels){want}"
            )
        if y.shape != (len(x),):
            raise InputError(f"{source}: {yk} has shape {y.shape}; expected ({len(x)},) to match {xk}")
        hi_ok = 2 if autoenc else n_classes
        if y.min() < 0 or (hi_ok is not None and y.max() >= hi_ok):
            what = "anomaly labels (0 normal, 1 anomalous)" if autoenc else f"the model has {n_classes} classes, labels"
            raise InputError(f"{source}: {yk} has labels in [{y.min()}, {y.max()}]; {what} must be in [0, {hi_ok - 1}]"
                             if hi_ok is not None else f"{source}: {yk} has negative labels")
        setattr(data, yk, y.astype(np.int64))


def check_range(value_range) -> tuple[float, float]:
    lo, hi = (float(v) for v in value_range)
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo >= hi:
        raise InputError(f"--synthetic-range {lo:g} {hi:g}: LO must be below HI (e.g. --synthetic-range 0 255)")
    return lo, hi


def synthetic_data(input_shape: tuple, n_train: int, n_val: int, seed: int,
                   value_range: tuple[float, float] = (0.0, 1.0)) -> Data:
    """Gaussian inputs centred in ``value_range`` (std a quarter of it, clipped to it);
    labels come from the teacher (soft targets), so ``y`` is None here. Val and test splits
    have ``n_val`` samples each."""
    lo, hi = check_range(value_range)
    rng = np.random.default_rng(seed)
    mean, std = (lo + hi) / 2, (hi - lo) / 4

    def draw(n):
        return np.clip(rng.normal(mean, std, (n, *input_shape)), lo, hi).astype(np.float32)

    return Data(draw(n_train), None, draw(n_val), None, draw(n_val), None, synthetic=True,
                test_source=f"{n_val} synthetic samples")
