"""Cortex-M faults and QEMU CPU lockups, decoded into one line a user can act on.

Two sources:

* the firmware's own fault handler (firmware/tg_startup.c) prints
  ``TG_FAULT exc=<n> pc=<hex> lr=<hex> cfsr=<hex> hfsr=<hex> exc_return=<hex>``;
  :func:`describe_tg_fault` names the exception and every set CFSR/HFSR bit (ARMv7-M/ARMv8-M
  Architecture Reference Manual, B3.2.15 CFSR and B3.2.16 HFSR);
* when the core cannot even take the fault (no valid vector table or stack: e.g. an ELF linked
  for another board's memory map), QEMU aborts with ``qemu: fatal: Lockup: can't escalate ...``
  and a register dump; :func:`describe_qemu_lockup` reads PC, SP and xPSR from it and says what
  they mean for the board.
"""

from __future__ import annotations

import re
import struct
from pathlib import Path

EXCEPTIONS = {1: "Reset", 2: "NMI", 3: "HardFault", 4: "MemManage", 5: "BusFault", 6: "UsageFault",
              7: "SecureFault", 11: "SVCall", 12: "DebugMonitor", 14: "PendSV", 15: "SysTick"}

# (bit, name, meaning) of the Configurable Fault Status Register (MMFSR | BFSR << 8 | UFSR << 16).
CFSR_BITS = (
    (0, "IACCVIOL", "instruction fetch from a no-execute/protected address"),
    (1, "DACCVIOL", "data access violation"),
    (3, "MUNSTKERR", "MemManage fault on exception return unstacking"),
    (4, "MSTKERR", "MemManage fault on exception entry stacking"),
    (5, "MLSPERR", "MemManage fault during lazy FP state preservation"),
    (7, "MMARVALID", "MMFAR holds the faulting address"),
    (8, "IBUSERR", "bus error on instruction fetch"),
    (9, "PRECISERR", "precise data bus error"),
    (10, "IMPRECISERR", "imprecise data bus error"),
    (11, "UNSTKERR", "bus fault on exception return unstacking"),
    (12, "STKERR", "bus fault on exception entry stacking (bad stack pointer?)"),
    (13, "LSPERR", "bus fault during lazy FP state preservation"),
    (15, "BFARVALID", "BFAR holds the faulting address"),
    (16, "UNDEFINSTR", "undefined instruction"),
    (17, "INVSTATE", "invalid state (Thumb bit clear: a bad function pointer or vector?)"),
    (18, "INVPC", "invalid EXC_RETURN / PC load on exception return"),
    (19, "NOCP", "coprocessor access with the coprocessor off (FPU not enabled?)"),
    (20, "STKOF", "stack overflow (stack limit register)"),
    (24, "UNALIGNED", "unaligned access"),
    (25, "DIVBYZERO", "integer division by zero"),
)
HFSR_BITS = (
    (1, "VECTTBL", "bus fault reading the vector table"),
    (30, "FORCED", "a configurable fault escalated to HardFault"),
    (31, "DEBUGEVT", "debug event"),
)


def exception_name(n: int) -> str:
    """
    >>> exception_name(3), exception_name(16 + 5)
    ('HardFault', 'IRQ 5')
    """
    return f"IRQ {n - 16}" if n >= 16 else EXCEPTIONS.get(n, f"exception {n}")


def decode_bits(value: int, table) -> list[str]:
    """Names of the set bits, with their meaning.

    >>> decode_bits(0x00020000, CFSR_BITS)
    ['INVSTATE (invalid state (Thumb bit clear: a bad function pointer or vector?))']
    """
    return [f"{name} ({why})" for bit, name, why in table if value >> bit & 1]


def describe_tg_fault(line: str) -> str:
    """The firmware's TG_FAULT line, decoded.

    >>> describe_tg_fault("TG_FAULT exc=3 pc=0000012c lr=fffffff9 cfsr=02000000 hfsr=40000000 exc_return=fffffff9")
    'HardFault (exception 3) at pc 0x0000012c, lr 0xfffffff9; CFSR 0x02000000: DIVBYZERO (integer division by zero); HFSR 0x40000000: FORCED (a configurable fault escalated to HardFault)'
    """
    kv = dict(p.split("=", 1) for p in line.split()[1:] if "=" in p)
    try:
        exc = int(kv["exc"])
        pc, lr = int(kv["pc"], 16), int(kv["lr"], 16)
        cfsr, hfsr = int(kv.get("cfsr", "0"), 16), int(kv.get("hfsr", "0"), 16)
    except (KeyError, ValueError):
        return line
    parts = [f"{exception_name(exc)} (exception {exc}) at pc 0x{pc:08x}, lr 0x{lr:08x}"]
    c, h = decode_bits(cfsr, CFSR_BITS), decode_bits(hfsr, HFSR_BITS)
    parts.append(f"CFSR 0x{cfsr:08x}: {', '.join(c)}" if c else f"CFSR 0x{cfsr:08x} (no fault bit set)")
    if h:
        parts.append(f"HFSR 0x{hfsr:08x}: {', '.join(h)}")
    return "; ".join(parts)


_LOCKUP = re.compile(r"qemu: fatal: (Lockup: [^\n]*)")
_REG = re.compile(r"\b(R\d\d|XPSR)=([0-9a-fA-F]{8})")


def elf_entry(elf: Path | str) -> int | None:
    """The entry address of a 32-bit little-endian ELF (None when unreadable)."""
    try:
        head = Path(elf).read_bytes()[:28]
    except OSError:
        return None
    if len(head) < 28 or head[:4] != b"\x7fELF" or head[4] != 1 or head[5] != 1:
        return None
    return struct.unpack_from("<I", head, 24)[0]


def is_lockup(stderr_text: str) -> bool:
    return _LOCKUP.search(stderr_text) is not None


def describe_qemu_lockup(stderr_text: str, board, elf: Path | str | None = None) -> str:
    """QEMU's lockup abort and register dump as one line: what locked, where, and the likely cause.

    >>> class B: name, qemu_machine, flash_origin, flash_size, ram_origin, ram_size = "b", "m", 0x1000, 0x1000, 0x8000, 0x100
    >>> describe_qemu_lockup("qemu: fatal: Lockup: can't escalate 3 to HardFault (current priority -1)\\n"
    ...                      "R13=ffffffe0 R14=fffffff9 R15=00000000\\nXPSR=40000003 -Z-- A S handler\\n", B())
    "CPU lockup under QEMU m (Lockup: can't escalate 3 to HardFault (current priority -1)): in HardFault, pc 0x00000000, sp 0xffffffe0; the pc is outside b's code (0x00001000-0x00001fff) and the sp outside its RAM (0x00008000-0x000080ff): no usable vector table, the firmware is not linked for b"
    """
    m = _LOCKUP.search(stderr_text)
    what = m.group(1).strip() if m else "lockup"
    regs = {k: int(v, 16) for k, v in _REG.findall(stderr_text)}
    pc, sp, xpsr = regs.get("R15"), regs.get("R13"), regs.get("XPSR")
    msg = f"CPU lockup under QEMU {board.qemu_machine} ({what})"
    if pc is None:
        return msg
    exc = (xpsr or 0) & 0x1FF
    msg += f": in {exception_name(exc) if exc else 'thread mode'}, pc 0x{pc:08x}, sp 0x{sp or 0:08x}"
    flash = (board.flash_origin, board.flash_origin + board.flash_size)
    ram = (board.ram_origin, board.ram_origin + board.ram_size)
    bad_pc = not flash[0] <= pc < flash[1]
    bad_sp = sp is not None and not ram[0] <= sp <= ram[1]
    span = f"0x{flash[0]:08x}-0x{flash[1] - 1:08x}"
    rspan = f"0x{ram[0]:08x}-0x{ram[1] - 1:08x}"
    if bad_pc or bad_sp:
        why = []
        if bad_pc:
            why.append(f"the pc is outside {board.name}'s code ({span})")
        if bad_sp:
            why.append(f"the sp outside its RAM ({rspan})")
        msg += "; " + " and ".join(why)
        entry = elf_entry(elf) if elf is not None else None
        if entry is not None and not flash[0] <= entry < flash[1]:
            msg += (f": the ELF's entry 0x{entry:08x} is not in {board.name}'s code, it is linked for another board "
                    f"(tinygen run --board {board.name} rebuilds it for this one)")
        else:
            msg += f": no usable vector table, the firmware is not linked for {board.name}"
    else:
        msg += "; the fault handler itself faulted (stack overflow or corrupted vector table?)"
    return msg
