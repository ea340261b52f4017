"""Requantization constants for the generated kernels, exact with TFLite 2.21's reference.

CONV_2D / DEPTHWISE_CONV_2D round twice (``MultiplyByQuantizedMultiplier``):
    y = SRDHM(acc << left, m)                    = floor((acc * 2^left * m + 2^30) / 2^31)
    r = RoundingDivideByPOT(y, e)                (halves away from zero), e = max(-shift, 0)
With ``m >= 0`` SRDHM never saturates and equals the floor above. When a bound ``B >= |acc|``
proven from the weights and bias gives ``B * 2^(left+1) < 2^31`` (no wrap), the first step is one
``SMMULR(acc << (left+1), m)`` (= floor((2^(left+1) acc m + 2^31) / 2^32), the same value), and the
second ``(y + rnd + (y >> 31 & nm)) >> e`` with rnd = 2^(e-1), nm = -1 (0 and 0 when e = 0),
provided |y| + rnd < 2^31 ("fast"). Otherwise the generated code keeps 64-bit arithmetic
("general").

FULLY_CONNECTED rounds once: r = floor((acc * m + 2^(t-1)) / 2^t), t = 31 - shift. For t = 32 + e
with e >= 1 that is ``(SMMUL(acc, m) + 2^(e-1)) >> e`` and for e = 0 ``SMMULR(acc, m)``, exact for
every int32 acc ("smmul" / "smmulr"); other shifts use 64-bit arithmetic ("general").
"""

from __future__ import annotations

import numpy as np

INT32_MAX = (1 << 31) - 1


def acc_bound(weights: np.ndarray, bias: np.ndarray | None, in_offset: int) -> np.ndarray:
    """Per output channel, max |acc| over every int8 input: weights [cout, k] (int8), in_offset = -zp.

    >>> int(acc_bound(np.array([[1, -2]], np.int8), np.array([5], np.int32), 0)[0])
    389
    """
    w = np.abs(weights.astype(np.int64))
    amp = max(abs(-128 + in_offset), abs(127 + in_offset))
    b = np.zeros(w.shape[0], np.int64) if bias is None else np.abs(bias.astype(np.int64))
    return w.sum(axis=1) * amp + b


def _uniform(a: np.ndarray) -> bool:
    return bool(np.all(a == a[0]))


def conv_requant(mult: np.ndarray, shift: np.ndarray, bound: np.ndarray, out_offset: int = 0) -> dict:
    """Template constants for double rounding; ``mode`` "smmlar", "fast" or "general".

    "smmlar" (every e >= 1, fast conditions, |y| + rnd + |out_offset| 2^e < 2^31): one SMMLAR does
    the high multiply and adds K = rnd + out_offset * 2^e + (acc >> 31); then ``>> e``. Exact: acc < 0
    gives y <= 0, and y = 0 with the spurious -1 still shifts to 0 (rnd - 1 < 2^e); adding a
    multiple of 2^e before the floor shift adds out_offset after it."""
    mult = np.asarray(mult, np.int64)
    shift = np.asarray(shift, np.int64)
    n = len(bound)
    mult = np.broadcast_to(mult, (n,)) if mult.size == 1 else mult
    shift = np.broadcast_to(shift, (n,)) if shift.size == 1 else shift
    left = np.maximum(shift, 0)
    e = np.maximum(-shift, 0)
    rnd = np.where(e > 0, np.left_shift(1, np.maximum(e - 1, 0)), 0)
    fast = True
    for c in range(n):
        if int(bound[c]) << int(left[c] + 1) > INT32_MAX:
            fast = False
            break
        ymax = (int(bound[c]) * (1 << int(left[c])) * int(mult[c]) + (1 << 30)) // (1 << 31) + 1
        if ymax + int(rnd[c]) > INT32_MAX:
            fast = False
            break
    per_tensor = _uniform(mult) and _uniform(shift)
    mode = "fast" if fast else "general"
    if fast and np.all(e >= 1):
        for c in range(n):
            ymax = (int(bound[c]) * (1 << int(left[c])) * int(mult[c]) + (1 << 30)) // (1 << 31) + 1
            if ymax + int(rnd[c]) + abs(out_offset) * (1 << int(e[c])) + 1 > INT32_MAX:
                break
        else:
            mode = "smmlar"
    kq = [int(rnd[c]) + out_offset * (1 << int(e[c])) for c in range(n)]
    return {
        "mode": mode, "k": kq,
        "per_tensor": per_tensor,
        "m": [int(v) for v in mult], "ls": [int(v + 1) if fast else int(v) for v in left],
        "e": [int(v) for v in e], "rnd": [int(v) for v in rnd], "nm": [-1 if v > 0 else 0 for v in e],
        "ls_uniform": _uniform(left), "nm_uniform": _uniform(e > 0),
    }


def fc_requant(mult: np.ndarray, shift: np.ndarray, n: int, out_offset: int = 0) -> dict:
    """Template constants for single rounding; ``mode`` "smmul", "smmulr" or "general".

    "smmul" folds out_offset too: y = SMMLA(acc, m, rnd + out_offset * 2^e) >> e, when every e is in
    1..22 (|SMMUL| < 2^30, so the sum stays below 2^31; ``k`` holds the folded constant)."""
    mult = np.asarray(mult, np.int64).reshape(-1)
    shift = np.asarray(shift, np.int64).reshape(-1)
    per_tensor = mult.size == 1 or (_uniform(mult) and _uniform(shift))
    if per_tensor:
        mult, shift = mult[:1], shift[:1]
    t = 31 - shift
    e = t - 32
    if np.all(e >= 1):
        mode = "smmul"
    elif np.all(e == 0):
        mode = "smmulr"
    else:
        mode = "general"
    rnd = [1 << int(v - 1) if v >= 1 else 0 for v in e]
    if mode == "smmul" and not np.all(e <= 22):
        mode = "general"
    k = [r + out_offset * (1 << int(v)) if v >= 0 else 0 for r, v in zip(rnd, e)]
    return {"mode": mode, "per_tensor": per_tensor, "m": [int(v) for v in mult], "e": [int(v) for v in e], "k": k,
            "rnd": rnd, "t": [int(v) for v in t], "trnd": [1 << int(v - 1) for v in t]}
