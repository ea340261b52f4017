"""MLPerf Tiny DUT behaviour of firmware/tg_bench.c on the host (fuzz/bench_host.c, fake model
output[i] = input[i % in] ^ 7i, output scale 1/256, zero point -128; float32 input scale 0.5,
zero point -3): the db -> int8 input conversions (ic01/vww01 uint8 - 128, ad01 float32
quantized as the reference DUTs' QuantizeFloatToInt8), the ad01 anomaly score, the timed
region, no model id, energy-mode timestamps. Needs gcc and make."""

from __future__ import annotations

import struct

import benchhost
import numpy as np
import pytest
from benchhost import fake_out

from tinygen import mlperf
from tinygen.device import protocol as P

F32 = np.float32


@pytest.fixture(scope="module")
def dut(tmp_path_factory):
    exe = benchhost.build(tmp_path_factory, "mlperfhost")

    def talk(cmds: str, in_size: int, out_size: int, mode: int, model: int = 1, energy: int = 0) -> list[str]:
        return benchhost.talk(exe, cmds.encode(), in_size, out_size, mode, model, energy)[1:]  # after the TG_BENCH banner
    return talk


def fmt3(v) -> str:
    """tg_bench.c's %0.3f without printf, in float32: (uint64)(|v| * 1000 + 0.5)."""
    a = abs(F32(v))
    milli = int(F32(F32(a * F32(1000)) + F32(0.5)))
    sign = "-" if F32(v) < 0 and milli else ""
    return f"{sign}{milli // 1000}.{milli % 1000:03d}"


def quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """QuantizeFloatToInt8 (mlcommons/tiny benchmark/util/quantization_helpers.h):
    round(x / scale) + zp, half away from zero, saturated; NaN -> zp."""
    q = (x.astype(F32) / F32(scale)).astype(np.float64)
    r = np.where(np.isnan(q), 0, np.sign(q) * np.floor(np.abs(q) + 0.5))
    return np.clip(r + zp, -128, 127).astype(np.int8)


def db(data: bytes) -> str:
    return "".join(P.mlperf_db_commands(data, chunk=31))


def infer_results(lines: list[str]) -> str:
    return next(ln for ln in lines if ln.startswith("m-results-["))


def test_ic01_vww01_uint8_pixels_minus_128(dut):
    px = bytes([0, 1, 127, 128, 129, 200, 255, 64])
    got = dut(db(px) + "infer 1 0%in\n", 8, 8, mode=1)
    x = (np.frombuffer(px, np.uint8).astype(np.int16) - 128).astype(np.int8)
    assert P.check(got[-2]) == f"D 0 {x.tobytes().hex()}"      # the int8 input the model ran on
    y = fake_out(x, 8)
    assert infer_results(got) == "m-results-[" + ",".join(fmt3((int(v) + 128) / 256) for v in y) + "]"


def test_kws01_int8_as_is(dut):
    raw = bytes([0, 1, 127, 128, 255])
    got = dut(db(raw) + "infer 1 0%in\n", 5, 3, mode=0)
    assert P.check(got[-2]) == f"D 0 {raw.hex()}"


def test_ad01_float32_quantized_on_device(dut):
    # ties round away from zero, saturation both ways, NaN -> zero point, negative zero
    x = np.array([0.25, -0.25, 0.75, -0.75, 1e9, -1e9, np.nan, -0.0, 3.1, -7.49, 0.2499999, 63.0], F32)
    n = len(x)
    got = dut(db(x.tobytes()) + "infer 1 0%in\n", n, n, mode=2)
    assert got[4] == f"m-[Expecting {4 * n} bytes]"
    q = quantize(x, 0.5, -3)
    assert list(q[:8]) == [-2, -4, -1, -5, 127, -128, -3, -3]
    assert P.check(got[-2]) == f"D 0 {q.tobytes().hex()}"


def test_ad01_one_score_mse(dut):
    x = np.random.default_rng(5).normal(0, 20, 64).astype(F32)
    n = len(x)
    got = dut(db(x.tobytes()) + "infer 2 1%results%", n, n, mode=2)
    q = quantize(x, 0.5, -3)
    # th_results of ad01: float32 sum of squared (dequantized output - float input), in order, / n
    y = fake_out(q, n)
    s = F32(0)
    for i in range(n):
        d = F32(F32(int(y[i]) + 128) * F32(0.00390625)) - x[i]
        s = F32(s + F32(d * d))
    s = F32(s / F32(n))
    want = f"m-results-[{fmt3(s)}]"
    assert infer_results(got) == want and got[-2:] == [want, "m-ready"]


def test_ad01_window_size_errors(dut):
    got = dut("db load 41%infer 1 0%db load 40%db 00000000%infer 1 0%", 10, 10, mode=2)
    assert got[4:6] == ["e-[Supplied buffer size exceeds the input size of 40 bytes]", "m-ready"]
    assert got[6:8] == ["e-[Input db has 0 elements, expected 10]", "m-ready"]
    assert got[-2:] == ["e-[Input db has 1 elements, expected 10]", "m-ready"]


def test_timed_region_is_inference_only(dut):
    """Fake clock: 10 us per run; fake runs take 600-602 ticks at 1 MHz. The second lap is the
    first plus the timed runs' own ticks, not the wall time around them."""
    got = dut(db(bytes(10)) + "infer 3 2%", 10, 5, mode=0)
    i = got.index("m-infer-start-3")
    t0, t1 = (int(got[i + k].rsplit("-", 1)[1]) for k in (1, 2))
    assert t0 == 20 and t1 - t0 == 600 + 601 + 602


def test_no_model_id_says_how_to_set_it(dut):
    got = dut("profile%", 10, 5, mode=0, model=0)
    assert got[-3:] == ["m-profile-[ULPMark for tinyML Firmware V0.0.1]",
                        "e-[No MLPerf Tiny model id in this build: rebuild with tinygen build --mlperf "
                        "kws01|ic01|vww01|ad01]", "m-ready"]


def test_energy_mode_timestamps_are_pin_pulses(dut):
    got = dut(db(bytes(10)) + "timestamp%infer 2 1%", 10, 5, mode=0, energy=1)
    assert got[:4] == ["m-timestamp-mode-energy", "PULSE", "m-init-done", "m-ready"]
    assert not any(ln.startswith("m-lap-us") for ln in got)
    i = got.index("m-infer-start-2")
    assert got[i + 1:i + 4] == ["PULSE", "PULSE", "m-infer-done"]
    assert "PULSE" in got[got.index("m-load-done"):i]            # timestamp% pulses too


def test_options_and_checks():
    from tinygen.boards import load_board
    from tinygen.errors import BoardError, ModelError

    assert mlperf.options(None) is None
    with pytest.raises(BoardError, match="--mlperf-energy needs --mlperf"):
        mlperf.options(None, energy=True)
    with pytest.raises(BoardError, match="unknown MLPerf Tiny benchmark"):
        mlperf.options("kws02")
    man = {"inputs": [{"dtype": "int8", "bytes": 640}], "outputs": [{"dtype": "int8", "bytes": 10}]}
    with pytest.raises(ModelError, match="needs one int8 output of the input's size"):
        mlperf.check(mlperf.options("ad01"), man, load_board("mps2-an505"))
    mlperf.check(mlperf.options("kws01"), man, load_board("mps2-an505"))
    with pytest.raises(BoardError, match="mps2-an505 has no MLPerf timestamp pin"):
        mlperf.check(mlperf.options("kws01", energy=True), man, load_board("mps2-an505"))
    mlperf.check(mlperf.options("kws01", energy=True), man, load_board("nucleo-l4r5zi"))
    assert mlperf.manifest_entry(mlperf.options("ic01")) == {
        "model": "ic01", "input": "uint8", "result": "vector", "energy": False, "db_bytes_per_element": 1}
    assert struct.calcsize("<f") == 4
