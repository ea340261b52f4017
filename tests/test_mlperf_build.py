"""``tinygen build --mlperf``: the id and set-up recorded in the manifest, tg_bench_model.h rendered
from its template, the profile marks left out, the generated README, clear errors; deterministic."""

from __future__ import annotations

import json

import pytest
from conftest import shared_model

from tinygen.cli import main


def _build(tmp_path, capsys, *extra, model="ad01_int8.tflite", board="nucleo-u575"):
    out = tmp_path / "p"
    rc = main(["build", str(shared_model(model)), "--board", board, "--backend", "portable", "-o", str(out),
               "--no-compile", *extra])
    return rc, out, capsys.readouterr()


def test_mlperf_ad01_project(tmp_path, capsys):
    rc, out, cap = _build(tmp_path, capsys, "--mlperf", "ad01")
    assert rc == 0 and "MLPerf Tiny: ad01 (float32 db input, result mse)" in cap.out
    man = json.loads((out / "manifest.json").read_text())
    assert man["mlperf"] == {"model": "ad01", "input": "float32", "result": "mse", "energy": False,
                             "db_bytes_per_element": 4}
    assert man["profile"] is False
    h = (out / "src" / "tg_bench_model.h").read_text()
    i0, o0 = man["input"], man["output"]
    assert '#define TG_BENCH_MLPERF_MODEL "ad01"' in h and "TG_BENCH_MLPERF_IN_FLOAT32" in h
    assert "TG_BENCH_MLPERF_RES_MSE" in h and "#define TG_BENCH_DB_SIZE (4u * TG_INPUT_SIZE)" in h
    assert f"#define TG_BENCH_IN_SCALE {i0['scale'][0]!r}f" in h and f"#define TG_BENCH_IN_ZP {i0['zero_point'][0]}" in h
    assert f"#define TG_BENCH_OUT_ZP {o0['zero_point'][0]}" in h
    assert "PROFILE ?= 0" in (out / "Makefile").read_text()
    assert "-DTG_PROFILE" not in (out / "platformio.ini").read_text()
    readme = (out / "README.md").read_text()
    for needle in ("# ad01_int8 on nucleo-u575", "make", "pio run", "tinygen flash", "tinygen bench",
                   "MLPerf Tiny DUT for **ad01**", "m-model-[ad01]", "| `src/tg_bench_model.h` |",
                   "| `platformio.ini` |", "ststm32@19.6.0"):
        assert needle in readme, needle
    assert "| |" not in readme                                      # every listed file is described
    listed = {ln.split("`")[1] for ln in readme.splitlines() if ln.startswith("| `")}
    assert listed == {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {".tinygen-files"}


def test_no_mlperf_id_is_said_not_guessed(tmp_path, capsys):
    rc, out, _ = _build(tmp_path, capsys, model="kws_ref_model.tflite")
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    assert man["mlperf"] is None and man["profile"] is True
    h = (out / "src" / "tg_bench_model.h").read_text()
    assert "#define TG_BENCH_MLPERF_MODEL 0" in h and "kws01" not in h   # not guessed from the file name
    assert "PROFILE ?= 1" in (out / "Makefile").read_text()


def test_mlperf_builds_are_deterministic(tmp_path, capsys):
    a = _build(tmp_path / "a", capsys, "--mlperf", "ic01", model="kws_ref_model.tflite")[1]
    b = _build(tmp_path / "b", capsys, "--mlperf", "ic01", model="kws_ref_model.tflite")[1]
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


def test_energy_mode_project(tmp_path, capsys):
    rc, out, _ = _build(tmp_path, capsys, "--mlperf", "ad01", "--mlperf-energy", board="nucleo-l4r5zi")
    assert rc == 0
    cfg = (out / "src" / "board_config.h").read_text()
    assert "#define TG_UART_BAUD 9600u" in cfg and "#define TG_TIMESTAMP_PIN 13u /* PF13 */" in cfg
    assert "monitor_speed = 9600" in (out / "platformio.ini").read_text()
    assert "low pulses on PF13" in (out / "README.md").read_text()


@pytest.mark.parametrize("args, board, needle", [
    (["--mlperf", "ad01"], "nucleo-u575", None),
    (["--mlperf", "ad01", "--mlperf-energy"], "mps2-an505", "mps2-an505 has no MLPerf timestamp pin"),
    (["--mlperf-energy"], "nucleo-u575", "--mlperf-energy needs --mlperf"),
    (["--mlperf", "ad01"], "host", "--mlperf builds firmware for a board"),
])
def test_mlperf_errors_are_one_line(tmp_path, capsys, args, board, needle):
    model = "kws_ref_model.tflite" if needle is None else "ad01_int8.tflite"
    rc, _, cap = _build(tmp_path, capsys, *args, model=model, board=board)
    if needle is None:   # KWS (12 outputs) cannot give an anomaly score against its 490 inputs
        needle = "needs one int8 output of the input's size"
    assert rc != 0
    err = cap.err.strip()
    assert err.startswith("tinygen: error:") and "\n" not in err and needle in err, err
