"""Calibration images from a folder: PNG / JPEG / BMP through Pillow when it is installed, binary
PPM / PGM (P6 / P5, 8-bit) always, resized to the model's input and scaled to its input range.

``read_folder(folder, (h, w, c), (lo, hi))`` returns float32 samples [n, h, w, c]: each image is
converted to grey (c = 1) or RGB (c = 3), resized (bilinear with Pillow, nearest without), and its
pixels 0..255 are mapped linearly onto [lo, hi]. Files are taken in name order, at most ``limit``.
Every problem is an :class:`~tinygen.errors.InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
NETPBM_SUFFIXES = (".ppm", ".pgm")


def _pillow():
    try:
        from PIL import Image
    except ImportError:
        return None
    return Image


def _netpbm(path: Path) -> np.ndarray:
    """An 8-bit binary PGM (P5) or PPM (P6) as uint8 [h, w, 1 or 3].

    >>> import tempfile, os
    >>> p = Path(tempfile.mkdtemp()) / "a.pgm"; _ = p.write_bytes(b"P5\\n# c\\n2 1\\n255\\n" + bytes([0, 200]))
    >>> _netpbm(p)[..., 0].tolist()
    [[0, 200]]
    """
    data = path.read_bytes()
    fields, pos = [], 0
    while len(fields) < 4:
        while pos < len(data) and data[pos : pos + 1].isspace():
            pos += 1
        if data[pos : pos + 1] == b"#":
            while pos < len(data) and data[pos : pos + 1] not in (b"\n", b"\r"):
                pos += 1
            continue
        start = pos
        while pos < len(data) and not data[pos : pos + 1].isspace():
            pos += 1
        if start == pos:
            break
        fields.append(data[start:pos])
    if len(fields) < 4 or fields[0] not in (b"P5", b"P6"):
        raise InputError(f"{path}: not a binary PGM/PPM image (P5/P6 header expected)")
    try:
        w, h, maxval = (int(f) for f in fields[1:4])
    except ValueError:
        raise InputError(f"{path}: damaged PGM/PPM header {fields}") from None
    if maxval != 255 or w < 1 or h < 1:
        raise InputError(f"{path}: only 8-bit (maxval 255) PGM/PPM images are read (has {w}x{h}, maxval {maxval})")
    c = 3 if fields[0] == b"P6" else 1
    body = data[pos + 1 : pos + 1 + w * h * c]
    if len(body) < w * h * c:
        raise InputError(f"{path}: truncated image data ({len(body)} of {w * h * c} bytes)")
    return np.frombuffer(body, np.uint8).reshape(h, w, c)


def _nearest(img: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = (np.arange(h) * img.shape[0]) // h
    xs = (np.arange(w) * img.shape[1]) // w
    return img[ys][:, xs]


def _channels(img: np.ndarray, c: int) -> np.ndarray:
    if img.shape[2] == c:
        return img
    if c == 1:  # ITU-R 601 luma, as Pillow's convert("L")
        return (img[..., :3] @ np.array([0.299, 0.587, 0.114]))[..., None].round().astype(np.uint8)
    return np.repeat(img[..., :1], 3, axis=2)


def read_image(path: Path, h: int, w: int, c: int) -> np.ndarray:
    """One image as uint8 [h, w, c]."""
    suffix = path.suffix.lower()
    pil = _pillow()
    if suffix in NETPBM_SUFFIXES and pil is None:
        return _nearest(_channels(_netpbm(path), c), h, w)
    if pil is None:
        raise InputError(f"{path}: reading {suffix} images needs Pillow (pip install pillow); without it "
                         f"convert the images to binary PPM/PGM, or give an .npz")
    try:
        with pil.open(path) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), pil.BILINEAR)
            return np.asarray(im, np.uint8).reshape(h, w, c)
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{path}: cannot read the image ({str(e).splitlines()[0][:200]})") from None


def read_folder(folder: Path, shape: tuple[int, ...], value_range: tuple[float, float], limit: int) -> np.ndarray:
    """Float32 samples [n, h, w, c] of the images of ``folder``, pixels 0..255 mapped onto ``value_range``."""
    if len(shape) != 3 or shape[2] not in (1, 3):
        raise InputError(f"{folder}: a folder of images calibrates an image input [H, W, 1 or 3]; the model input is "
                         f"{list(shape)}: give an .npz or .npy")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PILLOW_SUFFIXES + NETPBM_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images ({', '.join(PILLOW_SUFFIXES + NETPBM_SUFFIXES)}) in the folder")
    h, w, c = shape
    lo, hi = value_range
    x = np.stack([read_image(p, h, w, c) for p in files[:limit]]).astype(np.float32)
    return (lo + x * ((hi - lo) / 255.0)).astype(np.float32)
