"""The firmware's self-test report: the TG_ lines tg_main.c (and the host program) print, parsed.

Shared by the QEMU runner (:mod:`tinygen.qemu`), the host runner (:mod:`tinygen.hostbuild`) and
the bench; it needs no tool, so it imports none.
"""

from __future__ import annotations

from dataclasses import dataclass

from .boards import Board
from .errors import DeviceError

INSTRUCTIONS_LABEL = "instructions (QEMU proxy, not cycles)"
EXIT_OK, EXIT_FAIL, EXIT_FAULT = 0, 1, 3


@dataclass(frozen=True)
class LayerTiming:
    index: int
    name: str
    cycles: int                      # counter ticks (core clock cycles on real boards)
    instructions: int | None         # QEMU proxy, None on real boards


@dataclass(frozen=True)
class SelftestResult:
    """The parsed output of tg_main.c's self-test."""

    ok: bool                         # TG_OK seen and exit code 0
    exit_code: int | None
    model_hash: str
    board: str
    clock_hz: int
    counter: str                     # "dwt" or "systick"
    checksum: int                    # CRC-32 of the output tensor
    match: bool
    cycles: int                      # counter ticks for tg_model_run
    instructions: int | None         # QEMU proxy (see INSTRUCTIONS_LABEL), None on real boards
    layers: tuple[LayerTiming, ...]
    stack_used: int | None
    output: str                      # the raw serial text
    vectors: int = 1                 # self-test vectors run (the checksum covers all of them)
    matched: int | None = None       # how many of them equal the reference
    mismatches: tuple[str, ...] = () # TG_MISMATCH lines: the first wrong byte of each failing vector

    instructions_label = INSTRUCTIONS_LABEL


def instructions_per_tick(board: Board) -> float:
    """Guest instructions per SysTick tick under ``-icount shift=0``."""
    return 1e9 / board.clock_hz


def _kv(line: str) -> dict[str, str]:
    return dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)


def parse_selftest(text: str, board: Board | None = None, exit_code: int | None = None) -> SelftestResult:
    """Parses the TG_ lines; raises DeviceError when the firmware faulted or said nothing useful.

    >>> r = parse_selftest("TG_BOOT model=ab board=x clock=20000000\\r\\nTG_COUNTER source=systick hz=20000000\\r\\n"
    ...                    "TG_RESULT checksum=0000002a cycles=10 match=1\\r\\nTG_LAYER 0 conv 9\\r\\nTG_OK\\r\\n")
    >>> (r.ok, r.checksum, r.cycles, r.layers[0].name, r.instructions)
    (True, 42, 10, 'conv', None)
    """
    lines = [ln.strip() for ln in text.replace("\r", "").split("\n")]
    fault = next((ln for ln in lines if ln.startswith("TG_FAULT")), None)
    if fault is not None:
        from .faults import describe_tg_fault

        raise DeviceError(f"the firmware faulted: {describe_tg_fault(fault)}")
    boot = next((_kv(ln) for ln in lines if ln.startswith("TG_BOOT ")), None)
    res = next((_kv(ln) for ln in lines if ln.startswith("TG_RESULT ")), None)
    if boot is None or res is None:
        err = next((ln for ln in lines if ln.startswith("TG_ERROR")), None)
        detail = err or ("no TG_BOOT line" if boot is None else "no TG_RESULT line")
        tail = "\n".join(ln for ln in lines if ln)[-800:]
        raise DeviceError(f"self-test did not complete ({detail}); output:\n{tail or '(none)'}")
    counter = next((_kv(ln).get("source", "") for ln in lines if ln.startswith("TG_COUNTER ")), "")
    try:
        per_tick = instructions_per_tick(board) if board is not None and board.emulated else None
        layers = []
        for ln in lines:
            if ln.startswith("TG_LAYER "):
                _, idx, name, cyc = ln.split()
                layers.append(LayerTiming(int(idx), name, int(cyc),
                                          round(int(cyc) * per_tick) if per_tick else None))
        stack = next((int(_kv(ln)["used"]) for ln in lines if ln.startswith("TG_STACK ")), None)
        cycles = int(res["cycles"])
        status_ok = "TG_OK" in lines
        return SelftestResult(
            ok=status_ok and exit_code in (None, EXIT_OK),
            exit_code=exit_code,
            model_hash=boot["model"],
            board=boot["board"],
            clock_hz=int(boot["clock"]),
            counter=counter,
            checksum=int(res["checksum"], 16),
            match=res["match"] == "1",
            cycles=cycles,
            instructions=round(cycles * per_tick) if per_tick else None,
            layers=tuple(layers),
            stack_used=stack,
            output=text,
            vectors=int(res.get("vectors", "1")),
            matched=int(res["matched"]) if "matched" in res else None,
            mismatches=tuple(ln for ln in lines if ln.startswith("TG_MISMATCH ")),
        )
    except (KeyError, ValueError) as e:
        raise DeviceError(f"malformed self-test output ({e}):\n{text[-800:]}") from None
