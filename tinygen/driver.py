"""The compiler driver: one straight line over the stages.

frontend -> ir -> passes -> lower -> plan -> emit -> project (-> build).
The IR is verified after every stage (:func:`tinygen.ir.verify`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path



import numpy as np

from . import FIRMWARE, __version__, emit, frontend, ir, passes, plan, project
from . import ops as optable

KERNEL_FILES = ("tg_nn.h", "tg_kernels_ref.c", "tg_backend_portable.c", "tg_backend_cmsis.c")
BACKENDS = ("cmsis-nn", "portable")


@dataclass
class Compiled:
    graph: ir.Graph
    plan: plan.Plan
    emitted: emit.Emitted
    model_bytes: bytes
    name: str
    backend: str
    arch: str
    test_input: np.ndarray
    test_expected: np.ndarray


def compile_model(model_bytes: bytes, name: str, backend: str = "portable", arch: str = "dsp",
                  dump=None, test_seed: int = 0, board_name: str = "host") -> Compiled:
    """int8 TFLite bytes -> emitted C sources + manifest (no files written).

    ``arch`` is the target's CMSIS-NN feature set ('dsp', 'mve', 'none'); it sizes the scratch
    buffers of the cmsis-nn backend. The portable backend needs no scratch.
    """
    from . import reference

    g = ir.load(model_bytes, name)
    passes.run(g, dump)
    plan.reorder(g, plan.schedule(g))  # execution order with the lowest peak memory (ties keep source order)
    ir.verify(g, "schedule")
    karch = arch if backend == "cmsis-nn" else "portable"
    lowered = [optable.lower(g, op, karch) for op in g.ops]
    ir.verify(g, "lower")
    scratch = {i: low.scratch for i, low in enumerate(lowered) if low.scratch}
    p = plan.plan(g, scratch)
    macs = [optable.macs(g, op) for op in g.ops]
    vec = reference.selftest_vectors(model_bytes, seed=test_seed)  # several, as little saturated as possible
    x, y = vec.inputs, vec.outputs
    extra = {"arch": karch, "ops": sorted({op.kind for op in g.ops}), "board": board_name, "selftest": vec.manifest}
    emitted = emit.emit_model(g, lowered, p, model_bytes, name, backend, macs, x, y, extra)
    return Compiled(g, p, emitted, model_bytes, name, backend, karch, x[0], y[0])


def kernel_sources() -> dict[str, str]:
    return {f"src/{f}": (FIRMWARE / f).read_text() for f in KERNEL_FILES if (FIRMWARE / f).exists()}


def host_project(c: Compiled) -> dict[str, str]:
    files = {f"src/{k}": v for k, v in c.emitted.files.items() if k != "manifest.json"}
    files.update(kernel_sources())
    files["src/tg_host_main.c"] = (FIRMWARE / "tg_host_main.c").read_text()
    files["Makefile"] = emit.render("Makefile.host.j2", version=__version__, name=emit.c_string(c.name), backend=c.backend)
    files["manifest.json"] = c.emitted.files["manifest.json"]
    files["model.tflite"] = bytes(c.model_bytes)  # the int8 model tinygen compiled, as in board projects
    return files


def board_project(c: Compiled, board) -> dict[str, str]:
    from . import firmware_project

    return firmware_project.render(c, board)


def default_backend(board) -> str:
    """One rule for boards and the host: cmsis-nn when CMSIS-NN is installed ($CMSIS_NN_PATH), else portable."""
    import os

    return "cmsis-nn" if os.environ.get("CMSIS_NN_PATH") else "portable"


def build(model_path: str, board_name: str, out: str | Path, backend: str | None = None, calib: str | None = None,
          dump=None, log=print, extra_files: dict[str, str] | None = None) -> tuple[Compiled, Path, dict[str, str]]:
    """`tinygen build`: model file -> project folder. Returns (compiled, folder, files)."""
    from . import boards

    board = None if board_name == "host" else boards.load_board(board_name)
    if backend is None:
        backend = default_backend(board)
        if backend == "portable":
            log("note: CMSIS_NN_PATH is not set: using the portable C kernels (set it to CMSIS-NN v7.0.0 "
                "for the optimized cmsis-nn backend)")
    if backend == "cmsis-nn":
        from .hostbuild import cmsis_nn_path

        cmsis_nn_path()  # a missing or wrong CMSIS_NN_PATH is reported now, not by make
    model_bytes, name = frontend.load(model_path, calib, log=log)
    arch = "none" if board is None else board.arch_features
    c = compile_model(model_bytes, name, backend, arch, dump, board_name=board_name)
    if board is not None:
        check_fits(c, board)
    files = host_project(c) if board is None else board_project(c, board)
    files.update(extra_files or {})
    out = Path(out)
    project.write(out, files)
    return c, out, files


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
            f"arena {m['arena_bytes']:,} B (plan: {c.plan.strategy}), backend {c.backend}")


