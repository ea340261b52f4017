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


def quantize_multiplier(m: float, strict: bool = False) -> tuple[int, int]:
    """QuantizeMultiplier: real multiplier -> (int32 Q31 multiplier, shift), shift>0 = left.

    TFLite clamps a multiplier of 2^30 or more to (2^31 - 1, 30); ``strict`` raises
    ValueError instead, for kernels whose int32 arithmetic cannot hold such a gain.
    Multipliers below 2^-32 flush to zero (as TFLite), which is exact and safe.

    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> quantize_multiplier(0.0)
    (0, 0)
    >>> quantize_multiplier(1e30)
    (2147483647, 30)
    >>> quantize_multiplier(1e30, strict=True)
    Traceback (most recent call last):
    ValueError: requantization multiplier 1e+30 is 2^30 or more (the int32 kernels hold at most 2^30)
    """
    if not math.isfinite(m):
        raise ValueError(f"requantization multiplier {m:g} is not a finite number")
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
        if strict:
            raise ValueError(f"requantization multiplier {m:g} is 2^30 or more (the int32 kernels hold at most 2^30)")
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

    def q(v: float) -> int:  # TFLite divides in float32
        return zero_point + int(tflite_round(float(np.float32(v) / np.float32(scale))))

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


def check_accumulator_requant(weights: np.ndarray, reduce_axes: tuple[int, ...], in_zp: int, bias,
                              input_scale: float, filter_scales, output_scale: float, out_zp: int) -> None:
    """CONV/DEPTHWISE/FC: every value the int32 kernels compute must fit int32 (no signed overflow).

    Per output channel, the accumulator is bounded by ``sum|w| * max|x - in_zp| + |bias|``; it
    must fit int32, still fit after the multiplier's left shift, and the requantized value plus
    the output zero point must fit too. Raises ValueError naming the channel and the scales.

    >>> w = np.ones((2, 3), np.int8)
    >>> check_accumulator_requant(w, (1,), 0, None, 0.5, [0.01, 0.02], 0.1, 0)
    >>> check_accumulator_requant(w, (1,), 0, None, 1e30, [0.01, 0.02], 0.1, 0)
    Traceback (most recent call last):
    ValueError: channel 0: input scale 1e+30 * weight scale 0.01 / output scale 0.1 = multiplier 1e+29: requantization multiplier 1e+29 is 2^30 or more (the int32 kernels hold at most 2^30)
    """
    bounds = accumulator_bounds(weights, reduce_axes, in_zp, bias)
    fs = np.broadcast_to(np.asarray(filter_scales, np.float64).reshape(-1), (len(bounds),))
    for ch in range(len(bounds)):
        eff = float(np.float32(input_scale)) * float(np.float32(fs[ch])) / float(np.float32(output_scale))
        what = (f"channel {ch}: input scale {input_scale:g} * weight scale {float(fs[ch]):g} / output scale "
                f"{output_scale:g} = multiplier {eff:g}")
        try:
            _, shift = quantize_multiplier(eff, strict=True)
        except ValueError as e:
            raise ValueError(f"{what}: {e}") from None
        acc = int(bounds[ch])
        if acc << max(shift, 0) > INT32_MAX:
            raise ValueError(f"{what}: the accumulator (up to {acc:,}) shifted left by {max(shift, 0)} "
                             "overflows int32")
        if acc * eff + 1 + abs(int(out_zp)) > INT32_MAX:
            raise ValueError(f"{what}: the requantized accumulator (up to {acc * eff:.3g}) overflows int32")


def accumulator_bounds(weights: np.ndarray, reduce_axes: tuple[int, ...], in_zp: int, bias) -> np.ndarray:
    """Per output channel, the largest |int32 accumulator| of CONV/DEPTHWISE/FC: sum|w| * max|x - in_zp| + |bias|.

    >>> accumulator_bounds(np.array([[1, -2], [0, 3]], np.int8), (1,), -128, np.array([5, -7]))
    array([770, 772])
    """
    w = np.abs(np.asarray(weights, dtype=np.int64)).sum(axis=reduce_axes).reshape(-1)
    x_span = max(abs(-128 - int(in_zp)), abs(127 - int(in_zp)))
    b = np.zeros(len(w), np.int64) if bias is None else np.abs(np.asarray(bias, np.int64).reshape(-1))
    return w * x_span + b


def flush_unreachable(mults: list[int], shifts: list[int], bounds) -> tuple[list[int], list[int]]:
    """Channels whose shift is -31 (real multiplier in [2^-32, 2^-31)) requantize every reachable
    accumulator to exactly 0 when ``bound * mult + 2^30 < 2^61`` (the doubling high multiply stays
    below 2^30, which a rounding right shift by 31 takes to 0). They get (0, 0), which also gives 0:
    bit-exact, and CMSIS-NN's ``arm_nn_divide_by_power_of_two`` never sees exponent 31 (it computes
    ``1 << 31`` in int32, undefined behaviour).

    >>> flush_unreachable([1 << 30, 1 << 30], [-31, -5], [1000, 1000])
    ([0, 1073741824], [0, -5])
    """
    m, s = list(mults), list(shifts)
    for ch, (q, sh) in enumerate(zip(m, s)):
        if sh == -31 and int(bounds[ch]) * int(q) + (1 << 30) < (1 << 61):
            m[ch], s[ch] = 0, 0
    return m, s


def fc_per_tensor_multiplier(input_scale: float, filter_scale: float, output_scale: float) -> tuple[int, int]:
    """GetQuantizedConvolutionMultipler (per-tensor FULLY_CONNECTED): the input*filter product is
    taken in float32 before widening to double, unlike the per-channel path."""
    prod = float(np.float32(input_scale) * np.float32(filter_scale))
    return quantize_multiplier(prod / float(np.float32(output_scale)))


def lstm_params(in_scale: float, in_zp: int, state_scale: float, state_zp: int, cell_scale: float,
                hidden_scale: float, hidden_zp: int, w_in, w_rec, biases) -> dict:
    """TFLite's integer 8x8_16 LSTM (unidirectional_sequence_lstm.cc PopulateQuantizedLstmParams8x8_16
    and PrecomputeZeroPointTimesWeightWithBias), without layer norm, peephole or projection: each
    gate's pre-activation is Q3.12, so its effective scales are ``w_scale * in_scale / 2^-12`` (float32,
    as TFLite) for the input and ``w_scale * state_scale / 2^-12`` for the recurrent product; the
    hidden state is ``o * tanh(c)`` (Q0.15 * Q0.15) at ``2^-15 / hidden_scale * 2^-15``. The zero
    points fold into int32 effective biases: ``bias - in_zp * row sums`` and ``-state_zp * row sums``.
    ``w_in``/``w_rec``: per gate (input, forget, cell, output) ``(int8 [cells, n], scale)``; ``biases``
    the int32 gate biases. Raises ValueError when the cell scale is not 2^-30 .. 2^-9.

    >>> p = lstm_params(0.5, 0, 0.25, 0, 2.0 ** -14, 2.0 ** -7, 0, [(np.ones((1, 1), np.int8), 2.0 ** -10)] * 4,
    ...                 [(np.ones((1, 1), np.int8), 2.0 ** -10)] * 4, [np.zeros(1, np.int32)] * 4)
    >>> p["cell_scale"], p["mult"][0], p["shift"][0], p["shift"][4], p["hidden_shift"]
    (-14, 1073741824, 2, 1, -22)
    """
    log2 = math.log2(cell_scale)
    if log2 != round(log2) or not -30 <= log2 <= -9:
        raise ValueError(f"the int16 cell state's scale {cell_scale:g} is not a power of two in [2^-30, 2^-9]")
    f32 = np.float32
    gate = f32(2.0 ** -12)  # Q3.12 pre-activations
    mults, shifts, b_in, b_rec = [0] * 8, [0] * 8, [], []
    for k in range(4):
        (wi, si), (wr, sr) = w_in[k], w_rec[k]
        mults[k], shifts[k] = quantize_multiplier(float(f32(f32(si) * f32(in_scale)) / gate))
        mults[4 + k], shifts[4 + k] = quantize_multiplier(float(f32(f32(sr) * f32(state_scale)) / gate))
        rows_in = wi.astype(np.int64).sum(axis=1)
        rows_rec = wr.astype(np.int64).sum(axis=1)
        b_in.append((np.asarray(biases[k], np.int64) - in_zp * rows_in).astype(np.int32))
        b_rec.append((-state_zp * rows_rec).astype(np.int32))
    hidden = float(f32(2.0 ** -15 / float(f32(hidden_scale)) * 2.0 ** -15))
    hm, hs = quantize_multiplier(hidden)
    return {"cell_scale": int(log2), "mult": mults, "shift": shifts, "hidden_mult": hm, "hidden_shift": hs,
            "hidden_zp": int(hidden_zp), "b_in": np.concatenate(b_in), "b_rec": np.concatenate(b_rec)}


def softmax_params(beta: float, input_scale: float, input_integer_bits: int = 5) -> tuple[int, int, int]:
    """PreprocessSoftmaxScaling + CalculateInputRadius: (multiplier, left_shift, diff_min).

    beta must be a positive number (the TFLite reference interpreter crashes on a negative one)."""
    if not (math.isfinite(beta) and beta > 0):
        raise ValueError(f"softmax beta {beta} must be a positive number")
    real = min(float(np.float32(beta)) * float(np.float32(input_scale)) * (1 << (31 - input_integer_bits)), (1 << 31) - 1.0)
    if not real > 1.0:  # TFLite's QuantizeMultiplierGreaterThanOne: TFLITE_CHECK_GT(real, 1.0) aborts otherwise
        raise ValueError(f"beta x input scale x 2^{31 - input_integer_bits} = {real:.3g} must exceed 1 (input scale "
                         f"{float(input_scale):.3g} is too small: the model is untrained or was calibrated on constant data)")
    mult, shift = quantize_multiplier(real)
    if shift < 0:
        raise ValueError("softmax multiplier below one")
    radius = ((1 << input_integer_bits) - 1) * (1 << (31 - input_integer_bits)) / (1 << shift)
    return mult, shift, -int(math.floor(radius))


# ---- parameters for the tg_* kernels (firmware/tg_nn.h) -----------------------------------------
#
# Every function below reproduces the float32/double arithmetic of the TFLite kernel's Prepare()
# exactly (which operations happen in float32 and which in double matters for the last bit of a
# multiplier), so the C kernels stay bit-exact with the BUILTIN_REF interpreter.

_F32 = np.float32

def add_params(s1: float, zp1: int, s2: float, zp2: int, so: float, zpo: int, act: str = "NONE") -> dict:
    """tg_binary_params_t fields (without dims) for int8 ADD, as TFLite's add.cc Prepare.

    Inputs are rescaled to ``2 * max(s1, s2)`` after a left shift of 20 bits; all three
    multipliers are below one (shifts <= 0).

    >>> p = add_params(0.5, 0, 0.25, 10, 1.0, -3)
    >>> (p["left_shift"], p["in1_offset"], p["in2_offset"], p["out_offset"])
    (20, 0, -10, -3)
    >>> (p["in1_mult"], p["in1_shift"], p["in2_mult"], p["in2_shift"])
    (1073741824, 0, 1073741824, -1)
    >>> (p["act_min"], p["act_max"])
    (-128, 127)
    """
    left_shift = 20
    twice_max = 2.0 * max(float(_F32(s1)), float(_F32(s2)))
    m1, sh1 = quantize_multiplier_smaller_than_one(float(_F32(s1)) / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one(float(_F32(s2)) / twice_max)
    # (1 << 20) * output_scale is evaluated in float32 (exact: a power-of-two scaling)
    mo, sho = quantize_multiplier_smaller_than_one(twice_max / float(_F32(1 << left_shift) * _F32(so)))
    lo, hi = activation_range(act, float(_F32(so)), int(zpo))
    return dict(
        in1_offset=-int(zp1), in1_mult=m1, in1_shift=sh1,
        in2_offset=-int(zp2), in2_mult=m2, in2_shift=sh2,
        left_shift=left_shift,
        out_offset=int(zpo), out_mult=mo, out_shift=sho,
        act_min=lo, act_max=hi,
    )


def sub_params(s1: float, zp1: int, s2: float, zp2: int, so: float, zpo: int, act: str = "NONE") -> dict:
    """tg_binary_params_t fields for int8 SUB: TFLite's sub.cc prepares it as ADD with input 2's
    multiplier negated (``input2_multiplier *= -1``), so the ADD kernels compute it exactly
    (their rounding is symmetric: requant(x, -m) == -requant(x, m)).

    >>> p = sub_params(0.5, 0, 0.25, 10, 1.0, -3)
    >>> (p["in1_mult"], p["in2_mult"], p["in2_shift"]) == (add_params(0.5, 0, 0.25, 10, 1.0, -3)["in1_mult"], -1073741824, -1)
    True
    """
    p = add_params(s1, zp1, s2, zp2, so, zpo, act)
    p["in2_mult"] = -p["in2_mult"]
    return p


def mul_params(s1: float, zp1: int, s2: float, zp2: int, so: float, zpo: int, act: str = "NONE") -> dict:
    """tg_binary_params_t fields (without dims) for int8 MUL, as TFLite's mul.cc Prepare.

    The real multiplier ``s1 * s2 / so`` is computed in float32 (TFLite multiplies the
    float scales before widening to double). in*_mult/in*_shift and left_shift are unused (0).

    >>> p = mul_params(0.5, 1, 0.25, -2, 0.125, 5)
    >>> (p["out_mult"], p["out_shift"], p["in1_offset"], p["in2_offset"], p["out_offset"])
    (1073741824, 1, -1, 2, 5)
    """
    real = float((_F32(s1) * _F32(s2)) / _F32(so))
    mo, sho = quantize_multiplier(real, strict=True)
    lo, hi = activation_range(act, float(_F32(so)), int(zpo))
    return dict(
        in1_offset=-int(zp1), in1_mult=0, in1_shift=0,
        in2_offset=-int(zp2), in2_mult=0, in2_shift=0,
        left_shift=0,
        out_offset=int(zpo), out_mult=mo, out_shift=sho,
        act_min=lo, act_max=hi,
    )


def mean_params(in_shape, in_scale: float, in_zp: int, out_scale: float, out_zp: int,
                keep_dims: bool = False, axes=(1, 2)) -> dict:
    """tg_mean_params_t fields for int8 MEAN over H,W of an NHWC tensor (TFLite 2.21 reduce.cc).

    Every int8 MEAN under the reference kernels goes through QuantizedMeanOrSum (keep_dims or
    not): ``in_scale / out_scale`` is quantized, then 1/num_elements is folded into it by integer
    division: ``s = min(floor(log2 n), 32, 31 + shift)``, ``mult = (mult << s) // n``,
    ``shift -= s``. The kernel computes ``requant(sum(in - in_zp), mult, shift) + out_zp``.
    ``keep_dims`` does not change the arithmetic; it is accepted for call-site clarity.

    >>> p = mean_params((1, 4, 4, 3), 0.5, 2, 0.25, -1)
    >>> (p["mult"], p["shift"], p["num_elements"], p["in_zp"], p["out_zp"])
    (1073741824, -2, 16, 2, -1)
    >>> p = mean_params((1, 5, 3, 7), 0.02, 0, 0.01, 3)  # 2/15: (2^30 << 3) // 15, shift 2 - 3
    >>> (p["mult"], p["shift"])
    (572662306, -1)
    """
    del keep_dims
    n, h, w, c = (int(d) for d in in_shape)
    ax = sorted(int(a) % 4 for a in axes)
    if ax != [1, 2]:
        raise ValueError(f"MEAN over axes {tuple(axes)}: only H,W (1, 2) is supported")
    num = h * w
    mult, shift = reduce_multiplier(in_scale, out_scale, num)
    return dict(in_dims=(n, h, w, c), in_zp=int(in_zp), out_zp=int(out_zp), mult=int(mult), shift=int(shift),
                num_elements=num)


def reduce_multiplier(in_scale: float, out_scale: float, num_elements: int | None) -> tuple[int, int]:
    """QuantizedMeanOrSum's requantization (TFLite 2.21 reduce.h): ``in_scale / out_scale`` (double of
    the float scales), quantized; for MEAN (``num_elements`` given) 1/num_elements is folded in by
    integer division: ``s = min(floor(log2 n), 32, 31 + shift)``, ``mult = (mult << s) // n``,
    ``shift -= s``. SUM passes None (no folding).

    >>> reduce_multiplier(0.5, 0.25, 16), reduce_multiplier(0.5, 0.25, None)
    ((1073741824, -2), (1073741824, 2))
    """
    mult, shift = quantize_multiplier(float(_F32(in_scale)) / float(_F32(out_scale)), strict=True)
    if num_elements:
        s = min(int(num_elements).bit_length() - 1, 32, 31 + shift)
        mult = (mult << s) // int(num_elements)
        shift -= s
    return int(mult), int(shift)


def _libm_expf():
    """glibc's expf (what TFLite's std::exp(float) calls), or None where unavailable."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("m")
    try:
        lib = ctypes.CDLL(name or "libm.so.6")
        fn = lib.expf
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_float
    fn.argtypes = [ctypes.c_float]
    return fn


def _round_f32(x):
    """std::round on float32 values (halves away from zero), exact for every float32."""
    x = np.asarray(x, dtype=np.float32)
    t = np.trunc(x)
    d = x - t  # exact
    return (t + np.where(d >= 0.5, 1, 0) - np.where(d <= -0.5, 1, 0)).astype(np.float32)


def _lut_index_values():
    return np.arange(-128, 128, dtype=np.int32)  # lut[x + 128]


def lut_logistic(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 LUT for int8 LOGISTIC, as TFLite's reference kernel (LUTPopulate, float32).

    TFLite's BUILTIN_REF LOGISTIC for int8 is a table built in Prepare with float32 math:
    ``round((1 / (1 + expf(-in_scale * (x - in_zp)))) * (1 / out_scale)) + out_zp``, clamped.

    >>> t = lut_logistic(0.1, 0, 1 / 256, -128)
    >>> t.dtype, len(t), int(t[0 + 128]), int(t[127 + 128])
    (dtype('int8'), 256, 0, 127)
    """
    expf = _libm_expf()
    x = _lut_index_values()
    deq = _F32(in_scale) * (x - int(in_zp)).astype(np.float32)
    neg = -deq
    if expf is not None:
        e = np.array([expf(float(v)) for v in neg], dtype=np.float32)
    else:  # pragma: no cover - non-glibc hosts: numpy's expf may differ by an ulp
        e = np.exp(neg.astype(np.float32))
    transformed = _F32(1.0) / (_F32(1.0) + e)
    inverse_scale = _F32(1.0) / _F32(out_scale)
    rescaled = _round_f32(transformed * inverse_scale)
    q = (rescaled + _F32(int(out_zp))).astype(np.int64)
    return np.clip(q, -128, 127).astype(np.int8)


def _requant_lut(in_scale, in_zp, out_zp, mult, shift, lo, hi) -> np.ndarray:
    x = _lut_index_values().astype(np.int64)
    y = multiply_by_quantized_multiplier(x - int(in_zp), mult, shift) + int(out_zp)
    return np.clip(y, lo, hi).astype(np.int8)


def lut_relu(in_scale: float, in_zp: int, out_scale: float, out_zp: int, kind: str = "RELU") -> np.ndarray:
    """256-entry int8 LUT for standalone int8 RELU / RELU6 / RELU_N1_TO_1 (TFLite's ReluX).

    out = clamp(out_zp + MultiplyByQuantizedMultiplier(x - in_zp, M), act_min, act_max) where
    M = in_scale / out_scale is divided in float32 and the bounds are
    ``out_zp + roundf(bound / out_scale)`` in float32, as activations.cc does.

    >>> t = lut_relu(0.05, -10, 0.025, -128, "RELU")
    >>> int(t[-10 + 128]), int(t[-128 + 128]), int(t[0 + 128])
    (-128, -128, -108)
    >>> int(lut_relu(0.1, 0, 0.05, -128, "RELU6")[127 + 128])
    -8
    """
    kind = kind.upper()
    mult, shift = quantize_multiplier(float(_F32(in_scale) / _F32(out_scale)))
    so = _F32(out_scale)

    def q(v):
        return int(out_zp) + int(_round_f32(_F32(v) / so))

    if kind == "RELU":
        lo, hi = max(-128, q(0.0)), 127
    elif kind == "RELU6":
        lo, hi = max(-128, q(0.0)), min(127, q(6.0))
    elif kind in ("RELU_N1_TO_1", "RELU1"):
        lo, hi = max(-128, q(-1.0)), min(127, q(1.0))
    else:
        raise ValueError(f"unknown relu kind {kind!r}")
    return _requant_lut(in_scale, in_zp, out_zp, mult, shift, lo, hi)


def lut_requantize(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 LUT for int8 -> int8 QUANTIZE (TFLite Requantize; multiplier in double).

    >>> t = lut_requantize(0.5, 0, 0.25, 3)
    >>> int(t[1 + 128]), int(t[-1 + 128]), int(t[100 + 128])
    (5, 1, 127)
    """
    mult, shift = quantize_multiplier(float(_F32(in_scale)) / float(_F32(out_scale)))
    return _requant_lut(in_scale, in_zp, out_zp, mult, shift, -128, 127)


def lut_float_requantize(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 LUT of DEQUANTIZE then float -> int8 QUANTIZE, in float32 as TFLite computes them
    (``(x - in_zp) * in_scale``, then ``round(f / out_scale) + out_zp``, half away from zero, clamped):
    what a float op left between the two by the converter (a float SPLIT) leaves when moved to int8.

    >>> t = lut_float_requantize(0.5, 0, 0.25, 3)
    >>> int(t[1 + 128]), int(t[-1 + 128]), int(t[100 + 128])
    (5, 1, 127)
    """
    x = np.arange(-128, 128, dtype=np.int32)
    f = (x - int(in_zp)).astype(np.float32) * _F32(in_scale)
    v = (f / _F32(out_scale)).astype(np.float32).astype(np.float64)  # exact: |v| + 0.5 in double
    r = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(r.astype(np.int64) + int(out_zp), -128, 127).astype(np.int8)


def conv_pad(in_size: int, k: int, stride: int, dilation: int, padding: str) -> tuple[int, int]:
    """(output size, leading pad) of one spatial dim, as TFLite's ComputePaddingHeightWidth.

    >>> conv_pad(7, 3, 2, 1, "SAME"), conv_pad(7, 3, 2, 1, "VALID"), conv_pad(8, 3, 2, 2, "SAME")
    ((4, 1), (3, 0), (4, 1))
    """
    eff = (k - 1) * dilation + 1
    if padding.upper() == "SAME":
        out = (in_size + stride - 1) // stride
    elif padding.upper() == "VALID":
        out = (in_size - eff + stride) // stride
    else:
        raise ValueError(padding)
    total = max((out - 1) * stride + eff - in_size, 0)
    return out, total // 2


def squared_difference_params(s1: float, zp1: int, s2: float, zp2: int, so: float, zpo: int) -> dict:
    """tg_binary_params_t fields for int8 SQUARED_DIFFERENCE (squared_difference.cc Prepare).

    Inputs are rescaled to ``2 * max(s1, s2)`` after a left shift of 7 bits; the squared
    difference is requantized by ``(2 max)^2 / (2^14 so)``; all three multipliers must be < 1.

    >>> p = squared_difference_params(0.5, 0, 0.25, 10, 1.0, -3)
    >>> (p["left_shift"], p["in1_mult"], p["in1_shift"], p["in2_shift"], p["out_shift"])
    (7, 1073741824, 0, -1, -13)
    """
    twice_max = 2.0 * max(float(_F32(s1)), float(_F32(s2)))
    m1, sh1 = quantize_multiplier_smaller_than_one(float(_F32(s1)) / twice_max)
    m2, sh2 = quantize_multiplier_smaller_than_one(float(_F32(s2)) / twice_max)
    mo, sho = quantize_multiplier_smaller_than_one(twice_max * twice_max / float(_F32(1 << 14) * _F32(so)))
    return dict(in1_offset=-int(zp1), in1_mult=m1, in1_shift=sh1, in2_offset=-int(zp2), in2_mult=m2, in2_shift=sh2,
                left_shift=7, out_offset=int(zpo), out_mult=mo, out_shift=sho, act_min=-128, act_max=127)


def prelu_params(s_in: float, zp_in: int, s_alpha: float, zp_alpha: int, so: float, zpo: int) -> dict:
    """tg_binary_params_t fields for int8 PRELU (activations.cc PreluPrepare): x >= 0 uses
    ``in1_mult/in1_shift`` = s_in / so, x < 0 uses ``out_mult/out_shift`` = s_in * s_alpha / so on
    (x - zp_in) * (alpha - zp_alpha); the scale products are float32.

    >>> p = prelu_params(0.5, 1, 0.25, -2, 0.125, 5)
    >>> (p["in1_mult"], p["in1_shift"], p["out_mult"], p["out_shift"], p["in2_offset"])
    (1073741824, 3, 1073741824, 1, 2)
    """
    m1, sh1 = quantize_multiplier(float(_F32(s_in) / _F32(so)))
    m2, sh2 = quantize_multiplier(float(_F32(s_in) * _F32(s_alpha) / _F32(so)))
    return dict(in1_offset=-int(zp_in), in1_mult=m1, in1_shift=sh1, in2_offset=-int(zp_alpha), in2_mult=0, in2_shift=0,
                left_shift=0, out_offset=int(zpo), out_mult=m2, out_shift=sh2, act_min=-128, act_max=127)
