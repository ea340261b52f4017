"""Bounded reading of ``.npy`` arrays and ``.npz`` members (calibration and training data).

Only the samples asked for are read: the ``.npy`` header is parsed from the file (or from the
zip member's decompressing stream), then exactly ``n * sample bytes`` are read, so a small
compressed file that expands to gigabytes costs no more than the samples used. Arrays must hold
real numbers (float, int, uint): complex, string, object and structured arrays are refused.
Every problem is an :class:`~tinygen.errors.InputError` naming the file and the array.
"""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import numpy.lib.format as npfmt

from .errors import InputError

NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGIC = b"PK"
MAX_BYTES = 512 << 20  # decoded bytes one read may produce


def _header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    version = npfmt.read_magic(f)
    if version == (1, 0):
        return npfmt.read_array_header_1_0(f)
    if version == (2, 0):
        return npfmt.read_array_header_2_0(f)
    raise ValueError(f".npy format version {version[0]}.{version[1]} is not supported")


def _read(f: IO[bytes], what: str, max_samples: int | None, max_bytes: int) -> np.ndarray:
    try:
        shape, fortran, dtype = _header(f)
    except (ValueError, OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise InputError(f"{what}: not a readable .npy array ({str(e).splitlines()[0][:200]}); "
                         "save it with numpy.save / numpy.savez") from None
    if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
        kind = {"c": "complex numbers", "U": "strings", "S": "bytes", "b": "booleans", "O": "Python objects",
                "V": "records", "M": "dates", "m": "time deltas"}.get(dtype.kind, f"dtype {dtype}")
        raise InputError(f"{what} holds {kind} (dtype {dtype}); it must hold real numbers (float or integer)")
    if len(shape) == 0:
        raise InputError(f"{what} is a single number; it must be an array of samples [N, ...]")
    n = shape[0] if max_samples is None else min(shape[0], max_samples)
    if n == 0 or 0 in shape[1:]:
        raise InputError(f"{what} has shape {list(shape)}: it holds no samples; give at least one sample")
    per_sample = math.prod(shape[1:]) * dtype.itemsize
    rows = shape[0] if fortran and len(shape) > 1 else n  # Fortran order: the first samples are not contiguous
    need = rows * per_sample
    if need > max_bytes:
        raise InputError(f"{what} has shape {list(shape)} ({need:,} B for {rows} sample(s)); "
                         f"at most {max_bytes:,} B are read: give fewer or smaller samples")
    try:
        data = f.read(need)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile) as e:
        raise InputError(f"{what}: cannot read its data ({str(e).splitlines()[0][:200]})") from None
    if len(data) < need:
        raise InputError(f"{what} is truncated: {len(data):,} of {need:,} data bytes for shape {list(shape)}")
    x = np.frombuffer(data, dtype=dtype)
    if fortran and len(shape) > 1:
        x = x.reshape(shape, order="F")[:n]
    return np.ascontiguousarray(x.reshape((n, *shape[1:])))


def read_samples(path: str | Path, keys: tuple[str, ...], max_samples: int | None = None,
                 max_bytes: int = MAX_BYTES) -> tuple[str, np.ndarray]:
    """(key, the first ``max_samples`` samples) of the first of ``keys`` in an .npz, or of a .npy file
    (key ``''``)."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            head = f.read(len(NPY_MAGIC))
            if head == NPY_MAGIC:
                f.seek(0)
                return "", _read(f, str(path), max_samples, max_bytes)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path} is a folder; give an .npz or .npy file") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not head.startswith(ZIP_MAGIC):
        raise InputError(f"{path}: not an .npz or .npy file (first bytes {head!r}); save it with numpy.savez "
                         "or numpy.save")
    try:
        with zipfile.ZipFile(path) as z:
            names = [n[:-4] for n in z.namelist() if n.endswith(".npy")]
            key = next((k for k in keys if k in names), None)
            if key is None:
                raise InputError(f"{path}: no array named {' or '.join(repr(k) for k in keys)} (has {names})")
            with z.open(key + ".npy") as f:
                return key, _read(f, f"{path}: '{key}'", max_samples, max_bytes)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, zlib.error, NotImplementedError) as e:
        raise InputError(f"{path}: not a readable .npz file ({str(e).splitlines()[0][:200]}); "
                         "save it with numpy.savez") from None
