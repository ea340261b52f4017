"""The bench protocol without hardware: firmware/tg_bench.c built for the host with a fake
model (fuzz/bench_host.c: output[i] = input[i % in] ^ 7i) and driven through stdin, plus the
host-side framing (tinygen.device.protocol) and CLI errors. Needs gcc and make."""

from __future__ import annotations

import zlib
from pathlib import Path

import benchhost
import numpy as np
import pytest

from tinygen.device import protocol as P

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    exe = benchhost.build(tmp_path_factory)

    def talk(data: bytes, in_size: int = 10, out_size: int = 5) -> list[str]:
        return benchhost.talk(exe, data, in_size, out_size)
    return talk


def crc(text: str) -> str:
    return P.with_crc(text)


def texts(lines: list[str]) -> list[str]:
    """CRC-checked native lines (every one must pass), MLPerf lines as they are."""
    out = []
    for ln in lines:
        if ln.startswith(("m-", "e-")):
            out.append(ln)
        else:
            t = P.check(ln)
            assert t is not None, f"line without a valid CRC: {ln!r}"
            out.append(t)
    return out


BOOT = ["TG_BENCH v1 model=00112233deadbeef board=host clock=1000000 counter=fake in=10 out=5 layers=3 maxline=600",
        "m-timestamp-mode-performance", "m-lap-us-0", "m-init-done", "m-ready"]


def test_boot_and_hello(host):
    got = texts(host(b"hello\nhello abc\n"))
    assert got[:5] == BOOT
    assert got[5:] == [BOOT[0], "OK hello", BOOT[0], "OK hello abc"]
    b = P.parse_banner(got[0])
    assert (b.version, b.model, b.in_size, b.out_size, b.layers, b.maxline) == (1, "00112233deadbeef", 10, 5, 3, 600)


def test_load_run_out_roundtrip(host):
    x = bytes(range(250, 256)) + bytes([1, 2, 3, 4])
    cmds = [c for _, c in P.load_commands(x, chunk=4)]
    script = "\n".join(cmds + [f"run 3 2 {P.crc32(x):08x}", "layers", "out", "in"]) + "\n"
    got = texts(host(script.encode()))[5:]
    assert got[:3] == ["OK load 0 4", "OK load 4 4", "OK load 8 2"]
    y = benchhost.fake_out(x, 5).tobytes()
    assert got[3:8] == ["W 0 601", "W 1 602", "T 0 600", "T 1 601", "T 2 602"]
    assert got[8] == f"OK run 3 2 total=1803 min=600 max=602 out={zlib.crc32(y):08x}"
    assert got[9:13] == ["L 0 100", "L 1 200", "L 2 300", "OK layers 3"]
    assert got[13:15] == [f"D 0 {y.hex()}", f"OK out 5 crc={zlib.crc32(y):08x}"]
    assert got[15:17] == [f"D 0 {x.hex()}", f"OK in 10 crc={zlib.crc32(x):08x}"]


def test_large_output_is_split(host):
    got = texts(host(b"run 1\nout\n", in_size=3, out_size=150))[5:]
    d = [t for t in got if t.startswith("D ")]
    assert [t.split()[1] for t in d] == ["0", "64", "128"]
    data = P.parse_hex_lines(d, 150)
    assert data == benchhost.fake_out(bytes(3), 150).tobytes()


@pytest.mark.parametrize("line, code, words", [
    ("x" * 700, 1, "line too long"),
    ("frobnicate", 2, "unknown command"),
    ("run", 3, "usage: run"),
    ("run 1 2 3 4", 3, "usage"),
    ("run -1", 3, "usage"),
    ("run 99999999999", 3, "usage"),
    ("run 0", 5, "n must be"),
    ("run 100001", 5, "n must be"),
    ("run 1 0 zzzzzzzz", 3, "8 hex digits"),
    ("run 1 0 12345678", 6, "input crc mismatch"),
    ("layers", 7, "no run yet"),
    ("out", 7, "no run yet"),
    ("load 0 00", 3, "needs the line CRC"),
    (crc("load 0 0"), 4, "odd number"),
    (crc("load 0 0g"), 4, "bad hex"),
    (crc("load 9 0102"), 5, "past the input"),
    (crc("load 4294967295 01"), 5, "past the input"),
    (crc("load 11"), 3, "usage"),
    ("load 0 0102 *00000000", 6, "line crc mismatch"),
    ("hello *zzzzzzzz", 3, "malformed line CRC"),
    ("hello a b", 3, "usage"),
    ("a b c d e f g h i", 3, "too many"),
])
def test_errors(host, line, code, words):
    got = texts(host(line.encode() + b"\nhello\n"))[5:]
    assert got[0].startswith(f"ERR {code} ") and words in got[0], got[0]
    assert got[-1] == "OK hello"                   # the parser recovered


def test_line_crc_optional_and_checked(host):
    got = texts(host((crc("hello t1") + "\n" + crc("hello t2")[:-1] + "0\n").encode()))[5:]
    assert got[:2] == [BOOT[0], "OK hello t1"]
    assert got[2].startswith("ERR 6 line crc mismatch")


def test_nul_and_crlf(host):
    got = texts(host(b"hel\x00lo\r\nhello\r\n\r\n"))[5:]
    assert got[0].startswith("ERR 2") and got[1:] == [BOOT[0], "OK hello"]


def test_mlperf_runner_syntax(host):
    x = bytes(range(10))
    cmds = "name%profile%timestamp%" + "".join(P.mlperf_db_commands(x, chunk=4)) + "db print%infer 2 1%results%bogus%"
    got = host(cmds.encode())[5:]
    want_results = "m-results-[" + ",".join(
        f"{((((x[i % 10] ^ (i * 7)) & 0xFF) - 256 if ((x[i % 10] ^ (i * 7)) & 0xFF) > 127 else (x[i % 10] ^ (i * 7)) & 0xFF) + 128) / 256:.3f}"
        for i in range(5)) + "]"
    assert got == [
        "m-name-dut-[tinygen]", "m-ready",
        "m-profile-[ULPMark for tinyML Firmware V0.0.1]", "m-model-[kws01]", "m-ready",
        "m-lap-us-0", "m-ready",
        "m-[Expecting 10 bytes]", "m-ready", "m-ready", "m-ready", "m-load-done", "m-ready",
        "m-buffer-00-01-02-03-04-05-06-07", "m-buffer-08-09", "m-ready",
        # the second lap = the first + the ticks of the timed runs alone (602 + 600 at 1 MHz)
        "m-warmup-start-1", "m-warmup-done", "m-infer-start-2", "m-lap-us-10", "m-lap-us-1212", "m-infer-done",
        want_results, "m-ready",
        want_results, "m-ready",
        "e-[Unknown command: bogus]", "m-ready",
    ]


@pytest.mark.parametrize("cmd, reply", [
    ("db", "e-[Command 'db' requires a subcommand]"),
    ("db load", "e-[Command 'db load' requires the # of bytes]"),
    ("db load 0", "e-[Command 'db load' must be >0 bytes]"),
    ("db load 11", "e-[Supplied buffer size exceeds the input size of 10 bytes]"),
    ("db 0102", "e-[Send 'db load N' first]"),
    ("infer 1", "e-[Input db has 0 elements, expected 10]"),
    ("infer 0", "e-[Inference iterations must be >0]"),
    ("results", "e-[No inference yet]"),
    ("", "e-[Unknown command: ]"),
])
def test_mlperf_errors(host, cmd, reply):
    assert host(f"{cmd}%".encode())[5:] == [reply, "m-ready"]


def test_mlperf_bad_hex_and_overlong(host):
    got = host(b"db load 4%db 0g%db 012%" + b"d" * 700 + b"%")[5:]
    assert got == ["m-[Expecting 4 bytes]", "m-ready", "e-[Invalid hex digit '0g']", "m-ready",
                   "e-[Insufficent number of hex digits]", "m-ready", "e-[Command too long]", "m-ready"]


def test_random_garbage_never_breaks_the_parser(host):
    rng = np.random.default_rng(7)
    junk = rng.integers(0, 256, 20000, dtype=np.uint8).tobytes()
    got = host(junk + b"\nhello zz\n")
    assert P.check(got[-1]) == "OK hello zz"


def test_host_framing_helpers():
    assert P.check(P.with_crc("T 1 2")) == "T 1 2"
    assert P.check("T 1 2 *zzzzzzzz") is None and P.check("short") is None
    with pytest.raises(ValueError):
        P.parse_hex_lines(["D 64 00"], 65)
    with pytest.raises(ValueError):
        P.parse_banner("TG_BOOT model=x")


def test_cli_errors_are_one_line(tmp_path, capsys):
    from tinygen.cli import main

    assert main(["bench", str(tmp_path), "--port", "/dev/nonexistent-port"]) != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("tinygen: error:") and "\n" not in err and "manifest.json" in err
    assert main(["flash", str(tmp_path)]) != 0
    assert "not a tinygen project" in capsys.readouterr().err


def test_inputs_validation(tmp_path):
    from tinygen.device.bench import load_inputs
    from tinygen.errors import InputError

    model = (ROOT.parent / "shared" / "models" / "mlperf-tiny" / "kws_ref_model.tflite")
    if not model.exists():
        pytest.skip(f"{model} not found")
    mb = model.read_bytes()
    good = np.zeros((2, 1, 49, 10, 1), np.int8)
    np.save(tmp_path / "g.npy", good)
    assert load_inputs(tmp_path / "g.npy", mb).shape == (2, 1, 49, 10, 1)
    np.save(tmp_path / "one.npy", good[0])
    assert load_inputs(tmp_path / "one.npy", mb).shape == (1, 1, 49, 10, 1)
    np.save(tmp_path / "nob.npy", good[:, 0])
    assert load_inputs(tmp_path / "nob.npy", mb).shape == (2, 1, 49, 10, 1)
    np.save(tmp_path / "f.npy", good.astype(np.float32))
    with pytest.raises(InputError, match="float32 values, the model input is int8"):
        load_inputs(tmp_path / "f.npy", mb)
    np.save(tmp_path / "s.npy", np.zeros((2, 49, 11), np.int8))
    with pytest.raises(InputError, match=r"shape \[2, 49, 11\]"):
        load_inputs(tmp_path / "s.npy", mb)
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(InputError, match="not a readable"):
        load_inputs(tmp_path / "bad.npy", mb)
    with pytest.raises(InputError, match="does not exist"):
        load_inputs(tmp_path / "missing.npy", mb)
