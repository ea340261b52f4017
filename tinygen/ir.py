"""tinygen's IR: a typed int8 graph parsed from a TFLite flatbuffer.

A :class:`Graph` is a list of :class:`Tensor` (shape, dtype, quantization,
constant data) and a list of :class:`Op` in execution order. Ops carry their
TFLite location (``op_index``) so every later error can point back at the
model. :func:`verify` checks the invariants and runs after every stage.
Parsing a flatbuffer into this IR is :mod:`tinygen.importer` (it uses the op table).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import CompilerBug, ModelError, UnsupportedError

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
    view_of: tuple[int, int] | None = None  # (parent tensor id, byte offset): a band of the parent's rows (patch.py)

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
    patch: dict | None = None  # the patch stage (tinygen.patch.split): layers, bands, geometry

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


def verify(g: Graph, stage: str) -> None:
    """IR invariants, checked after every stage: defined-before-use, one producer, const weights.

    After ``import`` a violation is the model's fault (:class:`ModelError`); after any later stage
    it is tinygen's (:class:`CompilerBug`: a pass broke the graph)."""
    err = ModelError if stage == "import" else (lambda msg: CompilerBug(stage, msg))
    defined = set(g.inputs) | {t.id for t in g.tensors if t.is_const}
    defined |= {t.id for t in g.tensors if t.view_of is not None and t.view_of[0] in g.inputs}
    unwritten: dict[int, int] = {}  # parent -> its views not written yet (a parent is computed by its last view)
    for o in {o for op in g.ops for o in op.outputs if g.t(o).view_of is not None}:
        unwritten[g.t(o).view_of[0]] = unwritten.get(g.t(o).view_of[0], 0) + 1
    seen_out: set[int] = set()
    for op in g.ops:
        for i in op.inputs:
            if i >= 0 and i not in defined and not (g.t(i).view_of is not None and g.t(i).view_of[0] in defined):
                raise err(f"after {stage}: {op.where()} reads tensor {g.t(i).describe()} before it is computed")
        for o in op.outputs:
            if o in g.inputs:
                raise ModelError(f"after {stage}: {op.where()} writes the graph input {g.t(o).describe()}; "
                                 "the file is corrupt: re-export it")
            if o in seen_out or g.t(o).is_const:
                raise err(f"after {stage}: tensor {g.t(o).describe()} is written twice")
            seen_out.add(o)
            defined.add(o)
            v = g.t(o).view_of
            if v is not None and v[0] in unwritten:
                unwritten[v[0]] -= 1
                if not unwritten[v[0]]:
                    defined.add(v[0])
    for o in g.outputs:
        if o not in defined:
            raise err(f"after {stage}: graph output {g.t(o).describe()} is never computed")
    for t in g.tensors:
        if t.view_of is not None and not (0 <= t.view_of[1] and t.view_of[1] + t.nbytes <= g.t(t.view_of[0]).nbytes):
            raise err(f"after {stage}: view {t.describe()} at byte {t.view_of[1]} lies outside {g.t(t.view_of[0]).describe()}")
        if t.alias_of is not None and g.t(t.alias_of).nbytes != t.nbytes:
            raise err(f"after {stage}: alias {t.describe()} differs in size from {g.t(t.alias_of).describe()}")
