"""``tinygen bench``: latency and bit-exactness of a project's firmware over a serial port.

The host (this module) and the device (firmware/tg_bench.c) speak the line protocol of
docs/bench.md. Every reply line carries a CRC-32; the host retries a command a bounded
number of times when a reply is corrupted, re-handshakes when the device reset (its
banner or TG_BOOT appears unexpectedly) and resends the input, and gives up with a
one-line :class:`~tinygen.errors.DeviceError` when the device stays silent or the port
vanishes. Every read has a timeout: nothing hangs.

Under QEMU the counter is SysTick at the machine's nominal clock and the firmware runs
with ``-icount shift=0``: the figures are instruction counts, reported with
:data:`tinygen.qemu.INSTRUCTIONS_LABEL`, not cycles.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import DeviceError, InputError, OutputError
from . import protocol as P
from .serialport import Port

RETRYABLE = {1, 2, 3, 4, 6}      # line too long / unknown / args / hex / CRC: what corruption produces
LINE_SLACK = 64                  # reply lines beyond the expected ones (late replies, noise) before "flooding"
LINE_BYTES = 256                 # bytes a reply line may take on average (the longest, a D line, takes ~150)
MIN_LINK_BYTES_PER_S = 900       # slowest link the overall deadline allows for (9600 baud)


class _Corrupt(Exception):
    pass


class _Reset(Exception):
    pass


class _Silent(Exception):
    pass


class _Reload(Exception):
    """The device's input is not what the host loaded (reset missed, or lost): load it again."""


class _DevErr(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"ERR {code} {reason}")
        self.code, self.reason = code, reason


def _count(text: str) -> int:
    """A counter value from the device: a non-negative decimal that fits 64 bits (ValueError otherwise)."""
    v = int(text, 10)
    if not 0 <= v < 1 << 64:
        raise ValueError(text)
    return v


def _is_count_line(t: str) -> bool:
    parts = t.split()
    return len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit()


@dataclass
class Stats:
    corrupt: int = 0
    resets: int = 0
    timeouts: int = 0
    resyncs: int = 0
    device_errors: list[str] = field(default_factory=list)


class Session:
    """One conversation with the bench firmware on ``port``.

    ``timeout``: seconds allowed for each reply line (one inference must finish within it);
    ``retries``: how often one operation is retried after corruption, a reset or a timeout.
    """

    def __init__(self, port: Port, timeout: float = 10.0, retries: int = 3,
                 log: Callable[[str], None] | None = None) -> None:
        self.port, self.timeout, self.retries = port, timeout, retries
        self.log = log or (lambda s: None)
        self.banner: P.Banner | None = None
        self.loaded: bytes | None = None
        self.stats = Stats()
        self._tokens = itertools.count(1)

    # -- low level -------------------------------------------------------------------------
    def _read(self) -> str | None:
        return self.port.readline(self.timeout)

    def _flood(self, what: str, why: str) -> DeviceError:
        return DeviceError(f"the device on {self.port.name} floods the link: {why} in reply to '{what}' "
                           "(a wrong firmware, a loop in it, or a broken link); reset the board, reflash the "
                           "project (tinygen flash), check the baud rate")

    def transact(self, cmd: str, data_prefixes: tuple[str, ...] = (), ok: str = "",
                 on_line: Callable[[str], None] | None = None, expect_lines: int = 0,
                 slow_lines: int = 0) -> tuple[str, list[str]]:
        """Sends ``cmd`` (CRC appended); returns (OK line, data lines). Raises the private
        _Corrupt/_Reset/_Silent/_DevErr, which :meth:`retrying` turns into retries.

        Nothing from the device is trusted: ``timeout`` bounds each line, an overall deadline
        (``timeout`` per slow line, i.e. per inference, plus the transfer time) bounds the whole
        reply, and at most ``expect_lines`` + :data:`LINE_SLACK` lines and a proportional number
        of bytes are collected; more is a flooding device (DeviceError, not retried)."""
        self.port.send(P.with_crc(cmd))
        corrupt, data = False, []
        want = ok or "OK " + cmd.split()[0]
        name = cmd.split()[0]
        max_lines = expect_lines + LINE_SLACK
        max_bytes = max_lines * LINE_BYTES + P.REPLY_LINE_MAX
        allowed = self.timeout * (2 + slow_lines) + (expect_lines + 1) * LINE_BYTES / MIN_LINK_BYTES_PER_S
        deadline = time.monotonic() + allowed
        lines = nbytes = 0
        dropped0 = self.port.dropped
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise self._flood(name, f"{lines} lines ({nbytes:,} B) but no final reply within {allowed:.0f} s")
            line = self.port.readline(min(self.timeout, left))
            if self.port.dropped - dropped0 > max_bytes:
                raise self._flood(name, f"{self.port.dropped - dropped0:,} B without a line end")
            if line is None:
                if time.monotonic() >= deadline:
                    continue
                raise _Corrupt("reply cut short") if corrupt else _Silent()
            lines, nbytes = lines + 1, nbytes + len(line) + 1
            if lines > max_lines or nbytes > max_bytes:
                raise self._flood(name, f"more than {max_lines} lines or {max_bytes:,} B")
            if len(line) > P.REPLY_LINE_MAX:
                corrupt = True
                continue
            text = P.check(line)
            if text is None:
                if line.startswith("TG_BOOT "):
                    raise _Reset()
                if line.strip() and not line.startswith(("TG_", "m-", "e-")):
                    corrupt = True
                continue
            if text.startswith("TG_BENCH "):
                raise _Reset()
            if text.startswith("ERR "):
                parts = text.split(" ", 2)
                if corrupt:
                    raise _Corrupt(text)
                try:
                    raise _DevErr(int(parts[1]), parts[2] if len(parts) > 2 else "")
                except (ValueError, IndexError):
                    raise _Corrupt(text) from None
            if text.startswith("OK "):
                if corrupt:
                    raise _Corrupt("a reply line failed its CRC")
                if text == want or text.startswith(want + " "):
                    return text, data
                continue                                  # a late reply to an earlier command
            if text.startswith(data_prefixes):
                data.append(text)
                if on_line:
                    on_line(text)

    def _check_banner(self, banner: P.Banner) -> None:
        """After every handshake (a reset included): the same protocol, model and tensor sizes."""
        if banner.version != P.VERSION:
            raise DeviceError(f"the firmware on {self.port.name} speaks bench protocol v{banner.version}, "
                              f"this tinygen v{P.VERSION}: rebuild and flash the project")
        ref = self.banner
        if ref is None:
            return
        for what in ("model", "in_size", "out_size", "layers", "clock_hz"):
            was, now = getattr(ref, what, None), getattr(banner, what)
            if was is not None and was != now:
                raise DeviceError(f"the device on {self.port.name} changed during the run: its banner's "
                                  f"{what} was {was}, is now {now} (another firmware, or a faulty reset); "
                                  "reflash the project (tinygen flash) and run tinygen bench again")

    def handshake(self) -> P.Banner:
        """``hello <token>`` until ``OK hello <token>``; returns the banner (bounded attempts)."""
        heard = False
        resets = flood = flood_bytes = 0
        bad = ""
        for _ in range(self.retries + 1):
            token = f"h{next(self._tokens)}"
            self.port.send(P.with_crc(f"hello {token}"))
            deadline = time.monotonic() + self.timeout
            banner = None
            dropped0, n, nbytes = self.port.dropped, 0, 0
            while time.monotonic() < deadline:
                line = self.port.readline(max(0.01, deadline - time.monotonic()))
                if line is None:
                    break
                n, nbytes = n + 1, nbytes + len(line) + 1
                heard = heard or bool(line.strip() and not line.startswith(("TG_", "m-", "e-")))
                text = P.check(line) if len(line) <= P.REPLY_LINE_MAX else None
                if text is None:
                    resets += line.startswith("TG_BOOT ")
                    continue
                if text.startswith("TG_BENCH "):
                    resets += banner is not None
                    try:
                        banner = P.parse_banner(text)
                    except ValueError as e:
                        bad, banner = f"{e} in {text[:120]!r}", None
                elif text == f"OK hello {token}" and banner is not None:
                    self._check_banner(banner)
                    self.banner = banner
                    return banner
            flood += n > LINE_SLACK or nbytes > LINE_SLACK * LINE_BYTES or self.port.dropped > dropped0
            flood_bytes = max(flood_bytes, nbytes)
            self.stats.timeouts += 1
        tries = f"no reply to 'hello' within {self.timeout:g} s, {self.retries + 1} tries"
        if bad:
            raise DeviceError(f"the device on {self.port.name} sent an invalid banner ({bad}); {tries}: "
                              "rebuild and flash the project's firmware (tinygen flash)")
        if flood:
            raise self._flood("hello", f"{tries}; " + (f"{self.port.dropped:,} B without a line end"
                                                       if self.port.dropped else f"{flood_bytes:,} B of lines and no reply"))
        if resets:
            raise DeviceError(f"the device on {self.port.name} keeps resetting ({resets} boot banners, {tries}): "
                              "check its power supply, reset line and watchdog, or reflash it")
        what = ("answers, but not with the tinygen bench protocol (wrong firmware or baud rate?)" if heard
                else "is silent")
        raise DeviceError(f"the device on {self.port.name} {what}: {tries}; flash the project's firmware "
                          "(tinygen flash), check the port and the baud rate, or reset the board")

    def _resync(self) -> None:
        self.stats.resyncs += 1
        self.port.drain(0.05, 0.5)
        self.handshake()

    def retrying(self, what: str, fn: Callable[[], object]) -> object:
        """Runs ``fn`` with bounded retries; a device reset re-handshakes and raises _Reload."""
        last = ""
        for _ in range(self.retries + 1):
            try:
                return fn()
            except _Corrupt as e:
                self.stats.corrupt += 1
                last = f"corrupted reply ({e})"
            except _Silent:
                self.stats.timeouts += 1
                last = f"no reply within {self.timeout:g} s"
            except _Reset:
                self.stats.resets += 1
                self.log(f"device reset during {what}: re-handshaking and resending the input")
                self.loaded = None
                self._resync()
                raise _Reload() from None
            except _DevErr as e:
                self.stats.device_errors.append(str(e))
                if e.code == 6 and e.reason.startswith("input crc"):
                    self.loaded = None
                    raise _Reload() from None
                if e.code == 7 and "no run yet" in e.reason:
                    raise _Reload() from None
                if e.code not in RETRYABLE:
                    raise DeviceError(f"{what} failed on {self.port.name}: {e}") from None
                last = str(e)
            self._resync()
        raise DeviceError(f"{what} failed on {self.port.name} after {self.retries + 1} attempts: {last}")

    # -- operations ------------------------------------------------------------------------
    def load(self, data: bytes) -> None:
        for off, cmd in P.load_commands(data):
            n = min(P.CHUNK, len(data) - off)

            def one(cmd=cmd, off=off, n=n) -> None:
                status, _ = self.transact(cmd.rsplit(" *", 1)[0], ok="OK load")
                if status != f"OK load {off} {n}":
                    raise _Corrupt(status)
            self.retrying(f"loading input bytes {off}..{off + n - 1}", one)
        self.loaded = data

    def run(self, data: bytes, n: int, warmup: int, progress: Callable[[str], None] | None = None
            ) -> tuple[list[int], bytes]:
        """Loads ``data`` if needed, runs ``n`` timed inferences after ``warmup``; returns (cycles, output)."""
        for _ in range(self.retries + 1):
            try:
                if self.loaded != data:
                    self.load(data)
                crc = P.crc32(data)

                def go() -> tuple[list[int], int]:
                    status, lines = self.transact(f"run {n} {warmup} {crc:08x}", ("W ", "T "), on_line=progress,
                                                  expect_lines=n + warmup, slow_lines=n + warmup)
                    try:
                        timed = [_count(t.split()[2]) for t in lines if t.startswith("T ")]
                        kv = dict(p.split("=", 1) for p in status.split()[4:] if "=" in p)
                        total, out_crc = _count(kv.get("total", "-1")), int(kv["out"], 16)
                    except (ValueError, IndexError, KeyError):
                        raise _Corrupt(f"unparsable run reply: {status[:80]!r}, "
                                       f"{[t[:40] for t in lines if not _is_count_line(t)][:2]}") from None
                    if len(timed) != n or total != sum(timed):
                        raise _Corrupt(f"run reply incomplete: {len(timed)} of {n} timings")
                    return timed, out_crc
                cycles, out_crc = self.retrying("run", go)  # type: ignore[misc]
                out = self.output()
                if P.crc32(out) != out_crc:
                    raise _Reload()
                return cycles, out
            except _Reload:
                continue
        raise DeviceError(f"the device on {self.port.name} kept losing its input ({self.stats.resets} resets): "
                          "check its power and reset line")

    def output(self) -> bytes:
        assert self.banner is not None
        size = self.banner.out_size

        def get() -> bytes:
            status, lines = self.transact("out", ("D ",), expect_lines=-(-size // P.HEX_PER_LINE))
            parts = status.split()
            try:
                data = P.parse_hex_lines(lines, size)
            except ValueError as e:
                raise _Corrupt(str(e)) from None
            if len(parts) < 4 or parts[3] != f"crc={P.crc32(data):08x}":
                raise _Corrupt(status)
            return data
        return self.retrying("reading the output", get)  # type: ignore[return-value]

    def layers(self) -> list[int] | None:
        """Per-layer counter ticks of the last inference; None when built without profiling."""
        def get() -> list[int] | None:
            try:
                status, lines = self.transact("layers", ("L ",), expect_lines=self.banner.layers if self.banner else 0)
            except _DevErr as e:
                if e.code == 7 and "per-layer" in e.reason:
                    return None
                raise
            try:
                vals = {int(t.split()[1]): _count(t.split()[2]) for t in lines}
                ok = sorted(vals) == list(range(int(status.split()[2])))
            except (ValueError, IndexError):
                ok = False
            if not ok:
                raise _Corrupt(status[:80])
            return [vals[i] for i in sorted(vals)]
        return self.retrying("reading per-layer timing", get)  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------------
# The benchmark


def _project(project: Path) -> tuple[dict, bytes]:
    man = project / "manifest.json"
    if not man.is_file():
        raise OutputError(f"{project} is not a tinygen project (no manifest.json); run tinygen build first")
    m = json.loads(man.read_text())
    tfl = project / "model.tflite"
    if not tfl.is_file():
        raise OutputError(f"{project}/model.tflite is missing (project written by an older tinygen): "
                          "rebuild it with tinygen build")
    return m, tfl.read_bytes()


def load_inputs(path: str | Path, model_bytes: bytes) -> np.ndarray:
    """A .npy of test vectors -> [N, *input shape], validated against the model's input."""
    from ..flatbuf import read_model
    from ..ir import DTYPES

    fb = read_model(model_bytes)
    sg = fb.subgraphs[0]
    if len(sg.inputs) != 1:
        raise InputError(f"the model has {len(sg.inputs)} inputs; --inputs takes one .npy, so it works only "
                         "for one-input models (omit --inputs for random vectors)")
    t = sg.tensors[sg.inputs[0]]
    shape, dtype = tuple(int(v) for v in t.shape), np.dtype(DTYPES[t.type])
    p = Path(path)
    try:
        x = np.load(p, allow_pickle=False)
    except FileNotFoundError:
        raise InputError(f"{p} does not exist") from None
    except (ValueError, OSError) as e:
        raise InputError(f"{p} is not a readable .npy array: {str(e).splitlines()[0]}") from None
    if x.dtype != dtype:
        raise InputError(f"{p} holds {x.dtype} values, the model input is {dtype}{list(shape)}: "
                         f"quantize the vectors (scale/zero point in manifest.json 'input')")
    if x.shape == shape:
        x = x[None]
    elif x.shape[1:] != shape:
        if len(shape) > 1 and shape[0] == 1 and x.shape[1:] == shape[1:]:
            x = x.reshape((x.shape[0], *shape))
        else:
            raise InputError(f"{p} has shape {list(x.shape)}, the model input is {list(shape)} "
                             f"(one vector) or [N, {', '.join(map(str, shape))}]")
    if len(x) == 0:
        raise InputError(f"{p} holds no vectors")
    return np.ascontiguousarray(x)


class _Bar:
    """A plain text progress bar on stderr."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.done, self.label, self.enabled = max(total, 1), 0, label, enabled
        self.t0 = time.monotonic()

    def step(self, k: int = 1) -> None:
        self.done = min(self.total, self.done + k)
        if self.enabled:
            w = 30
            fill = int(w * self.done / self.total)
            sys.stderr.write(f"\r{self.label} [{'#' * fill}{'.' * (w - fill)}] {self.done}/{self.total} "
                             f"{time.monotonic() - self.t0:5.1f}s")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _sizes(project: Path, m: dict) -> dict:
    out = {"weights_bytes": m.get("weights_bytes"), "arena_bytes": m.get("arena_bytes")}
    elf = project / "build" / "firmware.elf"
    from .. import toolchain

    if elf.is_file() and toolchain.have_tool("arm-none-eabi-size"):
        import subprocess

        r = subprocess.run(["arm-none-eabi-size", "-A", str(elf)], capture_output=True, text=True, check=False)
        if r.returncode == 0:
            secs = toolchain.parse_size_a(r.stdout)
            text = sum(n for s, n in secs.items() if s in toolchain.FLASH_SECTIONS and s != ".data")
            data, bss, stack = secs.get(".data", 0), secs.get(".bss", 0), secs.get(".tg_stack", 0)
            out.update(flash_bytes=text + data, ram_bytes=data + bss + stack, stack_bytes=stack)
    return out


def _emulated(board_name: str) -> bool:
    from ..boards import load_board
    from ..errors import BoardError

    try:
        return load_board(board_name).emulated
    except BoardError:
        return False


def run_bench(project: Path | str, port: str, *, runs: int = 20, warmup: int = 3, inputs: str | None = None,
              vectors: int = 4, seed: int = 0, timeout: float = 10.0, retries: int = 3, baud: int = 115200,
              after_open: Callable[[], None] | None = None, log: Callable[[str], None] = print,
              progress: bool = True) -> dict:
    """The whole benchmark; returns the bench.json record (also written to the project)."""
    from .. import reference
    from ..qemu import INSTRUCTIONS_LABEL

    project = Path(project)
    if runs < 1 or warmup < 0 or vectors < 1:
        raise InputError("--runs and --vectors must be >= 1, --warmup >= 0")
    m, model_bytes = _project(project)
    if inputs:
        xs = load_inputs(inputs, model_bytes)
        packed_in = reference.pack(xs)
        expected = reference.pack(reference.run(model_bytes, xs))
    else:
        xs = reference.random_inputs(model_bytes, vectors, seed=seed)
        packed_in = reference.pack(xs)
        expected = reference.pack(reference.run(model_bytes, xs))
    k = len(packed_in)
    link = Port(port, baud)
    try:
        if after_open:
            after_open()
        s = Session(link, timeout=timeout, retries=retries, log=lambda t: log(f"note: {t}"))
        banner = s.handshake()
        want = m.get("model_sha256_16")
        if banner.model != want:
            raise DeviceError(f"the device on {port} runs model {banner.model}, but {project} is model {want} "
                              f"({m.get('model')}): flash this project first (tinygen flash {project})")
        if (banner.in_size, banner.out_size) != (packed_in.shape[1], expected.shape[1]):
            raise DeviceError(f"the device's tensors ({banner.in_size} B in, {banner.out_size} B out) do not match "
                              f"the project ({packed_in.shape[1]} B, {expected.shape[1]} B): reflash the project")
        total = warmup + runs + (k - 1)
        bar = _Bar(total, f"bench {m.get('model')}", progress)
        cycles: list[int] = []
        outputs: list[bytes] = []
        layer_cycles = None
        try:
            for i in range(k):
                n, w = (runs, warmup) if i == 0 else (1, 0)
                c, out = s.run(packed_in[i].tobytes(), n, w,
                               progress=lambda t: bar.step() if t[0] in "WT" else None)
                cycles += c
                outputs.append(out)
                if i == 0:
                    layer_cycles = s.layers()
        finally:
            bar.close()
    finally:
        link.close()

    # -- compare and report ---------------------------------------------------------------
    mism = []
    for i, out in enumerate(outputs):
        want_b = expected[i].tobytes()
        if out != want_b:
            j = next(x for x in range(len(out)) if out[x] != want_b[x])
            mism.append({"vector": i, "index": j, "device": out[j] - 256 if out[j] > 127 else out[j],
                         "reference": int(expected[i][j])})
    emulated = _emulated(banner.board)
    clock = banner.clock_hz
    arr = np.array(cycles, dtype=np.float64)
    ms = arr / clock * 1e3
    unit = INSTRUCTIONS_LABEL if emulated else "cycles"
    per_tick = 1e9 / clock if emulated else 1.0        # QEMU -icount shift=0: 1 instruction = 1 ns
    counts = arr * per_tick
    stat = {q: float(f(ms)) for q, f in (("mean", np.mean), ("min", np.min), ("max", np.max))}
    stat["p50"], stat["p99"] = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    macs = int(m.get("macs", 0))
    layers = []
    if layer_cycles is not None:
        tot = max(sum(layer_cycles), 1)
        for ly, c in zip(m.get("layers", []), layer_cycles):
            layers.append({"index": ly["index"], "op": ly["op"], "name": ly["name"], "kernel": ly.get("kernel"),
                           "macs": ly.get("macs", 0), "ticks": c, unit_key(emulated): round(c * per_tick),
                           "share": c / tot})
    record = {
        "tinygen_bench_protocol": P.VERSION,
        "model": m.get("model"), "model_hash": banner.model, "backend": m.get("backend"),
        "board": banner.board, "port": port, "emulated": emulated, "counter": banner.counter,
        "clock_hz": clock, "unit": unit,
        "note": ("QEMU figures are instruction counts (-icount shift=0), not cycles; ms are QEMU "
                 "virtual time (1 instruction = 1 ns)" if emulated else "cycles of the board's counter at clock_hz"),
        "runs": runs, "warmup": warmup, "vectors": k,
        "ticks": cycles, unit_key(emulated): [round(c * per_tick) for c in cycles],
        "latency_ms": stat,
        "macs": macs, ("macs_per_instruction" if emulated else "macs_per_cycle"):
            (macs / float(np.mean(counts))) if len(counts) else None,
        "layers": layers,
        "outputs_match": not mism, "mismatches": mism,
        "memory": _sizes(project, m),
        "link": {"corrupt_replies": s.stats.corrupt, "resets": s.stats.resets, "timeouts": s.stats.timeouts,
                 "resyncs": s.stats.resyncs},
    }
    for line in report_lines(record):
        log(line)
    _write_record(project, record)
    return record


def unit_key(emulated: bool) -> str:
    return "instructions" if emulated else "cycles"


def report_lines(r: dict) -> list[str]:
    em = r["emulated"]
    key = unit_key(em)
    vals = np.array(r[key], dtype=np.float64)
    st = r["latency_ms"]
    out = [f"{r['model']} on {r['board']} via {r['port']} ({r['backend']} backend, counter {r['counter']} "
           f"at {r['clock_hz']:,} Hz)"]
    if em:
        out.append("  QEMU: figures are instruction counts (-icount shift=0 proxy), NOT cycles; "
                   "ms are QEMU virtual time (1 instruction = 1 ns), not a real board's latency")
    out.append(f"  outputs: {r['vectors']} vector(s) "
               + ("bit-exact with the TFLite reference (BUILTIN_REF)" if r["outputs_match"] else
                  f"DIFFER from the TFLite reference: {r['mismatches'][:3]}"))
    out.append(f"  {r['runs']} runs after {r['warmup']} warm-up(s)"
               f"{' + 1 run per further vector' if r['vectors'] > 1 else ''}:")
    out.append(f"    {'':<14}{'mean':>14}{'p50':>14}{'p99':>14}{'min':>14}{'max':>14}")
    out.append(f"    {'latency ms':<14}" + "".join(f"{st[q]:>14.3f}" for q in ("mean", "p50", "p99", "min", "max")))
    if len(vals):
        out.append(f"    {key:<14}" + "".join(f"{v:>14,.0f}" for v in (
            vals.mean(), np.percentile(vals, 50), np.percentile(vals, 99), vals.min(), vals.max())))
    rate_key = "macs_per_instruction" if em else "macs_per_cycle"
    if r.get(rate_key) is not None:
        out.append(f"    {r['macs']:,} MACs: {r[rate_key]:.3f} {rate_key.replace('_', ' ').replace('macs', 'MACs')}")
    if r["layers"]:
        out.append(f"  per layer ({key}, last inference of vector 0):")
        for ly in r["layers"]:
            name = f"{ly['op']}:{ly['name']}"
            out.append(f"    {ly['index']:>3} {name[:48]:<48} {ly[key]:>12,} {100 * ly['share']:5.1f}%"
                       + (f"  {ly['macs'] / max(ly[key], 1):.2f} MACs/{key[:-1] if em else 'cycle'}" if ly['macs'] else ""))
    else:
        out.append("  per layer: not available (firmware built with PROFILE=0)")
    mem = r["memory"]
    if mem.get("flash_bytes") is not None:
        out.append(f"  memory: flash {mem['flash_bytes']:,} B, RAM {mem['ram_bytes']:,} B "
                   f"(weights {mem['weights_bytes']:,} B, arena {mem['arena_bytes']:,} B, stack {mem['stack_bytes']:,} B)")
    else:
        out.append(f"  memory: weights {mem['weights_bytes']:,} B, arena {mem['arena_bytes']:,} B (no ELF to size)")
    ln = r["link"]
    if any(ln.values()):
        out.append(f"  link: {ln['corrupt_replies']} corrupted replies retried, {ln['resets']} device reset(s), "
                   f"{ln['timeouts']} timeout(s)")
    return out


def _write_record(project: Path, record: dict) -> None:
    from ..project import MARKER

    path = project / "bench.json"
    try:
        path.write_text(json.dumps(record, indent=2) + "\n")
        marker = project / MARKER          # tinygen wrote it: a rebuild may replace it
        if marker.is_file():
            names = set(marker.read_text().split())
            if "bench.json" not in names:
                marker.write_text("\n".join(sorted(names | {"bench.json"})) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
