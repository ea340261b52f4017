"""What a candidate costs, in the compiler's own numbers.

Every candidate of ``tinygen optimize`` is an int8 flatbuffer; its cost is what
``tinygen build`` and ``tinygen analyze`` would say about it for the target board and backend:
:func:`tinygen.driver.compile_model` gives the planned arena, the weight bytes and the MACs
(the manifest of the project it would write), :func:`tinygen.analyze.analyze_bytes` the
parameter count, the kernels chosen and the latency estimate of the board's cycle model.
Nothing here counts MACs from Keras layers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tinygen.errors import TinygenError

CONV_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass
class Cost:
    macs: int
    conv_macs: int
    params: int
    weights_bytes: int   # constants in flash (manifest weights_bytes)
    arena_bytes: int     # planned tensor arena (manifest arena_bytes)
    est_instructions: int | None  # cycle-model estimate for the board (None without a board)
    est_ms: float | None
    ram_bytes: int | None  # arena + stack + firmware RAM on the board (analyze's "RAM est.")
    flash_bytes: int | None  # weights + parameter structs + kernels' code + runtime (analyze's "flash est.")
    board: str
    backend: str

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Target:
    """The board and backend candidates are costed for."""

    board: object | None  # tinygen.boards.Board, None = host
    backend: str

    @property
    def name(self) -> str:
        return self.board.name if self.board is not None else "host"

    @property
    def arch(self) -> str:
        return self.board.arch_features if self.board is not None and self.backend == "cmsis-nn" else "none"


def target_for(board_name: str | None, backend: str | None = None) -> Target:
    """The Target for ``board_name`` ('host' or None: host, portable) with ``backend``
    defaulting the way ``tinygen build`` chooses it."""
    from tinygen import boards, driver

    board = None if board_name in (None, "host") else boards.load_board(board_name)
    return Target(board, backend or driver.default_backend(board))


def compiler_cost(tflite: bytes, name: str, target: Target) -> Cost:
    """The compiler's cost of ``tflite`` on ``target`` (raises the compiler's own error when
    it cannot compile the model)."""
    from tinygen import analyze, driver

    c = driver.compile_model(tflite, name, target.backend, target.arch, board_name=target.name)
    man = c.emitted.manifest
    a = analyze.analyze_bytes(tflite, name, target.backend, target.arch, with_tflm=False,
                              boards=[target.board] if target.board is not None else [])
    conv = sum(ly.macs for ly in a.layers if ly.op in CONV_OPS)
    fit = a.boards[0] if a.boards else None
    ram = None
    if fit is not None:  # analyze's RAM figure, on the arena the build plans (the same number when both agree)
        ram = fit["ram_bytes"] - a.arena_bytes + man["arena_bytes"]
    return Cost(int(man["macs"]), int(conv), int(a.params), int(man["weights_bytes"]), int(man["arena_bytes"]),
                fit["est_instructions"] if fit else None, fit["est_ms"] if fit else None, ram,
                fit["flash_bytes"] if fit else None, target.name, target.backend)


def check_compiles(tflite: bytes, name: str, target: Target) -> Cost:
    """Run the compiler on the original model before any optimization: a model it cannot
    build is refused now, not after minutes of fine-tuning."""
    try:
        return compiler_cost(tflite, name, target)
    except TinygenError as e:
        raise type(e)(f"{e} (checked before optimizing: tinygen cannot compile this model, "
                      "so nothing was optimized; see SUPPORTED_OPS.md)") from None
