"""libFuzzer (+ ASan, UBSan) on the device-side bench parser, firmware/tg_bench.c: a short run
of ``make -C fuzz fuzz-bench`` (CI runs it longer). Skipped without clang
(sudo apt-get install clang), unless TINYGEN_REQUIRE_FUZZ=1."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if (shutil.which("clang") is None or shutil.which("make") is None) and os.environ.get("TINYGEN_REQUIRE_FUZZ") != "1":
    pytest.skip("clang/make not installed: sudo apt-get install clang make (libFuzzer ships with clang)",
                allow_module_level=True)


def test_fuzz_bench_parser_short_run(tmp_path):
    seconds = int(os.environ.get("TINYGEN_FUZZ_SECONDS", "10"))
    r = subprocess.run(["make", "-C", str(ROOT / "fuzz"), "fuzz-bench", f"FUZZ_TIME={seconds}", f"BUILD={tmp_path}"],
                       capture_output=True, text=True, timeout=seconds + 120)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "Done " in log and "stat::number_of_executed_units" in log, log[-2000:]
    runs = int(log.split("stat::number_of_executed_units:")[1].split()[0])
    assert runs > 1000, log[-2000:]
    assert not list((tmp_path / "artifacts").glob("*")), "libFuzzer left crash artifacts"


def test_fuzz_harness_catches_an_overflow(tmp_path):
    """The harness is not toothless: a parser with an off-by-one in its line buffer is caught."""
    src = (ROOT / "firmware" / "tg_bench.c").read_text()
    bad = src.replace("if (b->len < TG_BENCH_LINE_MAX) {", "if (b->len < TG_BENCH_LINE_MAX + 8u) {")
    assert bad != src
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "tg_bench.c").write_text(bad)
    for f in ("tg_bench.h", "tg_bench_internal.h", "tg_bench_mlperf.c"):
        shutil.copy(ROOT / "firmware" / f, fw / f)
    exe = tmp_path / "bad_fuzz"
    r = subprocess.run(["clang", "-g", "-O1", "-std=c99", "-fsanitize=fuzzer,address,undefined", f"-I{fw}",
                        f"-I{ROOT / 'fuzz'}", str(ROOT / "fuzz" / "bench_fuzz.c"), str(fw / "tg_bench.c"),
                        str(fw / "tg_bench_mlperf.c"), "-o", str(exe)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    crash = tmp_path / "long_line"
    crash.write_bytes(b"\x05" + b"a" * 700 + b"\n")
    r = subprocess.run([str(exe), str(crash)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and ("AddressSanitizer" in r.stderr or "deadly signal" in r.stderr), r.stderr[-1500:]
