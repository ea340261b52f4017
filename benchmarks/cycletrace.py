"""A cycle-weighted count of one inference, measured exactly with QEMU's own block trace.

QEMU runs the firmware with ``-d in_asm,exec,nochain``: each translation block's disassembly is
logged once (``IN:``), then one ``Trace`` line per executed block (``nochain`` makes every block
go through the logger; the host pointer names the block). The log goes through a FIFO and is
parsed as it streams; QEMU is stopped as soon as the first ``tg_model_run`` returns.

Counted: from the first instruction of the first ``tg_model_run`` (self-test vector 0) up to its
return, i.e. until the next block of the function that called it. Per executed block, each of its
instructions is classed (load, store, multi-register transfer, branch taken / not taken, multiply,
divide, other) and weighted per core (:data:`WEIGHTS`). QEMU's own corrections are followed:

- ``cpu_io_recompile: rewound execution of TB to X`` (a block with an MMIO access, e.g. SysTick,
  stops before it and a one-instruction block runs the access): that block ran only up to X;
- ``Stopped execution of TB chain before P`` (the instruction budget ran out at a block's start):
  the block logged last did not run;
- a block ending in a branch whose next block does not start at its fall-through address took
  the branch (an interrupt entry would count as one too: SysTick wraps once per 16.7 M
  instructions).

The plain total (every instruction 1) is checked against the firmware's SysTick/icount figure
by ``benchmarks/speed.py`` and ``tests/test_speed_bench.py``.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

# Cycles per instruction class (Cortex-M4 TRM table 3-1 "instruction set summary"; the Cortex-M33
# TRM gives no table and its pipeline is of the same kind, so the same figures are used, as the
# brief's: UMULL/SMULL 1 on both). Loads: 2 (1 when pipelined back to back: 2 kept for safety).
# Multi-register transfers (LDM/STM/PUSH/POP/LDRD/STRD/VLDM/VSTM/VPUSH/VPOP): 1 + N registers.
# Taken branch: 1 + P with the pipeline refill P = 2 (the TRM's range is 1-3), i.e. 3; not taken 1.
# A POP/LDM/LDR that writes PC: its transfer cost + P. SDIV/UDIV: 12 (the worst case of 2-12).
# VDIV/VSQRT: 14. Everything else (ALU, SIMD, SXTB16, SSAT, IT, stores of one register): 1.
WEIGHTS = {
    "cortex-m33": {"load": 2, "store": 1, "multi_base": 1, "multi_reg": 1, "branch_taken": 3,
                   "branch_not_taken": 1, "refill": 2, "mul": 1, "div": 12, "vdiv": 14, "other": 1},
    "cortex-m4": {"load": 2, "store": 1, "multi_base": 1, "multi_reg": 1, "branch_taken": 3,
                  "branch_not_taken": 1, "refill": 2, "mul": 1, "div": 12, "vdiv": 14, "other": 1},
}
# The same with a taken branch of 2 cycles (refill 1), to show how much a ratio depends on it.
WEIGHTS.update({f"{k}-b2": {**w, "branch_taken": 2, "refill": 1} for k, w in list(WEIGHTS.items())})
CLASSES = ("load", "store", "multi", "branch_taken", "branch_not_taken", "mul", "div", "other")

_CONDS = {"eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge", "lt", "gt", "le", "al"}
_BRANCHES = {"b", "bl", "blx", "bx", "cbz", "cbnz", "tbb", "tbh"}
_MUL = ("mul", "mla", "mls", "smla", "smul", "smua", "smus", "smls", "smml", "smmu", "umul", "umla", "umaa", "usad",
        "usada")
_INSN = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{4}(?:[0-9a-f]{4})? )+)\s*(\S+)\s*(.*)$")


def _base(mn: str) -> str:
    """Mnemonic without width qualifier (.w/.n) and without an IT-block condition suffix."""
    mn = mn.split(".", 1)[0]
    if len(mn) > 2 and mn[-2:] in _CONDS and mn[:-2] in _BRANCHES | {"ldr", "str", "pop", "push", "mov", "add",
                                                                       "ldrb", "strb", "ldrh", "strh", "ldm", "stm"}:
        return mn[:-2]
    return mn


def _nregs(ops: str) -> int:
    """Registers in a register list ``{r4, r5, lr}`` / ``{d8, d9}`` (a D register is two words)."""
    m = re.search(r"\{([^}]*)\}", ops)
    if not m:
        return 1
    n = 0
    for r in m.group(1).split(","):
        r = r.strip()
        if "-" in r:  # a range r4-r7
            a, b = r.split("-")
            n += int(b[1:]) - int(a[1:]) + 1
        elif r:
            n += 2 if r.startswith("d") else 1
    return n


@dataclass(frozen=True)
class Insn:
    addr: int
    size: int
    cls: str            # one of CLASSES, with "branch" for a branch (taken or not decided per execution)
    regs: int = 0       # registers moved by a multi-register transfer
    writes_pc: bool = False

    def cycles(self, w: dict, taken: bool) -> int:
        if self.cls == "multi":
            c = w["multi_base"] + w["multi_reg"] * self.regs
            return c + (w["refill"] if self.writes_pc else 0)
        if self.cls == "branch":
            return w["branch_taken"] if taken else w["branch_not_taken"]
        if self.cls == "load" and self.writes_pc:
            return w["load"] + w["refill"]
        return w[self.cls]


def classify(addr: int, size: int, mnemonic: str, ops: str) -> Insn:
    """One instruction of QEMU's (capstone) Thumb disassembly -> its class.

    >>> [classify(0, 2, m, o).cls for m, o in [("ldr.w", "r3, [r2]"), ("ldrd", "r4, r5, [r0]"), ("bne", "#0x10"),
    ...  ("smlad", "r0, r1, r2, r0"), ("pop", "{r4, pc}"), ("bic", "r0, r0, #1"), ("sdiv", "r0, r1, r2"),
    ...  ("strb.w", "r1, [r0]"), ("sxtb16", "r1, r2")]]
    ['load', 'multi', 'branch', 'mul', 'multi', 'other', 'div', 'store', 'other']
    >>> classify(0, 2, "push", "{r4, r5, r6, lr}").regs
    4
    """
    mn = _base(mnemonic)
    pc = bool(re.match(r"pc\b", ops)) or bool(re.search(r"\bpc\}", ops))
    if mn in _BRANCHES or (len(mn) == 3 and mn[0] == "b" and mn[1:] in _CONDS):
        return Insn(addr, size, "branch")
    if mn in ("ldrd", "strd"):
        return Insn(addr, size, "multi", regs=2)
    if mn.startswith(("ldm", "stm", "vldm", "vstm")) or mn in ("pop", "push", "vpop", "vpush"):
        return Insn(addr, size, "multi", regs=_nregs(ops), writes_pc=pc and mn.startswith(("ldm", "pop")))
    if mn.startswith(("ldr", "lda", "vldr")):
        return Insn(addr, size, "load", writes_pc=pc and mn == "ldr")
    if mn.startswith(("str", "stl", "vstr")):
        return Insn(addr, size, "store")
    if mn in ("sdiv", "udiv"):
        return Insn(addr, size, "div")
    if mn in ("vdiv", "vsqrt"):
        return Insn(addr, size, "vdiv")
    if mn.startswith(_MUL):
        return Insn(addr, size, "mul")
    if mn in ("mov", "add") and pc:  # mov pc, rX / add pc, ...: a jump
        return Insn(addr, size, "branch")
    return Insn(addr, size, "other")


@dataclass
class Block:
    start: int
    end: int
    insns: tuple[Insn, ...]


@dataclass
class Result:
    instructions: int = 0                       # plain count (every instruction 1)
    cycles: dict = field(default_factory=dict)  # core -> weighted cycles
    classes: Counter = field(default_factory=Counter)  # class -> instructions (branch split taken/not)
    blocks: int = 0                              # executed blocks in the window

    def weighted(self, core: str) -> int:
        return self.cycles[core]


class _Parser:
    """Streams QEMU's log; counts (block, next pc) pairs inside the window."""

    def __init__(self, start_sym: str) -> None:
        self.start_sym = start_sym
        self.blocks: list[Block] = []
        self.ptr_ids: dict[str, int] = {}
        self.pairs: Counter = Counter()
        self.pending: list[Insn] | None = None   # the IN: block being read
        self.bind_next = False                    # the next Trace line is that block's first run
        self.state = 0                            # 0 before, 1 inside, 2 done
        self.end_suffix = ""
        self.prev: int | None = None
        self.prevprev: int | None = None
        self.last_pc: str | None = None
        self.last_sym = ""
        self.cut: str | None = None               # cpu_io_recompile: the last block ran up to here
        self.prev_cut: str | None = None

    def _close_pending(self) -> None:
        if self.pending is not None:
            ins = tuple(self.pending)
            self.blocks.append(Block(ins[0].addr, ins[-1].addr + ins[-1].size, ins) if ins else Block(0, 0, ()))
            self.bind_next = True
        self.pending = None

    def feed(self, line: str) -> bool:
        """One log line; returns False once the window is closed."""
        c = line[:1]
        if c == "T" and line.startswith("Trace "):
            if self.pending is not None:
                self._close_pending()
            lb = line.index("[", 9)
            ptr = line[9:lb - 1]
            if self.bind_next:
                self.ptr_ids[ptr] = len(self.blocks) - 1
                self.bind_next = False
            bid = self.ptr_ids.get(ptr)
            if bid is None:
                raise RuntimeError(f"the trace runs block {ptr} whose disassembly it never logged: {line.strip()}")
            pc = line[lb + 10:lb + 18]
            if self.state == 1:
                self.pairs[(self.prev, pc, self.cut)] += 1
                self.prev_cut, self.cut = self.cut, None
                if line.endswith(self.end_suffix):
                    self.state = 2
                    return False
                self.prevprev, self.prev, self.last_pc = self.prev, bid, pc
            elif self.state == 0:
                sym = line[line.index("]", lb) + 2:].rstrip("\n")
                if sym == self.start_sym:
                    self.state = 1
                    self.end_suffix = "] " + self.last_sym + "\n"
                    self.prevprev, self.prev, self.last_pc = None, bid, pc
                else:
                    self.last_sym = sym
            return True
        if c == "0" and self.pending is not None:
            m = _INSN.match(line)
            if not m:
                raise RuntimeError(f"unexpected disassembly line in QEMU's log: {line.strip()}")
            size = sum(len(g) for g in m.group(2).split()) // 2
            self.pending.append(classify(int(m.group(1), 16), size, m.group(3), m.group(4)))
            return True
        if c == "-" and line.startswith("----------------"):
            self._close_pending()
            self.pending = []
            return True
        if c == "S" and line.startswith("Stopped execution of TB chain") and self.state == 1:
            # the block logged last did not run: take back its pair
            if self.prevprev is not None:
                self.pairs[(self.prevprev, self.last_pc, self.prev_cut)] -= 1
                self.prev, self.prevprev, self.cut = self.prevprev, None, self.prev_cut
            return True
        if c == "c" and line.startswith("cpu_io_recompile: rewound execution of TB to ") and self.state == 1:
            self.cut = line.rsplit(" ", 1)[1].strip()
            return True
        if self.pending is not None and (c in ("\n", "") or line.startswith("IN:")):
            if c in ("\n", ""):
                self._close_pending()
        return True

    def result(self) -> Result:
        r = Result()
        cyc = Counter()
        for (bid, pc, cut), n in self.pairs.items():
            if n == 0 or bid is None:
                continue
            b = self.blocks[bid]
            nxt = int(pc, 16)
            inside = cut is not None
            ins = [i for i in b.insns if i.addr < int(cut, 16)] if inside else list(b.insns)
            r.blocks += n
            for k, i in enumerate(ins):
                last = k == len(ins) - 1 and not inside
                taken = last and nxt != b.end
                cls = i.cls if i.cls != "branch" else ("branch_taken" if taken else "branch_not_taken")
                if i.cls == "vdiv":
                    cls = "div"
                r.classes[cls] += n
                r.instructions += n
                for core, w in WEIGHTS.items():
                    cyc[core] += n * i.cycles(w, taken)
        r.cycles = dict(cyc)
        return r


def parse_log(lines, start_sym: str = "tg_model_run") -> Result:
    """Counts a QEMU ``-d in_asm,exec,nochain`` log (an iterable of lines) in the window of the first
    call of ``start_sym``."""
    p = _Parser(start_sym)
    for line in lines:
        if not p.feed(line):
            break
    if p.state != 2:
        raise RuntimeError(f"the trace never {'entered' if p.state == 0 else 'left'} {start_sym}")
    return p.result()


def weighted_run(elf: Path | str, board, timeout: float = 900.0, start_sym: str = "tg_model_run") -> Result:
    """Runs ``elf`` on ``board``'s QEMU with the block trace into a FIFO and counts one inference.
    Raises RuntimeError (with QEMU's own message) when the window is not seen."""
    from tinygen import qemu

    with tempfile.TemporaryDirectory(prefix="tg_trace_") as tmp:
        fifo = os.path.join(tmp, "log")
        os.mkfifo(fifo)
        cmd = qemu.qemu_command(elf, board, "-display", "none", "-monitor", "none", "-serial", "null",
                                "-d", "in_asm,exec,nochain", "-D", fifo)
        with open(os.path.join(tmp, "stderr"), "w+b") as err:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            opened = threading.Event()

            def unblock() -> None:  # QEMU ended before opening the log: let open() below return (EOF)
                proc.wait()
                if not opened.is_set():
                    try:
                        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
                    except OSError:
                        pass

            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            threading.Thread(target=unblock, daemon=True).start()
            try:
                with open(fifo, encoding="utf-8", errors="replace", buffering=1 << 20) as f:
                    opened.set()
                    try:
                        res = parse_log(f, start_sym)
                    except RuntimeError as e:
                        proc.wait()
                        err.seek(0)
                        lines = err.read().decode("utf-8", "replace").strip().splitlines()
                        msg = next((ln for ln in lines if "qemu" in ln.lower()), lines[0] if lines else "")[:300]
                        raise RuntimeError(f"{e} (QEMU exit {proc.returncode}{': ' + msg if msg else ''})") from None
            finally:
                timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                proc.wait()
    return res
