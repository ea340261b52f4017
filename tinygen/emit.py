"""Emission: lowered ops + arena plan -> C sources via Jinja2 templates.

Small doctested helpers format constants; all C structure lives in
``templates/``. Every symbol has the ``tg_`` prefix. Output is deterministic:
same model and flags, byte-identical files.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field

import jinja2
import numpy as np

from . import TEMPLATES, __version__
from .ir import Graph
from .kernels import Call, Operand
from .ops import Arr
from .plan import Plan, _root

CTYPES = {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t", np.dtype(np.uint8): "uint8_t",
          np.dtype(np.float32): "float", np.dtype(np.int16): "int16_t"}


def c_array_body(values: np.ndarray, per_line: int = 24) -> str:
    """Comma-separated C initializer lines.

    >>> c_array_body(np.array([1, -2, 3], np.int8), per_line=2)
    '  1, -2,\\n  3'
    >>> c_array_body(np.array([-2147483648], np.int32))
    '  (-2147483647 - 1)'
    """
    flat = np.asarray(values).reshape(-1)
    if flat.dtype == np.float32:
        items = [f"{float(v).hex()}f" for v in flat]
    else:
        items = [("(-2147483647 - 1)" if int(v) == -(1 << 31) else str(int(v))) for v in flat.tolist()]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return ",\n".join("  " + ln for ln in lines)


def c_initializer(value) -> str:
    """A C designated initializer from a params dict (nested dicts become nested braces).

    >>> c_initializer({"n": 1, "in": {"h": 2, "w": 3}})
    '{ .n = 1, .in = { .h = 2, .w = 3 } }'
    """
    if isinstance(value, dict):
        return "{ " + ", ".join(f".{k} = {c_initializer(v)}" for k, v in value.items()) + " }"
    return c_value(value)


def c_ident(name: str) -> str:
    """A C-safe identifier fragment.

    >>> c_ident("model/conv 1:0")
    'model_conv_1_0'
    """
    out = "".join(ch if ch.isalnum() else "_" for ch in name)
    return out if out and not out[0].isdigit() else "_" + out


def c_string(s: str) -> str:
    """A C string literal body with everything outside printable ASCII escaped.

    >>> c_string('a"b')
    'a\\\\042b'
    """
    return "".join(ch if (32 <= ord(ch) < 127 and ch not in '"\\?') else f"\\{ord(ch) & 0xff:03o}" for ch in s)


def c_value(v) -> str:
    """An immediate operand or struct field as C: ints (INT32_MIN spelled safely), bools, C text.

    >>> c_value(-2147483648), c_value(True), c_value("0x1.0p-1f"), c_value(None)
    ('(-2147483647 - 1)', '1', '0x1.0p-1f', 'NULL')
    """
    if v is None:
        return "NULL"
    if isinstance(v, (bool, np.bool_)):
        return str(int(v))
    if isinstance(v, (int, np.integer)):
        v = int(v)
        return "(-2147483647 - 1)" if v == -(1 << 31) else str(v)
    return str(v)


def c_operand(o: Operand, tensor: dict, arrays: dict, scratch: str, params: str, ins: list[str], imm: dict,
              outs: list[str] | None = None) -> str:
    """One call argument rendered from its :class:`tinygen.kernels.Operand` description.

    >>> from tinygen.kernels import Operand
    >>> c_operand(Operand("in", 0, cast="const float *"), {"in0": "(tg_arena + 16u)"}, {}, "NULL", "&tg_p0", [], {})
    '(const float *)(tg_arena + 16u)'
    >>> c_operand(Operand("ins"), {}, {}, "NULL", "", ["a", "b"], {})
    '(const int8_t *const[]){a, b}'
    """
    if o.kind == "params":
        expr = params
    elif o.kind in ("in", "out"):
        expr = tensor[f"{o.kind}{o.index}"]
    elif o.kind == "ins":
        expr = "(const int8_t *const[]){" + ", ".join(ins) + "}"
    elif o.kind == "outs":
        expr = "(int8_t *const[]){" + ", ".join(outs or []) + "}"
    elif o.kind == "scratch":
        expr = scratch
    elif o.kind == "arr":
        expr = arrays[o.name]
    elif o.kind == "imm":
        expr = c_value(imm[o.name])
    else:
        raise ValueError(f"unknown operand kind {o.kind!r}")
    return f"({o.cast}){expr}" if o.cast else expr


_PARAM_TYPES = {"in": "const int8_t *", "out": "int8_t *", "scratch": "int8_t *"}


def c_prototype(symbol: str, operands) -> str:
    """The C declaration of a generated kernel from its operands.

    >>> from tinygen.kernels import IN0, OUT0, SCRATCH
    >>> c_prototype("tg_gen_3", (IN0, OUT0, SCRATCH))
    'int32_t tg_gen_3(const int8_t *in0, int8_t *out0, int8_t *scratch);'
    """
    args = ", ".join(f"{_PARAM_TYPES[o.kind]}{o.kind}{o.index if o.kind != 'scratch' else ''}" for o in operands)
    return f"int32_t {symbol}({args});"


@dataclass
class Layer:
    index: int  # layer number (calls only)
    op_index: int
    kind: str
    name: str
    symbol: str  # the C function called
    args: list[str]
    kernel: str  # what runs (CMSIS-NN function or tg_ref_* kernel)
    ptype: str | None
    pinit: str
    scratch: int
    scratch_fn: str | None
    macs: int
    out_bytes: int
    alternatives: list[str] = field(default_factory=list)
    output: int = -1  # tensor id of the output (= its TFLite tensor index)
    band: bool = False  # a band op of a patch stage (tinygen.patch): its output is a band, not a TFLite tensor


@dataclass
class Emitted:
    files: dict[str, str]
    manifest: dict
    layers: list[Layer] = field(default_factory=list)


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)


@functools.lru_cache(maxsize=1)
def _shared_env() -> jinja2.Environment:
    """One environment for every render: each template compiles once per process (a generated
    kernel family rendering through a fresh environment took 0.3 s a call)."""
    return _env()


def render(template: str, **ctx) -> str:
    return _shared_env().get_template(template).render(**ctx)


RUN_CHUNK = 256  # above this many layers tg_model_run calls functions of RUN_CHUNK layers each


def emit_model(g: Graph, calls: list[Call | None], p: Plan, model_bytes: bytes, name: str, backend: str,
               macs: list[int], test_input: np.ndarray, test_expected: np.ndarray, extra_manifest: dict) -> Emitted:
    """Render model.h, model.c, model_weights.h/.c and model_test.c; build the manifest.

    ``calls[i]`` is op i's kernel call (None for shape-only ops, which alias their input)."""
    arrays: list[tuple[str, str, str, int]] = []  # (symbol, ctype, body, nbytes)

    def tensor_expr(tid: int) -> str:
        t = g.t(tid)
        if t.is_const:
            sym = f"tg_c{tid}"
            if sym not in {a[0] for a in arrays}:
                arrays.append((sym, CTYPES[t.data.dtype], c_array_body(t.data), t.data.nbytes))
            return sym
        if _root(g, tid) in p.external:  # the caller's input buffer, read in place (a band: a view of it)
            return f"(tg_input_ext + {p.offsets[tid]}u)"
        return f"(tg_arena + {p.offsets[tid]}u)"

    layers: list[Layer] = []
    generated: list[dict] = []  # per generated kernel: symbol, file, prototype, source, notes
    for pos, (op, call) in enumerate(zip(g.ops, calls)):
        if call is None:
            continue
        li, low, k = len(layers), call.low, call.kernel
        names = {}
        gen = call.generated
        if gen is not None and gen.symbol not in {k["symbol"] for k in generated}:  # band ops share kernels
            generated.append({"symbol": gen.symbol, "file": f"{gen.symbol}.c", "layer": li, "kind": op.kind,
                              "name": op.name, "prototype": c_prototype(gen.symbol, k.operands),
                              "source": gen.source, "const_bytes": int(gen.const_bytes),
                              "variant": str(gen.notes.get("variant", ""))})
        for an, a in ({} if gen is not None else low.arrays).items():
            sym = f"tg_w{li}_{an}"
            a = np.ascontiguousarray(a)
            arrays.append((sym, CTYPES[a.dtype], c_array_body(a), a.nbytes))
            names[an] = sym
        tensor = {}
        for o in k.operands:  # constant operands become arrays only when a kernel takes them
            if o.kind in ("in", "out"):
                tensor[f"{o.kind}{o.index}"] = tensor_expr((op.inputs if o.kind == "in" else op.outputs)[o.index])
        ins = [tensor_expr(t) for t in op.inputs] if any(o.kind == "ins" for o in k.operands) else []
        outs = [tensor_expr(t) for t in op.outputs] if any(o.kind == "outs" for o in k.operands) else []
        scratch = f"(tg_arena + {p.scratch[pos][0]}u)" if p.scratch.get(pos) else "NULL"
        args = [c_operand(o, tensor, names, scratch, f"&tg_p{li}", ins, low.imm, outs) for o in k.operands]
        ptype = None if gen is not None else low.ptype
        params = {f: (names[v.name] if isinstance(v, Arr) else v) for f, v in low.params.items()} if ptype else {}
        layers.append(Layer(li, op.op_index, op.kind, op.name, k.symbol, args, k.name, ptype,
                            c_initializer(params) if ptype else "", p.scratch.get(pos, (0, 0))[1],
                            k.scratch_fn if p.scratch.get(pos) else None, macs[pos], sum(g.t(t).nbytes for t in op.outputs),
                            list(call.alternatives), op.outputs[0], "band" in op.attrs))

    model_hash = hashlib.sha256(model_bytes).hexdigest()[:16]
    tins, touts = [g.t(i) for i in g.inputs], [g.t(i) for i in g.outputs]
    tin, tout = tins[0], touts[0]
    weights_bytes = sum(a[3] for a in arrays) + sum(k["const_bytes"] for k in generated)
    ctx = dict(
        version=__version__, name=c_string(name), hash=model_hash, backend=backend, layers=layers, arrays=arrays,
        arena_size=p.arena_size, input_offset=p.offsets[tin.id], output_offset=p.offsets[tout.id],
        input_size=sum(t.nbytes for t in tins), output_size=sum(t.nbytes for t in touts),
        inputs=[(p.offsets[t.id], t.nbytes) for t in tins], outputs=[(p.offsets[t.id], t.nbytes) for t in touts], input_dtype=tin.dtype, output_dtype=tout.dtype,
        input_shape=list(tin.shape), output_shape=list(tout.shape),
        layer_names=[c_string(f"{ly.kind}:{ly.name}"[:60]) for ly in layers],
        test_inputs=[c_array_body(np.frombuffer(v.tobytes(), np.int8)) for v in np.atleast_2d(test_input)],
        test_outputs=[c_array_body(np.frombuffer(v.tobytes(), np.int8)) for v in np.atleast_2d(test_expected)],
        total_macs=sum(macs), generated=generated, external_input=bool(p.external), run_chunk=RUN_CHUNK,
    )
    files = {
        "model.h": render("model.h.j2", **ctx),
        "model.c": render("model.c.j2", **ctx),
        "model_weights.h": render("model_weights.h.j2", **ctx),
        "model_weights.c": render("model_weights.c.j2", **ctx),
        "model_test.c": render("model_test.c.j2", **ctx),
    }
    if generated:
        files["model_kernels.h"] = render("model_kernels.h.j2", **ctx)
        for k in generated:
            files[k["file"]] = render("model_kernel.c.j2", kernel=k, **ctx)
    manifest = {
        "tinygen_version": __version__,
        "model": name,
        "model_sha256_16": model_hash,
        "backend": backend,
        "arena_bytes": p.arena_size,
        "arena_strategy": p.strategy,
        "weights_bytes": weights_bytes,
        "macs": int(sum(macs)),
        "input": _io(tin, p), "output": _io(tout, p),
        "inputs": [_io(t, p) for t in tins], "outputs": [_io(t, p) for t in touts],
        "input_bytes": sum(t.nbytes for t in tins), "output_bytes": sum(t.nbytes for t in touts),
        "layers": [{"index": ly.index, "op_index": ly.op_index, "op": ly.kind, "name": ly.name,
                    "output": ly.output, "output_offset": p.offsets[ly.output],
                    "kernel": ly.kernel, "symbol": ly.symbol, "alternatives": ly.alternatives, "macs": ly.macs,
                    "scratch_bytes": ly.scratch,
                    "output_bytes": ly.out_bytes, **({"band": True} if ly.band else {})} for ly in layers],
        "tensors": [{"id": tid, "name": g.t(tid).name, "offset": off, "bytes": g.t(tid).nbytes}
                    for tid, off in sorted(p.offsets.items())],
        "buffers": [{"name": b.name, "offset": b.offset, "bytes": b.size, "start": b.start, "end": b.end}
                    for b in sorted(p.buffers, key=lambda b: (b.offset, b.start, b.name))],
        "num_ops": len(g.ops),
        "input_external": bool(p.external),
    }
    manifest.update(extra_manifest)
    files["manifest.json"] = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    return Emitted(files, manifest, layers)


def _io(t, p: Plan) -> dict:
    return {"name": t.name, "shape": list(t.shape), "dtype": t.dtype, "scale": t.scale.tolist(),
            "zero_point": t.zero_point.tolist(), "bytes": t.nbytes, "offset": p.offsets[t.id]}
