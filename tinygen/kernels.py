"""The kernel registry: which C function runs each layer, chosen once, at compile time.

One :class:`Kernel` entry per implementation: the portable reference kernels
(``firmware/tg_kernels_ref.c``, any target) and one thin adapter per CMSIS-NN v7.0.0 function
(``firmware/tg_backend_cmsis.c``: converts tinygen's params struct and calls exactly that
function, no checks, no fallback). An entry says

- which ops it runs and in which kernel set (``portable`` or ``cmsis-nn``),
- when it applies: ``applies(low, arch)`` returns ``None`` or the reason it does not,
- its C symbol and call operands (data, rendered by the emitter: :class:`Call`),
- its scratch bytes (CMSIS-NN's ``*_get_buffer_size`` formulas, :mod:`tinygen.cmsis_scratch`),
  the C function that returns the same size at start-up (checked by ``tg_model_init``), and
  whether its output may start at its scratch's first byte (its access order allows it),
- its access contract (``access(low, arch)``, :mod:`tinygen.overlap`): the order in which it reads an
  input and writes its output, from which the planner derives how close the output may sit below an
  input that dies at this call; ``None`` (the default): it never overlaps.

:func:`select` picks, for a layer, the first entry of the requested set that applies (the
CMSIS-NN entries reproduce ``arm_convolve_wrapper_s8`` / ``arm_depthwise_conv_wrapper_s8``'s
choice), else the portable entry; `--backend` is a constraint on that choice. The estimate of a
kernel's cost comes from :mod:`tinygen.cyclemodel` (keyed by :attr:`Kernel.name`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from . import cmsis_scratch as cs
from . import overlap as ov
from .errors import CompilerBug
from .ops import Lowered

KERNEL_SETS = ("generated", "cmsis-nn", "portable")
# op -> the tinygen.kernelgen family modules that may generate a specialized kernel for it
GENERATED_FAMILIES = {"CONV_2D": ("conv",), "FULLY_CONNECTED": ("fc",), "DEPTHWISE_CONV_2D": ("dwconv",),
                      "AVERAGE_POOL_2D": ("pool",), "MEAN": ("pool",), "MAX_POOL_2D": ("pool",),
                      "ADD": ("eltwise",), "MUL": ("eltwise",)}
FC_CHUNK = 32  # outputs per call of the CMSIS-NN matrix kernel (tg_cmsis_fully_connected_s8's int32 row)


# ---- call operands (what the emitter renders) --------------------------------------------------


@dataclass(frozen=True)
class Operand:
    """One argument of a kernel call.

    ``kind``: ``params`` (address of the layer's const struct), ``in``/``out`` (activation k),
    ``ins`` / ``outs`` (array of all inputs / outputs), ``scratch``, ``arr`` (constant array ``name``), ``imm``
    (immediate ``name`` of :attr:`Lowered.imm`); ``cast`` is an optional C cast.
    """

    kind: str
    index: int = 0
    name: str = ""
    cast: str = ""


P, IN0, IN1, OUT0, SCRATCH, INS, OUTS = (Operand("params"), Operand("in", 0), Operand("in", 1), Operand("out", 0),
                                         Operand("scratch"), Operand("ins"), Operand("outs"))


def arr(name: str) -> Operand:
    return Operand("arr", name=name)


def imm(name: str) -> Operand:
    return Operand("imm", name=name)


@dataclass(frozen=True)
class Kernel:
    name: str  # what runs (the CMSIS-NN function, or the tg_ref_* kernel); cycle-model key
    symbol: str  # the C function the generated model.c calls
    ops: tuple[str, ...]
    kset: str
    operands: tuple[Operand, ...]
    applies: Callable[[Lowered, str], str | None] = lambda low, arch: None
    scratch: Callable[[Lowered, str], int] = lambda low, arch: 0
    scratch_fn: str | None = None  # C function returning the scratch size (start-up check)
    scratch_holds_output: Callable[[Lowered, int], bool] | None = None
    doc: str = ""
    access: Callable[[Lowered, str], "ov.Contract | None"] | None = None  # access contract (tinygen.overlap)

    def contract(self, low: Lowered, arch: str) -> "ov.Contract | None":
        return self.access(low, arch) if self.access is not None else None


@dataclass
class Call:
    """A layer's kernel call as data: the chosen kernel, the op's parameters and the scratch size.

    For a generated kernel, ``generated`` holds its C source (rendered by tinygen.kernelgen with the
    layer's constants baked in); ``kernel`` is then the layer's own entry (symbol ``tg_gen_<pos>``)."""

    kernel: Kernel
    low: Lowered
    scratch: int = 0
    alternatives: list[str] = field(default_factory=list)  # other kernels that apply (analyze shows them)
    generated: object = None  # tinygen.kernelgen.Generated
    cost: float = 0.0  # estimated instructions of the chosen kernel (0: unknown)
    alt_costs: dict = field(default_factory=dict)  # alternative -> its estimated instructions (generated set)
    arch: str = ""  # the target's feature set the kernel was chosen for ('' unknown: strictest contract)

    @property
    def symbol(self) -> str:
        return self.kernel.symbol


REGISTRY: list[Kernel] = []


def register(name, symbol, ops, kset, operands, applies=None, scratch=None, scratch_fn=None, holds_output=None, doc="",
             access=None):
    k = Kernel(name, symbol, tuple(ops), kset, tuple(operands), applies or (lambda low, arch: None),
               scratch or (lambda low, arch: 0), scratch_fn, holds_output, doc, access)
    REGISTRY.append(k)
    return k


# ---- access contracts (read from the C; tinygen.overlap) ---------------------------------------


def _acc_window(low, arch):
    """tg_ref_conv2d_s8 / tg_ref_dwconv2d_s8 / tg_pool (tg_kernels_ref.c): loops b, oy, ox, then the
    output channels; each output byte is written right after its own window sum, so output pixel j is
    written while the rest of pixel j's window is still read; no input pixel is read after the last
    output pixel whose window holds it."""
    p = low.params
    fh, fw = (p["filter"]["h"], p["filter"]["w"]) if "filter" in p else (p["filter_h"], p["filter_w"])
    return ov.window(p, fh, fw, doc=_acc_window.__doc__ or "")


def _acc_ref_dw(low, arch):
    """tg_ref_dwconv2d_s8: loops b, oy, ox, ic, m; each output byte (channel ic * m + m') is written
    right after its window sum over input channel ic alone: the byte-granular depthwise contract."""
    p = low.params
    return ov.channel_window(p, p["filter"]["h"], p["filter"]["w"], _acc_ref_dw.__doc__ or "")


def _acc_elementwise(low, arch):
    """tg_ref_add_s8 / tg_ref_mul_s8 (tg_binary): out[k] is written after in1[k] and in2[k] are read, k
    in order (inputs of the output's shape); arm_elementwise_add_s8 / _mul_s8: blocks of 4 (MVE: 16)
    elements, all reads of a block before its writes."""
    p = low.params
    return ov.elementwise(p["out"], [p["in1"], p["in2"]], _acc_elementwise.__doc__ or "")


def _acc_lut(low, arch):
    """tg_ref_lut_s8: out[i] = lut[in[i]], i in order."""
    d = {"n": 1, "h": 1, "w": 1, "c": int(low.imm["size"])}
    return ov.elementwise(d, [d], _acc_lut.__doc__ or "")


def _acc_cmsis_conv(low, arch):
    """arm_convolve_s8 (one group, one batch): im2col of output pixel p's window into the scratch,
    then every 2 (MVE: 4) columns arm_nn_mat_mult_kernel_s8_s16 writes those output pixels, all
    channels: output pixel p is written after the windows of every pixel <= p are read (the pixel
    contract, reads and writes of a pixel interleaved, holds for both). Grouped or batched: none."""
    p = low.params
    if p["in"]["n"] != 1 or p["filter"]["c"] != p["in"]["c"]:
        return None
    return _acc_window(low, arch)


def _acc_cmsis_dw_opt(low, arch):
    """arm_depthwise_conv_s8_opt, DSP: per output pixel, im2col of its window then its channels
    (pixel contract); without DSP it calls arm_depthwise_conv_s8 (pixel loop). Helium walks channel
    blocks outermost over all pixels: no contract."""
    return _acc_window(low, arch) if arch in ("none", "dsp") else None


# ---- portable reference kernels (firmware/tg_kernels_ref.c) ------------------------------------


def _lut(low, arch):
    return None if "lut" in low.arrays else "not a table op"


def _float_in(low, arch):
    return None if low.imm.get("float_in") else "not float32 -> int8"


_STD = (P, IN0, OUT0)
register("tg_ref_conv2d_s8", "tg_ref_conv2d_s8", ["CONV_2D"], "portable", _STD, access=_acc_window)
register("tg_ref_dwconv2d_s8", "tg_ref_dwconv2d_s8", ["DEPTHWISE_CONV_2D"], "portable", _STD, access=_acc_ref_dw)
register("tg_ref_fully_connected_s8", "tg_ref_fully_connected_s8", ["FULLY_CONNECTED"], "portable", _STD)
register("tg_ref_transpose_conv_s8", "tg_ref_transpose_conv_s8", ["TRANSPOSE_CONV"], "portable",
         (P, Operand("in", 2), OUT0))  # TRANSPOSE_CONV's data is its third input
register("tg_ref_avgpool_s8", "tg_ref_avgpool_s8", ["AVERAGE_POOL_2D"], "portable", _STD, access=_acc_window)
register("tg_ref_maxpool_s8", "tg_ref_maxpool_s8", ["MAX_POOL_2D"], "portable", _STD, access=_acc_window)
register("tg_ref_add_s8", "tg_ref_add_s8", ["ADD", "SUB"], "portable", (P, IN0, IN1, OUT0), access=_acc_elementwise)
register("tg_ref_mul_s8", "tg_ref_mul_s8", ["MUL"], "portable", (P, IN0, IN1, OUT0), access=_acc_elementwise)
for _k in ("MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "PRELU"):
    register(f"tg_ref_{_k.lower()}_s8", f"tg_ref_{_k.lower()}_s8", [_k], "portable", (P, IN0, IN1, OUT0))
register("tg_ref_batch_matmul_s8", "tg_ref_batch_matmul_s8", ["BATCH_MATMUL"], "portable", (P, IN0, IN1, OUT0))
register("tg_ref_softmax_s8", "tg_ref_softmax_s8", ["SOFTMAX"], "portable", _STD)
register("tg_ref_lstm_s8", "tg_ref_lstm_s8", ["UNIDIRECTIONAL_SEQUENCE_LSTM"], "portable", (P, IN0, OUT0, SCRATCH),
         scratch=lambda low, arch: 11 * low.params["n_cell"], scratch_fn="tg_ref_lstm_s8_scratch",
         doc="TFLite's integer 8x8_16 LSTM (firmware/tg_kernels_lstm.c): int16 gates and cell state in the scratch")
register("tg_ref_lut_s8", "tg_ref_lut_s8", ["LOGISTIC", "RELU", "RELU6", "RELU_N1_TO_1", "QUANTIZE", "TANH", "HARD_SWISH",
                                          "LEAKY_RELU"], "portable",
         (arr("lut"), IN0, OUT0, imm("size")), applies=_lut, access=_acc_lut)
register("tg_ref_quantize_f32_s8", "tg_ref_quantize_f32_s8", ["QUANTIZE"], "portable",
         (Operand("in", 0, cast="const float *"), OUT0, imm("size"), imm("scale"), imm("zero_point")), applies=_float_in)
register("tg_ref_dequantize_s8_f32", "tg_ref_dequantize_s8_f32", ["DEQUANTIZE"], "portable",
         (IN0, Operand("out", 0, cast="float *"), imm("size"), imm("scale"), imm("zero_point")))
register("tg_ref_mean_s8", "tg_ref_mean_s8", ["MEAN"], "portable", _STD,
         applies=lambda low, arch: None if low.ptype == "tg_mean_params_t" else "not a mean over H, W")
register("tg_ref_reduce_s8", "tg_ref_reduce_s8", ["MEAN", "REDUCE_MAX", "REDUCE_MIN", "SUM"], "portable", _STD,
         applies=lambda low, arch: None if low.ptype == "tg_reduce_params_t" else "a mean over H, W (tg_ref_mean_s8)")
register("tg_ref_pad_s8", "tg_ref_pad_s8", ["PAD", "PADV2"], "portable", _STD)
register("tg_ref_concat_s8", "tg_ref_concat_s8", ["CONCATENATION", "PACK"], "portable",
         (imm("n_inputs"), INS, arr("sizes"), imm("outer"), OUT0))
register("tg_ref_remap_s8", "tg_ref_remap_s8", ["SLICE", "STRIDED_SLICE", "TRANSPOSE", "GATHER", "RESIZE_NEAREST_NEIGHBOR"],
         "portable", _STD)
register("tg_ref_resize_bilinear_s8", "tg_ref_resize_bilinear_s8", ["RESIZE_BILINEAR"], "portable", _STD)
register("tg_ref_split_s8", "tg_ref_split_s8", ["SPLIT_V", "UNPACK"], "portable",
         (imm("n_outputs"), IN0, arr("sizes"), imm("outer"), OUTS))
register("tg_ref_split_s8", "tg_ref_split_s8", ["SPLIT"], "portable",  # SPLIT's data is its second input
         (imm("n_outputs"), IN1, arr("sizes"), imm("outer"), OUTS))


# ---- CMSIS-NN v7.0.0 (firmware/tg_backend_cmsis.c adapters) -------------------------------------


def _conv(low) -> tuple[dict, dict, dict, dict]:
    p = low.params
    return p, p["in"], p["filter"], p["out"]


def _is_1x1(p, f) -> bool:
    return p["pad_h"] == 0 and p["pad_w"] == 0 and f["h"] == 1 and f["w"] == 1 and p["dil_h"] == 1 and p["dil_w"] == 1


def _is_1xn(p, i, f) -> bool:
    return i["h"] == 1 and p["dil_w"] == 1 and f["h"] == 1 and (p["stride_w"] * i["c"]) % 4 == 0


def _conv_1x1_fast(low, arch):
    p, i, f, o = _conv(low)
    ok = _is_1x1(p, f) and p["stride_h"] == 1 and p["stride_w"] == 1
    return None if ok else "not a 1x1 stride-1 unpadded conv"


def _conv_1x1(low, arch):
    p, i, f, o = _conv(low)
    return None if _is_1x1(p, f) and (p["stride_h"], p["stride_w"]) != (1, 1) else "not a strided 1x1 conv"


def _conv_1xn(low, arch):
    """Helium's arm_convolve_1_x_n_s8 is not bit-exact for some TFLite paddings in v7.0.0: not on MVE."""
    p, i, f, o = _conv(low)
    if arch == "mve":
        return "arm_convolve_1_x_n_s8 (Helium) is not bit-exact for every TFLite padding"
    return None if not _is_1x1(p, f) and _is_1xn(p, i, f) else "not a 1xN conv on a one-row input"


def _dims(d) -> cs._Dims:
    return cs._Dims(d["n"], d["h"], d["w"], d["c"])


def _cmsis_arch(arch: str) -> str:
    return arch if arch in cs.ARCHS else "none"


def _s_conv_s8(low, arch):
    p, i, f, o = _conv(low)
    return cs._convolve_s8(_dims(i), _dims(f), _cmsis_arch(arch))


def _s_conv_1xn(low, arch):
    p, i, f, o = _conv(low)
    return cs._convolve_1_x_n_s8(cs._Conv(p), _dims(i), _dims(f), _dims(o), _cmsis_arch(arch))


def _s_conv_1x1_fast(low, arch):
    return cs._convolve_1x1_s8_fast(_dims(low.params["in"]), _cmsis_arch(arch), "gcc")


def _dw_opt_ok(p, i, o) -> bool:
    return p["ch_mult"] == 1 and i["n"] == 1 and p["dil_h"] == 1 and p["dil_w"] == 1


def _dw_3x3(low, arch):
    p, i, f, o = _conv(low)
    ok = (_dw_opt_ok(p, i, o) and f["h"] == 3 and f["w"] == 3 and p["pad_h"] <= 1 and p["pad_w"] <= 1
          and arch != "mve")
    return None if ok else "not a 3x3 depthwise conv with multiplier 1 and padding <= 1"


def _dw_opt(low, arch):
    p, i, f, o = _conv(low)
    return None if _dw_opt_ok(p, i, o) else "depth multiplier > 1, batches or dilation"


def _s_dw_opt(low, arch):
    p, i, f, o = _conv(low)
    return cs._dw_opt(_dims(i), _dims(f), _cmsis_arch(arch))


def _fc_ok(low, arch):
    mult, shift = low.arrays["mult"], low.arrays["shift"]
    if shift.min() < -31 or shift.max() > 30 or mult.min() < 0:
        return "requantization shift outside [-31, 30]"
    return None


def _s_fc(low, arch):
    return min(low.params["out_depth"], FC_CHUNK) * 4


def _fc_holds_output(low, scratch: int) -> bool:
    """One row, one chunk: tg_cmsis_fully_connected_s8 fills the int32 row acc[0..n) in the scratch,
    then writes out[k] = requant(acc[k]) for k = 0, 1, ...: byte k of the output lies in acc[k / 4],
    already read, so the output may start at the scratch's first byte. Not for batched FCs (the row
    is refilled per batch) nor when the row takes several chunks."""
    p = low.params
    return p["batches"] == 1 and scratch >= 4 * p["out_depth"]


def _same_shapes(low, arch):
    p = low.params
    return None if p["in1"] == p["out"] and p["in2"] == p["out"] else "broadcasting (CMSIS-NN needs equal shapes)"


def _s_avgpool(low, arch):
    return cs.avgpool_s8_get_buffer_size(low.params, _cmsis_arch(arch))


_SP = (P, IN0, OUT0, SCRATCH)
_C = "cmsis-nn"
register("arm_convolve_1x1_s8_fast", "tg_cmsis_convolve_1x1_s8_fast", ["CONV_2D"], _C, _SP, _conv_1x1_fast,
         _s_conv_1x1_fast, "tg_cmsis_convolve_1x1_s8_fast_scratch")
register("arm_convolve_1x1_s8", "tg_cmsis_convolve_1x1_s8", ["CONV_2D"], _C, _SP, _conv_1x1)
register("arm_convolve_1_x_n_s8", "tg_cmsis_convolve_1_x_n_s8", ["CONV_2D"], _C, _SP, _conv_1xn, _s_conv_1xn,
         "tg_cmsis_convolve_1_x_n_s8_scratch")
register("arm_convolve_s8", "tg_cmsis_convolve_s8", ["CONV_2D"], _C, _SP, None, _s_conv_s8, "tg_cmsis_convolve_s8_scratch",
         access=_acc_cmsis_conv)
# arm_depthwise_conv_3x3_s8: out_h, out_w, then blocks of 4 channels, each written after its 3x3 window
register("arm_depthwise_conv_3x3_s8", "tg_cmsis_depthwise_conv_3x3_s8", ["DEPTHWISE_CONV_2D"], _C, _SP, _dw_3x3,
         access=_acc_window)
register("arm_depthwise_conv_s8_opt", "tg_cmsis_depthwise_conv_s8_opt", ["DEPTHWISE_CONV_2D"], _C, _SP, _dw_opt,
         _s_dw_opt, "tg_cmsis_depthwise_conv_s8_opt_scratch", access=_acc_cmsis_dw_opt)
# arm_depthwise_conv_s8 (generic and multiplier-4 paths): batch, out_y, out_x, then the channels
register("arm_depthwise_conv_s8", "tg_cmsis_depthwise_conv_s8", ["DEPTHWISE_CONV_2D"], _C, _SP, access=_acc_window)
register("arm_nn_mat_mult_nt_t_s8_s32", "tg_cmsis_fully_connected_s8", ["FULLY_CONNECTED"], _C, _SP, _fc_ok, _s_fc,
         "tg_cmsis_fully_connected_s8_scratch", _fc_holds_output,
         doc="CMSIS-NN's s8 x s8 -> s32 matrix kernel, then TFLite 2.21's single-rounding requantization")
# arm_avgpool_s8 / arm_max_pool_s8: i_y, i_x, then the window into the pixel's channels (max pool
# compares in place in the output pixel; avgpool sums into the scratch): the pixel contract
register("arm_avgpool_s8", "tg_cmsis_avgpool_s8", ["AVERAGE_POOL_2D"], _C, _SP, None, _s_avgpool,
         "tg_cmsis_avgpool_s8_scratch", access=_acc_window)
register("arm_max_pool_s8", "tg_cmsis_max_pool_s8", ["MAX_POOL_2D"], _C, _STD, access=_acc_window)
register("arm_elementwise_add_s8", "tg_cmsis_elementwise_add_s8", ["ADD", "SUB"], _C, (P, IN0, IN1, OUT0), _same_shapes,
         access=_acc_elementwise)
register("arm_elementwise_mul_s8", "tg_cmsis_elementwise_mul_s8", ["MUL"], _C, (P, IN0, IN1, OUT0), _same_shapes,
         access=_acc_elementwise)
register("arm_softmax_s8", "tg_cmsis_softmax_s8", ["SOFTMAX"], _C, _STD)
register("arm_pad_s8", "tg_cmsis_pad_s8", ["PAD", "PADV2"], _C, _STD)


# ---- selection -----------------------------------------------------------------------------------


def candidates(kind: str, kset: str) -> list[Kernel]:
    """The registry entries of ``kset`` for op ``kind``, in priority order, then the portable ones
    (the generated set's own kernels are made per layer: :func:`_generate`)."""
    own = [k for k in REGISTRY if kind in k.ops and k.kset == kset]
    return own + ([k for k in REGISTRY if kind in k.ops and k.kset == "portable"] if kset != "portable" else [])


def _families(kind: str):
    import importlib

    for name in GENERATED_FAMILIES.get(kind, ()):
        try:
            yield name, importlib.import_module(f"tinygen.kernelgen.{name}")
        except ImportError:
            continue


_GEN_OPERANDS = {"in0": IN0, "in1": IN1, "out0": OUT0, "scratch": SCRATCH}


def _gen_access(fam, kind: str, gen):
    """The generated family's access contract (its ``access(kind, params, arch, **notes["access"])``,
    read from its template), computed once per layer and arch; None when the family declares none."""
    fn = getattr(fam, "access", None)
    if fn is None:
        return None
    memo: dict = {}
    extra = dict(gen.notes.get("access", {}))

    def access(low, arch):
        if arch not in memo:
            memo[arch] = fn(kind, low.params, arch, **extra)
        return memo[arch]

    return access


def _gen_call(name, fam, kind, low, arch, gen) -> tuple[float, Call]:
    k = Kernel(f"gen.{name}", gen.symbol, (kind,), "generated", tuple(_GEN_OPERANDS[a] for a in gen.args),
               doc=str(gen.notes.get("variant", "")), access=_gen_access(fam, kind, gen))
    from . import cyclemodel  # the family's estimate, corrected by its QEMU calibration; a variant's extra on top

    cost = (float(fam.cost(kind, low.params, low.arrays, arch)) * cyclemodel.cached().generated_scale(k.name)
            + float(gen.notes.get("cost_extra", 0.0)))
    return cost, Call(k, low, int(gen.scratch), generated=gen, cost=cost, arch=arch)


def _generate(kind: str, low: Lowered, arch: str, symbol: str, variants: bool = False) -> list[tuple[float, Call]]:
    """Generated candidates for a layer: (estimated instructions, call) per family that applies (and
    with ``variants`` the families' other variants, e.g. the reverse walk)."""
    out = []
    for name, fam in _families(kind):
        if fam.applies(kind, low.params, low.arrays, arch) is not None:
            continue
        out.append(_gen_call(name, fam, kind, low, arch, fam.generate(kind, low.params, low.arrays, arch, symbol)))
        if variants and hasattr(fam, "alternatives"):
            out += [_gen_call(name, fam, kind, low, arch, gen)
                    for gen in fam.alternatives(kind, low.params, low.arrays, arch, symbol)]
    return out


def generated_for(kind: str, low: Lowered, arch: str, symbol: str) -> list[Call]:
    """Every generated kernel call for a layer (the arena-driven choice of
    :func:`tinygen.overlap_plan.trade` weighs them against the one :func:`select` chose)."""
    return [c for _, c in _generate(kind, low, arch, symbol, variants=True)]


# At most this many layers of one model get a kernel generated for them (the most MACs first);
# the others run the fallback set's kernels: each generated kernel is its own C source (~40 ms of
# gcc at -O2), so a 10,000-layer model would spend minutes compiling (benchmarks/build_time.py).
GENERATED_BUDGET = 128


def select(kind: str, low: Lowered, kset: str, arch: str, symbol: str = "tg_gen", fallback=("portable",),
           macs: int = 0, out_bytes: int = 0, gen_arch: str | None = None) -> Call:
    """The kernel that runs a layer, chosen at compile time.

    ``portable`` / ``cmsis-nn``: the first entry of :func:`candidates` that applies (the CMSIS-NN
    entries are ordered as CMSIS-NN's wrappers choose). ``generated``: the cheapest by estimated
    instructions among the kernels generated for this layer and the ``fallback`` sets' choices
    (``cmsis-nn`` only when the build has CMSIS-NN); ``symbol`` names a generated kernel;
    ``macs`` / ``out_bytes`` feed the cycle model's estimate of the fallback kernels; ``gen_arch`` is
    what the generated code targets ('dsp': ACLE intrinsics, emulated in C by tg_dsp.h on the host;
    'none': plain C), default ``arch``.
    """
    if kset not in KERNEL_SETS:
        raise CompilerBug("kernels", f"unknown kernel set {kset!r}")
    if kset == "generated":
        options = _generate(kind, low, gen_arch or arch, symbol)
        for fb in fallback:
            c = select(kind, low, fb, arch)
            c.cost = float(estimate(c.kernel, kind, macs, out_bytes))
            options.append((c.cost if c.cost > 0 else float("inf"), c))
        options.sort(key=lambda o: o[0])  # stable: ties keep generated first, then the fallback order
        best = options[0][1]
        best.alternatives = [c.kernel.name for _, c in options[1:]]
        best.alt_costs = {c.kernel.name: cost for cost, c in options[1:] if cost != float("inf")}
        return best
    chosen, others = None, []
    for k in candidates(kind, kset):
        if k.applies(low, arch) is None:
            if chosen is None:
                chosen = k
            else:
                others.append(k.name)
    if chosen is None:
        raise CompilerBug("kernels", f"no kernel in the {kset} set runs {kind}")
    return Call(chosen, low, int(chosen.scratch(low, arch)), others, arch=arch)


def estimate(kernel: Kernel, kind: str, macs: int, out_bytes: int, core: str = "cortex-m33") -> int:
    """Estimated instructions of one call of ``kernel`` (the cycle model fitted on QEMU counts,
    :mod:`tinygen.cyclemodel`; 0 where uncalibrated): the cost the choice and `analyze` use."""
    from . import cyclemodel

    return cyclemodel.cached().instructions(kernel.kset, core, kernel.name, kind, macs, out_bytes)


def by_name(name: str) -> Kernel:
    for k in REGISTRY:
        if k.name == name:
            return k
    raise KeyError(name)


def kernels_markdown() -> str:
    rows = ["| kernel set | runs | C symbol | ops | scratch |", "|---|---|---|---|---|"]
    for k in REGISTRY:
        rows.append(f"| {k.kset} | {k.name} | `{k.symbol}` | {', '.join(k.ops)} | {'yes' if k.scratch_fn else '-'} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print("# Kernels\n\nGenerated from `tinygen/kernels.py` (`python -m tinygen.kernels`): every kernel the "
          "compiler can choose for a layer, in priority order within its set.\n")
    print(kernels_markdown(), end="")
