"""Editing TFLite models through the schema's object API: the one set of helpers the hostile-input
tests (tests/test_robustness*.py) and the hostile sweep (fuzz/hostile_sweep.py) mutate models with.

``unpack`` a flatbuffer into ``schema_py_generated.ModelT``, change fields, ``pack`` it again;
``mutate(base, edit)`` is a test builder doing that into a file.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np


def schema():
    from tensorflow.lite.python import schema_py_generated as s

    return s


def unpack(buf: bytes):
    s = schema()
    return s.ModelT.InitFromObj(s.Model.GetRootAsModel(buf, 0))


def pack(m) -> bytes:
    import flatbuffers

    b = flatbuffers.Builder(1024)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def edited(buf: bytes, edit) -> bytes:
    """``buf`` with ``edit(model, subgraph 0)`` applied."""
    m = unpack(buf)
    edit(m, m.subgraphs[0])
    return pack(m)


def mutate(base, edit, name: str = "bad.tflite"):
    """A builder: ``edited(base(), edit)`` written to ``tmp / name``, its path returned."""

    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(edited(base(), edit))
        return p

    return build


def set_fields(obj, **kw) -> None:
    for k, v in kw.items():
        setattr(obj, k, v)


def set_quant(sg, i: int, **kw) -> None:
    """Fields of tensor ``i``'s quantization (scale=[...], zeroPoint=[...], quantizedDimension=...)."""
    set_fields(sg.tensors[i].quantization, **kw)


def opcode(m, op_index: int = 0):
    """The operator code of subgraph 0's op ``op_index``."""
    return m.operatorCodes[m.subgraphs[0].operators[op_index].opcodeIndex]


def is_const(m, t) -> bool:
    """Whether tensor ``t`` has constant data (a non-empty buffer other than buffer 0)."""
    return 0 < t.buffer < len(m.buffers) and m.buffers[t.buffer].data is not None and len(m.buffers[t.buffer].data) > 0


def constant_graph_input(m, sg, k: int = 0) -> None:
    """Graph input ``k`` gets constant data (zeros): the firmware would ignore its input."""
    t = sg.tensors[sg.inputs[k]]
    b = copy.deepcopy(m.buffers[0])
    b.data = np.zeros(int(np.prod(t.shape)) * (4 if t.type in (0, 2) else 1), np.uint8)
    m.buffers.append(b)
    t.buffer = len(m.buffers) - 1
