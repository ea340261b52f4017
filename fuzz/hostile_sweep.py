"""Hostile-input sweep: semantic mutations of real models, each accepted one built under sanitizers.

Each variant is a valid flatbuffer (the TFLite schema's object API: unpack, change one meaning,
pack) of a shared MLPerf Tiny model or an opnet: extreme activation / weight scales, zero points,
saturated biases and weights, fused activations, strides, padding, dimensions, swapped or rewired
inputs, swapped opcodes, quantized dimensions, dropped biases, softmax beta, constant graph inputs,
non-UTF-8 names. Every variant goes through ``tinygen.driver.compile_model``:

- rejected: a :class:`~tinygen.errors.TinygenError` (its one-line message is recorded);
- TRACEBACK: any other exception (a bug); CRASH: the process died (each variant runs in a
  forked child, so a crash inside TFLite's interpreter is counted, not fatal);
- accepted: built on the host with ASan + UBSan + the arena guard (``run_sanitizers.SAN_CFLAGS``),
  run on random inputs and compared with the TFLite reference byte for byte: clean, DIFFERS or
  SANITIZER.

    .venv/bin/python fuzz/hostile_sweep.py                # ~220 variants (portable backend)
    .venv/bin/python fuzz/hostile_sweep.py --limit 20 -v  # a quick look
    .venv/bin/python fuzz/hostile_sweep.py --quick        # every 6th variant (make sweep-quick)

Exits 1 when any variant is a TRACEBACK, DIFFERS or SANITIZER finding.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "fuzz"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import run_sanitizers as rs  # noqa: E402
from modeledit import constant_graph_input, is_const, pack, unpack  # noqa: E402

BASES_SHARED = ["kws_ref_model.tflite", "ad01_int8.tflite", "pretrainedResnet_quant.tflite"]
BASES_OPNET = [("add", "add", dict(in_shape=(4, 4, 3))), ("mul", "mul", dict(in_shape=(4, 4, 3))),
               ("softmax", "softmax", dict(in_shape=(1, 1, 10))), ("avgpool", "avgpool", dict(in_shape=(6, 6, 3))),
               ("mean", "mean", dict(in_shape=(5, 3, 4))), ("dw", "dwconv2d", dict(in_shape=(7, 7, 3), kernel=(3, 3)))]
PER_SHARED = 52
PER_OPNET = 12
QUICK_STRIDE = 6  # --quick: every 6th variant


# ---- mutations: (model, subgraph, rng) -> description; raise LookupError when not applicable ----


def _pick(rng, items):
    items = list(items)
    if not items:
        raise LookupError
    return items[int(rng.integers(len(items)))]


def _activations(m, sg):
    return [i for i, t in enumerate(sg.tensors) if not is_const(m, t) and t.type == 9 and t.quantization is not None
            and t.quantization.scale is not None and len(t.quantization.scale) == 1]


def act_scale(m, sg, rng):
    i = _pick(rng, _activations(m, sg))
    k = int(_pick(rng, [-30, -12, -6, -3, 3, 6, 12, 30]))
    sg.tensors[i].quantization.scale = [float(sg.tensors[i].quantization.scale[0]) * 10.0 ** k]
    return f"activation tensor {i} scale x 1e{k}"


def weight_scale(m, sg, rng):
    i = _pick(rng, [i for i, t in enumerate(sg.tensors) if is_const(m, t) and t.type == 9 and t.quantization is not None
                    and t.quantization.scale is not None])
    k = int(_pick(rng, [-30, -9, 6, 12, 30]))
    q = sg.tensors[i].quantization
    q.scale = [float(s) * 10.0 ** k for s in q.scale]
    return f"weights tensor {i} scales x 1e{k}"


def zero_point(m, sg, rng):
    i = _pick(rng, _activations(m, sg))
    v = int(_pick(rng, [-128, 127, 100, 200, -300]))
    sg.tensors[i].quantization.zeroPoint = [v]
    return f"activation tensor {i} zero point {v}"


def bias_extreme(m, sg, rng):
    i = _pick(rng, [i for i, t in enumerate(sg.tensors) if is_const(m, t) and t.type == 2])
    v = int(_pick(rng, [2**31 - 1, -2**31, 2**30, -(2**29)]))
    buf = m.buffers[sg.tensors[i].buffer]
    n = len(buf.data) // 4
    buf.data = np.full(n, v, np.int32).view(np.uint8)
    return f"int32 tensor {i} all {v}"


def weights_extreme(m, sg, rng):
    i = _pick(rng, [i for i, t in enumerate(sg.tensors) if is_const(m, t) and t.type == 9])
    v = int(_pick(rng, [-128, 127]))
    buf = m.buffers[sg.tensors[i].buffer]
    buf.data = np.full(len(buf.data), v, np.int8).view(np.uint8)
    return f"int8 tensor {i} all {v}"


def _with_opt(sg, field):
    return [k for k, op in enumerate(sg.operators) if op.builtinOptions is not None and hasattr(op.builtinOptions, field)]


def fused_act(m, sg, rng):
    k = _pick(rng, _with_opt(sg, "fusedActivationFunction"))
    v = int(_pick(rng, [0, 1, 2, 3, 4, 5, 9]))
    sg.operators[k].builtinOptions.fusedActivationFunction = v
    return f"op {k} fused activation {v}"


def stride(m, sg, rng):
    k = _pick(rng, _with_opt(sg, "strideH"))
    v = int(_pick(rng, [0, 2, 3, 7, 1000]))
    setattr(sg.operators[k].builtinOptions, _pick(rng, ["strideH", "strideW"]), v)
    return f"op {k} stride {v}"


def padding(m, sg, rng):
    k = _pick(rng, _with_opt(sg, "padding"))
    o = sg.operators[k].builtinOptions
    o.padding = 1 - int(o.padding) if int(o.padding) in (0, 1) else 0
    return f"op {k} padding flipped to {o.padding}"


def dilation(m, sg, rng):
    k = _pick(rng, _with_opt(sg, "dilationHFactor"))
    v = int(_pick(rng, [0, 2, 5, 100]))
    sg.operators[k].builtinOptions.dilationHFactor = v
    return f"op {k} dilation {v}"


def dim_tweak(m, sg, rng):
    i = _pick(rng, [i for i, t in enumerate(sg.tensors) if t.shape is not None and len(t.shape)])
    t = sg.tensors[i]
    shape = list(t.shape)
    d = int(rng.integers(len(shape)))
    shape[d] = max(1, int(shape[d]) + int(_pick(rng, [-1, 1, 7])))
    t.shape = shape
    return f"tensor {i} shape {shape}"


def swap_inputs(m, sg, rng):
    k = _pick(rng, [k for k, op in enumerate(sg.operators) if op.inputs is not None and len(op.inputs) >= 2])
    ins = list(sg.operators[k].inputs)
    ins[0], ins[1] = ins[1], ins[0]
    sg.operators[k].inputs = ins
    return f"op {k} inputs swapped"


def rewire(m, sg, rng):
    k = _pick(rng, [k for k in range(1, len(sg.operators))])
    ins = list(sg.operators[k].inputs)
    ins[0] = int(sg.inputs[0])
    sg.operators[k].inputs = ins
    return f"op {k} reads the graph input"


SWAPS = {22: 2, 19: 21, 21: 19, 0: 18, 18: 0, 1: 17, 17: 1, 3: 4, 4: 3, 25: 14, 40: 1}


def opcode_swap(m, sg, rng):
    j = _pick(rng, [j for j, oc in enumerate(m.operatorCodes) if max(oc.builtinCode, oc.deprecatedBuiltinCode) in SWAPS])
    oc = m.operatorCodes[j]
    new = SWAPS[max(oc.builtinCode, oc.deprecatedBuiltinCode)]
    oc.builtinCode = oc.deprecatedBuiltinCode = new
    return f"opcode {j} -> builtin {new}"


def quant_dim(m, sg, rng):
    i = _pick(rng, [i for i, t in enumerate(sg.tensors) if t.quantization is not None and t.quantization.scale is not None
                    and len(t.quantization.scale) > 1])
    v = int(_pick(rng, [0, 1, 2, 3]))
    sg.tensors[i].quantization.quantizedDimension = v
    return f"tensor {i} quantized dimension {v}"


def drop_bias(m, sg, rng):
    k = _pick(rng, [k for k, op in enumerate(sg.operators) if op.inputs is not None and len(op.inputs) == 3])
    ins = list(sg.operators[k].inputs)
    ins[2] = -1
    sg.operators[k].inputs = ins
    return f"op {k} without bias"


def softmax_beta(m, sg, rng):
    k = _pick(rng, _with_opt(sg, "beta"))
    v = float(_pick(rng, [1e-9, 1e3, 1e9, 0.0, -1.0]))
    sg.operators[k].builtinOptions.beta = v
    return f"op {k} softmax beta {v}"


def const_input(m, sg, rng):
    constant_graph_input(m, sg)
    return "graph input with constant data"


def bad_name(m, sg, rng):
    i = int(rng.integers(len(sg.tensors)))
    sg.tensors[i].name = _pick(rng, [b"\xff\xfe\xfd", b"x" * 5000, b"a\x00b", b"*/ evil /*"])
    return f"tensor {i} hostile name"


MUTATIONS = [act_scale, weight_scale, zero_point, bias_extreme, weights_extreme, fused_act, stride, padding,
             dilation, dim_tweak, swap_inputs, rewire, opcode_swap, quant_dim, drop_bias, softmax_beta,
             const_input, bad_name]


def variants(limit: int | None = None):
    """(name, description, bytes) of every variant, deterministic."""
    from opnets import make_opnet

    bases = [(n.removesuffix(".tflite"), (rs.SHARED / n).read_bytes(), PER_SHARED) for n in BASES_SHARED
             if (rs.SHARED / n).exists()]
    bases += [(name, make_opnet(kind, **spec), PER_OPNET) for name, kind, spec in BASES_OPNET]
    out = []
    for bname, buf, count in bases:
        rng = np.random.default_rng(len(bname) * 7919 + len(buf))
        made, tries = 0, 0
        while made < count and tries < count * 20:
            tries += 1
            fn = MUTATIONS[tries % len(MUTATIONS)]
            m = unpack(buf)
            try:
                desc = fn(m, m.subgraphs[0], rng)
                data = pack(m)
            except LookupError:
                continue
            out.append((f"{bname}#{made}", f"{fn.__name__}: {desc}", data))
            made += 1
    return out[:limit] if limit else out


def classify(buf: bytes, name: str, work: Path) -> tuple[str, str]:
    from tinygen.errors import TinygenError, ToolchainError

    try:
        rs.check(buf, name.replace("#", "_"), "portable", work, n_inputs=4)
        return "clean", ""
    except ToolchainError as e:
        msg = " ".join(str(e).split())
        kind = "SANITIZER" if ("runtime error" in msg or "Sanitizer" in msg) else "TOOLCHAIN"
        return kind, msg[:300]
    except TinygenError as e:
        msg = str(e)
        return ("rejected" if "\n" not in msg else "MULTILINE"), msg
    except AssertionError as e:
        return "DIFFERS", str(e)
    except Exception as e:  # noqa: BLE001 - a traceback for the user
        return "TRACEBACK", f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"


def classify_isolated(buf: bytes, name: str, work: Path) -> tuple[str, str]:
    """:func:`classify` in a forked child: a crash (of TFLite's interpreter, say) is a row, CRASH."""
    import json

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            res = classify(buf, name, work)
        except BaseException as e:  # noqa: BLE001
            res = ("TRACEBACK", f"{type(e).__name__}: {e}")
        os.write(w, json.dumps(res).encode())
        os._exit(0)
    os.close(w)
    chunks = []
    while True:
        b = os.read(r, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "CRASH", f"killed by signal {os.WTERMSIG(status)}"
    if not chunks:
        return "CRASH", f"exit status {os.WEXITSTATUS(status)} without a result"
    kind, msg = json.loads(b"".join(chunks))
    return kind, msg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=int, help="only the first N variants")
    ap.add_argument("--quick", action="store_true", help="every 6th variant (a quick run: 38 of 228)")
    ap.add_argument("-v", action="store_true", help="print every variant")
    a = ap.parse_args(argv)
    os.environ.update({k: v for k, v in rs.SAN_ENV.items() if k not in os.environ})
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory(prefix="tinygen-sweep-") as d:
        for name, desc, buf in variants(a.limit)[::QUICK_STRIDE if a.quick else 1]:
            kind, msg = classify_isolated(buf, name, Path(d))
            rows.append((name, desc, kind, msg))
            if a.v or kind not in ("clean", "rejected"):
                print(f"{name:<28} {kind:<9} {desc} | {msg[:160]}", flush=True)
    counts = Counter(r[2] for r in rows)
    by_mut = Counter((r[1].split(":")[0], r[2]) for r in rows)
    print(f"\n{len(rows)} variants in {time.time() - t0:.0f} s: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    print("\n| mutation | variants | rejected | accepted, clean | DIFFERS | SANITIZER | TRACEBACK | CRASH |\n"
          "|---|---:|---:|---:|---:|---:|---:|---:|")
    for mut in [f.__name__ for f in MUTATIONS]:
        n = sum(v for (mm, _), v in by_mut.items() if mm == mut)
        if n:
            print(f"| {mut} | {n} | {by_mut[(mut, 'rejected')]} | {by_mut[(mut, 'clean')]} | {by_mut[(mut, 'DIFFERS')]} | "
                  f"{by_mut[(mut, 'SANITIZER')]} | {by_mut[(mut, 'TRACEBACK')]} | {by_mut[(mut, 'CRASH')]} |")
    bad = sum(v for k, v in counts.items() if k not in ("clean", "rejected"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
