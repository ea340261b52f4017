"""The bench firmware (firmware/tg_bench.c) built for the host with a fake model
(fuzz/bench_host.c: output[i] = input[i % in] ^ 7i) and driven through stdin: the set-up shared
by tests/test_bench_protocol.py (the native protocol) and tests/test_mlperf_dut.py (MLPerf Tiny
DUT behaviour). Needs gcc and make."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def build(tmp_path_factory, name: str = "benchhost") -> Path:
    """``make -C fuzz bench-host`` into a fresh folder; the program's path (skips without gcc/make)."""
    if shutil.which("gcc") is None or shutil.which("make") is None:
        pytest.skip("gcc/make not installed (sudo apt-get install gcc make)")
    out = tmp_path_factory.mktemp(name)
    r = subprocess.run(["make", "-C", str(ROOT / "fuzz"), "bench-host", f"BUILD={out}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return out / "bench_host"


def talk(exe: Path, data: bytes, *args: int) -> list[str]:
    """The non-empty lines the program prints for ``data`` on stdin (args: in out [mode model energy])."""
    r = subprocess.run([str(exe), *map(str, args)], input=data, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr.decode()
    return [ln for ln in r.stdout.decode("latin-1").replace("\r", "").split("\n") if ln]


def fake_out(x, out_size: int) -> np.ndarray:
    """The fake model's output for input bytes ``x``: output[i] = x[i % len(x)] ^ 7i (int8)."""
    u = np.frombuffer(bytes(x), np.uint8) if isinstance(x, (bytes, bytearray)) else np.asarray(x).view(np.uint8)
    return np.array([(int(u[i % len(u)]) ^ (i * 7)) & 0xFF for i in range(out_size)], np.uint8).view(np.int8)
