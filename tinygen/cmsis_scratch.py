"""Build-time scratch-buffer sizes of the CMSIS-NN (v7.0.0) s8 kernels.

The CMSIS-NN backend (firmware/tg_backend_cmsis.c) hands each kernel a statically
planned scratch region.  Its size is what CMSIS-NN's ``*_get_buffer_size()`` returns
*when compiled for the target*, which depends on the target's feature set
(``ARM_MATH_DSP`` / ``ARM_MATH_MVEI``, derived by CMSIS-NN from ``__ARM_FEATURE_DSP`` /
``__ARM_FEATURE_MVE``) and in two places on the compiler (armclang vs the rest).
The compiler must know these sizes without any toolchain, so this module mirrors the
C logic of CMSIS-NN v7.0.0 line by line (including C's truncating ``/`` and ``%``):

    arch="none"  no DSP extension (Cortex-M0/M0+/M3, or the host build):
                 the plain ``*_get_buffer_size`` compiled without ARM_MATH_DSP/MVEI.
    arch="dsp"   Cortex-M4/M7/M33/M35P... with the DSP extension:
                 ``*_get_buffer_size_dsp`` (what the plain function returns there).
    arch="mve"   Cortex-M55/M85 (Helium): ``*_get_buffer_size_mve``.

``compiler`` is "gcc" (arm-none-eabi-gcc, also clang/IAR: everything that is not
armclang >= 6.10.50) or "armclang"; it matters only for the 1x1-fast conv buffer on
"dsp" and for the depthwise->conv conversion threshold on "mve".

``params`` is a dict with the field names of the C structs in firmware/tg_nn.h:
tensors ``in``/``filter``/``out`` are dicts ``{"n","h","w","c"}`` or 4-tuples
``(n, h, w, c)``; conv fields ``stride_h``, ``stride_w``, ``pad_h``, ``pad_w``, ``dil_h``,
``dil_w`` (dilation defaults to 1); FC fields ``batches``, ``in_depth``, ``out_depth``;
pool fields ``in``, ``out``, ``filter_h``, ``filter_w``, ...

Two layers: ``*_get_buffer_size`` functions mirror CMSIS-NN exactly; ``conv2d_scratch``,
``dwconv2d_scratch``, ``fully_connected_scratch`` and ``avgpool_scratch`` return what the
backend's ``tg_*_scratch()`` return, i.e. the buffer of the CMSIS-NN function the backend
actually calls (it bypasses the Helium 1xN conv kernel and the double-rounding FC kernels,
see firmware/tg_backend_cmsis.c). tests/test_cmsis_backend.py checks the mirrors against
the real CMSIS-NN functions on the host and the backend sizes on Cortex-M33 / M55 builds.
"""

from __future__ import annotations

from typing import Any, Mapping

ARCHS = ("none", "dsp", "mve")
COMPILERS = ("gcc", "armclang")

# Include/arm_nnsupportfunctions.h (v7.0.0)
CH_IN_BLOCK_MVE = 124

SIZEOF_INT8 = 1
SIZEOF_INT16 = 2
SIZEOF_INT32 = 4


class ScratchParamError(ValueError):
    """Invalid parameters or target description for a scratch-size query."""


# --------------------------------------------------------------------------- helpers

def _c_div(a: int, b: int) -> int:
    """C99 integer division (truncates toward zero)."""
    if b == 0:
        raise ScratchParamError("division by zero (stride must be > 0)")
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _c_mod(a: int, b: int) -> int:
    """C99 remainder (sign of the dividend)."""
    return a - _c_div(a, b) * b


class _Dims:
    __slots__ = ("n", "h", "w", "c")

    def __init__(self, n: int, h: int, w: int, c: int):
        self.n, self.h, self.w, self.c = int(n), int(h), int(w), int(c)


def _dims(params: Mapping[str, Any], key: str) -> _Dims:
    if key not in params:
        raise ScratchParamError(f"params is missing tensor dims {key!r}")
    v = params[key]
    if isinstance(v, Mapping):
        try:
            return _Dims(v["n"], v["h"], v["w"], v["c"])
        except KeyError as e:
            raise ScratchParamError(f"params[{key!r}] lacks field {e.args[0]!r} (need n, h, w, c)") from None
    try:
        n, h, w, c = v
    except (TypeError, ValueError):
        raise ScratchParamError(f"params[{key!r}] must be a dict n,h,w,c or a 4-tuple, got {v!r}") from None
    return _Dims(n, h, w, c)


def _field(params: Mapping[str, Any], key: str, default: int | None = None) -> int:
    if key in params and params[key] is not None:
        return int(params[key])
    if default is None:
        raise ScratchParamError(f"params is missing field {key!r}")
    return default


def _check_target(arch: str, compiler: str) -> None:
    if arch not in ARCHS:
        raise ScratchParamError(f"unknown arch {arch!r}: expected one of {ARCHS}")
    if compiler not in COMPILERS:
        raise ScratchParamError(f"unknown compiler {compiler!r}: expected one of {COMPILERS}")


class _Conv:
    """The subset of cmsis_nn_conv_params / cmsis_nn_dw_conv_params the sizes use."""

    __slots__ = ("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w")

    def __init__(self, params: Mapping[str, Any]):
        self.stride_h = _field(params, "stride_h")
        self.stride_w = _field(params, "stride_w")
        self.pad_h = _field(params, "pad_h")
        self.pad_w = _field(params, "pad_w")
        self.dil_h = _field(params, "dil_h", 1)
        self.dil_w = _field(params, "dil_w", 1)


# ------------------------------------------------ Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c

def _convolve_1x1_s8_fast_dsp(inp: _Dims, compiler: str) -> int:
    """static arm_convolve_1x1_s8_fast_get_buffer_size_dsp()"""
    if compiler == "armclang":
        return (2 * inp.c) * SIZEOF_INT16
    return 0


def _convolve_s8_mve(inp: _Dims, flt: _Dims) -> int:
    """static arm_convolve_s8_get_buffer_size_mve()"""
    col_length = inp.c * flt.w * flt.h
    col_length = _c_div(col_length + 15, 16)
    return 4 * col_length * 16 * SIZEOF_INT8


def _convolve_1_x_n_s8_mve(cp: _Conv, inp: _Dims, flt: _Dims, out: _Dims) -> int:
    """static arm_convolve_1_x_n_s8_get_buffer_size_mve()"""
    input_x = inp.w
    pad_x = cp.pad_w
    kernel_x = flt.w
    output_x = out.w
    stride_x = cp.stride_w
    total_pad = (output_x - 1) * stride_x + kernel_x - input_x
    asym_pad = _c_mod(total_pad, 2)

    right_pad_num = max(1, _c_div(pad_x + asym_pad + stride_x - 1, stride_x)) if pad_x + asym_pad != 0 else 0
    left_pad_num = max(1, _c_div(pad_x + stride_x - 1, stride_x)) if pad_x != 0 else 0
    no_pad_num = max(output_x - (right_pad_num + left_pad_num), 0)

    if right_pad_num + no_pad_num + left_pad_num != output_x:
        return _convolve_s8_mve(inp, flt)

    pad_size_left = pad_x * inp.c
    pad_size_right = right_pad_num * inp.c if asym_pad else pad_size_left
    num_elem_left = kernel_x * inp.c
    num_elem_right = num_elem_left - inp.c
    return max(num_elem_left + pad_size_left, num_elem_right + pad_size_right)


def _convolve_s8(inp: _Dims, flt: _Dims, arch: str) -> int:
    """arm_convolve_s8_get_buffer_size() as compiled for `arch`."""
    if arch == "mve":
        return _convolve_s8_mve(inp, flt)
    rhs_cols = flt.w * flt.h * inp.c
    remainder = _c_mod(rhs_cols, 4)
    aligned_rhs_cols = rhs_cols + 4 - remainder if remainder != 0 else rhs_cols
    return (2 * aligned_rhs_cols) * SIZEOF_INT16


def _convolve_1_x_n_s8(cp: _Conv, inp: _Dims, flt: _Dims, out: _Dims, arch: str) -> int:
    """arm_convolve_1_x_n_s8_get_buffer_size() as compiled for `arch`."""
    if arch != "mve":
        return _convolve_s8(inp, flt, arch)
    return _convolve_1_x_n_s8_mve(cp, inp, flt, out)


def _convolve_1x1_s8_fast(inp: _Dims, arch: str, compiler: str) -> int:
    """arm_convolve_1x1_s8_fast_get_buffer_size() as compiled for `arch`."""
    if arch == "dsp":
        return _convolve_1x1_s8_fast_dsp(inp, compiler)
    return 0


def _is_1x1(cp: _Conv, flt: _Dims) -> bool:
    return cp.pad_w == 0 and cp.pad_h == 0 and flt.w == 1 and flt.h == 1 and cp.dil_w == 1 and cp.dil_h == 1


def _is_1_x_n(cp: _Conv, inp: _Dims, flt: _Dims) -> bool:
    return inp.h == 1 and cp.dil_w == 1 and flt.h == 1 and _c_mod(cp.stride_w * inp.c, 4) == 0


def _convolve_wrapper_s8(cp: _Conv, inp: _Dims, flt: _Dims, out: _Dims, arch: str, compiler: str) -> int:
    """arm_convolve_wrapper_s8_get_buffer_size{,_dsp,_mve}() (the three branches of the
    plain function are identical to _dsp/_mve/the non-DSP default)."""
    if _is_1x1(cp, flt):
        if cp.stride_w == 1 and cp.stride_h == 1:
            if arch == "dsp":
                return _convolve_1x1_s8_fast_dsp(inp, compiler)
            # none: arm_convolve_1x1_s8_fast_get_buffer_size() without DSP -> 0
            # mve:  arm_convolve_1x1_s8_fast_get_buffer_size() with MVEI -> 0
            return _convolve_1x1_s8_fast(inp, arch, compiler)
        return 0
    if _is_1_x_n(cp, inp, flt):
        if arch == "mve":
            return _convolve_1_x_n_s8_mve(cp, inp, flt, out)
        return _convolve_1_x_n_s8(cp, inp, flt, out, arch)
    if arch == "mve":
        return _convolve_s8_mve(inp, flt)
    return _convolve_s8(inp, flt, arch)


def convolve_wrapper_s8_get_buffer_size(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Mirrors CMSIS-NN v7.0.0 ``arm_convolve_wrapper_s8_get_buffer_size()`` (arch "none"),
    ``arm_convolve_wrapper_s8_get_buffer_size_dsp()`` (arch "dsp") and
    ``arm_convolve_wrapper_s8_get_buffer_size_mve()`` (arch "mve"), from
    Source/ConvolutionFunctions/arm_convolve_get_buffer_sizes_s8.c, including the
    sub-kernel choice: 1x1 stride 1 -> arm_convolve_1x1_s8_fast (0 bytes unless armclang
    on DSP: 4*in_c), 1x1 strided -> arm_convolve_1x1_s8 (0), 1xN (in_h == 1, kernel_h == 1,
    dil_w == 1, stride_w*in_c % 4 == 0) -> arm_convolve_1_x_n_s8, else arm_convolve_s8.
    ``params['filter']`` is {out_c, kh, kw, in_c} as in tg_conv_params_t.
    """
    _check_target(arch, compiler)
    cp = _Conv(params)
    return _convolve_wrapper_s8(cp, _dims(params, "in"), _dims(params, "filter"), _dims(params, "out"), arch, compiler)


def conv2d_scratch(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Scratch bytes of a CMSIS-NN conv chosen as the wrapper would (the registry picks the kernel itself).

    :func:`convolve_wrapper_s8_get_buffer_size`, except on Helium ("mve") for the convs the
    wrapper would send to arm_convolve_1_x_n_s8 (not bit-exact in CMSIS-NN v7.0.0 for some
    TFLite paddings): the backend calls arm_convolve_s8 for those, so the size is
    ``arm_convolve_s8_get_buffer_size()`` (MVE: 4 * ceil(in_c*kh*kw / 16) * 16).
    """
    _check_target(arch, compiler)
    cp = _Conv(params)
    inp, flt, out = _dims(params, "in"), _dims(params, "filter"), _dims(params, "out")
    if arch == "mve" and not _is_1x1(cp, flt) and _is_1_x_n(cp, inp, flt):
        return _convolve_s8_mve(inp, flt)
    return _convolve_wrapper_s8(cp, inp, flt, out, arch, compiler)


# ---------------------------------------- Source/ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c

def _dw_to_conv_threshold(compiler: str) -> int:
    """CONVERT_DW_CONV_WITH_ONE_INPUT_CH_AND_OUTPUT_CH_ABOVE_THRESHOLD (arm_nnsupportfunctions.h)."""
    return 8 if compiler == "armclang" else 1


def _dw_one_in_ch_mve(cp: _Conv, inp: _Dims, flt: _Dims, out: _Dims, compiler: str) -> int:
    """static arm_deptwise_conv_s8_one_in_ch_get_buffer_size_mve()"""
    filter_conv = _Dims(flt.c, flt.h, flt.w, flt.n)
    size = _convolve_wrapper_s8(cp, inp, filter_conv, out, "mve", compiler)
    return size + flt.c * flt.h * flt.w * flt.n


def _dw_opt(inp: _Dims, flt: _Dims, arch: str) -> int:
    """arm_depthwise_conv_s8_opt_get_buffer_size{_mve,_dsp,}()"""
    if arch == "mve":
        return (4 * CH_IN_BLOCK_MVE * flt.w * flt.h) * SIZEOF_INT8
    if arch == "dsp":
        return (inp.c * flt.w * flt.h) * SIZEOF_INT16
    return 0


def depthwise_conv_wrapper_s8_get_buffer_size(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Mirrors CMSIS-NN v7.0.0 ``arm_depthwise_conv_wrapper_s8_get_buffer_size()`` (arch
    "none": always 0), ``..._get_buffer_size_dsp()`` (arch "dsp": 0 for the 3x3 kernel with
    pad <= 1, in_c*kh*kw*2 for arm_depthwise_conv_s8_opt, 0 for the generic
    arm_depthwise_conv_s8 used when ch_mult > 1, batches > 1 or dilated) and
    ``..._get_buffer_size_mve()`` (arch "mve": 4*124*kh*kw for the opt kernel, or the
    conv-wrapper size + weights size when in_c == 1 and out_c exceeds the
    depthwise->conv conversion threshold), from
    Source/ConvolutionFunctions/arm_depthwise_conv_get_buffer_sizes_s8.c.
    ``params['filter']`` is {1, kh, kw, out_c} as in tg_conv_params_t.
    """
    _check_target(arch, compiler)
    cp = _Conv(params)
    inp, flt, out = _dims(params, "in"), _dims(params, "filter"), _dims(params, "out")
    opt_ok = inp.c == out.c and inp.n == 1 and cp.dil_w == 1 and cp.dil_h == 1
    if arch == "mve":
        size = _dw_opt(inp, flt, "mve") if opt_ok else 0
        if inp.c == 1 and out.c > _dw_to_conv_threshold(compiler):
            to_conv = _dw_one_in_ch_mve(cp, inp, flt, out, compiler)
            if to_conv > size:
                return to_conv
        return size
    if opt_ok:
        if flt.w == 3 and flt.h == 3 and cp.pad_h <= 1 and cp.pad_w <= 1:
            return 0
        return _dw_opt(inp, flt, arch)
    return 0


def dwconv2d_scratch(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Scratch bytes of tg_dwconv2d_s8 on the CMSIS-NN backend (= tg_dwconv2d_s8_scratch()).

    :func:`depthwise_conv_wrapper_s8_get_buffer_size`, except on Helium when the wrapper
    would convert a one-input-channel depthwise conv into a conv that reaches
    arm_convolve_1_x_n_s8 (see :func:`conv2d_scratch`): the backend runs
    arm_depthwise_conv_s8 instead, which needs no buffer (0).
    """
    _check_target(arch, compiler)
    cp = _Conv(params)
    inp, flt, out = _dims(params, "in"), _dims(params, "filter"), _dims(params, "out")
    if arch == "mve" and inp.c == 1 and out.c > _dw_to_conv_threshold(compiler):
        filter_conv = _Dims(flt.c, flt.h, flt.w, flt.n)
        if not _is_1x1(cp, filter_conv) and _is_1_x_n(cp, inp, filter_conv):
            return 0
    return depthwise_conv_wrapper_s8_get_buffer_size(params, arch, compiler)


# --------------------------------------- Source/FullyConnectedFunctions/arm_fully_connected_get_buffer_sizes_s8.c

def fully_connected_s8_get_buffer_size(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Mirrors CMSIS-NN v7.0.0 ``arm_fully_connected_s8_get_buffer_size()`` (arch "none",
    = the _dsp variant), ``..._get_buffer_size_dsp()`` (0) and ``..._get_buffer_size_mve()``
    (filter_dims->c * sizeof(int32_t) = out_depth * 4: the kernel-sum vector that
    arm_vector_sum_s8 fills and the Helium matrix-vector kernels read instead of the bias).
    """
    _check_target(arch, compiler)
    out_depth = _field(params, "out_depth")
    if arch == "mve":
        return out_depth * SIZEOF_INT32
    return 0


FC_CHUNK = 32  # TG_FC_CHUNK in firmware/tg_backend_cmsis.c


def fully_connected_scratch(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Scratch bytes of tg_cmsis_fully_connected_s8 (= tg_cmsis_fully_connected_s8_scratch()).

    ``min(out_depth, 32) * 4`` on every architecture: TFLite's reference FULLY_CONNECTED rounds
    once, CMSIS-NN's FC kernels twice, so the backend computes int32 outputs 32 at a time with
    CMSIS-NN's arm_nn_mat_mult_nt_t_s8_s32 into this buffer and requantizes them itself (see
    firmware/tg_backend_cmsis.c). arm_fully_connected_s8 is not used, hence no kernel sums.
    """
    _check_target(arch, compiler)
    out_depth = _field(params, "out_depth")
    if out_depth <= 0:
        raise ScratchParamError(f"out_depth must be > 0, got {out_depth}")
    return min(out_depth, FC_CHUNK) * SIZEOF_INT32


# ------------------------------------------------- Source/PoolingFunctions/arm_avgpool_get_buffer_sizes_s8.c

def avgpool_scratch(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Scratch bytes of tg_avgpool_s8 on the CMSIS-NN backend.

    Mirrors CMSIS-NN v7.0.0 ``arm_avgpool_s8_get_buffer_size(out.w, in.c)`` (arch "none": 0),
    ``arm_avgpool_s8_get_buffer_size_dsp()`` (in_c * sizeof(int32_t)) and
    ``arm_avgpool_s8_get_buffer_size_mve()`` (0).
    """
    _check_target(arch, compiler)
    inp = _dims(params, "in")
    if arch == "dsp":
        return inp.c * SIZEOF_INT32
    return 0


def avgpool_s8_get_buffer_size(params: Mapping[str, Any], arch: str, compiler: str = "gcc") -> int:
    """Mirrors CMSIS-NN v7.0.0 ``arm_avgpool_s8_get_buffer_size{,_dsp,_mve}(out.w, in.c)``
    (the backend uses arm_avgpool_s8 unchanged: same as :func:`avgpool_scratch`)."""
    return avgpool_scratch(params, arch, compiler)


# What the backend's tg_*_scratch() return (the compiler plans these) ...
SCRATCH_FUNCS = {
    "conv2d": conv2d_scratch,
    "dwconv2d": dwconv2d_scratch,
    "fully_connected": fully_connected_scratch,
    "avgpool": avgpool_scratch,
}

# ... and the plain mirrors of CMSIS-NN's *_get_buffer_size functions (validated by the tests).
CMSIS_GET_BUFFER_SIZE = {
    "arm_convolve_wrapper_s8_get_buffer_size": convolve_wrapper_s8_get_buffer_size,
    "arm_depthwise_conv_wrapper_s8_get_buffer_size": depthwise_conv_wrapper_s8_get_buffer_size,
    "arm_fully_connected_s8_get_buffer_size": fully_connected_s8_get_buffer_size,
    "arm_avgpool_s8_get_buffer_size": avgpool_s8_get_buffer_size,
}

# Scratch pointers are cast to int16_t*/int32_t* by the kernels: plan them 4-byte aligned.
SCRATCH_ALIGN = 4
