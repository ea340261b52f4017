"""Environment faults: missing tools, a wrong CMSIS_NN_PATH, output folders tinygen must not touch,
interrupted and unwritable builds. Each gives one ``tinygen: error:`` line, a non-zero exit code
(the class's), no traceback, and nothing the user owns is lost."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from opnets import opnet_path

from tinygen import cli, project
from tinygen.errors import OutputError, ToolchainError


def fc_model() -> Path:
    return opnet_path("fc", in_shape=(16,), units=5)


def run(capsys, *args) -> tuple[int, str, str]:
    code = cli.main(list(args))
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("tinygen: error:")]
    assert len(lines) == 1, err
    return lines[0]


def bin_dir(tmp_path: Path, keep=(), drop=()) -> str:
    """A PATH folder with symlinks to the given tools (``keep``) or to everything in /usr/bin and
    /bin except ``drop``."""
    d = tmp_path / "bin"
    d.mkdir()
    names = keep or sorted({p.name for b in ("/usr/bin", "/bin") for p in Path(b).iterdir()} - set(drop))
    for n in names:
        src = shutil.which(n, path="/usr/local/bin:/usr/bin:/bin")
        if src and not (d / n).exists():
            (d / n).symlink_to(src)
    return str(d)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---- missing tools ---------------------------------------------------------------------------


def test_no_host_toolchain(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(tmp_path / "o"))
    line = error_line(err)
    assert code == ToolchainError.exit_code == 6
    assert "'make' not found on PATH" in line and "apt-get install make" in line


def test_no_gcc(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", bin_dir(tmp_path, keep=("make", "sh")))
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(tmp_path / "o"))
    assert code == 6 and "'gcc' not found on PATH" in error_line(err)


def test_no_arm_toolchain(tmp_path, capsys, monkeypatch):
    """build renders the firmware project and says the compiler is missing (exit 0, by design);
    tinygen run, which needs the firmware, fails with the install command."""
    monkeypatch.setenv("PATH", bin_dir(tmp_path, keep=("make", "gcc", "sh")))
    monkeypatch.delenv("CMSIS_NN_PATH", raising=False)
    out = tmp_path / "o"
    code, stdout, err = run(capsys, "build", str(fc_model()), "--board", "mps2-an505", "-o", str(out))
    assert code == 0 and "arm-none-eabi-gcc not found: project rendered but not compiled" in stdout
    assert (out / "Makefile").exists() and not (out / "build" / "firmware.elf").exists()
    code, _, err = run(capsys, "run", str(out))
    line = error_line(err)
    assert code == 6
    assert "'arm-none-eabi-gcc' was not found on PATH" in line and "gcc-arm-none-eabi" in line


def test_no_qemu(tmp_path, capsys, monkeypatch):
    """tinygen run without qemu-system-arm on PATH (the firmware is stubbed: QEMU is looked up first)."""
    monkeypatch.delenv("CMSIS_NN_PATH", raising=False)
    out = tmp_path / "o"
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "mps2-an505", "-o", str(out), "--no-compile")
    assert code == 0, err
    (out / "build").mkdir()
    (out / "build" / "firmware.elf").write_bytes(b"\x7fELF stub")
    monkeypatch.setenv("PATH", bin_dir(tmp_path, drop=("qemu-system-arm",)))
    code, _, err = run(capsys, "run", str(out))
    line = error_line(err)
    assert code == 6 and "'qemu-system-arm' was not found on PATH" in line and "apt-get install qemu-system-arm" in line


# ---- CMSIS_NN_PATH pointing at the wrong thing ----------------------------------------------


def _wrong_cmsis(tmp_path: Path, what: str) -> Path:
    if what == "empty-dir":
        p = tmp_path / "empty"
        p.mkdir()
    elif what == "a-file":
        p = tmp_path / "cmsis.zip"
        p.write_bytes(b"PK\x03\x04")
    elif what == "missing":
        p = tmp_path / "nowhere"
    else:  # another repository: has Include/ and Source/ but no CMSIS-NN headers
        p = tmp_path / "other-repo"
        (p / "Include").mkdir(parents=True)
        (p / "Source" / "Foo").mkdir(parents=True)
        (p / "Include" / "arm_math.h").write_text("/* CMSIS-DSP */\n")
        (p / "Source" / "Foo" / "foo.c").write_text("int foo(void) { return 1; }\n")
    return p


@pytest.mark.parametrize("what", ["empty-dir", "a-file", "missing", "other-repo"])
def test_wrong_cmsis_nn_path_host(what, tmp_path, capsys, monkeypatch):
    bad = _wrong_cmsis(tmp_path, what)
    monkeypatch.setenv("CMSIS_NN_PATH", str(bad))
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "--backend", "cmsis-nn", "-o", str(tmp_path / "o"))
    line = error_line(err)
    assert code == 6
    assert f"CMSIS_NN_PATH={bad} is not a CMSIS-NN checkout" in line and "v7.0.0" in line


@pytest.mark.parametrize("what", ["empty-dir", "other-repo"])
def test_wrong_cmsis_nn_path_board(what, tmp_path, capsys, monkeypatch):
    """With CMSIS_NN_PATH set the default (generated) kernel set falls back to CMSIS-NN: a wrong path is
    refused before anything is built."""
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed")
    bad = _wrong_cmsis(tmp_path, what)
    monkeypatch.setenv("CMSIS_NN_PATH", str(bad))
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "mps2-an505", "-o", str(tmp_path / "o"))
    error_line(err)
    assert code == 6
    assert f"CMSIS_NN_PATH={bad}" in err and "arm_nnfunctions.h" in err


# ---- output folders --------------------------------------------------------------------------


def test_output_folder_with_user_files_is_refused(tmp_path, capsys):
    out = tmp_path / "firmware"
    (out / "notes").mkdir(parents=True)
    (out / "thesis.tex").write_text("three years of work\n")
    (out / "notes" / "todo.md").write_text("- finish\n")
    before = tree(out)
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(out), "--no-compile")
    line = error_line(err)
    assert code == OutputError.exit_code == 8
    assert "notes/todo.md" in line and "thesis.tex" in line and "never deletes" in line
    assert tree(out) == before


def test_user_file_added_to_a_tinygen_project_is_kept(tmp_path, capsys):
    """A project tinygen wrote can be rebuilt; once the user adds a file it is refused, file kept."""
    out = tmp_path / "p"
    assert run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(out), "--no-compile")[0] == 0
    assert run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(out), "--no-compile")[0] == 0
    (out / "src" / "my_driver.c").write_text("int mine;\n")
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(out), "--no-compile")
    assert code == 8 and "src/my_driver.c" in error_line(err)
    assert (out / "src" / "my_driver.c").read_text() == "int mine;\n"


def test_interrupted_write_keeps_the_old_project(tmp_path, monkeypatch):
    """An exception while the new project is being written leaves the old one byte for byte and
    no temporary folder behind."""
    out = tmp_path / "p"
    project.write(out, {"src/a.c": "int a;\n", "Makefile": "all:\n"})
    before = tree(out)
    real = Path.write_text
    calls = {"n": 0}

    def failing(self, *a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # Ctrl-C in the middle of writing
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "write_text", failing)
    with pytest.raises(KeyboardInterrupt):
        project.write(out, {"src/a.c": "int a2;\n", "src/b.c": "int b;\n", "Makefile": "all: x\n"})
    monkeypatch.setattr(Path, "write_text", real)
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_disk_full_during_write_is_an_output_error(tmp_path, monkeypatch):
    out = tmp_path / "p"
    project.write(out, {"src/a.c": "int a;\n"})
    before = tree(out)

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputError, match="No space left on device"):
        project.write(out, {"src/a.c": "int a2;\n"})
    monkeypatch.undo()
    assert tree(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]


def test_output_is_a_file(tmp_path, capsys):
    f = tmp_path / "model.c"
    f.write_text("mine\n")
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(f), "--no-compile")
    assert code == 8 and "exists and is not a folder" in error_line(err)
    assert f.read_text() == "mine\n"


def test_output_under_a_file(tmp_path, capsys):
    f = tmp_path / "notes.txt"
    f.write_text("mine\n")
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(f / "proj"), "--no-compile")
    assert code == 8 and "is part of the path a file?" in error_line(err)
    assert f.read_text() == "mine\n"


def test_output_in_proc(capsys):
    code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", "/proc/tinygen-project", "--no-compile")
    assert code == 8 and "cannot write the project to /proc/tinygen-project" in error_line(err)


def _immutable(folder: Path) -> bool:
    if not shutil.which("chattr"):
        return False
    return subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode == 0


def test_read_only_output_folder(tmp_path, capsys):
    """A read-only (immutable: root ignores permission bits) parent folder: refused, contents kept."""
    parent = tmp_path / "ro"
    parent.mkdir()
    (parent / "keep.txt").write_text("mine\n")
    if os.geteuid() != 0:
        parent.chmod(0o555)
    elif not _immutable(parent):
        pytest.skip("running as root and chattr +i is not available here: cannot make a read-only folder")
    try:
        code, _, err = run(capsys, "build", str(fc_model()), "--board", "host", "-o", str(parent / "proj"), "--no-compile")
        line = error_line(err)
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(parent)], check=True)
        else:
            parent.chmod(0o755)
    assert code == 8 and "cannot write" in line and str(parent / "proj") in line
    assert sorted(p.name for p in parent.iterdir()) == ["keep.txt"]
