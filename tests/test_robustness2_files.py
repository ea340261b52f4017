"""Robustness round 2 (issue 15): calibration data read lazily and bounded, output folders never
damaged (nothing tinygen did not write deleted or re-permissioned, no symlink followed, system
folders refused, a lock, stale temporary folders removed).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
from test_robustness import build_cli, fc, one_error_line

from tinygen import cli

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

