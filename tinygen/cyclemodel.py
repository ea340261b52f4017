"""Latency and code-size estimates from QEMU measurements (``tinygen/cyclemodel.json``).

``benchmarks/calibrate_cyclemodel.py`` builds the shared models and a set of op nets for
the emulated Cortex-M33 (mps2-an505) and Cortex-M4 (mps2-an386), runs them under QEMU
(``-icount shift=0``: instruction counts, not cycles) and fits, per backend, core and
kernel, ``instructions = a * MACs + b * output bytes + c`` (non-negative least squares),
plus code bytes per kernel from the linker maps. Kernels without enough samples fall
back to their op kind, then to the backend's average instructions per MAC.

The generated kernel set estimates its own kernels (each family's ``cost`` in
tinygen/kernelgen); those estimates are scaled per family by ``generated.<family>.scale``, fitted
the same way. Estimates are instructions; ``est_ms`` in :mod:`tinygen.analyze` divides them by the
board clock, i.e. assumes one instruction per cycle. Cortex-M7 boards use the Cortex-M4
figures (same ISA and DSP extension; the M7's dual issue makes the estimate pessimistic).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

DATA = Path(__file__).with_name("cyclemodel.json")
CORES = ("cortex-m33", "cortex-m4")
CORE_MAP = {"cortex-m33": "cortex-m33", "cortex-m4": "cortex-m4", "cortex-m7": "cortex-m4"}


def core_of(core: str) -> str:
    """The calibrated core whose figures stand in for ``core``."""
    return CORE_MAP.get(core, "cortex-m4")


def features(macs: int, out_bytes: int) -> np.ndarray:
    return np.array([float(macs), float(out_bytes), 1.0])


def fit_taps(samples: list[tuple[int, int, int, int]]) -> dict:
    """:func:`fit` with a fourth feature, ``taps`` = output elements x kernel window (MACs / input
    channels) of a convolution: the per-tap overhead that dominates when a layer has few input
    channels (KWS's first conv: 1 channel, ~35 instructions per MAC on the portable kernel).

    ``samples``: (macs, out_bytes, taps, instructions).

    >>> f = fit_taps([(100, 10, 50, 1000 + 500 + 300), (200, 20, 50, 2000 + 500 + 300),
    ...               (400, 10, 400, 4000 + 4000 + 300), (300, 30, 100, 3000 + 1000 + 300)])
    >>> [round(f[k], 3) for k in ("a", "b", "t", "c")]
    [10.0, 0.0, 10.0, 300.0]
    """
    X = np.array([[float(m), float(o), float(t), 1.0] for m, o, t, _ in samples])
    y = np.array([float(i) for *_, i in samples])
    w = 1.0 / np.maximum(y, 1.0)
    coef = _nnls(X * w[:, None], y * w)
    return {"a": float(coef[0]), "b": float(coef[1]), "t": float(coef[2]), "c": float(coef[3]), "n": len(samples)}


def fit(samples: list[tuple[int, int, int]]) -> dict:
    """Non-negative least squares of instructions on (MACs, output bytes, 1).

    ``samples``: (macs, out_bytes, instructions). Minimises *relative* error (rows weighted by
    1/instructions) so that small layers count as much as big ones.

    >>> f = fit([(100, 10, 1000 + 300), (200, 20, 2000 + 300), (400, 10, 4000 + 300)])
    >>> [round(f[k], 3) for k in ("a", "b", "c")]
    [10.0, 0.0, 300.0]
    """
    X = np.array([features(m, o) for m, o, _ in samples])
    y = np.array([float(i) for _, _, i in samples])
    w = 1.0 / np.maximum(y, 1.0)
    coef = _nnls(X * w[:, None], y * w)
    return {"a": float(coef[0]), "b": float(coef[1]), "c": float(coef[2]), "n": len(samples)}


def _nnls(A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares by exhaustive active sets (3 or 4 unknowns: 7 or 15 subsets)."""
    n = A.shape[1]
    best, best_err = np.zeros(n), float(np.sum(b * b))
    for mask in range(1, 1 << n):
        cols = [j for j in range(n) if mask >> j & 1]
        x, *_ = np.linalg.lstsq(A[:, cols], b, rcond=None)
        if np.any(x < 0):
            continue
        full = np.zeros(n)
        full[cols] = x
        err = float(np.sum((A @ full - b) ** 2))
        if err < best_err - 1e-12:
            best, best_err = full, err
    return best


def predict(f: dict, macs: int, out_bytes: int, taps: int = 0) -> float:
    return f["a"] * macs + f["b"] * out_bytes + f.get("t", 0.0) * taps + f["c"]


def taps_of(op: str, macs: int, in_shape) -> int:
    """Output elements x kernel window of a CONV_2D (MACs / input channels), else 0."""
    if op != "CONV_2D" or not in_shape:
        return 0
    return int(macs) // max(1, int(in_shape[-1]))


@dataclass
class CycleModel:
    data: dict = field(default_factory=dict)

    @property
    def note(self) -> str:
        if not self.data:
            return "no calibration data (tinygen/cyclemodel.json missing): latency not estimated"
        return self.data.get("note", "")

    def _table(self, backend: str, core: str) -> dict:
        return self.data.get("instructions", {}).get(backend, {}).get(core, {})

    def instructions(self, backend: str, core: str, kernel: str, op: str, macs: int, out_bytes: int,
                     taps: int = 0) -> int:
        """Estimated instructions of one kernel call (0 when uncalibrated). ``taps``: for CONV_2D,
        MACs / input channels (:func:`taps_of`); kernels fitted without it ignore it."""
        t = self._table(backend, core_of(core))
        f = t.get(kernel) or t.get(f"op:{op}") or t.get("all")
        if f is None:
            return 0
        return int(round(predict(f, macs, out_bytes, taps)))

    def generated_scale(self, kernel: str) -> float:
        """Correction of a generated kernel family's own instruction estimate (``gen.conv``, ...), fitted
        on QEMU counts by benchmarks/calibrate_cyclemodel.py (1.0 when uncalibrated)."""
        return float(self.data.get("generated", {}).get(kernel, {}).get("scale", 1.0))

    def code_bytes(self, backend: str, core: str, kernels: list[str]) -> int:
        c = self.data.get("code", {}).get(backend, {}).get(core_of(core))
        if not c:
            return 0
        known = c["kernels"]
        default = float(np.median(list(known.values()))) if known else 0.0
        return int(round(c["base"] + sum(known.get(k, default) for k in kernels)))

    def flash_other(self, backend: str, core: str, n_layers: int) -> int:
        c = self.data.get("flash_other", {}).get(backend, {}).get(core_of(core))
        return int(round(c["base"] + c["per_layer"] * n_layers)) if c else 0

    def ram_other(self, backend: str, core: str) -> int:
        return int(self.data.get("ram_other", {}).get(backend, {}).get(core_of(core), 0))


_CACHE: dict[str, CycleModel] = {}


_CACHED: "CycleModel | None" = None


def cached() -> "CycleModel":
    """The shipped model, loaded once per process."""
    global _CACHED
    if _CACHED is None:
        _CACHED = load()
    return _CACHED


def load(path: Path | str = DATA) -> CycleModel:
    key = str(path)
    if key not in _CACHE:
        p = Path(path)
        _CACHE[key] = CycleModel(json.loads(p.read_text()) if p.is_file() else {})
    return _CACHE[key]
