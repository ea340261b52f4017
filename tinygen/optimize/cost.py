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
from pathlib import Path

from tinygen.errors import DeviceError, InputError, TinygenError

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
    latency_source: str = "estimate"  # or "QEMU" (measured instructions, --measure)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Target:
    """The board and backend candidates are costed for."""

    board: object | None  # tinygen.boards.Board, None = host
    backend: str
    measure: bool = False  # emulated boards: latency measured under QEMU instead of estimated
    workdir: str | None = None

    @property
    def name(self) -> str:
        return self.board.name if self.board is not None else "host"

    @property
    def arch(self) -> str:
        # as tinygen build: the board's features for every kernel set (the generated kernels pick their
        # DSP variants by it too); the host builds portable C
        return self.board.arch_features if self.board is not None and self.backend != "portable" else "none"


def target_for(board_name: str | None, backend: str | None = None, measure: bool = False) -> Target:
    """The Target for ``board_name`` ('host' or None: host, portable) with ``backend``
    defaulting the way ``tinygen build`` chooses it."""
    from tinygen import boards, driver

    board = None if board_name in (None, "host") else boards.load_board(board_name)
    if measure and (board is None or not board.emulated):
        raise InputError(f"--measure needs an emulated board (mps2-an505, mps2-an386, netduinoplus2), not "
                         f"{board_name}: latency is measured by booting each candidate under QEMU")
    return Target(board, backend or driver.default_backend(board), measure)


def compiler_cost(tflite: bytes, name: str, target: Target, latency: bool = True) -> Cost:
    """The compiler's cost of ``tflite`` on ``target`` (raises the compiler's own error when
    it cannot compile the model). With ``target.measure`` the latency is counted under QEMU,
    unless ``latency`` is False (a search probe whose budget does not limit latency need not boot
    the board): then it is the cycle model's estimate."""
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
    cost = Cost(int(man["macs"]), int(conv), int(a.params), int(man["weights_bytes"]), int(man["arena_bytes"]),
                fit["est_instructions"] if fit else None, fit["est_ms"] if fit else None, ram,
                fit["flash_bytes"] if fit else None, target.name, target.backend)
    if target.measure and latency:
        instr = measured_instructions(tflite, name, target)
        cost.est_instructions, cost.est_ms = instr, 1e3 * instr / target.board.clock_hz
        cost.latency_source = "QEMU"
    return cost


_MEASURED: dict[tuple, int] = {}


def measured_instructions(tflite: bytes, name: str, target: Target) -> int:
    """Instructions per inference of ``tflite`` on the emulated board, counted under QEMU
    (``-icount``) by the firmware ``tinygen build`` writes, as ``tinygen run`` reports them."""
    import hashlib
    import tempfile

    from tinygen import driver, qemu, toolchain

    key = (hashlib.sha256(tflite).hexdigest(), target.name, target.backend)
    if key not in _MEASURED:
        with tempfile.TemporaryDirectory(dir=target.workdir) as tmp:
            model = Path(tmp) / f"{name}.tflite"
            model.write_bytes(tflite)
            _, proj, _ = driver.build(str(model), target.name, Path(tmp) / "proj", target.backend, log=lambda m: None)
            toolchain.make_firmware(proj, target.backend, board=target.board)
            r = qemu.run_selftest(proj / "build" / "firmware.elf", target.board, timeout=300)
            if not (r.ok and r.match) or r.instructions is None:
                raise DeviceError(f"{name} on {target.name}: the candidate's self-test failed under QEMU "
                                  "(output differs from the TFLite reference or no instruction count)")
            _MEASURED[key] = int(r.instructions)
    return _MEASURED[key]


def check_compiles(tflite: bytes, name: str, target: Target) -> Cost:
    """Run the compiler on the original model before any optimization: a model it cannot
    build is refused now, not after minutes of fine-tuning."""
    try:
        return compiler_cost(tflite, name, target)
    except TinygenError as e:
        raise type(e)(f"{e} (checked before optimizing: tinygen cannot compile this model, "
                      "so nothing was optimized; see SUPPORTED_OPS.md)") from None
