"""Robustness round 2 (issue 15): no undefined behaviour reaches the firmware, a bench host that
trusts nothing from the device, bounded calibration reading, output folders that are never
damaged, and no traceback anywhere.

Models are generated in the tests (tests/opnets.py + the TFLite schema's object API), devices
are fake ones speaking the bench protocol on a pseudo-terminal, calibration files are written
by the tests.
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
from pathlib import Path

import numpy as np
import pytest

from opnets import make_opnet
from test_robustness import _quant, build_cli, conv, fc, mutate, one_error_line
from tinygen import cli, quant
from tinygen.device import protocol as P
from tinygen.errors import DeviceError, UnsupportedError


def dw() -> bytes:
    return make_opnet("dwconv2d", in_shape=(7, 7, 3), kernel=(3, 3), padding="same")


def _in(sg):
    return sg.operators[0].inputs[0]


def _out(sg):
    return sg.operators[0].outputs[0]


# ---- 1. extreme scale ratios on CONV / DEPTHWISE / FC ------------------------------------------

EXTREME = [
    ("fc-input-scale-1e30", fc, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "FULLY_CONNECTED"),
    ("fc-output-scale-1e-30", fc, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "FULLY_CONNECTED"),
    ("conv-input-scale-1e30", conv, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "CONV_2D"),
    ("conv-output-scale-1e-30", conv, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "CONV_2D"),
    ("dw-input-scale-1e30", dw, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "DEPTHWISE_CONV_2D"),
    ("dw-output-scale-1e-30", dw, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "DEPTHWISE_CONV_2D"),
    # a gain of 2^28: representable as a multiplier, but the shifted accumulator overflows int32
    ("fc-output-scale-2^-28", fc, lambda m, sg: _quant(sg, _out(sg), scale=[sg.tensors[_out(sg)].quantization.scale[0]
                                                                             / (1 << 28)]), "FULLY_CONNECTED"),
]


@pytest.mark.parametrize("case_id, base, edit, op", EXTREME, ids=[c[0] for c in EXTREME])
@pytest.mark.parametrize("board", ["host", "mps2-an505"])
def test_extreme_scale_ratio_refused(case_id, base, edit, op, board, tmp_path, capsys):
    """Refused before any C is written, on every board (a board build with --no-compile too)."""
    model = mutate(base, edit)(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["build", str(model), "--board", board, "--backend", "portable", "-o", str(out), "--no-compile"])
    line = one_error_line(capsys.readouterr().err)
    assert code == UnsupportedError.exit_code, line
    assert op in line and "scale" in line and "overflow" in line or "2^30" in line, line
    assert not out.exists()


def test_moderate_gain_still_compiles_bit_exact(tmp_path, capsys):
    """A multiplier of 8 (shift 4) is within the int32 range: accepted and bit-exact."""
    model = mutate(fc, lambda m, sg: _quant(sg, _out(sg), scale=[sg.tensors[_out(sg)].quantization.scale[0] / 8]))(tmp_path)
    code, out, err = build_cli(capsys, model, tmp_path / "out")
    assert code == 0, err
    assert "matches the TFLite reference" in out


def test_requant_check_names_channel_and_cause():
    w = np.full((2, 4), 127, np.int8)
    quant.check_accumulator_requant(w, (1,), 0, None, 0.02, [0.01, 0.01], 0.05, 0)
    with pytest.raises(ValueError, match="channel 1: .*accumulator .* overflows int32"):
        quant.check_accumulator_requant(w, (1,), 0, np.array([0, 2**31 - 100]), 0.02, [0.01, 0.01], 0.05, 0)
    with pytest.raises(ValueError, match="shifted left by 23"):
        quant.check_accumulator_requant(w, (1,), 0, None, 0.02, [0.01, 0.01], 0.05 / 2**30, 0)
    with pytest.raises(ValueError, match="not a finite"):
        quant.quantize_multiplier(float("inf"), strict=True)
    assert quant.quantize_multiplier(1e-40, strict=True) == (0, 0)  # flushed to zero, as TFLite


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
    dev.send(f"OK run 1 0 total=0 min=0 max=0 out=00000000")


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


# ---- 3. calibration data: read lazily and bounded, .npy accepted, real numbers only -------------


def _npz_bomb(path: Path, n: int, width: int) -> None:
    """A compressed .npz whose 'x' is n x width float32 zeros, written without holding it in memory."""
    import zipfile

    import numpy.lib.format as npfmt

    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z, z.open("x.npy", "w", force_zip64=True) as f:
        npfmt.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (n, width)})
        row = bytes(4 * width * 1000)
        for _ in range(n // 1000):
            f.write(row)


def test_calibration_npz_bomb_reads_only_the_samples_used(tmp_path):
    """300,000 samples compressed to a small file: only the first 256 are decompressed."""
    import tracemalloc

    from tinygen import frontend

    p = tmp_path / "bomb.npz"
    _npz_bomb(p, 300_000, 64)
    assert p.stat().st_size < 200_000  # 77 MB of float32 inside
    tracemalloc.start()
    x = frontend.load_calibration(str(p), (1, 64), log=lambda m: None)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert x.shape == (frontend.CALIB_SAMPLES, 64) and x.dtype == np.float32 and not x.any()
    assert peak < 4 << 20, f"peak {peak:,} B"


def test_calibration_size_limit_before_decompression(tmp_path):
    from tinygen import npyread
    from tinygen.errors import InputError

    p = tmp_path / "wide.npz"
    _npz_bomb(p, 1000, 1 << 20)  # 4 MiB per sample: 256 samples would need 1 GiB
    with pytest.raises(InputError, match=r"at most .* B are read"):
        npyread.read_samples(p, ("x",), max_samples=256)


@pytest.mark.parametrize("make, words", [
    (lambda p: np.save(p, np.zeros((4, 8), np.complex64)), ["complex numbers", "real numbers"]),
    (lambda p: np.save(p, np.zeros((0, 8), np.float32)), ["holds no samples"]),
    (lambda p: np.save(p, np.array([["a"] * 8] * 4)), ["strings"]),
    (lambda p: np.save(p, np.array([[None] * 8] * 4, dtype=object), allow_pickle=True), ["Python objects"]),
    (lambda p: np.save(p, np.float32(3.0)), ["single number"]),
    (lambda p: p.write_bytes(np.lib.format.MAGIC_PREFIX + b"\x01\x00garbage"), ["not a readable .npy"]),
    (lambda p: p.write_bytes(b"hello"), ["not an .npz or .npy file"]),
    (lambda p: np.savez(p.with_suffix(".npz"), y=np.zeros((4, 8), np.float32)), ["no array named 'x'"]),
    (lambda p: np.savez(p.with_suffix(".npz"), x=np.zeros((4, 8), np.complex128)), ["'x'", "complex"]),
    (lambda p: np.save(p, np.full((4, 8), np.inf, np.float32)), ["NaN or inf"]),
    (lambda p: np.save(p, np.full((4, 8), 1e300)), ["NaN or inf"]),
    (lambda p: np.save(p, np.zeros((4, 7), np.float32)), ["[7]", "[8]"]),
], ids=["complex", "empty", "strings", "objects", "scalar", "bad-header", "not-numpy", "npz-no-x", "npz-complex",
        "inf", "beyond-float32", "wrong-shape"])
def test_bad_calibration_file(make, words, tmp_path):
    from tinygen import frontend
    from tinygen.errors import InputError

    p = tmp_path / "calib.npy"
    make(p)
    if not p.exists():
        p = p.with_suffix(".npz")
    with pytest.raises(InputError) as e:
        frontend.load_calibration(str(p), (1, 8), log=lambda m: None)
    msg = str(e.value)
    assert "\n" not in msg and str(p) in msg
    for w in words:
        assert w in msg, msg


def test_calibration_npy_truncated_and_fortran(tmp_path):
    from tinygen import frontend
    from tinygen.errors import InputError

    x = np.arange(40, dtype=np.float32).reshape(5, 8)
    np.save(tmp_path / "f.npy", np.asfortranarray(x))
    assert (frontend.load_calibration(str(tmp_path / "f.npy"), (1, 8), log=lambda m: None) == x).all()
    np.save(tmp_path / "c.npy", x)
    (tmp_path / "t.npy").write_bytes((tmp_path / "c.npy").read_bytes()[:-9])
    with pytest.raises(InputError, match="truncated"):
        frontend.load_calibration(str(tmp_path / "t.npy"), (1, 8), log=lambda m: None)
    got = frontend.load_calibration(str(tmp_path / "c.npy"), (1, 8), log=lambda m: None)
    assert (got == x).all()


def test_synthetic_range_is_the_calibration_range():
    from tinygen import frontend

    x = frontend.load_calibration(None, (1, 4), log=lambda m: None, synthetic_range=(0.0, 255.0))
    assert x.min() >= 0 and x.max() <= 255 and x.max() > 100


@pytest.fixture(scope="module")
def tiny_h5(tmp_path_factory):
    from tinygen import reference

    reference._tf()
    import tf_keras

    d = tmp_path_factory.mktemp("h5")
    m = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4, activation="relu"), tf_keras.layers.Dense(3)])
    m.save(d / "m.h5")
    return d / "m.h5"


def test_build_with_npy_calibration_and_synthetic_range(tiny_h5, tmp_path, capsys):
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(0, 255, (32, 8)).astype(np.float32))
    code, out, err = build_cli(capsys, tiny_h5, tmp_path / "a", "--calib", str(tmp_path / "calib.npy"))
    assert code == 0 and "matches the TFLite reference" in out, err
    code, out, err = build_cli(capsys, tiny_h5, tmp_path / "b", "--synthetic-range", "0", "255")
    assert code == 0 and "uniform in [0, 255]" in out, err
    # the input scale follows the calibration range: 255 / 255 steps = about 1.0, not ~0.03 (standard normal)
    scale = json.loads((tmp_path / "b" / "manifest.json").read_text())["input"]["scale"]
    assert 0.5 < float(np.ravel(scale)[0]) < 2.0


def test_build_with_complex_npy_is_one_error_line(tiny_h5, tmp_path, capsys):
    np.save(tmp_path / "calib.npy", np.zeros((4, 8), np.complex64))
    code, _, err = build_cli(capsys, tiny_h5, tmp_path / "o", "--calib", str(tmp_path / "calib.npy"))
    line = one_error_line(err)
    assert code == 4 and "complex" in line


def test_calib_with_a_tflite_warns(tmp_path, capsys):
    (tmp_path / "m.tflite").write_bytes(fc())
    code, out, err = build_cli(capsys, tmp_path / "m.tflite", tmp_path / "o", "--calib", "whatever.npz", "--no-compile")
    assert code == 0, err
    assert "--calib whatever.npz is ignored" in out


# ---- 4. output folders: nothing tinygen did not write is deleted or re-permissioned -------------


def _tree(root: Path) -> dict:
    """Every entry (not following symlinks) -> (mode, content or link target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = ("link", os.readlink(p))
        elif p.is_dir():
            out[p.relative_to(root).as_posix()] = (oct(st.st_mode), None)
        else:
            out[p.relative_to(root).as_posix()] = (oct(st.st_mode), p.read_bytes())
    return out


def _build_fc(capsys, out, *extra):
    model = out.parent / "fc.tflite"
    if not model.exists():
        model.write_bytes(fc())
    code = cli.main(["build", str(model), "--board", "host", "-o", str(out), "--no-compile", *extra])
    return code, capsys.readouterr().err


def test_unmarked_folder_with_build_and_pio_is_kept(tmp_path, capsys):
    """A folder tinygen never wrote: build/notes.txt, .pio/cfg and an empty folder are the user's."""
    out = tmp_path / "mine"
    (out / "build").mkdir(parents=True)
    (out / "build" / "notes.txt").write_text("mine\n")
    (out / ".pio").mkdir()
    (out / ".pio" / "cfg").write_text("[env]\n")
    (out / "empty").mkdir()
    out.chmod(0o755)
    before, mode = _tree(out), out.stat().st_mode
    code, err = _build_fc(capsys, out)
    line = one_error_line(err)
    assert code == 8 and "build/notes.txt" in line and ".pio/cfg" in line and "empty/" in line, line
    assert _tree(out) == before and out.stat().st_mode == mode


def test_empty_user_folder_added_to_a_project_is_kept(tmp_path, capsys):
    out = tmp_path / "p"
    assert _build_fc(capsys, out)[0] == 0
    (out / "data").mkdir()
    code, err = _build_fc(capsys, out)
    assert code == 8 and "data/" in one_error_line(err)
    assert (out / "data").is_dir()


def test_folder_mode_is_kept(tmp_path, capsys):
    out = tmp_path / "p"
    old = os.umask(0o022)
    try:
        assert _build_fc(capsys, out)[0] == 0
        assert oct(out.stat().st_mode & 0o777) == oct(0o755)  # the umask's default, not mkdtemp's 0700
        out.chmod(0o750)
        assert _build_fc(capsys, out)[0] == 0
        assert oct(out.stat().st_mode & 0o777) == oct(0o750)
    finally:
        os.umask(old)


@pytest.mark.parametrize("target, words", [("/", ["root folder"]), ("/proc", ["/proc is a system folder"]),
                                           ("/usr/local/tg", ["/usr is a system folder"])])
def test_system_folders_refused_up_front(target, words, tmp_path, capsys):
    from tinygen import project
    from tinygen.errors import OutputError

    t0 = time.monotonic()
    with pytest.raises(OutputError) as e:  # refused before anything is scanned or written
        project.check_writable(Path(target))
    assert time.monotonic() - t0 < 1
    (tmp_path / "fc.tflite").write_bytes(fc())
    code = cli.main(["build", str(tmp_path / "fc.tflite"), "--board", "host", "-o", target, "--no-compile"])
    line = one_error_line(capsys.readouterr().err)
    assert code == 8 and all(w in line for w in words) and str(e.value) in line, line


@pytest.mark.parametrize("marked", [False, True])
def test_symlink_out_of_the_folder_is_not_followed(marked, tmp_path, capsys):
    out = tmp_path / "p"
    if marked:
        assert _build_fc(capsys, out)[0] == 0
    else:
        out.mkdir()
    (out / "cwd").symlink_to("/proc/1/cwd")
    code, err = _build_fc(capsys, out)
    line = one_error_line(err)
    assert code == 8 and "cwd (a symlink)" in line, line
    assert os.readlink(out / "cwd") == "/proc/1/cwd"


def test_symlinked_build_dir_is_removed_not_followed(tmp_path, capsys):
    """A marked project's build/ is discarded on rebuild; a symlink in it is unlinked, its target kept."""
    out = tmp_path / "p"
    keep = tmp_path / "elsewhere"
    keep.mkdir()
    (keep / "precious.txt").write_text("mine\n")
    assert _build_fc(capsys, out)[0] == 0
    (out / "build").mkdir()
    (out / "build" / "link").symlink_to(keep)
    assert _build_fc(capsys, out)[0] == 0
    assert (keep / "precious.txt").read_text() == "mine\n"


def test_concurrent_build_fails_fast(tmp_path, capsys):
    from tinygen import project

    out = tmp_path / "p"
    with project._Lock(out):
        t0 = time.monotonic()
        code, err = _build_fc(capsys, out)
        line = one_error_line(err)
    assert code == 8 and "another tinygen build is writing" in line and time.monotonic() - t0 < 10
    assert not out.exists()
    assert _build_fc(capsys, out)[0] == 0  # the lock is released with its holder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fc.tflite", "p"]


def test_two_processes_into_one_folder(tmp_path):
    """Two real builds at once: one succeeds, the other fails with the lock message (or also succeeds
    after the first finished); never a lost or mixed project."""
    import subprocess
    import sys

    (tmp_path / "fc.tflite").write_bytes(fc())
    from tinygen import project

    out = tmp_path / "p"
    cmd = [sys.executable, "-m", "tinygen.cli", "build", str(tmp_path / "fc.tflite"), "--board", "host", "-o", str(out),
           "--no-compile"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    with project._Lock(out):  # both start while a third build holds the folder
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        res = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    for _, err, rc in res:
        assert rc == 8 and "another tinygen build is writing" in err and "Traceback" not in err
    assert not out.exists()


def test_stale_temp_folders_are_removed(tmp_path, capsys):
    out = tmp_path / "p"
    stale = tmp_path / ".p.new-0badf00d"
    (stale / "src").mkdir(parents=True)
    (stale / "src" / "model.c").write_bytes(bytes(1 << 20))
    (tmp_path / ".p.old-12345678").mkdir()
    other = tmp_path / ".q.new-0badf00d"  # another folder's: not ours to touch
    other.mkdir()
    assert _build_fc(capsys, out)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".q.new-0badf00d", "fc.tflite", "p"]


# ---- 5. every traceback of the adversarial round is one error line ------------------------------


def _inplace_graph_input(m, sg):
    """op #0 writes the graph input in place while op #1 reads it."""
    import copy

    op0 = sg.operators[0]
    op1 = copy.deepcopy(op0)
    op0.outputs = [0]
    op1.inputs, op1.outputs = [0], [1]
    sg.operators = [op0, op1]


def _constant_graph_input(m, sg):
    import copy

    sg.tensors[0].buffer = len(m.buffers)
    b = copy.deepcopy(m.buffers[0])
    b.data = np.zeros(80, np.uint8)
    m.buffers.append(b)


def _second_reader(m, sg):
    """A valid graph: the input feeds two RELUs, two graph outputs (must compile, bit-exact)."""
    import copy

    op1, t2 = copy.deepcopy(sg.operators[0]), copy.deepcopy(sg.tensors[1])
    t2.name = b"second"
    sg.tensors.append(t2)
    op1.outputs = [len(sg.tensors) - 1]
    sg.operators.append(op1)
    sg.outputs = [1, len(sg.tensors) - 1]


def _set_shape(shape):
    def edit(m, sg):
        for t in sg.tensors:
            t.shape = list(shape)
    return edit


def _relu():
    return make_opnet("relu", in_shape=(4, 4, 5))


MODEL_TRACEBACKS = [
    ("shape-wraps-int64", mutate(_relu, _set_shape([1, 2**31 - 1, 2**31 - 1, 4])), 2, ["too big", "2147483647"]),
    ("op-writes-graph-input", mutate(_relu, _inplace_graph_input), 2, ["writes the graph input"]),
    ("name-not-utf8", mutate(_relu, lambda m, sg: setattr(sg.tensors[0], "name", b"in\xff\xfe")), 2,
     ["not valid UTF-8", "0xff"]),
    ("graph-input-constant", mutate(_relu, _constant_graph_input), 2, ["graph input", "constant data"]),
    # found by fuzz/hostile_sweep.py: the TFLite reference interpreter kills the process on a negative beta
    ("softmax-beta-negative", mutate(lambda: make_opnet("softmax", in_shape=(1, 1, 10)),
                                     lambda m, sg: setattr(sg.operators[0].builtinOptions, "beta", -1.0)), 3,
     ["SOFTMAX", "beta -1.0 must be a positive number"]),
]


@pytest.mark.parametrize("case_id, builder, code, words", MODEL_TRACEBACKS, ids=[c[0] for c in MODEL_TRACEBACKS])
def test_former_tracebacks(case_id, builder, code, words, tmp_path, capsys):
    got, _, err = build_cli(capsys, builder(tmp_path), tmp_path / "out", "--no-compile")
    line = one_error_line(err)
    print(f"\n{case_id}: exit {got}: {line}")
    assert got == code, line
    for w in words:
        assert w in line, line
    assert not (tmp_path / "out").exists()


def test_input_read_by_two_ops_is_bit_exact(tmp_path, capsys):
    code, out, err = build_cli(capsys, mutate(_relu, _second_reader)(tmp_path), tmp_path / "out")
    assert code == 0 and "matches the TFLite reference" in out, err


def test_unexpected_exception_is_one_internal_error_line(tmp_path, capsys, monkeypatch):
    """A bug (any non-tinygen exception) is one line naming the type, message and stage; exit 70."""
    from tinygen import errors, plan

    def broken(g):
        return None[0]

    monkeypatch.setattr(plan, "schedule", broken)
    (tmp_path / "fc.tflite").write_bytes(fc())
    code = cli.main(["build", str(tmp_path / "fc.tflite"), "--board", "host", "-o", str(tmp_path / "o"), "--no-compile"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert code == errors.INTERNAL_EXIT == 70
    assert err.startswith("tinygen: internal error (please report): TypeError:") and "test_robustness2.broken" not in err
    assert "in stage tinygen.driver.compile_model" in err, err


def _spawn(args, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen([sys.executable, "-m", "tinygen.cli", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_sigterm_during_a_write_leaves_no_temp_folder(tmp_path):
    """SIGTERM unwinds like Ctrl-C: the half-written .p.new-* folder is removed, exit 128 + 15."""
    import signal

    (tmp_path / "fc.tflite").write_bytes(fc())
    p = _spawn(["build", "fc.tflite", "--board", "host", "-o", "p", "--no-compile"], tmp_path)
    # wait until the project is being written (or written), then terminate
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if any(e.name.startswith(".p.") for e in os.scandir(tmp_path)):
            break
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert p.returncode in (0, 128 + signal.SIGTERM), (p.returncode, err)
    assert sorted(e.name for e in os.scandir(tmp_path) if e.name.startswith(".")) == []


def test_sigterm_sighup_are_like_ctrl_c(monkeypatch, capsys):
    """In-process: SIGTERM and SIGHUP raise errors.Terminated (a KeyboardInterrupt, so every cleanup
    that handles Ctrl-C runs: QEMU of a foreground flash is stopped), exit 128 + N, one line."""
    import signal

    from tinygen import errors

    for sig in (signal.SIGTERM, signal.SIGHUP):
        def cmd(a, sig=sig):
            os.kill(os.getpid(), sig)
            time.sleep(5)
            return 0

        ap = cli.parser()
        monkeypatch.setattr(cli, "parser", lambda: ap)
        ap._subparsers._group_actions[0].choices["run"].set_defaults(func=cmd)
        assert issubclass(errors.Terminated, KeyboardInterrupt)
        code = cli.main(["run", "nowhere"])
        assert code == 128 + sig
        assert capsys.readouterr().err.strip() == f"tinygen: stopped by {signal.Signals(sig).name}"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored after the command


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
def fc_board_project(tmp_path_factory):
    import shutil

    missing = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    d = tmp_path_factory.mktemp("flash")
    (d / "fc.tflite").write_bytes(fc())
    assert cli.main(["build", str(d / "fc.tflite"), "--board", "mps2-an505", "--backend", "portable",
                     "-o", str(d / "proj")]) == 0
    return d / "proj"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_foreground_flash_stops_qemu_on_signal(sig, fc_board_project, tmp_path):
    import signal

    p = _spawn(["flash", str(fc_board_project)], tmp_path)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "serial port" not in line and time.monotonic() < deadline:
            line = p.stdout.readline()
            assert line or p.poll() is None, p.stderr.read()
        assert "serial port" in line
        qemus = _children(p.pid)
        assert qemus and all(_alive(q) for q in qemus)
        p.send_signal(getattr(signal, sig))
        p.communicate(timeout=30)
        assert "Traceback" not in (p.stderr.read() if not p.stderr.closed else "")
        time.sleep(0.2)
        assert not any(_alive(q) for q in qemus), "QEMU outlived tinygen flash"
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
