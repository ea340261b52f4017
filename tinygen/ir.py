"""tinygen's IR: a typed int8 graph parsed from a TFLite flatbuffer.

A :class:`Graph` is a list of :class:`Tensor` (shape, dtype, quantization,
constant data) and a list of :class:`Op` in execution order. Ops carry their
TFLite location (``op_index``) so every later error can point back at the
model. :func:`verify` checks the invariants and runs after every stage.
"""

from __future__ import annotations

import math

from dataclasses import dataclass, field

import numpy as np

from .errors import ModelError, UnsupportedError
from .flatbuf import FbModel, read_model
from .tflite_names import BUILTIN_OPS, TENSOR_TYPES

DTYPES = {0: "float32", 2: "int32", 9: "int8", 7: "int16", 3: "uint8", 1: "float16", 4: "int64", 6: "bool", 10: "float64"}
NP_DTYPES = {"float32": np.float32, "int32": np.int32, "int8": np.int8, "int16": np.int16, "uint8": np.uint8, "int64": np.int64}
ITEMSIZE = {"float32": 4, "int32": 4, "int8": 1, "int16": 2, "uint8": 1, "int64": 8, "float16": 2, "bool": 1, "float64": 8}
MAX_TENSOR_BYTES = 64 << 20  # nothing that fits a microcontroller is larger
ZERO_POINT_RANGE = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}
# inputs an op cannot run without (later ones, such as a bias, are optional); every op needs one output
REQUIRED_INPUTS = {"CONV_2D": ("input", "weights"), "DEPTHWISE_CONV_2D": ("input", "weights"),
                   "FULLY_CONNECTED": ("input", "weights"), "ADD": ("input 1", "input 2"),
                   "MUL": ("input 1", "input 2"), "PAD": ("input", "paddings"), "PADV2": ("input", "paddings"),
                   "MEAN": ("input", "axes")}


@dataclass
class Tensor:
    id: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    zero_point: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    quant_axis: int = 0
    data: np.ndarray | None = None
    alias_of: int | None = None  # set by passes: this tensor shares its storage

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        return self.size * ITEMSIZE[self.dtype]

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    def q(self) -> tuple[float, int]:
        """Per-tensor (scale, zero_point); raises if the tensor is not quantized per tensor."""
        if self.scale.size != 1:
            raise UnsupportedError(f"tensor '{self.name}' needs per-tensor quantization, has {self.scale.size} scales")
        return float(self.scale[0]), int(self.zero_point[0])

    def describe(self) -> str:
        return f"'{self.name}' {self.dtype}{list(self.shape)}"


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    attrs: dict
    op_index: int  # position in the source model, for error messages
    name: str = ""

    def where(self) -> str:
        return f"op #{self.op_index} {self.kind} ('{self.name}')"


@dataclass
class Graph:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    source: str = "model"

    def t(self, i: int) -> Tensor:
        return self.tensors[i]

    def consumers(self, tid: int) -> list[Op]:
        return [op for op in self.ops if tid in op.inputs]

    def producer(self, tid: int) -> Op | None:
        for op in self.ops:
            if tid in op.outputs:
                return op
        return None

    def dump(self) -> str:
        lines = [f"graph {self.source}: inputs {self.inputs} outputs {self.outputs}"]
        for op in self.ops:
            ins = ", ".join(self.t(i).describe() for i in op.inputs if i >= 0)
            outs = ", ".join(self.t(i).describe() for i in op.outputs)
            lines.append(f"  #{op.op_index:<3} {op.kind:<18} {ins} -> {outs}  {op.attrs}")
        return "\n".join(lines)


def safe_name(name: str, limit: int = 120) -> str:
    """A model-supplied name made safe for one-line messages and generated C (comments, string literals).

    Keeps printable ASCII except the characters C escapes (backslash, quote, question mark), breaks
    comment terminators and caps the length.

    >>> safe_name('conv/Relu;x:0')
    'conv/Relu;x:0'
    >>> safe_name('a*/ evil() "?')
    'a*_/ evil() __'
    """
    out = "".join(ch if 32 <= ord(ch) < 127 and ch not in '\\"?' else "_" for ch in name)
    out = out.replace("*/", "*_/").replace("/*", "/_*")
    return out if len(out) <= limit else out[: limit - 3] + "..."


def from_tflite(buf: bytes, source: str = "model") -> Graph:
    """Parse int8 TFLite bytes into a :class:`Graph`; unsupported constructs raise with their location."""
    from . import ops as optable  # the op table parses options

    fb: FbModel = read_model(buf, source)
    if len(fb.subgraphs) != 1:
        raise UnsupportedError(
            f"{source}: has {len(fb.subgraphs)} subgraphs; tinygen compiles single-subgraph models "
            "(no control flow): re-export without while/if ops"
        )
    sg = fb.subgraphs[0]
    tensors = []
    for ti, ft in enumerate(sg.tensors):
        ft.name = safe_name(ft.name)
        where = f"{source}: tensor {ti} '{ft.name}'"
        if ft.type not in DTYPES:
            raise UnsupportedError(f"{where}: unknown tensor type {ft.type}")
        dtype = DTYPES[ft.type]
        if ft.sparse:
            raise UnsupportedError(f"{where}: sparse tensors are not supported; export a dense model")
        if ft.is_variable:
            raise UnsupportedError(f"{where}: variable (stateful) tensors are not supported")
        if any(d < 0 for d in ft.shape) or any(d < 0 for d in ft.shape_signature[1:]):
            raise UnsupportedError(f"{where}: dynamic shape {list(ft.shape_signature or ft.shape)}; export with fixed shapes")
        if any(d == 0 for d in ft.shape):
            raise ModelError(f"{where}: zero-sized dimension in shape {list(ft.shape)}")
        size = math.prod(int(d) for d in ft.shape)  # Python ints: a huge shape cannot wrap around
        if size * ITEMSIZE[dtype] > MAX_TENSOR_BYTES:
            raise ModelError(f"{where}: shape {list(ft.shape)} is {size * ITEMSIZE[dtype]} bytes, too big for any microcontroller")
        scale = np.asarray(ft.quant.scale, np.float32)
        zp = np.asarray(ft.quant.zero_point, np.int64)
        if scale.size != zp.size and zp.size not in (0, 1):
            raise ModelError(f"{where}: {scale.size} scales but {zp.size} zero points")
        if zp.size == 0 and scale.size:
            zp = np.zeros(scale.size, np.int64)
        if scale.size and (not np.all(np.isfinite(scale)) or np.any(scale < 0)):
            bad = scale[~np.isfinite(scale) | (scale < 0)][0]
            raise ModelError(f"{where}: quantization scale {bad} is not a finite non-negative number; the file is "
                             "corrupt or was quantized wrongly: re-export it")
        lo, hi = ZERO_POINT_RANGE.get(dtype, (-(1 << 31), (1 << 31) - 1))
        if zp.size and (zp.min() < lo or zp.max() > hi):
            bad = zp[(zp < lo) | (zp > hi)][0]
            raise ModelError(f"{where}: zero point {bad} is outside the {dtype} range [{lo}, {hi}]; re-export the model")
        if scale.size > 1 and not 0 <= ft.quant.quantized_dimension < max(len(ft.shape), 1):
            raise ModelError(f"{where}: quantized dimension {ft.quant.quantized_dimension} does not exist in shape "
                             f"{list(ft.shape)}")
        data = None
        if ft.buffer >= len(fb.buffers) and ft.buffer != 0:
            raise ModelError(f"{where}: refers to buffer {ft.buffer} but the model has {len(fb.buffers)}")
        raw = fb.buffers[ft.buffer] if ft.buffer < len(fb.buffers) else b""
        if raw:
            if dtype not in NP_DTYPES:
                raise UnsupportedError(f"{where}: constant of type {TENSOR_TYPES.get(ft.type, ft.type)} is not supported; "
                                       "tinygen compiles full-int8 models (int8 weights, int32 biases)")
            if len(raw) != size * ITEMSIZE[dtype]:
                raise ModelError(f"{where}: constant data is {len(raw)} bytes, shape {list(ft.shape)} {dtype} needs {size * ITEMSIZE[dtype]}")
            data = np.frombuffer(raw, dtype=NP_DTYPES[dtype]).reshape(ft.shape).copy()
        tensors.append(Tensor(ti, ft.name, tuple(int(d) for d in ft.shape), dtype, scale, zp, ft.quant.quantized_dimension, data))

    ops = []
    for oi, fo in enumerate(sg.operators):
        if fo.opcode_index >= len(fb.opcodes):
            raise ModelError(f"{source}: op #{oi} uses opcode {fo.opcode_index} but the model has {len(fb.opcodes)}")
        code = fb.opcodes[fo.opcode_index]
        for t in list(fo.inputs) + list(fo.outputs):
            if t >= len(tensors) or t < -1:
                raise ModelError(f"{source}: op #{oi} refers to tensor {t} but the model has {len(tensors)}")
        out_name = tensors[fo.outputs[0]].name if fo.outputs else ""
        if code.builtin == 32:  # CUSTOM
            raise UnsupportedError(
                f"{source}: op #{oi} is the custom op '{safe_name(code.custom)}' (output '{out_name}'); "
                "tinygen compiles TFLite builtin ops only: see SUPPORTED_OPS.md"
            )
        kind = BUILTIN_OPS.get(code.builtin, f"BUILTIN_{code.builtin}")
        op = Op(kind, list(fo.inputs), list(fo.outputs), {}, oi, out_name)
        optable.parse(op, fo.options, tensors)
        _check_arity(op, source)
        ops.append(op)
    g = Graph(tensors, ops, list(sg.inputs), list(sg.outputs), source)
    if not g.inputs or not g.outputs:
        raise ModelError(f"{source}: the model has no inputs or no outputs")
    for what, ids in (("input", g.inputs), ("output", g.outputs)):
        for t in ids:
            if not 0 <= t < len(tensors):
                raise ModelError(f"{source}: graph {what} refers to tensor {t} but the model has {len(tensors)} tensors; "
                                 "the file is corrupt: re-export it")
    for t in g.inputs:
        if tensors[t].data is not None:
            raise ModelError(f"{source}: graph input {tensors[t].describe()} has constant data, so the firmware "
                             "would ignore its input; the file is corrupt: re-export it")
    return g


def _check_arity(op: Op, source: str) -> None:
    """Every op has one output and all the inputs it cannot run without (index -1 means 'absent')."""
    if len(op.outputs) != 1 or op.outputs[0] < 0:
        raise ModelError(f"{source}: {op.where()} has outputs {op.outputs}; it needs exactly one output tensor")
    need = REQUIRED_INPUTS.get(op.kind, ("input",))
    for k, what in enumerate(need):
        if k >= len(op.inputs) or op.inputs[k] < 0:
            raise ModelError(f"{source}: {op.where()} has no {what} (inputs {op.inputs}); the file is corrupt: re-export it")


def verify(g: Graph, stage: str) -> None:
    """IR invariants, checked after every stage: defined-before-use, one producer, const weights."""
    defined = set(g.inputs) | {t.id for t in g.tensors if t.is_const}
    seen_out: set[int] = set()
    for op in g.ops:
        for i in op.inputs:
            if i >= 0 and i not in defined:
                raise ModelError(f"after {stage}: {op.where()} reads tensor {g.t(i).describe()} before it is computed")
        for o in op.outputs:
            if o in g.inputs:
                raise ModelError(f"after {stage}: {op.where()} writes the graph input {g.t(o).describe()}; "
                                 "the file is corrupt: re-export it")
            if o in seen_out or g.t(o).is_const:
                raise ModelError(f"after {stage}: tensor {g.t(o).describe()} is written twice")
            seen_out.add(o)
            defined.add(o)
    for o in g.outputs:
        if o not in defined:
            raise ModelError(f"after {stage}: graph output {g.t(o).describe()} is never computed")
    for t in g.tensors:
        if t.alias_of is not None and g.t(t.alias_of).nbytes != t.nbytes:
            raise ModelError(f"after {stage}: alias {t.describe()} differs in size from {g.t(t.alias_of).describe()}")


def load(buf: bytes, source: str) -> Graph:
    g = from_tflite(buf, source)
    verify(g, "import")
    return g
