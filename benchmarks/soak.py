"""Soak run of the bench link: N iterations (load + run 1 + out) over the emulated board's pty
while a proxy corrupts a random fraction of the frames in both directions.

    .venv/bin/python benchmarks/soak.py [--iterations 1000] [--rate 0.01] [--seed 1]
                                        [--project DIR] [--timeout 1] [--retries 3] [--json out.json]

The host side is tinygen's own (``tinygen.device.bench.Session`` over
``tinygen.device.serialport.Port``); nothing of the protocol is re-implemented here. Between
QEMU's pty and the host's port sits :class:`CorruptingProxy`: every frame (one line, up to
and including its ``\\n``) crossing it, in either direction, is hit with probability ``rate``
(seeded RNG) by one byte error away from the line terminator: a bit flip, a random byte
(any value, so also ``\\n``, ``\\r``, ``%`` or NUL), a dropped byte, or a duplicated byte.

Every iteration loads a fresh random input (seeded), and every output the host accepts is
compared with the TFLite reference (``tinygen.reference.run``, BUILTIN_REF kernels).

Every injection is accounted for afterwards:

* device->host: the frame as delivered is split into the lines the host's port returns; a
  line that carried a CRC must fail :func:`tinygen.device.protocol.check` in every piece
  (``detected: host CRC reject``); lines without a CRC (boot self-test ``TG_`` lines,
  MLPerf ``m-``/``e-`` lines) are ones the host never takes data from (``harmless``). Where
  the host read it (a reply wait, or a resync drain) comes from a recording Port.
* host->device: the proxy knows how the firmware's tg_bench_feed cuts bytes into commands
  (``\\n``, ``\\r``, ``%``; blank lines get no reply) and attributes each final reply line
  (``OK ...``/``ERR ...`` with a valid CRC, or MLPerf ``m-ready``) to the command piece
  it answers, in order. A corrupted command the device refused (ERR, or the MLPerf parser's
  unknown command) is ``detected: device ...``; one it executed must be the intended command
  whose line CRC an injected line end split off (``harmless``); anything else is UNSAFE.

Exit code 0 when no wrong output was accepted and every injection is accounted for, 1
otherwise, 77 when the toolchain, QEMU or the shared model is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import random
import select
import sys
import tempfile
import threading
import time
import tty
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from tinygen.device import protocol as P  # noqa: E402
from tinygen.device.bench import Session, Stats  # noqa: E402
from tinygen.device.serialport import Port  # noqa: E402
from tinygen.errors import DeviceError  # noqa: E402

MODEL = ROOT.parent / "shared" / "models" / "mlperf-tiny" / "ad01_int8.tflite"
BOARD = "mps2-an505"
KINDS = ("flip", "replace", "drop", "dup")
TO_HOST, TO_DEV = "device->host", "host->device"
SKIP = 77

# Outcomes: prefixes decide the class.
DETECTED, HARMLESS, UNSAFE, PENDING = "detected", "harmless", "UNSAFE", "pending"


# ---------------------------------------------------------------------------------------------
# Corruption


def mangle(frame: bytes, rng: random.Random) -> tuple[bytes, str, int]:
    """One random byte error in ``frame`` outside its line terminator (trailing ``\\r``/``\\n``).

    Returns (corrupted frame, kind, position); kind "" when the frame has no body.

    >>> rng = random.Random(0)
    >>> out, kind, pos = mangle(b"OK out 4 *0badcafe\\r\\n", rng)
    >>> out.endswith(b"\\r\\n") and kind in KINDS and 0 <= pos < 18
    True
    """
    body = len(frame.rstrip(b"\r\n"))
    if body == 0:
        return frame, "", -1
    kind = rng.choice(KINDS)
    pos = rng.randrange(body)
    b = bytearray(frame)
    if kind == "flip":
        b[pos] ^= 1 << rng.randrange(8)
    elif kind == "replace":
        b[pos] = (b[pos] + rng.randrange(1, 256)) & 0xFF       # any value but the original
    elif kind == "drop":
        del b[pos]
    else:
        b.insert(pos, b[pos])
    return bytes(b), kind, pos


def device_pieces(frame: bytes) -> list[tuple[str, str]]:
    """How firmware/tg_bench.c (tg_bench_feed) cuts ``frame`` into commands that each get exactly
    one final reply line: (text, terminator). ``\\n``/``\\r`` end a native command (a blank one
    gets no reply), ``%`` an MLPerf one (always ``m-ready``); NUL reads as ``?``.

    >>> device_pieces(b"out *12345678\\n")
    [('out *12345678', '\\n')]
    >>> device_pieces(b"ou%t\\r *1\\n")
    [('ou', '%'), ('t', '\\n'), (' *1', '\\n')]
    >>> device_pieces(b" \\t\\n")
    []
    """
    out: list[tuple[str, str]] = []
    cur = bytearray()
    for c in frame:
        if c in b"\r\n%":
            if c == 0x25:
                out.append((cur.decode("latin-1"), "%"))
            elif cur.strip(b" \t"):
                out.append((cur.decode("latin-1"), "\n"))
            cur = bytearray()
        else:
            cur.append(0x3F if c == 0 else c)
    return out


@dataclass
class Injection:
    n: int
    way: str                     # TO_HOST or TO_DEV
    frame: int                   # frame index in its direction
    iteration: int               # soak iteration (-1: before the first)
    kind: str
    pos: int
    before: bytes
    after: bytes
    replies: list = field(default_factory=list)   # TO_DEV: (piece, terminator, final reply, line before it)
    outcome: str = ""
    detail: str = ""


class CorruptingProxy(threading.Thread):
    """Forwards bytes between QEMU's pty ``dev`` and a new pty (``self.path``) frame by frame,
    corrupting each frame with probability ``rate`` (see :func:`mangle`), and attributes the
    device's final reply lines to the command pieces they answer (see :func:`device_pieces`)."""

    def __init__(self, dev: str, rate: float, seed: int, flush_after: float = 0.3, mangler=None) -> None:
        super().__init__(daemon=True)
        self.dev = os.open(dev, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.dev)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.rate, self.rng, self.flush_after = rate, random.Random(seed), flush_after
        # mangler(frame, rng, way) -> (frame, kind, pos); kind "" leaves the frame alone
        self.mangler = mangler or (lambda frame, rng, way: mangle(frame, rng))
        self.iteration = -1
        self.frames = {TO_HOST: 0, TO_DEV: 0}
        self.injections: list[Injection] = []
        self.unframed = 0                 # bytes forwarded without a line end (flushed when idle)
        self.orphan_replies: list[str] = []   # final replies with no command piece to answer
        self.clean_errors: list[str] = []     # ERR replies to commands that were not corrupted
        self._buf = {TO_HOST: bytearray(), TO_DEV: bytearray()}
        self._t = {TO_HOST: 0.0, TO_DEV: 0.0}
        self._awaiting: deque = deque()   # (injection | None, piece, terminator) per expected final reply
        self._prev_line = ""
        self._halt = threading.Event()
        self.error: BaseException | None = None

    # -- forwarding ------------------------------------------------------------------------
    def run(self) -> None:
        try:
            while not self._halt.is_set():
                r, _, _ = select.select([self.dev, self.master], [], [], 0.05)
                if self.dev in r:
                    self._feed(TO_HOST, self._read(self.dev))
                if self.master in r:
                    self._feed(TO_DEV, self._read(self.master))
                now = time.monotonic()
                for way in (TO_HOST, TO_DEV):
                    if self._buf[way] and now - self._t[way] > self.flush_after:
                        self.unframed += len(self._buf[way])
                        self._write(self.dev if way == TO_DEV else self.master, bytes(self._buf[way]))
                        self._buf[way].clear()
        except (OSError, ValueError) as e:
            if not self._halt.is_set():
                self.error = e

    @staticmethod
    def _read(fd: int) -> bytes:
        try:
            return os.read(fd, 4096)
        except BlockingIOError:
            return b""

    def _write(self, fd: int, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._halt.is_set():
            try:
                n = os.write(fd, view)
                view = view[n:]
            except BlockingIOError:
                select.select([], [fd], [], 0.05)

    def _feed(self, way: str, data: bytes) -> None:
        buf = self._buf[way]
        buf += data
        self._t[way] = time.monotonic()
        while True:
            i = buf.find(b"\n")
            if i < 0:
                return
            frame = bytes(buf[:i + 1])
            del buf[:i + 1]
            self._frame(way, frame)

    def _frame(self, way: str, frame: bytes) -> None:
        self.frames[way] += 1
        inj, out = None, frame
        if self.rate > 0 and self.rng.random() < self.rate:
            out, kind, pos = self.mangler(frame, self.rng, way)
            if kind:
                inj = Injection(len(self.injections), way, self.frames[way] - 1, self.iteration, kind, pos, frame, out)
                self.injections.append(inj)
        if way == TO_DEV:
            for piece, term in device_pieces(out):
                self._awaiting.append((inj, piece, term))
            self._write(self.dev, out)
        else:
            self._device_line(frame)          # as the device sent it
            self._write(self.master, out)

    def _device_line(self, frame: bytes) -> None:
        line = frame.replace(b"\r", b"").rstrip(b"\n").decode("latin-1")
        text = P.check(line)
        final = None
        if text is not None and text.startswith(("OK ", "ERR ")):
            final = text
        elif line == P.MLPERF_READY and self._prev_line != "m-init-done":   # not the boot banner's
            final = line
        if final is not None:
            if not self._awaiting:
                self.orphan_replies.append(final)
            else:
                inj, piece, term = self._awaiting.popleft()
                if inj is not None:
                    inj.replies.append((piece, term, final, self._prev_line))
                elif final.startswith("ERR "):
                    self.clean_errors.append(f"{piece!r} -> {final}")
        self._prev_line = line

    def shutdown(self) -> None:
        self._halt.set()
        self.join(2)
        for fd in (self.dev, self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class RecordingPort(Port):
    """tinygen's Port, recording every line it returns and whether a resync drain read it."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.lines: list[tuple[str, str]] = []
        self.phase = "reply"

    def readline(self, timeout: float) -> str | None:
        line = super().readline(timeout)
        if line is not None:
            self.lines.append((line, self.phase))
        return line

    def drain(self, quiet: float = 0.1, limit: float = 2.0) -> None:
        self.phase = "drain"
        try:
            super().drain(quiet, limit)
        finally:
            self.phase = "reply"


# ---------------------------------------------------------------------------------------------
# Accounting


def _cmd_text(frame: bytes) -> str:
    """The command a host frame carries, without its line CRC."""
    return frame.rstrip(b"\r\n").decode("latin-1").rsplit(" *", 1)[0]


def account(injections: list[Injection], host_lines: list[tuple[str, str]]) -> None:
    """Sets ``outcome``/``detail`` of every injection (see the module docstring)."""
    ptr = 0
    for inj in injections:
        if inj.way == TO_HOST:
            orig = inj.before.replace(b"\r", b"").rstrip(b"\n").decode("latin-1")
            pieces = [p.replace(b"\r", b"").decode("latin-1") for p in inj.after.split(b"\n")[:-1]]
            key = next((p for p in pieces if p), None)
            where = "not read by the host before the end"
            if key is not None:
                for j in range(ptr, len(host_lines)):
                    if host_lines[j][0] == key:
                        ptr = j + 1
                        where = "read in a resync drain" if host_lines[j][1] == "drain" else "read as a reply"
                        break
            if P.check(orig) is not None:
                passed = [p for p in pieces if P.check(p) is not None]
                if passed:
                    inj.outcome, inj.detail = f"{UNSAFE}: corrupted line passed the host's CRC", repr(passed)
                else:
                    inj.outcome, inj.detail = f"{DETECTED}: host line-CRC reject ({where})", repr(pieces)
            else:
                inj.outcome, inj.detail = (f"{HARMLESS}: line without CRC, never used as data "
                                           f"({orig.split(' ')[0][:12]}...)"), where
            continue
        want = len(device_pieces(inj.after))
        if want == 0:
            inj.outcome = f"{HARMLESS}: blank line, the device ignores it"
            continue
        if len(inj.replies) < want:
            inj.outcome = f"{PENDING}: no reply before the end"
            continue
        intended = _cmd_text(inj.before)
        executed = [(piece, final) for piece, _, final, _ in inj.replies if final.startswith("OK ")]
        if not executed:
            first = inj.replies[0]
            if first[2].startswith("ERR "):
                code, reason = (first[2].split(" ", 2) + ["", ""])[1:3]
                reason = reason.split("(")[0]
                label = " ".join(reason.split()[:2]) if reason.startswith("usage:") else reason.split(":")[0].strip()
                inj.outcome = f"{DETECTED}: device ERR {code} ({label})"
            elif first[3].startswith("e-[Unknown command"):
                inj.outcome = f"{DETECTED}: device MLPerf parser, unknown command (no effect)"
            else:
                inj.outcome = f"{UNSAFE}: MLPerf command with an effect"
            inj.detail = repr([r[2][:60] for r in inj.replies])
        elif all(piece.strip() == intended for piece, _ in executed) and len(executed) == 1:
            inj.outcome = f"{HARMLESS}: the intended command ran, its line CRC split off by an injected line end"
            inj.detail = repr(executed)
        elif (len(executed) == 1 and intended.startswith("run ")
              and intended.split()[:3] == executed[0][0].split() + ["0"] * (3 - len(executed[0][0].split()))):
            inj.outcome = (f"{HARMLESS}: the intended run ran without its optional input-CRC argument "
                           "(split off by an injected line end)")
            inj.detail = repr(executed)
        else:
            inj.outcome, inj.detail = f"{UNSAFE}: the device executed a corrupted command", repr(executed)


# ---------------------------------------------------------------------------------------------
# The soak


def build_project(model: Path, out: Path) -> Path:
    from tinygen.cli import main as cli

    rc = cli(["build", str(model), "--board", BOARD, "--backend", "portable", "-o", str(out)])
    if rc != 0 or not (out / "build" / "firmware.elf").is_file():
        raise SystemExit(f"tinygen build failed (exit {rc})")
    return out


def soak(project: Path, iterations: int = 1000, rate: float = 0.01, seed: int = 1, timeout: float = 1.0,
         retries: int = 3, log=print, mangler=None) -> dict:
    """Runs the soak on ``project`` (an mps2-an505 project with model.tflite); returns the record.
    ``mangler``: another corruption than :func:`mangle` (see :class:`CorruptingProxy`)."""
    from tinygen import qemu, reference
    from tinygen.boards import load_board
    from tinygen.device import flash

    project = Path(project)
    man = json.loads((project / "manifest.json").read_text())
    mb = (project / "model.tflite").read_bytes()
    xs = reference.random_inputs(mb, iterations, seed=seed)
    ins = reference.pack(xs)
    want = reference.pack(reference.run(mb, xs))
    t0 = time.monotonic()
    proc, dev = flash.start_emulator(project / "build" / "firmware.elf", load_board(man["board"]), paused=True)
    proxy = CorruptingProxy(dev, rate, seed, mangler=mangler)
    proxy.start()
    port = None
    outputs: list[bytes | None] = [None] * iterations
    failed: list[tuple[int, str]] = []
    wrong: list[int] = []
    try:
        port = RecordingPort(proxy.path)
        qemu.resume(proc)
        # The first handshake waits for QEMU's boot and the firmware's self-test: a longer
        # timeout, and the host counters restart afterwards (they cover the iterations only).
        s = Session(port, timeout=max(timeout, 10.0), retries=retries)
        banner = s.handshake()
        startup = s.stats
        s.stats, s.timeout = Stats(), timeout
        if banner.model != man["model_sha256_16"] or (banner.in_size, banner.out_size) != (ins.shape[1], want.shape[1]):
            raise DeviceError(f"the emulated board runs {banner} , not {project}")
        for i in range(iterations):
            proxy.iteration = i
            try:
                _, out = s.run(ins[i].tobytes(), 1, 0)
            except DeviceError as e:
                failed.append((i, str(e)))
                if log:
                    log(f"iteration {i}: {e}")
                port.drain(0.1, 1.0)
                s.handshake()                      # a device that stays unreachable ends the soak
                continue
            outputs[i] = out
            if out != want[i].tobytes():
                wrong.append(i)
            if log and (i + 1) % 100 == 0:
                log(f"  {i + 1}/{iterations} iterations, {len(proxy.injections)} injected, "
                    f"{len(failed)} failed, {len(wrong)} wrong accepted, {time.monotonic() - t0:.0f} s")
        time.sleep(2 * timeout)                    # let the last replies cross the proxy
    finally:
        try:
            proxy.shutdown()
            if port is not None:
                port.close()
        finally:
            qemu.stop(proc)                        # whatever happened above
    wall = time.monotonic() - t0
    if proxy.error is not None:
        raise RuntimeError(f"the proxy failed: {proxy.error}")
    account(proxy.injections, port.lines)
    outcomes = Counter(f"{i.way}: {i.outcome}" for i in proxy.injections)
    klass = Counter(i.outcome.split(":")[0] for i in proxy.injections)
    st = s.stats
    return {
        "model": man.get("model"), "board": man["board"], "backend": man.get("backend"),
        "iterations": iterations, "rate": rate, "seed": seed, "timeout_s": timeout, "max_retries": retries,
        "frames": dict(proxy.frames), "frames_total": sum(proxy.frames.values()),
        "injected": len(proxy.injections),
        "injected_by_way": dict(Counter(i.way for i in proxy.injections)),
        "injected_by_kind": dict(Counter(i.kind for i in proxy.injections)),
        "detected": klass[DETECTED], "harmless": klass[HARMLESS], "unsafe": klass[UNSAFE],
        "pending": klass[PENDING],
        "outcomes": dict(sorted(outcomes.items())),
        "host": {"corrupt_replies": st.corrupt, "timeouts": st.timeouts, "resyncs": st.resyncs,
                 "resets": st.resets, "device_errors": len(st.device_errors),
                 "device_errors_by_code": dict(Counter(e.split(" ", 2)[1] for e in st.device_errors))},
        "startup": {"timeouts": startup.timeouts, "corrupt_replies": startup.corrupt},
        "retries": st.resyncs,
        "accepted": sum(o is not None for o in outputs),
        "failed": len(failed), "failures": failed,
        "wrong_accepted": len(wrong), "wrong_iterations": wrong,
        "orphan_replies": proxy.orphan_replies, "clean_errors": proxy.clean_errors,
        "unframed_bytes": proxy.unframed,
        "wall_s": wall,
        "outputs": [o.hex() if o is not None else None for o in outputs],
        "injections": [{k: (v.decode("latin-1") if isinstance(v, bytes) else v) for k, v in asdict(i).items()}
                       for i in proxy.injections],
    }


def report_lines(r: dict) -> list[str]:
    out = [(f"soak: {r['iterations']} iterations (load + run 1 + out, a new random input each) of {r['model']} "
            f"on {r['board']} ({r['backend']}), {100 * r['rate']:g}% of frames corrupted, seed {r['seed']}, "
            f"host timeout {r['timeout_s']:g} s, at most {r['max_retries']} retries per operation"),
           "",
           "| iterations | frames | injected | detected | harmless | retries | failed | wrong accepted | wall time |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
           (f"| {r['iterations']:,} | {r['frames_total']:,} | {r['injected']} | {r['detected']} | {r['harmless']} "
            f"| {r['retries']} | {r['failed']} | {r['wrong_accepted']} | {r['wall_s']:.0f} s |"),
           "",
           f"frames: {r['frames'][TO_HOST]:,} device->host, {r['frames'][TO_DEV]:,} host->device; injected "
           + ", ".join(f"{v} {k}" for k, v in sorted(r["injected_by_way"].items()))
           + " (" + ", ".join(f"{v} {k}" for k, v in sorted(r["injected_by_kind"].items())) + ")",
           "injections by outcome:"]
    out += [f"  {v:5d}  {k}" for k, v in r["outcomes"].items()]
    h = r["host"]
    out.append(f"host (tinygen.device.bench.Session): {h['corrupt_replies']} corrupted replies, "
               f"{h['device_errors']} ERR replies {h['device_errors_by_code']}, {h['timeouts']} timeouts, "
               f"{h['resyncs']} resyncs (= retries), {h['resets']} resets; first handshake (boot): "
               f"{r['startup']['timeouts']} timeouts, {r['startup']['corrupt_replies']} corrupted replies")
    if r["unsafe"] or r["pending"] or r["orphan_replies"] or r["clean_errors"]:
        out.append(f"ATTENTION: {r['unsafe']} unsafe, {r['pending']} pending, orphan replies {r['orphan_replies'][:3]}, "
                   f"ERR to clean commands {r['clean_errors'][:3]}")
    for i, msg in r["failures"]:
        out.append(f"failed iteration {i}: {msg}")
    verdict = r["wrong_accepted"] == 0 and r["unsafe"] == 0
    out.append(f"{'PASS' if verdict else 'FAIL'}: {r['accepted']} outputs accepted, {r['wrong_accepted']} wrong; "
               f"{r['detected'] + r['harmless']} of {r['injected']} injections accounted for "
               f"({r['detected']} detected, {r['harmless']} provably harmless)")
    return out


def main(argv=None) -> int:
    import shutil

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=0.01, help="probability that a frame is corrupted (0.01)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=1.0, help="host: seconds per reply line (1)")
    ap.add_argument("--retries", type=int, default=3, help="host: retries per operation (3, as tinygen bench)")
    ap.add_argument("--project", type=Path, help="an existing mps2-an505 project (default: build ad01_int8)")
    ap.add_argument("--json", type=Path, help="write the full record (every injection) here")
    args = ap.parse_args(argv)
    missing = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        print(f"soak skipped: {', '.join(missing)} not installed (make apt)")
        return SKIP
    with tempfile.TemporaryDirectory(prefix="tg_soak_") as tmp:
        proj = args.project
        if proj is None:
            if not MODEL.is_file():
                print(f"soak skipped: {MODEL} not found (the shared MLPerf Tiny models live in ../shared)")
                return SKIP
            proj = build_project(MODEL, Path(tmp) / "proj")
        r = soak(proj, args.iterations, args.rate, args.seed, args.timeout, args.retries)
    print()
    for line in report_lines(r):
        print(line)
    if args.json:
        args.json.write_text(json.dumps(r, indent=1) + "\n")
    return 0 if r["wrong_accepted"] == 0 and r["unsafe"] == 0 and r["pending"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
