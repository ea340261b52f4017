"""`tinygen analyze MODEL`: what the model costs on each board, without building anything.

Per layer: op, shapes, MACs, parameters, flash bytes of its constants, activation and
scratch bytes, and the kernel that runs it: the compiler's own choice (the driver's stages
up to ``plan``, :mod:`tinygen.kernels`), the same the firmware calls. Totals: the planned arena against
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

from . import driver
from . import kernels as registry
from . import ops as optable
from . import plan as planner


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
    alternatives: dict = field(default_factory=dict)  # other kernels that apply -> estimated instructions (M33)
    shape_only: bool = False  # an alias (e.g. RESHAPE): no call in the firmware, not counted as a layer
    position: int = 0       # position in the compiled (post-pass, scheduled) op list


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
    patch: dict | None = None  # the patch-based first stage (tinygen.patch.Choice.manifest()), None without
    patch_text: str = ""


def _param_struct_bytes(params: dict) -> int:
    """Rough flash size of a params struct: 4 bytes per scalar or pointer field."""
    return sum(_param_struct_bytes(v) if isinstance(v, dict) else 4 for v in params.values())


def analyze_bytes(model_bytes: bytes, name: str, backend: str = "cmsis-nn", arch: str = "dsp",
                  with_tflm: bool = True, boards=None, **options) -> Analysis:
    """Analysis of an int8 TFLite model for ``backend`` ('cmsis-nn' or 'portable') and ``arch``."""
    from . import cyclemodel

    c = driver.compile_model(model_bytes, name, backend, arch, stop_after="plan", **options)  # patch options
    g, p = c.graph, c.plan
    model = cyclemodel.load()
    layers: list[LayerInfo] = []
    params_struct = 0
    for i, (op, call) in enumerate(zip(g.ops, c.calls)):
        acts_in = [g.t(t) for t in op.inputs if t >= 0 and not g.t(t).is_const]
        out = g.t(op.outputs[0])
        out_bytes = sum(g.t(t).nbytes for t in op.outputs)  # SPLIT / UNPACK write several outputs
        kernel = call.kernel.name if call is not None else ""
        roles = optable.facts(op.kind).roles  # parameters: the inputs in the weights and bias roles
        nparams = sum(g.t(t).size for k, t in enumerate(op.inputs)
                      if t >= 0 and g.t(t).is_const and k < len(roles) and roles[k].split(" ")[-1] in ("weights", "bias"))
        wbytes = (0 if call is None else int(call.generated.const_bytes) if call.generated is not None
                  else sum(int(a.nbytes) for a in call.low.arrays.values()))
        params_struct += _param_struct_bytes(call.low.params) if call and call.low.ptype and call.generated is None else 0
        macs = c.macs[i]
        index = None if call is None else sum(1 for x in c.calls[:i] if x is not None)
        ly = LayerInfo(index, op.op_index, op.kind, op.name, [list(a.shape) for a in acts_in], list(out.shape), macs,
                       int(nparams), wbytes, 0 if call is None else sum(a.nbytes for a in acts_in) + out_bytes,
                       call.scratch if call else 0, kernel, shape_only=call is None, position=i)
        if kernel:
            for core in cyclemodel.CORES:
                ly.est_instructions[core] = (int(call.cost) if call.generated is not None else  # the family's own estimate
                                             model.instructions(call.kernel.kset, core, kernel, op.kind, macs, out_bytes,
                                                                cyclemodel.taps_of(op.kind, macs, acts_in[0].shape if acts_in else None)))
            for alt in call.alternatives:
                ly.alternatives[alt] = (int(call.alt_costs[alt]) if alt in call.alt_costs else
                                        registry.estimate(registry.by_name(alt), op.kind, macs, out_bytes))
        layers.append(ly)
    bufs, _ = planner.make_buffers(g, c.calls)
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
    ch = c.patch_choice
    if ch is not None and ch.layers:
        a.patch = dict(ch.manifest(), arena=p.arena_size)
        kinds = {}
        for op in g.ops:
            kinds.setdefault(op.op_index, op.kind)
        a.patch_text = (f"{ch.describe()}; planned arena {p.arena_size:,} B\n"
                        f"tensor-level peak per layer (* = changed by the patches):\n{ch.peak_table(kinds)}")
    elif ch is not None:
        a.patch_text = ch.describe()
    return a


def _boards():
    from . import boards

    return boards.all_boards()


def _board_fit(a: Analysis, board, model) -> dict:
    from . import cyclemodel

    core = cyclemodel.core_of(board.core)
    instr = sum(ly.est_instructions.get(core, 0) for ly in a.layers)
    table = a.backend if a.backend != "generated" else ("cmsis-nn" if any(k.startswith("arm_") for k in a.kernels)
                                                         else "portable")  # generated code counts as the fallback's
    code = model.code_bytes(table, core, a.kernels)
    flash = a.weights_bytes + a.params_bytes + code + model.flash_other(table, core, len(a.layers))
    ram = a.arena_bytes + board.stack_size + model.ram_other(table, core)
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
        rows.append(f"{'-' if ly.index is None else ly.index:>3} {ly.op[:18]:<18} {io[:26]:<26} {ly.macs:>11,} "
                    f"{ly.params:>8,} {ly.weight_bytes:>8,} {ly.act_bytes:>7,} {ly.scratch_bytes:>7,}  "
                    f"{ly.kernel or '(alias, no call)'}"
                    + (f"  (also: {', '.join(f'{k} ~{v:,}' for k, v in ly.alternatives.items())})" if ly.alternatives else ""))
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
    if a.patch_text:
        rows += ["", a.patch_text]
    return "\n".join(rows)


def to_json(a: Analysis) -> str:
    return json.dumps(asdict(a), indent=2, sort_keys=True)


# ---- CLI -------------------------------------------------------------------------------------


def cmd_analyze(args) -> int:
    from . import boards, frontend

    board = boards.load_board(args.board) if args.board else None
    from .driver import default_backend

    backend = args.backend or default_backend(board)
    arch = "none" if backend == "portable" else (board.arch_features if board else "dsp")
    buf, name = frontend.load(args.model, None, log=lambda m: None)
    from .patch import options

    a = analyze_bytes(buf, name, backend, arch, with_tflm=not args.no_tflm,
                      boards=[board] if board else None, **options(args))
    print(to_json(a) if args.json else format_table(a))
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("analyze", help="per-layer MACs, memory, kernels, arena vs TFLM, fit and latency estimate per board")
    p.add_argument("model", help="int8 .tflite (or a Keras model, quantized with synthetic data)")
    p.add_argument("--board", help="only this board (default: every board); sets the CMSIS-NN arch")
    p.add_argument("--backend", choices=["generated", "cmsis-nn", "portable"], default=None,
                   help="kernel set (default: generated, as tinygen build)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-tflm", action="store_true", help="skip TFLite Micro's arena")
    from .patch import add_flags

    add_flags(p)
    p.set_defaults(func=cmd_analyze)


def analyze_path(path: str | Path, backend: str = "cmsis-nn", arch: str = "dsp", **kw) -> Analysis:
    from . import frontend

    buf, name = frontend.load(str(path), None, log=lambda m: None)
    return analyze_bytes(buf, name, backend, arch, **kw)
