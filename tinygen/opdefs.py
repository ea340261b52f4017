"""The op table's building blocks: :class:`OpDef`, :class:`Lowered`, :data:`TABLE`, :func:`register`
and the check/lowering helpers every op entry shares.

The entries themselves live in :mod:`tinygen.ops` (the core ops) and in the modules it imports
(:mod:`tinygen.ops_elementwise`, :mod:`tinygen.ops_shape`, ...), which all register here; import
:mod:`tinygen.ops` to get the complete table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import quant
from .errors import ModelError, UnsupportedError
from .flatbuf import Table
from .ir import Graph, Op, Tensor

ACT = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
PADDING = {0: "SAME", 1: "VALID"}


@dataclass(frozen=True)
class Arr:
    """A constant array of the layer, named in :attr:`Lowered.arrays` (emitted as a flash symbol)."""

    name: str


@dataclass
class Lowered:
    """What a layer computes, independent of the kernel that will run it.

    ``params`` are the fields of the C struct ``ptype`` (firmware/tg_nn.h): ints, nested dicts,
    :class:`Arr` for constant arrays, ``None`` for NULL. ``imm`` holds named immediates of kernels
    that take no struct (element counts, float scales). ``alias``: shape-only, no call emitted.
    """

    params: dict = field(default_factory=dict)
    arrays: dict = field(default_factory=dict)  # name -> numpy array (int8/int32/int8 LUT)
    ptype: str | None = None
    imm: dict = field(default_factory=dict)
    alias: bool = False


@dataclass
class OpDef:
    kind: str
    parse: Callable[[Table | None], dict]
    check: Callable[[Graph, Op], None]
    lower: Callable[[Graph, Op], Lowered]
    macs: Callable[[Graph, Op], int] = lambda g, op: 0
    roles: tuple[str, ...] = ("input",)  # names of the inputs, in order
    required: int = 1  # the first `required` roles must be present (later ones, such as a bias, are optional)
    inplace: bool = False  # element-wise: the output may overwrite an input that dies at this op (same size)
    fuses_act: bool = False  # has a fused activation (a following RELU/RELU6/RELU_N1_TO_1 can fold into it)
    activation: bool = False  # a standalone clamp that can fold into a producer with fuses_act
    shape_only: bool = False  # same bytes, new shape: an alias of its input, no call
    doc: str = ""
    outputs: int = 1  # output tensors; 0 = one or more (SPLIT, UNPACK: as many as the options say)
    folded: bool = False  # only valid inside a pattern a graph pass folds away (never lowered, no kernel)
    state: tuple[int, ...] = ()  # inputs that may be variable tensors: state the op restarts on every inference


TABLE: dict[str, OpDef] = {}


def register(kind, parse, check, lower, macs=None, *, roles=("input",), required=1, inplace=False, fuses_act=False,
             activation=False, shape_only=False, doc="", outputs=1, folded=False, state=()):
    TABLE[kind] = OpDef(kind, parse, check, lower, macs or (lambda g, op: 0), tuple(roles), required, inplace,
                        fuses_act, activation, shape_only, doc, outputs, folded, tuple(state))


def facts(kind: str) -> OpDef:
    """The table entry of ``kind`` (op facts for passes, planner, emitter and analyze)."""
    return TABLE[kind]


# ---- helpers ----------------------------------------------------------------------------------


def _fail(op: Op, msg: str) -> None:
    raise UnsupportedError(f"{op.where()}: {msg}")


def _int8_io(g: Graph, op: Op, n_in: int = 1) -> None:
    for i in op.inputs[:n_in] + op.outputs:
        t = g.t(i)
        if t.dtype != "int8":
            _fail(op, f"tensor {t.describe()} is {t.dtype}; tinygen compiles full-int8 models (TFLite int8 spec): "
                  "quantize with tinygen build on the float model, or re-export with inference_input_type=int8")
        if t.scale.size != 1:
            _fail(op, f"activation {t.describe()} must be quantized per tensor (has {t.scale.size} scales)")
        s, z = float(t.scale[0]), int(t.zero_point[0])
        if not np.isfinite(s) or s <= 0:
            raise ModelError(f"{op.where()}: tensor {t.describe()} has invalid scale {s}; re-quantize the model")
        if not -128 <= z <= 127:
            raise ModelError(f"{op.where()}: tensor {t.describe()} has zero point {z} outside int8 [-128, 127]")


def _same_size(g: Graph, op: Op) -> None:
    """Element-wise ops write as many elements as they read: a smaller output would overflow its buffer."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    if x.size != y.size:
        raise ModelError(f"{op.where()}: input {x.describe()} and output {y.describe()} differ in size")


def _params_in_range(op: Op, fn, *args):
    """Quantization parameters the int8 kernels cannot represent (extreme scale ratios) are unsupported."""
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
            return fn(*args)
    except (ValueError, ArithmeticError) as e:
        _fail(op, f"its scales give int8 kernel parameters out of range ({e}); re-quantize the model")


def _requant_in_range(g: Graph, op: Op, reduce_axes: tuple[int, ...]) -> None:
    """CONV/DEPTHWISE/FC: the scales must give an int32-safe accumulator and requantization."""
    x, w, y = g.t(op.inputs[0]), g.t(op.inputs[1]), g.t(op.outputs[0])
    (sx, zx), (sy, zy) = x.q(), y.q()
    n_out = w.size // int(np.prod([w.shape[a] for a in reduce_axes]))
    bias = _bias(g, op, 2, n_out)
    _params_in_range(op, quant.check_accumulator_requant, w.data, reduce_axes, zx, bias, sx, w.scale, sy, zy)


def _const(g: Graph, op: Op, idx: int, what: str) -> Tensor:
    if idx >= len(op.inputs) or op.inputs[idx] < 0:
        _fail(op, f"missing {what}")
    t = g.t(op.inputs[idx])
    if not t.is_const:
        _fail(op, f"{what} {t.describe()} must be constant (computed weights are not supported)")
    return t


def _weights(g: Graph, op: Op, idx: int, n_channels: int) -> Tensor:
    w = _const(g, op, idx, "weights")
    if w.dtype != "int8":
        _fail(op, f"weights {w.describe()} are {w.dtype}; only int8 weights are supported (no float/int4/hybrid)")
    if w.scale.size not in (1, n_channels):
        raise ModelError(f"{op.where()}: weights {w.describe()} have {w.scale.size} scales for {n_channels} channels")
    if np.any(w.zero_point != 0):
        _fail(op, f"weights {w.describe()} have non-zero zero points; the int8 spec needs symmetric weights")
    if not np.all(np.isfinite(w.scale)) or np.any(w.scale <= 0):
        raise ModelError(f"{op.where()}: weights {w.describe()} have an invalid scale (0, negative, NaN or inf)")
    return w


def _bias(g: Graph, op: Op, idx: int, n: int) -> np.ndarray | None:
    if idx >= len(op.inputs) or op.inputs[idx] < 0:
        return None
    b = _const(g, op, idx, "bias")
    if b.dtype != "int32" or b.size != n:
        _fail(op, f"bias {b.describe()} must be int32[{n}]")
    return b.data.reshape(-1).astype(np.int32)


def _add_bias(params: dict, arrays: dict, bias: np.ndarray | None) -> None:
    """The optional int32 bias: a const array in flash, or NULL in the params struct."""
    params["bias"] = None if bias is None else Arr("bias")
    if bias is not None:
        arrays["bias"] = bias


def _act(g: Graph, op: Op) -> tuple[int, int]:
    act = op.attrs.get("act", "NONE")
    if act not in ("NONE", "RELU", "RELU6", "RELU_N1_TO_1"):
        _fail(op, f"fused activation {act} is not supported")
    s, z = g.t(op.outputs[0]).q()
    return quant.activation_range(act, s, z)


def _dims4(shape) -> tuple:
    shape = tuple(shape)
    if len(shape) > 4:
        raise UnsupportedError(f"rank-{len(shape)} tensor; at most 4 dimensions are supported")
    return (1,) * (4 - len(shape)) + shape


def _same_pad(in_size, k, stride, dil, out_size) -> int:
    eff = (k - 1) * dil + 1
    total = max((out_size - 1) * stride + eff - in_size, 0)
    return total // 2


def _expected_out(padding, in_size, k, stride, dil) -> int:
    eff = (k - 1) * dil + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size - eff + stride) // stride


def _explicit_fits(in_size, out_size, k, stride, dil, pad) -> bool:
    """EXPLICIT padding (set by the dilated-convolution fold): a leading pad inside the kernel's
    reach and a trailing pad of at most one more (what the kernels accept)."""
    eff = (k - 1) * dil + 1
    return 0 <= pad < eff and out_size >= 1 and (out_size - 1) * stride + eff <= in_size + 2 * pad + 1


def _check_spatial(op: Op, g: Graph, kh: int, kw: int) -> None:
    a = op.attrs
    n, h, w, _ = g.t(op.inputs[0]).shape
    _, oh, ow, _ = g.t(op.outputs[0]).shape
    if min(a["stride_h"], a["stride_w"], a.get("dil_h", 1), a.get("dil_w", 1)) < 1:
        raise ModelError(f"{op.where()}: non-positive stride or dilation {a}")
    if a["padding"] == "EXPLICIT":
        if not (_explicit_fits(h, oh, kh, a["stride_h"], a["dil_h"], a["pad_h"])
                and _explicit_fits(w, ow, kw, a["stride_w"], a["dil_w"], a["pad_w"])):
            raise ModelError(f"{op.where()}: explicit padding {a} does not fit {h}x{w} -> {oh}x{ow}")
        return
    eh = _expected_out(a["padding"], h, kh, a["stride_h"], a.get("dil_h", 1))
    ew = _expected_out(a["padding"], w, kw, a["stride_w"], a.get("dil_w", 1))
    if g.t(op.outputs[0]).shape[0] != n:
        raise ModelError(f"{op.where()}: batch {n} in, {g.t(op.outputs[0]).shape[0]} out")
    if (eh, ew) != (oh, ow):
        raise ModelError(f"{op.where()}: output is {oh}x{ow} but input {h}x{w}, kernel {kh}x{kw} and {a} give {eh}x{ew}")


def _pads(op: Op, g: Graph, kh: int, kw: int) -> tuple[int, int]:
    a = op.attrs
    if a["padding"] == "EXPLICIT":
        return a["pad_h"], a["pad_w"]
    if a["padding"] != "SAME":
        return 0, 0
    _, h, w, _ = g.t(op.inputs[0]).shape
    _, oh, ow, _ = g.t(op.outputs[0]).shape
    return (_same_pad(h, kh, a["stride_h"], a.get("dil_h", 1), oh), _same_pad(w, kw, a["stride_w"], a.get("dil_w", 1), ow))


def _dims(shape) -> dict:
    n, h, w, c = _dims4(shape)
    return {"n": n, "h": h, "w": w, "c": c}


def _opt(tbl: Table | None, n: int, fmt: str, default=0):
    return tbl.scalar(n, fmt, default) if tbl is not None else default


def _broadcastable(a, b, out) -> bool:
    a, b, out = _dims4(a), _dims4(b), _dims4(out)
    return all(o == max(x, y) and x in (1, o) and y in (1, o) for x, y, o in zip(a, b, out))


def _binary_io(g: Graph, op: Op):
    """The checks every two-input element-wise op makes: two int8 per-tensor inputs and an int8
    output, at most 4 dimensions each, the inputs broadcasting to the output; returns (a, b, y)."""
    if len(op.inputs) != 2:
        _fail(op, "expects two inputs")
    _int8_io(g, op, 2)
    a, b, y = (g.t(i) for i in (*op.inputs, op.outputs[0]))
    for t in (a, b, y):
        if len(t.shape) > 4:
            _fail(op, f"tensor {t.describe()} has more than 4 dimensions")
    if not _broadcastable(a.shape, b.shape, y.shape):
        raise ModelError(f"{op.where()}: shapes {list(a.shape)} and {list(b.shape)} do not broadcast to {list(y.shape)}")
    return a, b, y


# ---- element-wise ops computed by a 256-entry table ---------------------------------------------

# op kind -> the table function: (in_scale, in_zp, out_scale, out_zp, op attrs) -> 256 int8 entries;
# the op modules register theirs (tinygen.ops: LOGISTIC, RELU*, QUANTIZE; tinygen.ops_elementwise:
# TANH, HARD_SWISH, LEAKY_RELU). One check and one lowering serve them all.
LUTS: dict[str, Callable] = {}


def lower_lut(g: Graph, op: Op) -> Lowered:
    """The layer's 256-entry table (int8 in -> int8 out) and its element count."""
    x, y = g.t(op.inputs[0]), g.t(op.outputs[0])
    (sx, zx), (sy, zy) = x.q(), y.q()
    lut = LUTS[op.kind](sx, zx, sy, zy, op.attrs)
    return Lowered(arrays={"lut": np.asarray(lut, np.int8)}, imm={"size": x.size})


def check_lut(g: Graph, op: Op) -> None:
    """int8 per-tensor in and out, as many elements out as in, a table its scales can build."""
    _int8_io(g, op)
    _same_size(g, op)
    _params_in_range(op, lower_lut, g, op)
