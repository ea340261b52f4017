"""Import: TFLite flatbuffer bytes -> :class:`tinygen.ir.Graph`.

The bounds-checked reader (:mod:`tinygen.flatbuf`) gives the raw tables; this module turns
them into typed tensors and ops, lets the op table decode each op's options and checks that
every op has the inputs its table entry says it cannot run without. It is the one module
that uses both the IR and the op table (``ir`` knows nothing of ops).
"""

from __future__ import annotations

import math

import numpy as np

from . import ops as optable
from .errors import ModelError, UnsupportedError
from .flatbuf import FbModel, read_model
from .ir import DTYPES, ITEMSIZE, MAX_TENSOR_BYTES, NP_DTYPES, ZERO_POINT_RANGE, Graph, Op, Tensor, safe_name, verify
from .tflite_names import BUILTIN_OPS, TENSOR_TYPES


def from_tflite(buf: bytes, source: str = "model") -> Graph:
    """Parse int8 TFLite bytes into a :class:`Graph`; unsupported constructs raise with their location."""
    fb: FbModel = read_model(buf, source)
    if len(fb.subgraphs) != 1:
        if fb.subgraphs and any(fb.opcodes[o.opcode_index].builtin == _WHILE for o in fb.subgraphs[0].operators
                                if o.opcode_index < len(fb.opcodes)):
            raise UnsupportedError(
                f"{source}: has a WHILE loop over {len(fb.subgraphs) - 1} more subgraphs (what a Keras GRU, SimpleRNN "
                "or LSTM layer that is not unrolled becomes); build the recurrent layer with unroll=True")
        raise UnsupportedError(
            f"{source}: has {len(fb.subgraphs)} subgraphs; tinygen compiles single-subgraph models "
            "(no control flow): re-export without while/if ops"
        )
    sg = fb.subgraphs[0]
    tensors = []
    # tensors only TFLite's quantized LSTM reads (as scales; some are empty), and variable tensors
    # (state an op restarts on every inference: allowed as the op table's state inputs)
    internal = {i for fo in sg.operators for i in fo.intermediates}
    variables = set()
    for ti, ft in enumerate(sg.tensors):
        ft.name = safe_name(ft.name)
        where = f"{source}: tensor {ti} '{ft.name}'"
        if ft.type not in DTYPES:
            raise UnsupportedError(f"{where}: unknown tensor type {ft.type}")
        dtype = DTYPES[ft.type]
        if ft.sparse:
            raise UnsupportedError(f"{where}: sparse tensors are not supported; export a dense model")
        if ft.is_variable:
            variables.add(ti)
        if any(d < 0 for d in ft.shape) or any(d < 0 for d in ft.shape_signature[1:]):
            raise UnsupportedError(f"{where}: dynamic shape {list(ft.shape_signature or ft.shape)}; export with fixed shapes")
        if any(d == 0 for d in ft.shape) and ti not in internal:
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
        if ti in variables and dtype in NP_DTYPES and data is None:  # TFLite resets it to its zero point
            data = np.full(ft.shape, zp[0] if zp.size else 0, NP_DTYPES[dtype])
        tensors.append(Tensor(ti, ft.name, tuple(int(d) for d in ft.shape), dtype, scale, zp, ft.quant.quantized_dimension, data))

    ops, unknown = [], []  # unknown: every op kind tinygen does not compile, reported together
    for oi, fo in enumerate(sg.operators):
        if fo.opcode_index >= len(fb.opcodes):
            raise ModelError(f"{source}: op #{oi} uses opcode {fo.opcode_index} but the model has {len(fb.opcodes)}")
        code = fb.opcodes[fo.opcode_index]
        for t in list(fo.inputs) + list(fo.outputs):
            if t >= len(tensors) or t < -1:
                raise ModelError(f"{source}: op #{oi} refers to tensor {t} but the model has {len(tensors)}")
        out_name = tensors[fo.outputs[0]].name if fo.outputs else ""
        kind = BUILTIN_OPS.get(code.builtin, f"BUILTIN_{code.builtin}")
        if code.builtin == 32 or kind not in optable.TABLE:  # CUSTOM, or a builtin without an entry
            unknown.append((f"custom op '{safe_name(code.custom)}'" if code.builtin == 32 else kind, oi, out_name))
            continue
        op = Op(kind, list(fo.inputs), list(fo.outputs), {}, oi, out_name)
        optable.parse(op, fo.options, tensors)
        if fo.intermediates:
            if any(not 0 <= t < len(tensors) for t in fo.intermediates):
                raise ModelError(f"{source}: op #{oi} has intermediates {list(fo.intermediates)} but the model has "
                                 f"{len(tensors)} tensors")
            op.attrs["intermediates"] = list(fo.intermediates)
        for k, t in enumerate(op.inputs):
            if t in variables and k not in optable.TABLE[kind].state:
                raise UnsupportedError(f"{source}: tensor {t} '{tensors[t].name}': variable (stateful) tensors are "
                                       f"not supported (read by {op.where()})")
        _check_arity(op, source)
        ops.append(op)
    if unknown:
        raise optable.unsupported_ops_error(source, unknown)
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


_WHILE = 119  # BuiltinOperator WHILE


def _check_arity(op: Op, source: str) -> None:
    """Every op has its outputs (one, or one or more for the op table's multi-output ops) and all
    the inputs it cannot run without (index -1 means 'absent')."""
    d = optable.TABLE[op.kind]
    if not op.outputs or any(o < 0 for o in op.outputs) or (d.outputs and len(op.outputs) != d.outputs):
        need = {0: "output tensors", 1: "exactly one output tensor"}.get(d.outputs, f"exactly {d.outputs} output tensors")
        raise ModelError(f"{source}: {op.where()} has outputs {op.outputs}; it needs {need}")
    for k, what in enumerate(d.roles[: d.required]):
        if k >= len(op.inputs) or op.inputs[k] < 0:
            raise ModelError(f"{source}: {op.where()} has no {what} (inputs {op.inputs}); the file is corrupt: re-export it")


def load(buf: bytes, source: str) -> Graph:
    g = from_tflite(buf, source)
    verify(g, "import")
    return g
