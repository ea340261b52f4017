"""Robustness round 2 (issue 15): a bench host that trusts nothing from the device.

A fake device (:class:`FakeDevice`) speaks the bench protocol on a pseudo-terminal and misbehaves
on one command: endless CRC-valid lines, unparsable fields, bad banners, resets that change the
tensor sizes, floods without line ends, silence. Each is one ``tinygen: error:`` line, exit 7,
within a bounded time.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import select
import threading
import time
import tty

import pytest
from test_robustness import fc, one_error_line

from tinygen import cli
from tinygen.device import protocol as P
from tinygen.errors import DeviceError

# ---- 2. a bench host that trusts nothing from the device ----------------------------------------


class FakeDevice(threading.Thread):
    """Speaks the bench protocol on a pty. ``faults`` maps a command name (or "banner") to a
    function ``(dev, args) -> None`` that answers instead of the good device."""

    def __init__(self, model_bytes: bytes, vectors: int = 1, seed: int = 0, faults=None, banner: str | None = None):
        super().__init__(daemon=True)
        from tinygen import reference

        xs = reference.random_inputs(model_bytes, vectors, seed=seed)
        ins, outs = reference.pack(xs), reference.pack(reference.run(model_bytes, xs))
        self.table = {ins[i].tobytes(): outs[i].tobytes() for i in range(len(ins))}
        self.in_size, self.out_size = ins.shape[1], outs.shape[1]
        self.model = hashlib.sha256(model_bytes).hexdigest()[:16]
        self.banner_text = banner or (f"TG_BENCH v1 model={self.model} board=mps2-an505 clock=25000000 "
                                      f"counter=systick in={self.in_size} out={self.out_size} layers=1 maxline=600")
        self.faults = faults or {}
        self.master, slave = pty.openpty()
        tty.setraw(slave)
        self.slave = slave
        self.path = os.ttyname(slave)
        os.set_blocking(self.master, False)
        self.stop_evt = threading.Event()
        self.inp = bytearray(self.in_size)
        self.out = b""
        self.sent = 0

    def send(self, text: str, crc: bool = True) -> None:
        self.send_raw(((P.with_crc(text) if crc else text) + "\r\n").encode("latin-1"))

    def send_raw(self, data: bytes) -> None:
        while data and not self.stop_evt.is_set():
            try:
                n = os.write(self.master, data)
                data = data[n:]
                self.sent += n
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                return

    def flood(self, text: str, crc: bool = True) -> None:
        while not self.stop_evt.is_set():
            self.send(text, crc)

    def banner(self) -> None:
        self.send(self.banner_text)

    def answer(self, cmd: str) -> None:
        name, *args = cmd.split()
        if name in self.faults:
            self.faults[name](self, args)
        elif name == "hello":
            self.banner()
            self.send(f"OK hello {args[0]}")
        elif name == "load":
            data = bytes.fromhex(args[1])
            off = int(args[0])
            self.inp[off:off + len(data)] = data
            self.send(f"OK load {off} {len(data)}")
        elif name == "run":
            n, w = int(args[0]), int(args[1])
            self.out = self.table[bytes(self.inp)]
            for i in range(w):
                self.send(f"W {i} 1000")
            for i in range(n):
                self.send(f"T {i} 1000")
            self.send(f"OK run {n} {w} total={1000 * n} min=1000 max=1000 out={P.crc32(self.out):08x}")
        elif name == "out":
            for off in range(0, len(self.out), 64):
                self.send(f"D {off} {self.out[off:off + 64].hex()}")
            self.send(f"OK out {len(self.out)} crc={P.crc32(self.out):08x}")
        elif name == "layers":
            self.send("ERR 7 no per-layer timing: build with PROFILE=1 (-DTG_PROFILE)")

    def run(self) -> None:
        buf = bytearray()
        while not self.stop_evt.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                buf += os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                continue
            while b"\n" in buf:
                line, _, rest = bytes(buf).partition(b"\n")
                buf = bytearray(rest)
                text = P.check(line.decode("latin-1").strip())
                if text is not None:
                    self.answer(text)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop_evt.set()
        self.join(5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture(scope="module")
def bench_project(tmp_path_factory):
    """A board project (not compiled) of the small FC model: manifest.json + model.tflite."""
    d = tmp_path_factory.mktemp("bench")
    (d / "fc.tflite").write_bytes(fc())
    assert cli.main(["build", str(d / "fc.tflite"), "--board", "mps2-an505", "--backend", "portable",
                     "-o", str(d / "proj"), "--no-compile"]) == 0
    return d / "proj"


def _bench_fake(proj, capsys, timeout=2.0, retries=1, runs=3, **dev_kw):
    with FakeDevice((proj / "model.tflite").read_bytes(), **dev_kw) as dev:
        t0 = time.monotonic()
        code = cli.main(["bench", str(proj), "--port", dev.path, "--timeout", str(timeout), "--retries", str(retries),
                         "-n", str(runs), "-w", "0", "--vectors", "1", "--no-progress"])
        elapsed = time.monotonic() - t0
    cap = capsys.readouterr()
    return code, elapsed, cap.out, cap.err


def test_fake_device_good_run(bench_project, capsys):
    """The fake device itself is right: a clean run, bit-exact, bench.json written."""
    code, _, out, err = _bench_fake(bench_project, capsys)
    assert code == 0, err
    assert "bit-exact with the TFLite reference" in out
    assert json.loads((bench_project / "bench.json").read_text())["outputs_match"] is True


def _ok_forever(dev, args):
    dev.flood("OK load 0 1")


def _d_forever(dev, args):
    dev.flood("D 0 " + "00" * 64)


def _t_not_a_number(dev, args):
    dev.send("T 0 12x4")
    dev.send("OK run 1 0 total=0 min=0 max=0 out=00000000")


def _reset_then_huge(dev, args):
    """The device resets in reply to run, then claims 2^40 output bytes."""
    dev.send("TG_BOOT reset", crc=False)
    dev.banner_text = dev.banner_text.replace(f"out={dev.out_size}", f"out={1 << 40}")
    dev.banner()


def _reset_then_other_size(dev, args):
    dev.send("TG_BOOT reset", crc=False)
    dev.banner_text = dev.banner_text.replace(f"out={dev.out_size}", f"out={dev.out_size + 1}")
    dev.banner()


def _resets_forever(dev, args):
    for _ in range(3):
        dev.send("TG_BOOT reset", crc=False)
        dev.banner()


def _no_line_end(dev, args):
    while not dev.stop_evt.is_set() and dev.sent < 3 << 20:
        dev.send_raw(b"x" * 65536)


def _long_lines(dev, args):
    while not dev.stop_evt.is_set() and dev.sent < 3 << 20:
        dev.send("x" * 65536, crc=False)


BENCH_FAULTS = [
    # (id, faults, banner override, words in the one-line message, max seconds)
    ("run-endless-ok-lines", {"run": _ok_forever}, None, ["floods the link", "'run'"], 20),
    ("out-endless-d-lines", {"out": _d_forever}, None, ["floods the link", "'out'"], 20),
    ("t-line-not-a-number", {"run": _t_not_a_number}, None, ["run failed", "unparsable run reply"], 20),
    ("banner-clock-0", {}, "TG_BENCH v1 model=M board=x clock=0 counter=systick in=16 out=5 layers=1 maxline=600",
     ["invalid banner", "clock=0"], 20),
    ("reset-then-2^40-out-bytes", {"run": _reset_then_huge}, None, ["invalid banner", f"out={1 << 40}"], 20),
    ("reset-then-other-out-size", {"run": _reset_then_other_size}, None, ["changed during the run", "out_size"], 20),
    ("hello-resets-forever", {"hello": _resets_forever}, None, ["keeps resetting"], 20),
    ("hello-1MB-without-line-end", {"hello": _no_line_end}, None, ["floods the link"], 30),
    ("hello-64KB-lines", {"hello": _long_lines}, None, ["floods the link"], 30),
    ("silent", {"hello": lambda dev, args: None}, None, ["is silent"], 20),
]


@pytest.mark.parametrize("case_id, faults, banner, words, limit", BENCH_FAULTS, ids=[c[0] for c in BENCH_FAULTS])
def test_bench_untrusted_device(case_id, faults, banner, words, limit, bench_project, capsys):
    """Each hostile device: one ``tinygen: error:`` line, exit 7, within a bounded time, no MemoryError."""
    if banner is not None:
        banner = banner.replace("model=M", "model=" + hashlib.sha256((bench_project / "model.tflite").read_bytes()).hexdigest()[:16])
    code, elapsed, out, err = _bench_fake(bench_project, capsys, faults=faults, banner=banner)
    line = one_error_line(err)
    print(f"\n{case_id}: exit {code} in {elapsed:.1f} s: {line}")
    assert code == DeviceError.exit_code, line
    for w in words:
        assert w in line, line
    assert elapsed < limit

