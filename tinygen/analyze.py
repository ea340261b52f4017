"""`tinygen analyze MODEL`: what the model costs on each board, without building anything.

Per layer: op, shapes, MACs, parameters, flash bytes of its constants, activation and
scratch bytes, and the kernel that runs it (for cmsis-nn the CMSIS-NN sub-kernel the
wrapper picks, mirroring ``arm_convolve_wrapper_s8`` / ``arm_depthwise_conv_wrapper_s8``
and the fallbacks of firmware/tg_backend_cmsis.c). Totals: the planned arena against
TFLite Micro's for the same model, a flash estimate, whether it fits each board, and a
latency *estimate* per board from :mod:`tinygen.cyclemodel` (QEMU instruction counts).

Nothing here needs TensorFlow or a toolchain; TFLM's arena needs ``tflite_micro``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import ir, passes
from . import ops as optable
from . import plan as planner

# CMSIS-NN kernels that run an op on the cmsis-nn backend when no sub-kernel rule applies
_CMSIS_DIRECT = {"FULLY_CONNECTED": "arm_nn_mat_mult_nt_t_s8_s32", "AVERAGE_POOL_2D": "arm_avgpool_s8",
                 "MAX_POOL_2D": "arm_max_pool_s8", "SOFTMAX": "arm_softmax_s8", "PAD": "arm_pad_s8",
                 "PADV2": "arm_pad_s8"}


@dataclass
class LayerInfo:
    index: int | None       # the firmware's layer index (TG_LAYER, manifest "layers"); None for shape-only ops
    op_index: int           # position in the source model
    op: str
    name: str
    inputs: list            # activation input shapes
    output: list            # output shape
    macs: int
    params: int             # weight + bias elements
    weight_bytes: int       # flash bytes of this layer's constants (weights, bias, mult/shift, LUT)
    act_bytes: int          # activation bytes read + written
    scratch_bytes: int
    kernel: str             # the C function that does the work ("" for aliases)
    est_instructions: dict = field(default_factory=dict)  # core -> estimated instructions
    shape_only: bool = False  # an alias (e.g. RESHAPE): no call in the firmware, not counted as a layer
    position: int = 0       # position in the compiled (post-pass, scheduled) op list


def _dims(params: dict, key: str) -> tuple[int, int, int, int]:
    d = params[key]
    return d["n"], d["h"], d["w"], d["c"]


def cmsis_kernel(op: str, func: str, params: dict, arch: str = "dsp", equal_shapes: bool = True) -> str:
    """The CMSIS-NN v7.0.0 function that runs a lowered op on the cmsis-nn backend.

    Mirrors arm_convolve_wrapper_s8, arm_depthwise_conv_wrapper_s8 and the bypasses/fallbacks
    in firmware/tg_backend_cmsis.c (see tinygen/cmsis_scratch.py for the same logic on sizes).

    >>> p = {"in": {"n": 1, "h": 8, "w": 8, "c": 16}, "filter": {"n": 32, "h": 1, "w": 1, "c": 16},
    ...      "out": {"n": 1, "h": 8, "w": 8, "c": 32}, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0,
    ...      "dil_h": 1, "dil_w": 1, "ch_mult": 1}
    >>> cmsis_kernel("CONV_2D", "tg_conv2d_s8", p)
    'arm_convolve_1x1_s8_fast'
    >>> cmsis_kernel("CONV_2D", "tg_conv2d_s8", dict(p, stride_h=2, stride_w=2))
    'arm_convolve_1x1_s8'
    >>> cmsis_kernel("CONV_2D", "tg_conv2d_s8", dict(p, filter={"n": 32, "h": 3, "w": 3, "c": 16}, pad_h=1, pad_w=1))
    'arm_convolve_s8'
    >>> dw = dict(p, filter={"n": 1, "h": 3, "w": 3, "c": 16}, out={"n": 1, "h": 8, "w": 8, "c": 16}, pad_h=1, pad_w=1)
    >>> cmsis_kernel("DEPTHWISE_CONV_2D", "tg_dwconv2d_s8", dw), cmsis_kernel("DEPTHWISE_CONV_2D", "tg_dwconv2d_s8", dw, "mve")
    ('arm_depthwise_conv_3x3_s8', 'arm_depthwise_conv_s8_opt')
    """
    if op == "CONV_2D":
        n, ih, iw, ic = _dims(params, "in")
        _, kh, kw, fc = _dims(params, "filter")
        dil1 = params["dil_h"] == 1 and params["dil_w"] == 1
        if params["pad_h"] == 0 and params["pad_w"] == 0 and kh == 1 and kw == 1 and dil1 and ic == fc:
            return "arm_convolve_1x1_s8_fast" if params["stride_h"] == 1 and params["stride_w"] == 1 else "arm_convolve_1x1_s8"
        if ih == 1 and params["dil_w"] == 1 and kh == 1 and (params["stride_w"] * ic) % 4 == 0 and ic == fc:
            return "arm_convolve_s8" if arch == "mve" else "arm_convolve_1_x_n_s8"  # Helium 1xN bypassed
        return "arm_convolve_s8"
    if op == "DEPTHWISE_CONV_2D":
        n, ih, iw, ic = _dims(params, "in")
        _, kh, kw, oc = _dims(params, "filter")
        if arch == "mve" and ic == 1 and oc > 1:
            return "arm_depthwise_conv_to_conv_s8"
        if params["ch_mult"] == 1 and n == 1 and params["dil_h"] == 1 and params["dil_w"] == 1:
            if arch != "mve" and kh == 3 and kw == 3 and params["pad_h"] <= 1 and params["pad_w"] <= 1:
                return "arm_depthwise_conv_3x3_s8"
            return "arm_depthwise_conv_s8_opt"
        return "arm_depthwise_conv_s8"
    if op in ("ADD", "MUL"):
        if equal_shapes:
            return "arm_elementwise_add_s8" if op == "ADD" else "arm_elementwise_mul_s8"
        return func.replace("tg_", "tg_ref_", 1)  # broadcasting: reference kernel
    if op in _CMSIS_DIRECT:
        return _CMSIS_DIRECT[op]
    return func.replace("tg_", "tg_ref_", 1) if func else ""


def portable_kernel(func: str) -> str:
    """The portable C kernel behind a lowered call (tg_conv2d_s8 -> tg_ref_conv2d_s8)."""
    return func.replace("tg_", "tg_ref_", 1) if func else ""


@dataclass
class Analysis:
    model: str
    backend: str
    arch: str
    layers: list[LayerInfo]
    arena_bytes: int
    arena_lower_bound: int
    arena_strategy: str
    weights_bytes: int
    params_bytes: int       # estimated flash of the parameter structs
    io_bytes: int
    macs: int
    params: int
    kernels: list[str]
    tflm: dict | None
    boards: list[dict]
    cyclemodel_note: str


def _compile(model_bytes: bytes, name: str, backend: str, arch: str):
    g = ir.load(model_bytes, name)
    passes.run(g, None)
    planner.reorder(g, planner.schedule(g))  # the firmware's execution order (driver.compile_model)
    karch = arch if backend == "cmsis-nn" else "portable"
    lowered = [optable.lower(g, op, karch) for op in g.ops]
    scratch = {i: low.scratch for i, low in enumerate(lowered) if low.scratch}
    p = planner.plan(g, scratch)
    return g, lowered, p


def _param_struct_bytes(params: dict) -> int:
    """Rough flash size of a params struct: 4 bytes per scalar or pointer field."""
    return sum(_param_struct_bytes(v) if isinstance(v, dict) else 4 for v in params.values())


def analyze_bytes(model_bytes: bytes, name: str, backend: str = "cmsis-nn", arch: str = "dsp",
                  with_tflm: bool = True, boards=None) -> Analysis:
    """Analysis of an int8 TFLite model for ``backend`` ('cmsis-nn' or 'portable') and ``arch``."""
    from . import cyclemodel

    g, lowered, p = _compile(model_bytes, name, backend, arch)
    model = cyclemodel.load()
    layers: list[LayerInfo] = []
    params_struct = 0
    for i, (op, low) in enumerate(zip(g.ops, lowered)):
        acts_in = [g.t(t) for t in op.inputs if t >= 0 and not g.t(t).is_const]
        consts = [g.t(t) for t in op.inputs if t >= 0 and g.t(t).is_const]
        out = g.t(op.outputs[0])
        if low.alias:
            kernel = ""
        elif backend == "cmsis-nn":
            eq = len({a.shape for a in acts_in}) <= 1 and all(a.shape == out.shape for a in acts_in)
            kernel = cmsis_kernel(op.kind, low.func, low.params, arch, eq)
        else:
            kernel = portable_kernel(low.func)
        nparams = sum(c.size for c in consts) if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED") else 0
        wbytes = sum(int(a.nbytes) for a in low.arrays.values())
        params_struct += _param_struct_bytes(low.params) if low.ptype else 0
        macs = optable.macs(g, op)
        ly = LayerInfo(None if low.alias else sum(1 for x in lowered[:i] if not x.alias), op.op_index, op.kind, op.name, [list(a.shape) for a in acts_in], list(out.shape), macs,
                       int(nparams), wbytes, 0 if low.alias else sum(a.nbytes for a in acts_in) + out.nbytes,
                       low.scratch, kernel, shape_only=bool(low.alias), position=i)
        if kernel:
            for core in cyclemodel.CORES:
                ly.est_instructions[core] = model.instructions(backend, core, kernel, op.kind, macs, out.nbytes)
        layers.append(ly)
    bufs, _ = planner.make_buffers(g, {i: s for i, s in enumerate(low.scratch for low in lowered) if s})
    kernels = sorted({ly.kernel for ly in layers if ly.kernel})
    weights = sum(ly.weight_bytes for ly in layers)
    io = sum(g.t(t).nbytes for t in g.inputs) + sum(g.t(t).nbytes for t in g.outputs)
    tflm = None
    if with_tflm:
        try:
            tflm = tflm_arena(model_bytes)
        except Exception as e:  # tflite_micro missing or refusing the model: say so, do not fail
            tflm = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:200]}
    a = Analysis(name, backend, arch, layers, p.arena_size, planner.lower_bound(bufs), p.strategy, weights,
                 params_struct, io, sum(ly.macs for ly in layers), sum(ly.params for ly in layers), kernels, tflm,
                 [], model.note)
    a.boards = [_board_fit(a, b, model) for b in (boards if boards is not None else _boards())]
    return a


def _boards():
    from . import boards

    return boards.all_boards()


def _board_fit(a: Analysis, board, model) -> dict:
    from . import cyclemodel

    core = cyclemodel.core_of(board.core)
    instr = sum(ly.est_instructions.get(core, 0) for ly in a.layers)
    code = model.code_bytes(a.backend, core, a.kernels)
    flash = a.weights_bytes + a.params_bytes + code + model.flash_other(a.backend, core, len(a.layers))
    ram = a.arena_bytes + board.stack_size + model.ram_other(a.backend, core)
    return {"board": board.name, "core": board.core, "clock_hz": board.clock_hz,
            "flash_bytes": flash, "flash_size": board.flash_size, "flash_margin": board.flash_size - flash,
            "ram_bytes": ram, "ram_size": board.ram_size, "ram_margin": board.ram_size - ram,
            "fits": flash <= board.flash_size and ram <= board.ram_size,
            "code_bytes": code, "est_instructions": int(instr), "est_ms": 1e3 * instr / board.clock_hz,
            "model_core": core}


def tflm_arena(model_bytes: bytes) -> dict:
    """{'total', 'head', 'tail'} bytes of TFLite Micro's arena for the model (its
    RecordingMicroAllocator report, read from tflite_micro.runtime on fd 2)."""
    from tflite_micro.python.tflite_micro import runtime

    it = runtime.Interpreter.from_bytes(bytes(model_bytes))
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            it.print_allocations()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if not m:
            raise RuntimeError(f"could not read TFLM's arena {key} from its allocation report")
        out[key] = int(m.group(1))
    return out


# ---- output ----------------------------------------------------------------------------------


def _shape(s) -> str:
    return "x".join(str(d) for d in s)


def format_table(a: Analysis) -> str:
    rows = [f"{a.model}: backend {a.backend} (arch {a.arch}), {sum(not ly.shape_only for ly in a.layers)} layers "
            f"(+{sum(ly.shape_only for ly in a.layers)} shape-only), {a.macs:,} MACs, "
            f"{a.params:,} parameters",
            f"{'#':>3} {'op':<18} {'in -> out':<26} {'MACs':>11} {'params':>8} {'flash B':>8} {'act B':>7} "
            f"{'scratch':>7}  kernel"]
    for ly in a.layers:
        io = f"{','.join(_shape(s) for s in ly.inputs)}->{_shape(ly.output)}"
        rows.append(f"{'-' if ly.index is None else ly.index:>3} {ly.op[:18]:<18} {io[:26]:<26} {ly.macs:>11,} {ly.params:>8,} {ly.weight_bytes:>8,} "
                    f"{ly.act_bytes:>7,} {ly.scratch_bytes:>7,}  {ly.kernel or '(alias, no call)'}")
    rows.append("")
    rows.append(f"arena    {a.arena_bytes:>9,} B planned ({a.arena_strategy}); live-set lower bound {a.arena_lower_bound:,} B"
                + (" (optimal)" if a.arena_bytes == a.arena_lower_bound else ""))
    if a.tflm and "total" in a.tflm:
        t = a.tflm
        rows.append(f"TFLM     {t['total']:>9,} B (tensors+scratch {t['head']:,} + persistent {t['tail']:,}); "
                    f"tinygen/TFLM {a.arena_bytes / t['total']:.2f} of total, {a.arena_bytes / max(t['head'], 1):.2f} of tensors")
    elif a.tflm:
        rows.append(f"TFLM     unavailable ({a.tflm['error']})")
    rows.append(f"weights  {a.weights_bytes:>9,} B in flash (+ ~{a.params_bytes:,} B parameter structs); I/O {a.io_bytes:,} B")
    rows.append(f"kernels  {', '.join(a.kernels)}")
    rows.append("")
    rows.append(f"{'board':<15} {'core':<11} {'MHz':>5} {'flash est.':>11} {'margin':>11} {'RAM est.':>10} {'margin':>11} "
                f"{'fits':>4} {'latency est.':>13}")
    for b in a.boards:
        rows.append(f"{b['board']:<15} {b['core']:<11} {b['clock_hz'] / 1e6:>5.0f} {b['flash_bytes']:>11,} "
                    f"{b['flash_margin']:>11,} {b['ram_bytes']:>10,} {b['ram_margin']:>11,} {'yes' if b['fits'] else 'NO':>4} "
                    f"{b['est_ms']:>10.2f} ms")
    rows.append(f"latency: {a.cyclemodel_note}")
    return "\n".join(rows)


def to_json(a: Analysis) -> str:
    return json.dumps(asdict(a), indent=2, sort_keys=True)


# ---- CLI -------------------------------------------------------------------------------------


def cmd_analyze(args) -> int:
    from . import boards, frontend

    board = boards.load_board(args.board) if args.board else None
    backend = args.backend or "cmsis-nn"
    arch = "none" if backend == "portable" else (board.arch_features if board else "dsp")
    buf, name = frontend.load(args.model, None, log=lambda m: None)
    a = analyze_bytes(buf, name, backend, arch, with_tflm=not args.no_tflm,
                      boards=[board] if board else None)
    print(to_json(a) if args.json else format_table(a))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("analyze", help="per-layer MACs, memory, kernels, arena vs TFLM, fit and latency estimate per board")
    p.add_argument("model", help="int8 .tflite (or a Keras model, quantized with synthetic data)")
    p.add_argument("--board", help="only this board (default: every board); sets the CMSIS-NN arch")
    p.add_argument("--backend", choices=["cmsis-nn", "portable"], default=None, help="kernels (default cmsis-nn)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-tflm", action="store_true", help="skip TFLite Micro's arena")
    p.set_defaults(func=cmd_analyze)


def analyze_path(path: str | Path, backend: str = "cmsis-nn", arch: str = "dsp", **kw) -> Analysis:
    from . import frontend

    buf, name = frontend.load(str(path), None, log=lambda m: None)
    return analyze_bytes(buf, name, backend, arch, **kw)
