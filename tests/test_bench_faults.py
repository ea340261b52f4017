"""Faults between ``tinygen bench`` and the board, each with its documented outcome in bounded time.

A pty proxy sits between QEMU's pty and the host (pty.openpty + a forwarding thread) and
corrupts bytes (retried, the run succeeds), goes silent (DeviceError: silent), or closes
mid-run (DeviceError: port vanished). A real reset through QEMU's monitor mid-run makes the
host re-handshake and resend the input. A wrong model hash and an absent port are refused.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import threading
import time
import tty

import pytest
from test_bench_qemu import Emu, _bench, project  # noqa: F401 (skips without QEMU)

from tinygen.cli import main
from tinygen.device import flash

pytestmark = pytest.mark.slow
FAST = ("--timeout", "2", "--retries", "2", "-n", "3", "-w", "0", "--vectors", "2")


class Proxy(threading.Thread):
    """Forwards bytes between QEMU's pty (``dev``) and a new pty whose path is ``self.path``.

    mode: None (pass through), "corrupt" (overwrite the bytes at the given offsets of each
    direction), "silent" (drop everything after ``after`` bytes to the host), "close" (close
    the host's pty after ``after`` bytes). ``on_bytes(n)`` sees the count of bytes to the host.
    """

    def __init__(self, dev: str, mode: str | None = None, after: int = 0, to_host: tuple[int, ...] = (),
                 to_dev: tuple[int, ...] = (), on_bytes=None) -> None:
        super().__init__(daemon=True)
        self.dev = os.open(dev, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.dev)
        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.mode, self.after, self.on_bytes = mode, after, on_bytes
        self.hits = {"host": sorted(to_host), "dev": sorted(to_dev)}
        self.count = {"host": 0, "dev": 0}
        self.corrupted = 0
        self.stop_evt = threading.Event()
        self.closed = False

    def _mangle(self, data: bytes, way: str) -> bytes:
        base, out = self.count[way], bytearray(data)
        for off in self.hits[way]:
            if base <= off < base + len(out) and out[off - base] not in b"\r\n":
                out[off - base] = ord("#")
                self.corrupted += 1
        self.count[way] += len(out)
        return bytes(out)

    def run(self) -> None:
        while not self.stop_evt.is_set() and not self.closed:
            try:
                r, _, _ = select.select([self.dev, self.master], [], [], 0.05)
            except (OSError, ValueError):
                return
            try:
                if self.dev in r:
                    data = os.read(self.dev, 4096)
                    if self.mode == "silent" and self.count["host"] >= self.after:
                        continue
                    if self.mode == "close" and self.count["host"] >= self.after:
                        self.closed = True
                        os.close(self.master)
                        os.close(self.slave)
                        return
                    data = self._mangle(data, "host")
                    os.write(self.master, data)
                    if self.on_bytes:
                        self.on_bytes(self.count["host"])
                if self.master in r:
                    data = os.read(self.master, 4096)
                    if self.mode == "silent" and self.count["host"] >= self.after:
                        continue
                    os.write(self.dev, self._mangle(data, "dev"))
            except BlockingIOError:
                continue
            except OSError:
                if self.stop_evt.is_set():
                    return
                time.sleep(0.01)

    def shutdown(self) -> None:
        self.stop_evt.set()
        self.join(2)
        for fd in ((self.dev,) if self.closed else (self.dev, self.master, self.slave)):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def ad01(tmp_path_factory):
    return project(tmp_path_factory, "mps2-an505")


def _run_through(proj, capsys, **proxy_kw):
    emu = Emu(proj, "mps2-an505")
    px = Proxy(emu.pty, **proxy_kw)
    px.start()
    try:
        t0 = time.monotonic()
        rc = _bench(proj, px.path, *FAST, resume=emu.resume)
        elapsed = time.monotonic() - t0
    finally:
        px.shutdown()
        emu.stop()
    cap = capsys.readouterr()
    return rc, elapsed, cap.out, cap.err, px


def test_corrupted_bytes_are_retried(ad01, capsys):
    rc, elapsed, out, err, px = _run_through(ad01, capsys, mode="corrupt",
                                             to_host=(700, 1500, 2600, 4000), to_dev=(150, 900, 2000))
    assert rc == 0, out + err
    assert px.corrupted >= 5 and elapsed < 60
    rec = json.loads((ad01 / "bench.json").read_text())
    assert rec["outputs_match"] is True
    assert rec["link"]["corrupt_replies"] + rec["link"]["resyncs"] >= 2
    assert "corrupted replies retried" in out


def test_device_goes_silent(ad01, capsys):
    rc, elapsed, out, err, _ = _run_through(ad01, capsys, mode="silent", after=3000)
    assert rc == 7 and elapsed < 30, (elapsed, err)
    line = err.strip().splitlines()[-1]
    assert line.startswith("tinygen: error: ") and "is silent" in line and "within 2 s" in line


def test_port_vanishes_mid_run(ad01, capsys):
    rc, elapsed, out, err, _ = _run_through(ad01, capsys, mode="close", after=3000)
    assert rc == 7 and elapsed < 30, (elapsed, err)
    assert "vanished mid-run" in err and "Traceback" not in err


def test_device_reset_mid_run(ad01, capsys):
    emu = Emu(ad01, "mps2-an505")
    fired = []

    def maybe_reset(n: int) -> None:
        if n > 1500 and not fired:
            fired.append(n)
            flash.reset_emulator(emu.proc)
    px = Proxy(emu.pty, on_bytes=maybe_reset)
    px.start()
    try:
        rc = _bench(ad01, px.path, *FAST, resume=emu.resume)
    finally:
        px.shutdown()
        emu.stop()
    cap = capsys.readouterr()
    assert fired and rc == 0, cap.out + cap.err
    rec = json.loads((ad01 / "bench.json").read_text())
    assert rec["link"]["resets"] >= 1 and rec["outputs_match"] is True
    assert "device reset during" in cap.out


def test_wrong_model_refused(ad01, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(ad01, other)
    man = json.loads((other / "manifest.json").read_text())
    real = man["model_sha256_16"]
    man["model_sha256_16"] = "0123456789abcdef"
    (other / "manifest.json").write_text(json.dumps(man))
    emu = Emu(ad01, "mps2-an505")
    try:
        rc = _bench(other, emu.pty, *FAST, resume=emu.resume)
    finally:
        emu.stop()
    err = capsys.readouterr().err
    assert rc == 7 and real in err and "0123456789abcdef" in err and "flash this project" in err


def test_port_absent(ad01, capsys):
    t0 = time.monotonic()
    rc = main(["bench", "--port", "/dev/ttyTG-nope", str(ad01), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 7 and "/dev/ttyTG-nope does not exist; available ports:" in err and time.monotonic() - t0 < 30
