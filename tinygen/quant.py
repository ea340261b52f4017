"""Requantization math, in one place, exactly as TFLite computes it.

Mirrors ``tensorflow/lite/kernels/internal/quantization_util.cc`` and the
gemmlowp fixed-point helpers used by the TFLite reference kernels (double
rounding, the TFLite default that CMSIS-NN also uses). The same functions
produce the constants written into the generated C and simulate kernels
for look-up tables, so host math and device math cannot drift apart.
"""

from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def tflite_round(x: float) -> float:
    """std::round: halves away from zero."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(m: float) -> tuple[int, int]:
    """QuantizeMultiplier: real multiplier -> (int32 Q31 multiplier, shift), shift>0 = left.

    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> quantize_multiplier(0.0)
    (0, 0)
    """
    if m == 0.0:
        return 0, 0
    q, shift = math.frexp(m)
    q_fixed = int(tflite_round(q * (1 << 31)))
    if q_fixed == (1 << 31):
        q_fixed //= 2
        shift += 1
    if shift < -31:
        shift, q_fixed = 0, 0
    if shift > 30:
        shift, q_fixed = 30, (1 << 31) - 1
    return q_fixed, shift


def quantize_multiplier_smaller_than_one(m: float) -> tuple[int, int]:
    """QuantizeMultiplierSmallerThanOneExp (ADD): like :func:`quantize_multiplier`, m must be < 1."""
    if not (0.0 <= m < 1.0):
        raise ValueError(f"multiplier {m} must be in [0, 1)")
    return quantize_multiplier(m)


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul, vectorised over int64 numpy arrays."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    # C++ integer division truncates toward zero
    res = np.where(num >= 0, num // (1 << 31), -((-num) // (1 << 31)))
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, res).astype(np.int64)


def rounding_divide_by_pot(x, exponent):
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(x, multiplier, shift):
    """MultiplyByQuantizedMultiplier (double rounding), vectorised; int32 wrap of x<<left as in C."""
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    shifted = ((x << left) + (1 << 31)) % (1 << 32) - (1 << 31)  # int32 wrap
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def activation_range(act: str, scale: float, zero_point: int, qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """CalculateActivationRangeQuantized: a fused activation as int8 clamp bounds."""

    def q(v: float) -> int:
        return zero_point + int(tflite_round(v / scale))

    if act == "NONE":
        return qmin, qmax
    if act == "RELU":
        return max(qmin, q(0.0)), qmax
    if act == "RELU6":
        return max(qmin, q(0.0)), min(qmax, q(6.0))
    if act == "RELU_N1_TO_1":
        return max(qmin, q(-1.0)), min(qmax, q(1.0))
    raise ValueError(act)


def conv_multipliers(input_scale: float, filter_scales, output_scale: float) -> tuple[list[int], list[int]]:
    """Per-channel (multiplier, shift) for CONV/DEPTHWISE/FC: in*w/out evaluated in double."""
    mults, shifts = [], []
    for fs in filter_scales:
        eff = float(np.float32(input_scale)) * float(np.float32(fs)) / float(np.float32(output_scale))
        m, s = quantize_multiplier(eff)
        mults.append(m)
        shifts.append(s)
    return mults, shifts


def softmax_params(beta: float, input_scale: float, input_integer_bits: int = 5) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius: (multiplier, left_shift, diff_min)."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << (31 - input_integer_bits)), (1 << 31) - 1.0)
    mult, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError("softmax multiplier below one")
    radius = ((1 << input_integer_bits) - 1) * (1 << (31 - input_integer_bits)) / (1 << shift)
    return mult, shift, -int(math.floor(radius))
