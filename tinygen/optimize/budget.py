"""Budgets the user states (``--target-latency 20 --target-ram 2KB --max-acc-drop 0.01``)
and whether a candidate's compiler cost (:class:`.cost.Cost`) meets them.

* latency: the board's cycle-model estimate in ms (``tinygen analyze``'s "latency est.";
  on the emulated boards instructions / clock, as ``tinygen run`` measures them);
* RAM: the planned tensor arena, the part of RAM the model controls (the firmware's stack
  and own variables come on top and do not change with the model);
* flash: the model's constant bytes (weights, biases, requantization tables);
* MACs: the compiler's MAC count.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from tinygen.errors import InputError

_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "kib": 1024, "mb": 1 << 20, "m": 1 << 20, "mib": 1 << 20}


def _fmt(v: float, unit: str) -> str:
    return f"{v:.2f}" if unit == " ms" else f"{int(v):,}"


def parse_bytes(text: str, flag: str = "--target-ram") -> int:
    """'2048', '2KB', '1.5 MiB' -> bytes.

    >>> parse_bytes("64KB"), parse_bytes("1000"), parse_bytes("1.5k")
    (65536, 1000, 1536)
    """
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS or float(m.group(1)) <= 0:
        raise InputError(f"{flag} {text}: give a positive size in bytes, e.g. 2048, 64KB or 1MB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_ms(text: str, flag: str = "--target-latency") -> float:
    """'50', '50ms', '0.05s' -> milliseconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"{flag} {text}: give a positive latency in milliseconds, e.g. 50 or 50ms")
    return float(m.group(1)) * {"ms": 1.0, None: 1.0, "s": 1e3, "us": 1e-3}[m.group(2)]


@dataclass
class Budget:
    latency_ms: float | None = None
    ram: int | None = None     # arena bytes
    flash: int | None = None   # weight bytes
    macs: int | None = None
    max_drop: float = 0.01     # in the task's drop units (tinygen.optimize.task)

    @property
    def empty(self) -> bool:
        return all(v is None for v in (self.latency_ms, self.ram, self.flash, self.macs))

    def check(self, needs_board: bool) -> None:
        if self.max_drop < 0:
            raise InputError(f"--max-acc-drop {self.max_drop}: must be 0 or more (0.01 = one point)")
        if self.latency_ms is not None and needs_board:
            raise InputError("--target-latency needs --board (an MCU board or an emulated one, e.g. mps2-an505): "
                             "latency is estimated for the board's core and clock")

    def _budgeted(self, cost) -> list[tuple[str, str, float, float, str]]:
        """(name, short name, ``cost``'s value, the limit, unit) of each quantity the budget limits."""
        rows = (("latency", "latency", cost.est_ms, self.latency_ms, " ms"),
                ("RAM (arena)", "arena", cost.arena_bytes, self.ram, " B"),
                ("flash (weights)", "weights", cost.weights_bytes, self.flash, " B"),
                ("MACs", "MACs", cost.macs, self.macs, ""))
        return [r for r in rows if r[2] is not None and r[3] is not None]

    def misses(self, cost) -> list[str]:
        """What ``cost`` misses, each as 'latency 44.3 ms > 22.0 ms (2.02x)'; [] when the budget is met."""
        return [f"{name} {_fmt(have, unit)}{unit} > {_fmt(want, unit)}{unit} ({have / want:.2f}x)"
                for name, _, have, want, unit in self._budgeted(cost) if have > want]

    def met(self, cost) -> bool:
        return not self.misses(cost)

    def excess(self, cost) -> float:
        """The largest have/want ratio (<= 1 when met): how far a candidate is from the budget."""
        return max((have / want for _, _, have, want, _ in self._budgeted(cost)), default=0.0)

    def have(self, cost) -> list[str]:
        """``cost``'s budgeted quantities: 'latency 9.32 ms', 'arena 912 B'."""
        return [f"{short} {_fmt(have, unit)}{unit}" for _, short, have, _, unit in self._budgeted(cost)]

    def describe(self) -> str:
        parts = [f"latency <= {self.latency_ms:g} ms" if self.latency_ms is not None else "",
                 f"arena <= {self.ram:,} B" if self.ram is not None else "",
                 f"weights <= {self.flash:,} B" if self.flash is not None else "",
                 f"MACs <= {self.macs:,}" if self.macs is not None else ""]
        return ", ".join(p for p in parts if p) + f"; max drop {self.max_drop:g}"

    def as_dict(self) -> dict:
        return asdict(self)


def from_args(a) -> Budget:
    """The Budget of parsed CLI flags (all optional)."""
    return Budget(latency_ms=parse_ms(a.target_latency) if a.target_latency else None,
                  ram=parse_bytes(a.target_ram, "--target-ram") if a.target_ram else None,
                  flash=parse_bytes(a.target_flash, "--target-flash") if a.target_flash else None,
                    macs=parse_count(a.target_macs) if a.target_macs else None,
                  max_drop=0.01 if a.max_acc_drop is None else a.max_acc_drop)


def parse_count(text: str, flag: str = "--target-macs") -> int:
    """'150000', '150k', '1.5M' -> a count (powers of 1000)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgG]?)\s*", str(text))
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"{flag} {text}: give a positive count, e.g. 150000 or 150k")
    return int(float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[m.group(2).lower()])
