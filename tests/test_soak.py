"""Soak of the bench link (benchmarks/soak.py): iterations of load + run + out over the emulated
board's pty while a proxy corrupts a random 1% of the frames in both directions.

The requirement (robustness issue): 1,000 iterations, every corruption detected (or provably
harmless), zero wrong results accepted. The full 1,000 take ~4 min here (2 shared cores), so this
test runs 500 iterations at the same 1% rate (~2 min); `make soak` (benchmarks/soak.py) runs the
1,000, and TINYGEN_SOAK_ITERATIONS=1000 makes this test do the same. The outputs the host accepted are compared with the TFLite reference
computed here, independently of the soak's own comparison. Skipped without
arm-none-eabi-gcc, make, qemu-system-arm, pyserial or ../shared.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import sys

import numpy as np
import pytest
from conftest import ROOT, shared_model

sys.path.insert(0, str(ROOT))
from benchmarks import soak as S  # noqa: E402
from tinygen.device import protocol as P  # noqa: E402

ITERATIONS = int(os.environ.get("TINYGEN_SOAK_ITERATIONS", "500"))


@pytest.fixture(scope="module")
def ad01(tmp_path_factory):
    missing = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed (sudo apt-get install gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm make)")
    pytest.importorskip("serial")
    shared_model("ad01_int8.tflite")
    from test_bench_qemu import project

    return project(tmp_path_factory, S.BOARD)


# -- the corruption itself (no QEMU) -------------------------------------------------------------

def test_mangle_hits_one_byte_never_the_terminator():
    rng = random.Random(5)
    frames = [P.with_crc("OK load 128 128").encode() + b"\r\n", P.with_crc("run 1 0 0badcafe").encode() + b"\n",
              b"x\n", b"m-ready\r\n"]
    kinds = set()
    for k in range(4000):
        f = frames[k % len(frames)]
        out, kind, pos = S.mangle(f, rng)
        kinds.add(kind)
        term = b"\r\n" if f.endswith(b"\r\n") else b"\n"
        body = f[:-len(term)]
        assert out.endswith(term) and 0 <= pos < len(body)
        if kind in ("flip", "replace"):
            assert len(out) == len(f) and sum(a != b for a, b in zip(out, f)) == 1 and out[pos] != f[pos]
        elif kind == "drop":
            assert out == f[:pos] + f[pos + 1:]
        else:
            assert out == f[:pos] + f[pos:pos + 1] + f[pos:]
        if kind == "flip":
            assert (out[pos] ^ f[pos]).bit_count() == 1
    assert kinds == set(S.KINDS)
    assert S.mangle(b"\r\n", rng) == (b"\r\n", "", -1)


def test_device_pieces_follow_the_firmware_framing():
    """Checked against what tg_bench_feed does: \\n, \\r and % end a command; blank native lines
    get no reply; NUL is read as '?'."""
    assert S.device_pieces(b"out *12345678\n") == [("out *12345678", "\n")]
    assert S.device_pieces(b"run 1\r0\n") == [("run 1", "\n"), ("0", "\n")]
    assert S.device_pieces(b"lo%ad\n") == [("lo", "%"), ("ad", "\n")]
    assert S.device_pieces(b"%\n") == [("", "%")]
    assert S.device_pieces(b"\t \r\n") == []
    assert S.device_pieces(b"o\x00t\n") == [("o?t", "\n")]


def test_account_classifies_device_to_host_hits():
    ok = P.with_crc("OK load 0 128").encode() + b"\r\n"
    bad = ok.replace(b"load", b"lOad")
    split = ok[:5] + b"\n" + ok[6:]
    hits = [S.Injection(0, S.TO_HOST, 3, 0, "replace", 4, ok, bad),
            S.Injection(1, S.TO_HOST, 9, 0, "replace", 5, ok, split),
            S.Injection(2, S.TO_HOST, 11, 0, "flip", 1, b"m-ready\r\n", b"m-rea$y\r\n")]
    host = [(bad.decode().strip(), "reply"), (split[:5].decode(), "drain"), (split[6:].decode().strip(), "drain")]
    S.account(hits, host)
    assert hits[0].outcome == f"{S.DETECTED}: host line-CRC reject (read as a reply)"
    assert hits[1].outcome == f"{S.DETECTED}: host line-CRC reject (read in a resync drain)"
    assert hits[2].outcome.startswith(f"{S.HARMLESS}: line without CRC")
    forged = S.Injection(3, S.TO_HOST, 12, 0, "replace", 0, ok, P.with_crc("OK load 0 64").encode() + b"\r\n")
    S.account([forged], [])
    assert forged.outcome.startswith(S.UNSAFE)


def test_account_classifies_host_to_device_hits():
    cmd = P.with_crc("run 1 0 0badcafe").encode() + b"\n"
    crc_cut = cmd.replace(b" *", b"\n*")                          # "run 1 0 0badcafe" runs without its CRC
    arg_cut = cmd.replace(b"0 0bad", b"0\n0bad")                   # "run 1 0" runs without the input CRC
    garbled = cmd.replace(b"run 1", b"run 7")                      # the device must refuse it (ERR 6)
    ok = "OK run 1 0 total=5 min=5 max=5 out=00000000"
    cases = [
        (crc_cut, [("run 1 0 0badcafe", "\n", ok, "T 0 5"), ("*" + cmd.decode()[-9:-1], "\n", "ERR 2 unknown", "")],
         S.HARMLESS),
        (arg_cut, [("run 1 0", "\n", ok, "T 0 5"), ("0badcafe *x", "\n", "ERR 6 line crc mismatch: x", "")],
         S.HARMLESS),
        (garbled, [("run 7 0 0badcafe *x", "\n", "ERR 6 line crc mismatch: computed 1, line says 2", "")],
         S.DETECTED),
        (garbled, [("run 7 0 0badcafe *x", "\n", ok.replace("1 0", "7 0"), "")], S.UNSAFE),
        (cmd.replace(b"run", b"r%n"), [("r", "%", "m-ready", "e-[Unknown command: r]"),
                                         ("n 1 0 x", "\n", "ERR 6 line crc mismatch", "")], S.DETECTED),
    ]
    for after, replies, want in cases:
        inj = S.Injection(0, S.TO_DEV, 0, 0, "replace", 0, cmd, after, replies=replies)
        S.account([inj], [])
        assert inj.outcome.startswith(want), (after, inj.outcome)
    pending = S.Injection(0, S.TO_DEV, 0, 0, "replace", 0, cmd, garbled, replies=[])
    S.account([pending], [])
    assert pending.outcome.startswith(S.PENDING)


# -- over the emulated board ---------------------------------------------------------------------

def _reference(project, n: int, seed: int):
    from tinygen import reference

    mb = (project / "model.tflite").read_bytes()
    xs = reference.random_inputs(mb, n, seed=seed)
    return reference.pack(reference.run(mb, xs))


@pytest.mark.slow
def test_clean_link_needs_no_retries(ad01):
    """Control: with nothing injected the host never retries, so every retry in the soak is
    caused by an injection; and every output matches the reference."""
    r = S.soak(ad01, iterations=30, rate=0.0, seed=3, log=None)
    want = _reference(ad01, 30, 3)
    assert r["injected"] == 0 and r["failed"] == 0 and r["accepted"] == 30
    assert [bytes.fromhex(o) for o in r["outputs"]] == [w.tobytes() for w in want]
    assert r["host"] == {"corrupt_replies": 0, "timeouts": 0, "resyncs": 0, "resets": 0, "device_errors": 0,
                         "device_errors_by_code": {}}
    assert r["orphan_replies"] == [] and r["clean_errors"] == [] and r["unframed_bytes"] == 0
    # 7 commands a round (5 loads, run, out) after one hello; 18 reply lines (5 OK load, T, OK run, 10 D, OK out)
    assert r["frames"][S.TO_DEV] == 1 + 30 * 7


def _line_ends_into_commands(frame: bytes, rng: random.Random, way: str):
    """Host->device only: one byte of the command (before its line end) becomes \n, \r or %."""
    if way != S.TO_DEV or len(frame) < 2:
        return frame, "", -1
    pos = rng.randrange(len(frame) - 1)
    return frame[:pos] + bytes([rng.choice(b"\n\r%")]) + frame[pos + 1:], "replace", pos


def _crc_split_off(frame: bytes, rng: random.Random, way: str):
    """Host->device only: the space before the line CRC (or before run's input-CRC argument)
    becomes \n, so the device runs the command without that CRC and refuses the rest."""
    if way != S.TO_DEV or b" *" not in frame or frame.startswith(b"load "):   # loads: ERR 3, as above
        return frame, "", -1
    cut = frame.rindex(b" *")
    if frame.startswith(b"run ") and rng.random() < 0.5:
        cut = frame.rindex(b" ", 0, cut)
    return frame[:cut] + b"\n" + frame[cut + 1:], "replace", cut


@pytest.mark.slow
@pytest.mark.parametrize("mangler", [_line_ends_into_commands, _crc_split_off])
def test_commands_split_by_injected_line_ends(ad01, mangler):
    """The rare case of the soak, forced: a command cut in two by an injected \n, \r or % (the
    firmware then runs two commands, one without its line CRC, or one through the MLPerf parser).
    The reply attribution must stay in step with the real firmware, a piece the device executed
    must be the intended command, and every accepted output must still match the reference."""
    n = 25
    r = S.soak(ad01, iterations=n, rate=0.08 if mangler is _line_ends_into_commands else 0.2, seed=4, log=None,
               mangler=mangler)
    want = _reference(ad01, n, 4)
    assert r["injected"] >= 5 and set(r["injected_by_way"]) == {S.TO_DEV}
    accepted = [(i, bytes.fromhex(o)) for i, o in enumerate(r["outputs"]) if o is not None]
    assert [o for _, o in accepted] == [want[i].tobytes() for i, _ in accepted] and r["wrong_accepted"] == 0
    # At these rates an iteration may run out of retries: the CRC fragment of a split command
    # (notably of a split `hello`, whose OK ends the resync) draws an ERR 2 that the host takes
    # for the reply to its next command (ERR lines do not name the command they answer).
    assert len(accepted) + r["failed"] == n and r["failed"] <= 2, r["failures"]
    assert all("failed on" in msg for _, msg in r["failures"])
    assert r["unsafe"] == 0 and r["pending"] == 0 and r["detected"] + r["harmless"] == r["injected"], r["outcomes"]
    assert r["orphan_replies"] == [] and not any("line crc" in e for e in r["clean_errors"])
    assert len([i for i in r["injections"] if len(i["replies"]) > 1]) >= 1   # a line became two commands
    kinds = " ".join(r["outcomes"])
    if mangler is _line_ends_into_commands:
        assert "MLPerf parser" in kinds                             # a '%' went through the MLPerf parser
    else:                                                           # executed, but the intended command
        assert r["harmless"] >= 3 and "the intended command ran" in kinds and "input-CRC" in kinds, kinds


@pytest.mark.slow
def test_soak_one_percent_corruption(ad01):
    n, rate, seed = ITERATIONS, 0.01, 1
    r = S.soak(ad01, iterations=n, rate=rate, seed=seed, log=None)
    print("\n" + "\n".join(S.report_lines(r)))
    want = _reference(ad01, n, seed)

    # Zero wrong results accepted: every accepted output equals the reference (compared here).
    accepted = [(i, bytes.fromhex(o)) for i, o in enumerate(r["outputs"]) if o is not None]
    assert [o for _, o in accepted] == [want[i].tobytes() for i, _ in accepted]
    assert r["wrong_accepted"] == 0 and r["wrong_iterations"] == []
    # Iterations that gave up did so with a clean DeviceError after the retries; few of them.
    assert len(accepted) + r["failed"] == n
    assert r["failed"] <= max(1, n // 200), r["failures"]
    assert all("failed on" in msg or "kept losing" in msg for _, msg in r["failures"])

    # The injections: about rate x frames, both directions, all four kinds.
    frames = r["frames_total"]
    assert abs(r["injected"] - rate * frames) <= 5 * math.sqrt(frames * rate * (1 - rate)) + 1
    assert set(r["injected_by_way"]) == {S.TO_HOST, S.TO_DEV} and min(r["injected_by_way"].values()) >= 10
    assert set(r["injected_by_kind"]) == set(S.KINDS)
    # Every injection accounted for: detected, or provably harmless; none unsafe or unanswered.
    assert r["unsafe"] == 0 and r["pending"] == 0, [i for i in r["injections"] if not i["outcome"].startswith(
        (S.DETECTED, S.HARMLESS))]
    assert r["detected"] + r["harmless"] == r["injected"] and r["detected"] > 0.8 * r["injected"]
    # The attribution of device replies to commands stayed in step, and the device never refused
    # a command that was not corrupted with a line-CRC error.
    assert r["orphan_replies"] == [] and not any("line crc" in e for e in r["clean_errors"])

    # The host really noticed: its counters are caused by injections (the control test shows 0
    # without), and a corruption costs a bounded number of retries.
    h = r["host"]
    assert h["corrupt_replies"] > 0 and h["device_errors"] > 0 and h["resets"] == 0
    to_host_detected = sum(v for k, v in r["outcomes"].items() if k.startswith(f"{S.TO_HOST}: {S.DETECTED}"))
    to_dev_refused = sum(v for k, v in r["outcomes"].items() if k.startswith(f"{S.TO_DEV}: {S.DETECTED}"))
    assert h["corrupt_replies"] <= to_host_detected + to_dev_refused
    assert h["device_errors_by_code"].get("6", 0) <= r["injected_by_way"][S.TO_DEV]
    assert 0 < r["retries"] <= 3 * r["injected"]
    assert np.isfinite(r["wall_s"])
