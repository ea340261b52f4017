"""256-entry int8 tables for the element-wise unary ops, simulating TFLite 2.21's reference kernels.

Each function returns ``lut`` with ``lut[x + 128]`` = what the BUILTIN_REF kernel outputs for the
int8 input ``x``; ``tests/test_quant_lut.py`` checks every one over all 256 inputs against the
interpreter. TANH is TFLite's float32 table (activations.cc PopulateLookupTable with
``std::tanh``); HARD_SWISH its 16-bit fixed-point arithmetic (reference_ops::HardSwish);
LEAKY_RELU its two quantized multipliers (reference_ops::QuantizeLeakyRelu).
"""

from __future__ import annotations

import numpy as np

from .quant import (
    _F32,
    _libm_expf,
    _lut_index_values,
    _round_f32,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)


def _libm_f(name: str):
    """glibc's float function ``name`` (tanhf...), what TFLite's std::<fn>(float) calls, or None."""
    import ctypes
    import ctypes.util

    if _libm_expf() is None:
        return None
    lib = ctypes.CDLL(ctypes.util.find_library("m") or "libm.so.6")
    fn = getattr(lib, name)
    fn.restype, fn.argtypes = ctypes.c_float, [ctypes.c_float]
    return fn


def _float_table(in_scale, in_zp, out_scale, out_zp, fn) -> np.ndarray:
    """PopulateLookupTable: round(fn(in_scale * (x - in_zp)) * (1 / out_scale)) + out_zp, float32, clamped."""
    x = _lut_index_values()
    deq = _F32(in_scale) * (x - int(in_zp)).astype(np.float32)
    transformed = np.array([fn(float(v)) for v in deq], dtype=np.float32)
    rescaled = _round_f32(transformed * (_F32(1.0) / _F32(out_scale)))
    return np.clip((rescaled + _F32(int(out_zp))).astype(np.int64), -128, 127).astype(np.int8)


def lut_tanh(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 TANH: TFLite's float32 table with tanhf.

    >>> t = lut_tanh(0.05, 0, 1 / 128, 0)
    >>> int(t[0 + 128]), int(t[127 + 128]), int(t[-128 + 128])
    (0, 127, -128)
    """
    fn = _libm_f("tanhf")
    if fn is None:  # pragma: no cover - non-glibc hosts
        def fn(v):
            return float(np.tanh(np.float32(v)))
    return _float_table(in_scale, in_zp, out_scale, out_zp, fn)


# ---- HARD_SWISH: int16 fixed point (gemmlowp int16 helpers) ------------------------------------

def _i16(v: int) -> int:
    """static_cast<int16_t> (two's complement wrap)."""
    return (int(v) + (1 << 15)) % (1 << 16) - (1 << 15)


def _tdiv(a: int, b: int) -> int:
    """C++ integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _srdhm16(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul for int16."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    ab = a * b
    nudge = (1 << 14) if ab >= 0 else 1 - (1 << 14)
    return _i16(_tdiv(ab + nudge, 1 << 15))


def _sdhm16(a: int, b: int) -> int:
    """SaturatingDoublingHighMul (rounds toward zero)."""
    if a == b == -(1 << 15):
        return (1 << 15) - 1
    return _i16(_tdiv(a * b, 1 << 15))


def _rdbpot16(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT on int16: the mask is ``int16((1 << exponent) - 1)``, so from
    exponent 16 on it is -1 (what TFLite computes for the tiny scales of untrained models).

    >>> _rdbpot16(5, 1), _rdbpot16(-5, 1), _rdbpot16(0, 20), _rdbpot16(-3, 20)
    (3, -3, 1, -1)
    """
    mask = _i16((1 << exponent) - 1)
    remainder = _i16(x & mask)
    threshold = _i16((mask >> 1) + (1 if x < 0 else 0))
    return _i16((x >> exponent) + (1 if remainder > threshold else 0))


def _sat_shl16(v: int, amount: int) -> int:
    return max(-(1 << 15), min((1 << 15) - 1, v * (1 << amount)))


def _downscale16(m32: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if m32 >= (1 << 31) - 1 - (1 << 15):
        return (1 << 15) - 1
    return (m32 + (1 << 15)) >> 16


def hard_swish_params(in_scale: float, out_scale: float) -> tuple[int, int, int, int]:
    """HardSwishPrepare: (output multiplier int16, its exponent, reluish multiplier int16, its exponent).

    Raises ValueError when TFLite's Prepare would refuse (output exponent > 0).

    >>> hard_swish_params(0.05, 0.03)
    (27307, -6, 17476, 3)
    """
    hires = _F32(1.0 / 128.0) * _F32(in_scale)
    om, oe = quantize_multiplier(float(hires / _F32(out_scale)))
    if oe > 0:
        raise ValueError(f"HARD_SWISH output multiplier exponent {oe} > 0 (output scale too small for the input's)")
    rm, re_ = quantize_multiplier(float(hires / _F32(3.0 / 32768.0)))
    return _downscale16(om), oe, _downscale16(rm), re_


def lut_hard_swish(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 HARD_SWISH, TFLite's reference_ops::HardSwish arithmetic for each of the 256 inputs.

    >>> t = lut_hard_swish(0.05, -20, 0.03, -110)
    >>> int(t[-20 + 128]), int(t[-128 + 128]) >= -128, int(t[127 + 128])
    (-110, True, 127)
    """
    om, oe, rm, re_ = hard_swish_params(in_scale, out_scale)
    out = []
    for x in range(-128, 128):
        v = _i16(x - int(in_zp))
        hires = _i16(v * (1 << 7))
        preshift = _srdhm16(hires, om)
        r = hires
        if re_ > 0:
            r = _sat_shl16(r, re_ - 1)
        r = _srdhm16(r, rm)
        if re_ > 0:
            r = _sat_shl16(r, 1)
        if re_ < 0:
            r = _rdbpot16(r, -re_)
        r = _i16((r + (1 << 15)) >> 1)
        y = _rdbpot16(_sdhm16(r, preshift), -oe)
        y = _i16(y + int(out_zp))
        out.append(max(-128, min(127, y)))
    return np.array(out, np.int8)


def lut_leaky_relu(in_scale: float, in_zp: int, out_scale: float, out_zp: int, alpha: float) -> np.ndarray:
    """int8 LEAKY_RELU (QuantizeLeakyRelu): x >= in_zp uses in_scale / out_scale, below it
    in_scale * alpha / out_scale (both products taken in float32, as LeakyReluPrepare).

    >>> t = lut_leaky_relu(0.1, 0, 0.1, 0, 0.5)
    >>> int(t[10 + 128]), int(t[-10 + 128]), int(t[-11 + 128])
    (10, -5, -5)
    """
    ma, sa = quantize_multiplier(float(_F32(in_scale) * _F32(alpha) / _F32(out_scale)))
    mi, si = quantize_multiplier(float(_F32(in_scale) / _F32(out_scale)))
    x = _lut_index_values().astype(np.int64) - int(in_zp)
    y = np.where(x >= 0, multiply_by_quantized_multiplier(x, mi, si), multiply_by_quantized_multiplier(x, ma, sa))
    return np.clip(y + int(out_zp), -128, 127).astype(np.int8)
