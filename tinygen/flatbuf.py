"""A bounds-checked reader for the TFLite flatbuffer schema.

Only the tables and fields tinygen needs are decoded. Every read is checked
against the buffer size, so a truncated or corrupted file raises
:class:`ModelError` naming the byte offset instead of crashing or reading
garbage. Field numbers follow ``tensorflow/lite/schema/schema.fbs``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .errors import ModelError

MAX_VECTOR = 1 << 28  # no TFLite vector for a microcontroller is longer than this


class Table:
    """A flatbuffer table at absolute offset ``pos`` of ``buf``."""

    __slots__ = ("buf", "pos", "vt", "vt_len", "what")

    def __init__(self, buf: bytes, pos: int, what: str):
        self.buf, self.pos, self.what = buf, pos, what
        soff = _i32(buf, pos, what)
        self.vt = pos - soff
        self.vt_len = _u16(buf, self.vt, what)
        if self.vt_len < 4 or self.vt_len % 2:
            raise ModelError(f"corrupt flatbuffer: {what} at byte {pos} has a bad vtable (length {self.vt_len})")
        _check(buf, self.vt, self.vt_len, what)

    def _field(self, n: int) -> int:
        off = 4 + 2 * n
        if off >= self.vt_len:
            return 0
        return _u16(self.buf, self.vt + off, self.what)

    def scalar(self, n: int, fmt: str, default=0):
        o = self._field(n)
        if not o:
            return default
        size = struct.calcsize("<" + fmt)
        _check(self.buf, self.pos + o, size, self.what)
        return struct.unpack_from("<" + fmt, self.buf, self.pos + o)[0]

    def _indirect(self, n: int, what: str = "") -> int:
        o = self._field(n)
        if not o:
            return 0
        p = self.pos + o
        return p + _u32(self.buf, p, what or self.what)

    def table(self, n: int, what: str) -> Table | None:
        p = self._indirect(n)
        return Table(self.buf, p, what) if p else None

    def string(self, n: int) -> str:
        p = self._indirect(n)
        if not p:
            return ""
        length = _vec_len(self.buf, p, 1, self.what)
        return bytes(self.buf[p + 4 : p + 4 + length]).decode("utf-8", errors="replace")

    def vector(self, n: int, fmt: str) -> tuple:
        p = self._indirect(n)
        if not p:
            return ()
        size = struct.calcsize("<" + fmt)
        length = _vec_len(self.buf, p, size, self.what)
        return struct.unpack_from(f"<{length}{fmt}", self.buf, p + 4)

    def bytes_(self, n: int) -> memoryview:
        p = self._indirect(n)
        if not p:
            return memoryview(b"")
        length = _vec_len(self.buf, p, 1, self.what)
        return memoryview(self.buf)[p + 4 : p + 4 + length]

    def tables(self, n: int, what: str) -> list[Table]:
        p = self._indirect(n, f"{self.what}.{what}")
        if not p:
            return []
        length = _vec_len(self.buf, p, 4, f"{self.what}.{what}")
        out = []
        for i in range(length):
            q = p + 4 + 4 * i
            out.append(Table(self.buf, q + _u32(self.buf, q, f"{what}[{i}]"), f"{what}[{i}]"))
        return out


def _check(buf: bytes, pos: int, size: int, what: str) -> None:
    if pos < 0 or pos + size > len(buf):
        raise ModelError(
            f"corrupt or truncated flatbuffer: {what} needs bytes {pos}..{pos + size} "
            f"but the file has {len(buf)} bytes; re-export the model"
        )


def _u16(buf, pos, what):
    _check(buf, pos, 2, what)
    return struct.unpack_from("<H", buf, pos)[0]


def _u32(buf, pos, what):
    _check(buf, pos, 4, what)
    return struct.unpack_from("<I", buf, pos)[0]


def _i32(buf, pos, what):
    _check(buf, pos, 4, what)
    return struct.unpack_from("<i", buf, pos)[0]


def _vec_len(buf, pos, elem, what):
    length = _u32(buf, pos, what)
    if length > MAX_VECTOR:
        raise ModelError(f"corrupt flatbuffer: {what} has a vector of {length} elements at byte {pos}")
    _check(buf, pos + 4, length * elem, what)
    return length


# ---- decoded schema objects -------------------------------------------------------------


@dataclass
class FbQuant:
    scale: tuple = ()
    zero_point: tuple = ()
    quantized_dimension: int = 0


@dataclass
class FbTensor:
    name: str
    shape: tuple
    type: int
    buffer: int
    quant: FbQuant
    shape_signature: tuple = ()
    is_variable: bool = False
    sparse: bool = False


@dataclass
class FbOperator:
    opcode_index: int
    inputs: tuple
    outputs: tuple
    options: Table | None
    custom_options: bool = False
    intermediates: tuple = ()  # tensors TFLite's quantized LSTM reads its internal scales from


@dataclass
class FbOpcode:
    builtin: int
    custom: str
    version: int


@dataclass
class FbSubgraph:
    name: str
    tensors: list[FbTensor]
    inputs: tuple
    outputs: tuple
    operators: list[FbOperator]


@dataclass
class FbModel:
    version: int
    opcodes: list[FbOpcode]
    subgraphs: list[FbSubgraph]
    buffers: list[bytes] = field(default_factory=list)
    description: str = ""


def read_model(buf: bytes, filename: str = "model") -> FbModel:
    """Decode a ``.tflite`` flatbuffer; raise :class:`ModelError` on anything malformed."""
    if len(buf) < 8:
        raise ModelError(f"{filename}: {len(buf)} bytes is too short for a TFLite model")
    if bytes(buf[4:8]) != b"TFL3":
        raise ModelError(
            f"{filename}: not a TFLite flatbuffer (bytes 4..8 are {bytes(buf[4:8])!r}, expected b'TFL3'); "
            "give a .tflite, .h5, .keras or SavedModel folder"
        )
    root = Table(buf, _u32(buf, 0, "root"), "Model")
    version = root.scalar(0, "I")
    opcodes = []
    for t in root.tables(1, "operator_codes"):
        dep = t.scalar(0, "b")
        code = t.scalar(3, "i")
        opcodes.append(FbOpcode(builtin=max(dep, code), custom=t.string(1), version=t.scalar(2, "i", 1)))
    buffers = []
    for i, t in enumerate(root.tables(4, "buffers")):
        data = bytes(t.bytes_(0))
        offset, size = t.scalar(1, "Q"), t.scalar(2, "Q")
        if not data and offset > 1:
            _check(buf, offset, size, f"buffers[{i}] (external data)")
            data = bytes(buf[offset : offset + size])
        buffers.append(data)
    subgraphs = []
    for si, sg in enumerate(root.tables(2, "subgraphs")):
        tensors = []
        for ti, t in enumerate(sg.tables(0, f"subgraphs[{si}].tensors")):
            q = t.table(4, f"tensor {ti} quantization")
            quant = FbQuant()
            if q is not None:
                quant = FbQuant(scale=q.vector(2, "f"), zero_point=q.vector(3, "q"), quantized_dimension=q.scalar(6, "i"))
            tensors.append(
                FbTensor(
                    name=t.string(3) or f"tensor_{ti}",
                    shape=t.vector(0, "i"),
                    type=t.scalar(1, "b"),
                    buffer=t.scalar(2, "I"),
                    quant=quant,
                    is_variable=bool(t.scalar(5, "B")),
                    sparse=t._field(6) != 0,
                    shape_signature=t.vector(7, "i"),
                )
            )
        ops = []
        for oi, o in enumerate(sg.tables(3, f"subgraphs[{si}].operators")):
            ops.append(
                FbOperator(
                    opcode_index=o.scalar(0, "I"),
                    inputs=o.vector(1, "i"),
                    outputs=o.vector(2, "i"),
                    options=o.table(4, f"operator {oi} options"),
                    custom_options=o._field(5) != 0,
                    intermediates=o.vector(8, "i"),
                )
            )
        subgraphs.append(FbSubgraph(sg.string(4), tensors, sg.vector(1, "i"), sg.vector(2, "i"), ops))
    return FbModel(version, opcodes, subgraphs, buffers, root.string(3))
