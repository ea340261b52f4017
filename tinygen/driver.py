"""The compiler driver: one straight line over the stages.

    import -> passes -> schedule -> lower -> plan -> reference -> emit   (then project -> build)

:data:`STAGES` is that list; :func:`compile_model` runs it (``stop_after`` ends early: `analyze`
stops after ``plan``), verifying the IR after every stage (:func:`tinygen.ir.verify`).
``lower`` asks the op table for each layer's parameters and the kernel registry
(:mod:`tinygen.kernels`) for the kernel that runs it; ``plan`` sizes scratch from those kernels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from . import FIRMWARE, __version__, emit, frontend, importer, ir, kernels, passes, patch, plan, project
from . import ops as optable

KERNEL_FILES = ("tg_nn.h", "tg_kernels_ref.c", "tg_kernels_move.c", "tg_kernels_lstm.c", "tg_backend_cmsis.c", "tg_dsp.h")
BACKENDS = kernels.KERNEL_SETS


@dataclass
class Compiled:
    model_bytes: bytes
    name: str
    backend: str
    arch: str
    board_name: str = "host"
    test_seed: int = 0
    graph: ir.Graph | None = None
    calls: list = field(default_factory=list)  # per op: kernels.Call, or None for shape-only ops
    macs: list = field(default_factory=list)
    plan: plan.Plan | None = None
    test_input: np.ndarray | None = None
    test_expected: np.ndarray | None = None
    emitted: emit.Emitted | None = None
    with_cmsis: bool = False  # the generated set may fall back to CMSIS-NN kernels (the build links CMSIS-NN)
    vectors: tuple | None = None  # the self-test vectors: (inputs [n, bytes], expected outputs [n, bytes])
    selftest: dict | None = None  # what the manifest records of them
    patches: bool = True  # patch-based first stage (tinygen.patch) when it shrinks the arena
    patch_overhead: float = 0.10  # ... within this many more estimated instructions
    external_input: bool = False  # the model reads its input from the caller's buffer (not in the arena)
    patch_choice: patch.Choice | None = None

    @property
    def link(self) -> str:
        """What the build compiles in: 'cmsis-nn' when a layer calls a CMSIS-NN kernel, else 'portable'."""
        return "cmsis-nn" if any(k is not None and k.kernel.kset == "cmsis-nn" for k in self.calls) else "portable"

    @property
    def gen_arch(self) -> str:
        """The generated kernels' target: DSP code on every board with the DSP extension and on the
        host (where tg_dsp.h emulates the intrinsics, so host tests run the board's code), else plain C."""
        return "none" if self.arch == "none" and self.board_name != "host" else "dsp"

    @property
    def generated(self) -> bool:
        return any(k is not None and k.generated is not None for k in self.calls)


def _import(c: Compiled, dump) -> None:
    c.graph = importer.load(c.model_bytes, c.name)


def _passes(c: Compiled, dump) -> None:
    passes.run(c.graph, dump)


def _schedule(c: Compiled, dump) -> None:
    plan.reorder(c.graph, plan.schedule(c.graph))  # lowest peak memory (ties keep source order)


def _select(c: Compiled, op, low, macs: int, out_bytes: int, symbol: str, kset: str | None = None):
    """The kernel call of one layer from kernel set ``kset`` (default: the build's)."""
    fallback = ("cmsis-nn", "portable") if c.with_cmsis else ("portable",)
    return None if low.alias else kernels.select(op.kind, low, kset or c.backend, c.arch, symbol=symbol,
                                                 fallback=fallback, macs=macs, out_bytes=out_bytes, gen_arch=c.gen_arch)


def _lower(c: Compiled, dump) -> None:
    g = c.graph
    c.macs = [optable.macs(g, op) for op in g.ops]
    lows = [optable.lower(g, op) for op in g.ops]
    special = _specialized(c, lows)
    c.calls = [_select(c, op, low, c.macs[pos], g.t(op.outputs[0]).nbytes, f"tg_gen_{pos}",
                       kset=None if pos in special else ("cmsis-nn" if c.with_cmsis else "portable"))
               for pos, (op, low) in enumerate(zip(g.ops, lows))]


def _patch(c: Compiled, dump) -> None:
    """The first stage in row bands when that shrinks the arena within the instruction budget (tinygen.patch)."""
    if not c.patches or not patch.stage(c.graph):
        return
    c.patch_choice, g2, calls, macs = patch.choose(
        c.graph, c.calls, c.macs, lambda op, low, m, nb, sym: _select(c, op, low, m, nb, sym),
        lambda g, calls: plan.plan(g, calls, search_budget_s=0, external_input=c.external_input),
        c.patch_overhead, plan.external_roots(c.graph, c.external_input))
    if g2 is not None:
        c.graph, c.calls, c.macs = g2, calls, macs
        if dump:
            dump(f"--- after patch: {c.patch_choice.describe()} ---\n{c.graph.dump()}")


def _specialized(c: Compiled, lows: list) -> set[int]:
    """The layers the generated kernel set may specialize: every one, up to
    kernels.GENERATED_BUDGET; beyond it the ones with the most MACs (ties: the earlier layer), the
    others run the fallback set's table-driven kernels, so that build time stays linear in layers."""
    layers = [pos for pos, low in enumerate(lows) if not low.alias]
    if c.backend != "generated" or len(layers) <= kernels.GENERATED_BUDGET:
        return set(layers)
    return set(sorted(layers, key=lambda pos: (-c.macs[pos], pos))[:kernels.GENERATED_BUDGET])


def _plan(c: Compiled, dump) -> None:
    patch.verify(c.graph)  # every band op reads the rows its outputs need; the bands cover the stage output

    def planner(gg, calls):
        return plan.plan(gg, calls, external_input=c.external_input)

    if c.backend != "generated":
        c.plan = planner(c.graph, c.calls)
        return
    from . import overlap_plan  # a generated kernel with an access contract may win on arena size

    g = c.graph
    c.calls, c.plan = overlap_plan.trade(g, c.calls, planner, lambda i: kernels.generated_for(
        g.ops[i].kind, c.calls[i].low, c.gen_arch, f"tg_gen_{i}"))


def _reference(c: Compiled, dump) -> None:
    from . import reference

    vec = reference.selftest_vectors(c.model_bytes, seed=c.test_seed)  # several, as little saturated as possible
    c.vectors = (vec.inputs, vec.outputs)
    c.selftest = vec.manifest
    c.test_input, c.test_expected = vec.inputs[0], vec.outputs[0]


def _emit(c: Compiled, dump) -> None:
    g = c.graph
    extra = {"arch": c.arch, "ops": sorted({op.kind for op in g.ops}), "board": c.board_name, "link": c.link,
             "selftest": c.selftest}
    if c.patch_choice is not None and c.patch_choice.layers:
        extra["patch"] = dict(c.patch_choice.manifest(), arena=c.plan.arena_size)
    c.emitted = emit.emit_model(g, c.calls, c.plan, c.model_bytes, c.name, c.backend, c.macs, c.vectors[0],
                                c.vectors[1], extra)


STAGES: list[tuple[str, Callable[[Compiled, Callable | None], None]]] = [
    ("import", _import), ("passes", _passes), ("schedule", _schedule), ("lower", _lower), ("patch", _patch), ("plan", _plan),
    ("reference", _reference), ("emit", _emit),
]


def compile_model(model_bytes: bytes, name: str, backend: str = "portable", arch: str = "dsp",
                  dump=None, test_seed: int = 0, board_name: str = "host", stop_after: str | None = None,
                  with_cmsis: bool | None = None, patches: bool = True, patch_overhead: float = 0.10,
                  external_input: bool = False) -> Compiled:
    """int8 TFLite bytes -> emitted C sources + manifest (no files written).

    ``backend`` is the kernel set the registry picks from ('generated', 'cmsis-nn' or 'portable');
    ``arch`` the target's feature set ('dsp', 'mve', 'none'), which sizes CMSIS-NN scratch and
    picks the generated kernels' DSP code. The generated set falls back to CMSIS-NN kernels when
    ``with_cmsis`` (default: CMSIS_NN_PATH is set), else to the portable ones. ``patches``: run the
    first stage of an image model in row bands when that shrinks the arena within ``patch_overhead``
    more estimated instructions; ``external_input``: the model reads its input in place from the
    caller's buffer (``tg_model_set_input`` keeps the pointer), so it takes no arena bytes.
    """
    import os

    if with_cmsis is None:
        with_cmsis = bool(os.environ.get("CMSIS_NN_PATH"))
    if stop_after is not None and stop_after not in {n for n, _ in STAGES}:
        raise ValueError(f"unknown stage {stop_after!r}")
    c = Compiled(bytes(model_bytes), name, backend, arch if backend != "portable" else "portable", board_name, test_seed,
                 with_cmsis=bool(with_cmsis) and backend == "generated", patches=patches,
                 patch_overhead=patch_overhead, external_input=external_input)
    for stage, fn in STAGES:
        fn(c, dump)
        if c.graph is not None:
            ir.verify(c.graph, stage)
        if stage == stop_after:
            break
    return c


def kernel_sources(link: str = "cmsis-nn", generated: bool = False) -> dict[str, str]:
    """The firmware/ kernel files a project compiles: the CMSIS-NN adapters only when it links
    CMSIS-NN, tg_dsp.h only when a layer runs a generated kernel."""
    files = [f for f in KERNEL_FILES if (link == "cmsis-nn" or f != "tg_backend_cmsis.c")
             and (generated or f != "tg_dsp.h")]
    return {f"src/{f}": (FIRMWARE / f).read_text() for f in files if (FIRMWARE / f).exists()}


def host_project(c: Compiled) -> dict[str, str]:
    files = {f"src/{k}": v for k, v in c.emitted.files.items() if k != "manifest.json"}
    files.update(kernel_sources(c.link, c.generated))
    files["src/tg_host_main.c"] = (FIRMWARE / "tg_host_main.c").read_text()
    files["Makefile"] = emit.render("Makefile.host.j2", version=__version__, name=emit.c_string(c.name), backend=c.link)
    files["manifest.json"] = c.emitted.files["manifest.json"]
    files["model.tflite"] = bytes(c.model_bytes)  # the int8 model tinygen compiled, as in board projects
    return files


def board_project(c: Compiled, board, mlperf=None) -> dict[str, str]:
    from . import firmware_project

    return firmware_project.render(c, board, mlperf=mlperf)


def default_backend(board) -> str:
    """One rule for boards and the host: the generated kernel set (per-layer specialized kernels; layers
    without one fall back to CMSIS-NN when it is installed, $CMSIS_NN_PATH, else to the portable kernels)."""
    return "generated"


def build(model_path: str, board_name: str, out: str | Path, backend: str | None = None, calib: str | None = None,
          dump=None, log=print, extra_files: dict[str, str] | None = None,
          synthetic_range: tuple[float, float] | None = None, mlperf=None,
          calib_range: tuple[float, float] | None = None, verify: bool = True,
          **options) -> tuple[Compiled, Path, dict[str, str]]:
    """`tinygen build`: model file -> project folder. Returns (compiled, folder, files).

    ``verify``: before the project is written, the generated sources are compiled for the host and
    their self-test vectors run (:func:`check_vectors`, every board); a difference from the TFLite
    reference is a CompilerBug and no project is written. ``options``: compile options
    (patch-based execution, tinygen.patch.options)."""
    from . import boards

    board = None if board_name == "host" else boards.load_board(board_name)
    if backend is None:
        backend = default_backend(board)
    if backend == "cmsis-nn" or (backend == "generated" and os.environ.get("CMSIS_NN_PATH")):
        from .hostbuild import cmsis_nn_path

        cmsis_nn_path()  # a missing or wrong CMSIS_NN_PATH is reported now, not by make
    model_bytes, name = frontend.load(model_path, calib, log=log, synthetic_range=synthetic_range, calib_range=calib_range)
    arch = "none" if board is None else board.arch_features
    c = compile_model(model_bytes, name, backend, arch, dump, board_name=board_name, **options)  # patch options
    if board is not None:
        check_fits(c, board)
    files = host_project(c) if board is None else board_project(c, board, mlperf)
    files.update(extra_files or {})
    out = Path(out)
    if verify:
        check_vectors(c, files if board is None else None, log)
    project.write(out, files)
    return c, out, files


def check_vectors(c: Compiled, files: dict | None = None, log=print):
    """The self-test vectors of ``c`` on the host (gcc), whatever the board: the SelftestResult, or
    None (logged) when the host has no gcc/make. A difference raises CompilerBug (one line: the
    first differing output and layer)."""
    from . import hostbuild

    if not hostbuild.can_check():
        log("gcc/make not found on PATH: the self-test vectors were not checked on the host before writing the "
            "project (install: sudo apt-get install gcc make)")
        return None
    return hostbuild.check_vectors(c, host_project(c) if files is None else files)


def check_fits(c: Compiled, board) -> None:
    """Before any toolchain runs: planned arena + stack must fit the board's RAM, weights its flash."""
    from .errors import BoardError

    m = c.emitted.manifest
    ram = m["arena_bytes"] + board.stack_size
    if ram > board.ram_size or m["weights_bytes"] > board.flash_size:
        raise BoardError(
            f"{c.name} does not fit {board.name}: arena {m['arena_bytes']:,} B + stack {board.stack_size:,} B = "
            f"{ram:,} B of {board.ram_size:,} B RAM; weights {m['weights_bytes']:,} B of {board.flash_size:,} B flash; "
            "use a smaller model (tinygen optimize --prune) or a board with more memory"
        )


def summary(c: Compiled) -> str:
    m = c.emitted.manifest
    return (f"{c.name}: {len(c.emitted.layers)} layers, {m['macs']:,} MACs, weights {m['weights_bytes']:,} B, "
            f"arena {m['arena_bytes']:,} B (plan: {c.plan.strategy}), backend {c.backend}"
            + (f"; {c.patch_choice.describe()}" if c.patch_choice is not None and c.patch_choice.layers else ""))


