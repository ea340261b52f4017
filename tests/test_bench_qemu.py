"""``tinygen bench`` end to end: QEMU boards on a pty, pyserial, the real firmware.

The AD01 model (MLPerf Tiny anomaly detection, 1.7 M instructions per inference) keeps it
quick. QEMU figures are instruction counts (-icount proxy), not cycles. Skipped when
arm-none-eabi-gcc, make or qemu-system-arm is missing (TINYGEN_REQUIRE_QEMU=1 forces);
the cmsis-nn variant needs CMSIS_NN_PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import numpy as np
import pytest
from conftest import backends, shared_model

_MISSING = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
if _MISSING and os.environ.get("TINYGEN_REQUIRE_QEMU") != "1":
    pytest.skip(f"{', '.join(_MISSING)} not installed (sudo apt-get install gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi qemu-system-arm make)", allow_module_level=True)
serial = pytest.importorskip("serial")

from tinygen import qemu  # noqa: E402
from tinygen.boards import load_board  # noqa: E402
from tinygen.cli import main  # noqa: E402
from tinygen.device import flash  # noqa: E402

pytestmark = pytest.mark.slow
_BUILT: dict = {}


def project(tmp_path_factory, board: str, backend: str = "portable", model: str = "ad01_int8.tflite"):
    """Builds (once per session) ``model`` for ``board``; returns the project folder."""
    key = (board, backend, model)
    if key not in _BUILT:
        out = tmp_path_factory.mktemp(f"bench-{board}-{backend}") / "proj"
        rc = main(["build", str(shared_model(model)), "--board", board, "--backend", backend, "-o", str(out)])
        assert rc == 0 and (out / "build" / "firmware.elf").is_file() and (out / "model.tflite").is_file()
        _BUILT[key] = out
    return _BUILT[key]


class Emu:
    """QEMU in bench mode on a pty, started paused; resumes when the host has opened the port."""

    def __init__(self, proj, board: str) -> None:
        self.proc, self.pty = flash.start_emulator(proj / "build" / "firmware.elf", load_board(board), paused=True)

    def resume(self) -> None:
        qemu.resume(self.proc)

    def stop(self) -> None:
        qemu.stop(self.proc)


def _bench(proj, port, *extra, resume=None):
    """tinygen bench through the CLI; resume() runs right after the port is open (no lost bytes)."""
    from tinygen.device import bench as B

    orig = B.Port

    class Opening(orig):  # type: ignore[misc, valid-type]
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            if resume:
                resume()
    B.Port = Opening
    try:
        return main(["bench", "--port", port, str(proj), "--no-progress", *extra])
    finally:
        B.Port = orig


def _check_report(proj, out: str, board: str, runs: int):
    rec = json.loads((proj / "bench.json").read_text())
    man = json.loads((proj / "manifest.json").read_text())
    assert rec["outputs_match"] is True and rec["mismatches"] == []
    assert rec["model_hash"] == man["model_sha256_16"] and rec["board"] == board and rec["emulated"] is True
    assert rec["unit"] == qemu.INSTRUCTIONS_LABEL and rec["counter"] == "systick"
    assert len(rec["ticks"]) == runs + rec["vectors"] - 1
    ins = np.array(rec["instructions"])
    assert ins.min() > 0.5 * man["macs"]                 # at least a MAC every other instruction... at most 2
    assert ins.max() < 1.02 * ins.min()                  # -icount: deterministic up to one SysTick tick per call
    lat = rec["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert abs(lat["mean"] - ins.mean() / 1e6) < 0.01   # virtual ms = instructions x 1 ns
    assert len(rec["layers"]) == len(man["layers"]) and sum(ly["ticks"] for ly in rec["layers"]) <= max(rec["ticks"])
    assert rec["memory"]["flash_bytes"] > man["weights_bytes"] and rec["memory"]["ram_bytes"] > man["arena_bytes"]
    assert "bit-exact with the TFLite reference" in out and "NOT cycles" in out
    assert "latency ms" in out and "p99" in out and "MACs per instruction" in out
    return rec


@pytest.mark.parametrize("board", ["mps2-an505", "netduinoplus2"])
def test_bench_over_pty(tmp_path_factory, capsys, board):
    proj = project(tmp_path_factory, board)
    emu = Emu(proj, board)
    try:
        t0 = time.monotonic()
        rc = _bench(proj, emu.pty, "-n", "5", "-w", "1", "--vectors", "3", resume=emu.resume)
        out = capsys.readouterr().out
        assert rc == 0, out
        assert time.monotonic() - t0 < 90
    finally:
        emu.stop()
    _check_report(proj, out, board, 5)


@pytest.mark.parametrize("backend", backends())
def test_bench_sim_with_inputs_file(tmp_path_factory, tmp_path, capsys, backend):
    """--sim starts and stops QEMU itself; --inputs vectors are used as given."""
    proj = project(tmp_path_factory, "mps2-an505", backend)
    x = np.random.default_rng(3).integers(-128, 128, (2, 1, 640), dtype=np.int8)
    np.save(tmp_path / "x.npy", x)
    rc = main(["bench", "--sim", str(proj), "-n", "3", "-w", "0", "--inputs", str(tmp_path / "x.npy"), "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0, out
    rec = _check_report(proj, out, "mps2-an505", 3)
    assert rec["vectors"] == 2 and rec["backend"] == backend


def test_mlperf_tiny_runner_syntax(tmp_path_factory):
    """MLPerf Tiny's runner commands (name%, profile%, db load N%, db HEX%, infer N W%, results%)
    on the real firmware; results% equals the reference output, dequantized to 3 decimals."""
    from tinygen import reference
    from tinygen.device import protocol as P

    proj = project(tmp_path_factory, "mps2-an505")
    man = json.loads((proj / "manifest.json").read_text())
    mb = (proj / "model.tflite").read_bytes()
    x = reference.random_inputs(mb, 1, seed=11)
    y = reference.pack(reference.run(mb, x))[0]
    emu = Emu(proj, "mps2-an505")
    try:
        s = serial.Serial(emu.pty, 115200, timeout=10)
        emu.resume()

        def cmd(c: str) -> list[str]:
            s.write(c.encode())
            lines = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                ln = s.readline().decode("latin-1").strip()
                if ln == P.MLPERF_READY:
                    return lines
                if ln.startswith(("m-", "e-")):
                    lines.append(ln)
            raise AssertionError(f"no m-ready after {c!r}: {lines}")
        boot = cmd("")                                   # the boot announcement ends with m-ready too
        assert boot[-1] == "m-init-done" and boot[0] == "m-timestamp-mode-performance", boot
        assert cmd("name%") == ["m-name-dut-[tinygen]"]
        assert cmd("profile%") == ["m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[ad01]"]
        assert cmd("infer 1 0%") == [f"e-[Input db has 0 elements, expected {man['input_bytes']}]"]
        data = x.tobytes()
        replies = [cmd(c) for c in P.mlperf_db_commands(data)]
        assert replies[0] == [f"m-[Expecting {len(data)} bytes]"] and replies[-1] == ["m-load-done"]
        assert all(r == [] for r in replies[1:-1])
        got = cmd("infer 3 1%")
        assert got[:3] == ["m-warmup-start-1", "m-warmup-done", "m-infer-start-3"]
        t0, t1 = (int(g.split("-")[-1]) for g in got[3:5])
        assert got[5] == "m-infer-done" and t1 > t0
        sc, zp = man["output"]["scale"][0], man["output"]["zero_point"][0]
        want = [float((int(v) - zp) * np.float32(sc)) for v in y]
        vals = [float(v) for v in got[6][len("m-results-["):-1].split(",")]
        assert len(vals) == len(want) and np.allclose(vals, want, atol=0.0011)
        assert cmd("results%") == [got[6]]
        assert cmd("bogus%") == ["e-[Unknown command: bogus]"]
        s.close()
    finally:
        emu.stop()


def test_tinygen_run_still_exits(tmp_path_factory):
    """Without -append tg-bench the firmware exits after the self-test: tinygen run works."""
    proj = project(tmp_path_factory, "mps2-an505")
    r = qemu.run_selftest(proj / "build" / "firmware.elf", load_board("mps2-an505"), timeout=60)
    assert r.ok and r.match and r.exit_code == 0 and "TG_BENCH" not in r.output


def test_flash_detach_emulated(tmp_path_factory, capsys):
    proj = project(tmp_path_factory, "mps2-an505")
    assert main(["flash", str(proj), "--detach"]) == 0
    out = capsys.readouterr().out
    pid = int(out.split("pid ")[1].split(")")[0])
    pty = out.split("serial port: ")[1].split()[0]
    try:
        assert _bench(proj, pty, "-n", "2", "-w", "0", "--vectors", "1") == 0   # boot banner lost: hello re-handshakes
    finally:
        os.kill(pid, 15)
