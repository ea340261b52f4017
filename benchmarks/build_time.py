"""Build time per stage of long layer chains (issue 15: linear in layers, 10,000 layers < 60 s).

    python benchmarks/build_time.py                    # 100 / 1,000 / 10,000 layers
    python benchmarks/build_time.py --layers 100 1000  # a subset

The model is generated here, straight through the TFLite schema's object API (no converter, so
10,000 layers take a second): a chain on int8 [1, 4, 4, 8] cycling CONV_2D 1x1, DEPTHWISE_CONV_2D
3x3 (same padding) and ADD of the last two tensors, every layer with its own random weights.
Each row is one host build (`driver.build` + the host program built and its self-test vectors
run, what `tinygen build --board host` does) timed per stage: frontend (load), the compiler's
stages (import, passes, schedule, lower, plan with its overlap check, reference, emit), the
project write, and gcc (make) + the self-test run. Wall-clock seconds on the shared 2-core
machine; the numbers move with its load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHAPE = (1, 4, 4, 8)
ACT_SCALE, ACT_ZP = 0.05, -3
KINDS = ("CONV_2D", "DEPTHWISE_CONV_2D", "ADD")


def chain_model(n: int, seed: int = 0) -> bytes:
    """An int8 TFLite model of ``n`` layers (see the module docstring), deterministic in ``seed``."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as s

    rng = np.random.default_rng(seed)
    c = SHAPE[-1]
    m = s.ModelT()
    m.version, m.description = 3, b"tinygen build_time chain"
    codes = {"CONV_2D": (s.BuiltinOperator.CONV_2D, 3), "DEPTHWISE_CONV_2D": (s.BuiltinOperator.DEPTHWISE_CONV_2D, 3),
             "ADD": (s.BuiltinOperator.ADD, 2)}
    m.operatorCodes = []
    for k in KINDS:
        oc = s.OperatorCodeT()
        oc.builtinCode, oc.version = codes[k]
        oc.deprecatedBuiltinCode = min(codes[k][0], 127)
        m.operatorCodes.append(oc)
    m.buffers = [s.BufferT()]
    sg = s.SubGraphT()
    sg.tensors, sg.operators = [], []

    def quant(scale, zp, dim=0):
        q = s.QuantizationParametersT()
        q.scale, q.zeroPoint, q.quantizedDimension = [float(v) for v in scale], [int(v) for v in zp], dim
        return q

    def tensor(name, shape, ttype, q, data=None):
        t = s.TensorT()
        t.name, t.shape, t.type, t.quantization = name.encode(), list(shape), ttype, q
        if data is None:
            t.buffer = 0
        else:
            b = s.BufferT()
            b.data = np.frombuffer(np.ascontiguousarray(data).tobytes(), np.uint8)
            m.buffers.append(b)
            t.buffer = len(m.buffers) - 1
        sg.tensors.append(t)
        return len(sg.tensors) - 1

    def act(name, scale=ACT_SCALE):
        return tensor(name, SHAPE, s.TensorType.INT8, quant([scale], [ACT_ZP]))

    def weights(name, shape, dim, fan_in):
        w = rng.normal(0, 1.0 / np.sqrt(fan_in), size=shape)
        ws = np.maximum(np.abs(w).max(axis=tuple(i for i in range(len(shape)) if i != dim)), 1e-6) / 127.0
        bshape = [1] * len(shape)
        bshape[dim] = -1
        q = np.clip(np.round(w / ws.reshape(bshape)), -127, 127).astype(np.int8)
        wt = tensor(name + "/w", shape, s.TensorType.INT8, quant(ws, [0] * len(ws), dim), q)
        bs = ws * ACT_SCALE
        bias = np.round(rng.normal(0, 0.05, size=len(ws)) / bs).astype(np.int32)
        bt = tensor(name + "/b", (len(ws),), s.TensorType.INT32, quant(bs, [0] * len(ws)), bias)
        return wt, bt

    x = act("input")
    sg.inputs = [x]
    prev, prev2 = x, x
    for i in range(n):
        kind = KINDS[i % 3]
        op = s.OperatorT()
        op.opcodeIndex = KINDS.index(kind)
        name = f"l{i}_{kind.lower()}"
        if kind == "CONV_2D":
            w, b = weights(name, (c, 1, 1, c), 0, c)
            out = act(name)
            o = s.Conv2DOptionsT()
            o.padding, o.strideW, o.strideH, o.dilationWFactor, o.dilationHFactor = s.Padding.SAME, 1, 1, 1, 1
            op.builtinOptionsType, op.builtinOptions, op.inputs = s.BuiltinOptions.Conv2DOptions, o, [prev, w, b]
        elif kind == "DEPTHWISE_CONV_2D":
            w, b = weights(name, (1, 3, 3, c), 3, 9)
            out = act(name)
            o = s.DepthwiseConv2DOptionsT()
            o.padding, o.strideW, o.strideH, o.depthMultiplier = s.Padding.SAME, 1, 1, 1
            o.dilationWFactor = o.dilationHFactor = 1
            op.builtinOptionsType, op.builtinOptions, op.inputs = s.BuiltinOptions.DepthwiseConv2DOptions, o, [prev, w, b]
        else:
            out = act(name, scale=2 * ACT_SCALE)
            o = s.AddOptionsT()
            op.builtinOptionsType, op.builtinOptions, op.inputs = s.BuiltinOptions.AddOptions, o, [prev, prev2]
        op.outputs = [out]
        sg.operators.append(op)
        prev2, prev = prev, out
        if kind == "ADD":  # back to the common scale for the next CONV/ADD (ADD outputs 2x)
            sg.tensors[out].quantization = quant([ACT_SCALE], [ACT_ZP])
    sg.outputs = [prev]
    m.subgraphs = [sg]
    b = flatbuffers.Builder(1 << 20)
    b.Finish(m.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


STAGE_COLS = ("frontend", "import", "passes", "schedule", "lower", "plan", "reference", "emit", "write", "gcc+run")


def _cpu() -> float:
    """CPU seconds of this process and its finished children (gcc, make, the TFLite worker)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def timed_build(n: int, work: Path, backend: str = "generated") -> tuple[dict[str, float], dict[str, float]]:
    """One host build of an n-layer chain: (wall seconds, CPU seconds) per stage; asserts the
    self-test vectors match. (The TFLite reference runs in a long-lived child process: its CPU time
    is not counted until it exits, so the reference stage's CPU column is this process's only.)"""
    from tinygen import driver, frontend, hostbuild, ir, project

    t: dict[str, float] = {}
    cpu: dict[str, float] = {}
    model = work / f"chain{n}.tflite"
    model.write_bytes(chain_model(n))

    def stage(name, fn):
        t0, c0 = time.perf_counter(), _cpu()
        res = fn()
        t[name], cpu[name] = time.perf_counter() - t0, _cpu() - c0
        return res

    model_bytes, name = stage("frontend", lambda: frontend.load(str(model), log=lambda m: None))
    c = driver.Compiled(model_bytes, name, backend, "none" if backend != "portable" else "portable", "host", 0,
                        with_cmsis=False)
    for sname, fn in driver.STAGES:
        stage(sname, lambda: (fn(c, None), c.graph is not None and ir.verify(c.graph, sname)))
    out = work / f"proj{n}"
    stage("write", lambda: project.write(out, driver.host_project(c)))
    r = stage("gcc+run", lambda: hostbuild.check_project(out, c))
    assert r.ok and r.match, f"{n} layers: the self-test vectors differ"
    t["total"], cpu["total"] = sum(t.values()), sum(cpu.values())
    return t, cpu


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, nargs="+", default=[100, 1000, 10000])
    ap.add_argument("--backend", default="generated", choices=["generated", "portable"])
    a = ap.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="tg-build-time-") as tmp:
        for n in a.layers:
            t, cpu = timed_build(n, Path(tmp), a.backend)
            rows.append((n, t, cpu))
            print(f"# {n} layers: {t['total']:.1f} s wall, {cpu['total']:.1f} s CPU", file=sys.stderr, flush=True)
    cols = (*STAGE_COLS, "total")
    print(f"host build, backend {a.backend}, seconds per stage: wall clock / CPU (this process + gcc; "
          "shared 2-core machine, wall clock moves with its load)\n")
    print("| layers | " + " | ".join(cols) + " |")
    print("|---:|" + "---:|" * len(cols))
    for n, t, cpu in rows:
        print(f"| {n:,} | " + " | ".join(f"{t[k]:.1f} / {cpu[k]:.1f}" for k in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
