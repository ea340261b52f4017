"""The commands as a user meets them (issue 17): project resolution from any folder, `tinygen run`
on host projects and on another emulated board, self-test vectors that prove something, analyze
--json indices equal the firmware's, host projects keep the .tflite, one kernel-set default rule,
TensorFlow's log noise hidden unless --verbose, and the demo flow from inside the project folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, shared_model

from tinygen import boards, cli, driver, faults, project, qemu, reference
from tinygen.errors import BoardError, DeviceError, OutputError

needs_arm = pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="arm-none-eabi-gcc not installed")
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None, reason="gcc/make missing")

KWS, AD, RESNET = "kws_ref_model.tflite", "ad01_int8.tflite", "pretrainedResnet_quant.tflite"


def _tinygen(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """The CLI as a user runs it: a fresh process, this checkout first on the path."""
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    for k in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL"):
        if env is None or k not in env:
            e.pop(k, None)  # the user's shell does not set them; tinygen must
    return subprocess.run([sys.executable, "-m", "tinygen.cli", *args], cwd=cwd, env=e, capture_output=True,
                          text=True, timeout=900)


def _main(capsys, *args: str) -> tuple[int, str, str]:
    rc = cli.main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def _manifest(proj: Path) -> dict:
    return json.loads((proj / "manifest.json").read_text())


# ---- project resolution -------------------------------------------------------------------------

def _fake_project(folder: Path, **extra) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"tinygen_version": "0.1.0", **extra}))
    return folder


def test_resolve_explicit_then_current_folder_then_default(tmp_path):
    a = _fake_project(tmp_path / "a")
    assert project.resolve(str(a), cwd=tmp_path) == a                          # explicit path wins
    assert project.resolve(None, cwd=a) == a                                    # inside a project
    d = _fake_project(tmp_path / project.DEFAULT_PROJECT)
    assert project.resolve(None, cwd=tmp_path) == d                             # ./tinygen_project
    assert project.resolve(None, cwd=a) == a                                    # current folder before it


def test_resolve_error_lists_where_it_looked(tmp_path):
    (tmp_path / "manifest.json").write_text('{"name": "some other tool"}')     # not a tinygen manifest
    with pytest.raises(OutputError) as e:
        project.resolve(None, cwd=tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path) in msg and f"./{project.DEFAULT_PROJECT} (missing)" in msg
    with pytest.raises(OutputError, match=r"nope is not a tinygen project \(does not exist\)"):
        project.resolve(str(tmp_path / "nope"))


def test_every_project_command_resolves_the_current_folder(tmp_path, monkeypatch, capsys):
    """run, flash, bench and report in a folder that is neither a project nor holds one: one line
    naming the places looked at (no command says 'tinygen_project is not a tinygen project')."""
    monkeypatch.chdir(tmp_path)
    for cmd in (["run"], ["flash"], ["bench", "--sim"], ["report"]):
        rc, out, err = _main(capsys, *cmd)
        assert rc == OutputError.exit_code, (cmd, out, err)
        assert err.startswith("tinygen: error: no tinygen project found: looked in the current folder"), (cmd, err)
        assert err.count("\n") == 1 and "Traceback" not in err


# ---- shared builds (module scope: each is compiled once) -----------------------------------------

@pytest.fixture(scope="module")
def host_kws(tmp_path_factory):
    out = tmp_path_factory.mktemp("host") / "kws-host"
    driver.build(str(shared_model(KWS)), "host", out, "portable", log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def u575_ad(tmp_path_factory):
    """A nucleo-u575 (real board) firmware project, built."""
    out = tmp_path_factory.mktemp("u575") / "ad-u575"
    c, out, _ = driver.build(str(shared_model(AD)), "nucleo-u575", out, "portable", log=lambda m: None)
    if shutil.which("arm-none-eabi-gcc"):
        from tinygen import toolchain

        toolchain.make_firmware(out, "portable", board=boards.load_board("nucleo-u575"))
    return out


# ---- tinygen run on a host project ---------------------------------------------------------------

@needs_gcc
def test_run_host_project_from_inside(host_kws, monkeypatch, capsys):
    monkeypatch.chdir(host_kws)
    rc, out, err = _main(capsys, "run")
    m = _manifest(host_kws)
    assert rc == 0, out + err
    assert "on the host" in out and out.rstrip().endswith("TG_OK")
    assert (f"output checksum {m['selftest']['checksum']} over 4 self-test vectors (equals the manifest's "
            f"{m['selftest']['checksum']}); 4 of 4 match; matches the TFLite reference: yes") in out


@needs_gcc
def test_host_selftest_checks_every_vector(host_kws, tmp_path, capsys):
    """A wrong expected byte in the *last* vector fails the run: every vector is checked on the device."""
    proj = tmp_path / "p"
    shutil.copytree(host_kws, proj)
    src = (proj / "src" / "model_test.c").read_text()
    head, tail = src.split("tg_test_expected", 1)
    blocks = tail.split("{\n")                      # [decl, v0, v1, v2, v3]
    first = blocks[-1].split(",", 1)
    blocks[-1] = str(int(first[0]) ^ 1) + "," + first[1]
    (proj / "src" / "model_test.c").write_text(head + "tg_test_expected" + "{\n".join(blocks))
    rc, out, _ = _main(capsys, "run", str(proj), "--rebuild")
    assert rc == 1 and "TG_MISMATCH vector=3 index=0" in out and "3 of 4 match; matches the TFLite reference: NO" in out
    assert out.rstrip().endswith("TG_FAIL")


def test_host_project_refuses_an_emulated_board(host_kws, capsys):
    rc, _, err = _main(capsys, "run", str(host_kws), "--board", "mps2-an505")
    assert rc == BoardError.exit_code
    assert "is a host project" in err and "model.tflite --board mps2-an505" in err and err.count("\n") == 1


# ---- self-test vectors ---------------------------------------------------------------------------

@pytest.mark.parametrize("model", [KWS, RESNET])
def test_selftest_vectors_are_not_saturated(model):
    """Full-range noise drives KWS/ResNet to a saturated one-hot output (the old single vector);
    the chosen vectors are not, they differ from each other, and the manifest's recipe and CRCs
    reproduce them."""
    buf = shared_model(model).read_bytes()
    noise = reference.pack(reference.run(buf, reference.random_inputs(buf, 1, seed=0)))[0]
    assert np.count_nonzero((noise > -128) & (noise < 127)) <= 2           # ~one-hot: what the issue saw
    v = reference.selftest_vectors(buf)
    assert v.inputs.shape[0] == v.outputs.shape[0] == 4
    assert len({o.tobytes() for o in v.outputs}) == 4 and len({i.tobytes() for i in v.inputs}) == 4
    for o in v.outputs:
        assert np.count_nonzero((o > -128) & (o < 127)) >= 4, o            # not one-hot
    assert v.manifest["checksum"] == f"{zlib.crc32(v.outputs.tobytes()):08x}"
    for item, x, y in zip(v.manifest["items"], v.inputs, v.outputs):
        again = reference.selftest_input(buf, item["span"], item["seed"])
        assert again.tobytes() == x.tobytes() and item["input_crc32"] == f"{zlib.crc32(x.tobytes()):08x}"
        shape = tuple(int(d) for d in reference.interpreter(buf).get_input_details()[0]["shape"])
        ref = reference.pack(reference.run(buf, again.reshape(1, *shape)))[0]
        assert ref.tobytes() == y.tobytes() and item["output_crc32"] == f"{zlib.crc32(y.tobytes()):08x}"
        assert item["saturated"] == int(np.count_nonzero((y == -128) | (y == 127)))


def test_selftest_checksum_tells_models_apart():
    """Two quantizations of one network (the KWS int8 model and the same model with one weight
    changed by 1 LSB) print different checksums: the vectors see the difference."""
    from tinygen.flatbuf import read_model

    buf = bytearray(shared_model(KWS).read_bytes())
    fb = read_model(bytes(buf))
    a = reference.selftest_vectors(bytes(buf)).manifest["checksum"]
    # flip the lowest bit of the largest int8 constant buffer (a conv's weights)
    big = max((b for b in fb.buffers if b is not None and len(b) > 64), key=len)
    off = bytes(buf).find(bytes(big))
    changed = 0
    for k in range(0, min(len(big), 4000), 7):
        buf[off + k] ^= 1
        changed += 1
    b = reference.selftest_vectors(bytes(buf)).manifest["checksum"]
    assert changed and a != b


def test_manifest_records_the_vectors(host_kws):
    m = _manifest(host_kws)["selftest"]
    assert m["vectors"] == 4 and len(m["items"]) == 4 and re.fullmatch(r"[0-9a-f]{8}", m["checksum"])
    assert all({"span", "seed", "input_crc32", "output_crc32", "saturated"} <= set(it) for it in m["items"])
    text = (host_kws / "src" / "model_test.c").read_text()
    assert "const uint32_t tg_test_vectors = 4u;" in text


# ---- another emulated board ----------------------------------------------------------------------

@needs_arm
@needs_qemu
def test_run_real_board_project_on_emulated_board_rebuilds_it(u575_ad, capsys):
    before = {p: p.read_bytes() for p in u575_ad.rglob("*") if p.is_file() and "build" not in p.parts}
    rc, out, err = _main(capsys, "run", str(u575_ad), "--board", "mps2-an505")
    assert rc == 0, out + err
    var = u575_ad / "build" / "board-mps2-an505"
    assert "rebuilding the nucleo-u575 project for mps2-an505" in out and "4 of 4 match" in out
    ld, cfg = (var / "linker.ld").read_text(), (var / "src" / "board_config.h").read_text()
    assert "FLASH (rx)  : ORIGIN = 0x10000000" in ld and "RAM   (rwx) : ORIGIN = 0x38000000" in ld
    assert '#define TG_BOARD_NAME "mps2-an505"' in cfg and "#define TG_CLOCK_INIT_NONE 1" in cfg
    assert "ORIGIN = 0x08000000" in (u575_ad / "linker.ld").read_text()
    assert {p: p.read_bytes() for p in before} == before                     # the project itself untouched
    rc, out, _ = _main(capsys, "run", str(u575_ad), "--board", "mps2-an505")  # second time: no rebuild
    assert rc == 0 and "rebuilding" not in out


@needs_arm
@needs_qemu
def test_elf_of_another_board_lockup_is_decoded(u575_ad):
    """QEMU's 'Lockup: can't escalate 3 to HardFault' + register dump becomes one decoded line."""
    with pytest.raises(DeviceError) as e:
        qemu.run_selftest(u575_ad / "build" / "firmware.elf", boards.load_board("mps2-an505"), timeout=30)
    msg = str(e.value)
    assert msg.startswith("CPU lockup under QEMU mps2-an505 (Lockup: can't escalate 3 to HardFault")
    assert "pc 0x" in msg and "outside mps2-an505's code" in msg and "linked for another board" in msg
    assert "R00=" not in msg and "\n" not in msg


def test_retarget_refuses_what_cannot_run_unchanged(tmp_path, capsys):
    proj = _fake_project(tmp_path / "p", board="nucleo-u575", backend="cmsis-nn", arch="mve", model="m",
                         arena_bytes=1000, weights_bytes=1000)
    rc, _, err = _main(capsys, "run", str(proj), "--board", "mps2-an505")
    assert rc == BoardError.exit_code and "compiled for CMSIS-NN arch 'mve'" in err and err.count("\n") == 1
    _fake_project(proj, board="nucleo-u575", backend="portable", arch="portable", model="m",
                  arena_bytes=200_000, weights_bytes=1000)
    rc, _, err = _main(capsys, "run", str(proj), "--board", "netduinoplus2")
    assert rc == BoardError.exit_code and "does not fit netduinoplus2" in err
    rc, _, err = _main(capsys, "run", str(proj), "--board", "nucleo-f446re")
    assert rc == BoardError.exit_code and "real hardware" in err


def test_tg_fault_line_is_decoded():
    r = "TG_BOOT model=ab board=x clock=1\r\nTG_FAULT exc=6 pc=00000120 lr=00000101 cfsr=00010000 hfsr=00000000 exc_return=fffffff9\r\n"
    with pytest.raises(DeviceError, match=r"UsageFault \(exception 6\) at pc 0x00000120.*UNDEFINSTR"):
        qemu.parse_selftest(r)
    assert faults.decode_bits(0x82, faults.CFSR_BITS)[0].startswith("DACCVIOL")


# ---- analyze --json ------------------------------------------------------------------------------

@pytest.mark.parametrize("model", [KWS, RESNET])
def test_analyze_json_indices_are_the_firmware_layers(model, capsys):
    path = shared_model(model)
    rc, out, _ = _main(capsys, "analyze", str(path), "--json", "--no-tflm", "--board", "mps2-an505", "--backend", "portable")
    assert rc == 0
    a = json.loads(out)
    buf = path.read_bytes()
    c = driver.compile_model(buf, path.stem, "portable", "dsp", board_name="mps2-an505")
    fw = [(ly["index"], ly["op_index"], ly["op"]) for ly in c.emitted.manifest["layers"]]
    calls = [(ly["index"], ly["op_index"], ly["op"]) for ly in a["layers"] if not ly["shape_only"]]
    assert calls == fw
    shape_only = [ly for ly in a["layers"] if ly["shape_only"]]
    assert all(ly["index"] is None and ly["kernel"] == "" for ly in shape_only)
    if model == KWS:
        assert [ly["op"] for ly in shape_only] == ["RESHAPE"]


# ---- kernel-set default, host projects keep the .tflite, TF noise --------------------------------

def test_kernel_default_is_one_rule(monkeypatch):
    """The generated kernel set on the host and on every board; CMSIS_NN_PATH only decides what the
    layers without a generated kernel fall back to."""
    board = boards.load_board("mps2-an505")
    for env in ("/somewhere", None):
        if env:
            monkeypatch.setenv("CMSIS_NN_PATH", env)
        else:
            monkeypatch.delenv("CMSIS_NN_PATH", raising=False)
        assert driver.default_backend(None) == driver.default_backend(board) == "generated"


@pytest.mark.skipif(not os.environ.get("CMSIS_NN_PATH") and not (ROOT.parent / "shared/deps/CMSIS-NN-7.0.0").is_dir(),
                    reason="no CMSIS-NN")
def test_default_falls_back_to_cmsis_nn_when_installed(tmp_path, monkeypatch):
    nn = os.environ.get("CMSIS_NN_PATH") or str(ROOT.parent / "shared/deps/CMSIS-NN-7.0.0")
    kws = shared_model("kws_ref_model.tflite").read_bytes()
    monkeypatch.setenv("CMSIS_NN_PATH", nn)
    c, out, _ = driver.build(str(shared_model("kws_ref_model.tflite")), "host", tmp_path / "h", log=lambda m: None)
    m = _manifest(out)
    kernels = {ly["kernel"] for ly in m["layers"]}
    # SOFTMAX has no generated kernel: CMSIS-NN's competes with the portable one (the cycle model,
    # calibrated on QEMU, picks the cheaper: on KWS's 12 classes tg_ref_softmax_s8, 6,200 vs 6,500)
    assert c.backend == m["backend"] == "generated" and "gen.conv" in kernels
    assert "arm_softmax_s8" in {a for k in c.calls if k for a in [k.kernel.name, *k.alternatives]}
    assert m["link"] == ("cmsis-nn" if any(k.startswith("arm_") for k in kernels) else "portable")
    monkeypatch.delenv("CMSIS_NN_PATH")
    c = driver.compile_model(kws, "kws", driver.default_backend(None), "none", stop_after="plan")
    assert c.link == "portable" and {k.kernel.name for k in c.calls if k} >= {"tg_ref_softmax_s8", "gen.conv"}


# TensorFlow's lines (tinygen's own "WARNING: no --calib data" is not one of them)
NOISE = re.compile(r"tensorflow|absl|oneDNN|cuda|fully_quantize|\w+Warning: |^[IWEF]\d{4} ", re.M)


def test_build_from_h5_prints_no_tensorflow_lines_and_keeps_the_tflite(tmp_path):
    h5 = shared_model("ad01.h5")
    r = _tinygen("build", str(h5), "--board", "host", "-o", "quiet", "--no-compile", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert not NOISE.search(r.stdout + r.stderr), r.stdout + r.stderr
    assert "project written to quiet/" in r.stdout
    tfl = tmp_path / "quiet" / "model.tflite"                                 # host projects keep it
    assert tfl.is_file() and hashlib.sha256(tfl.read_bytes()).hexdigest()[:16] == _manifest(tmp_path / "quiet")["model_sha256_16"]
    v = _tinygen("build", str(h5), "--board", "host", "-o", "loud", "--no-compile", "--verbose", cwd=tmp_path)
    assert v.returncode == 0 and NOISE.search(v.stdout + v.stderr)          # the check above can see them


@pytest.mark.slow
def test_optimize_prints_no_tensorflow_lines(tmp_path):
    """optimize trains, converts twice and saves HDF5: the run with the most TensorFlow chatter."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    import tf_keras as keras

    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(8, 3, activation="relu"),
                          keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(4, activation="softmax")])
    m.save(tmp_path / "m.h5")
    r = _tinygen("optimize", "m.h5", "--synthetic", "--prune", "0.5", "--epochs", "1", "-o", "o.h5", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "o_int8.tflite").is_file()
    assert not NOISE.search(r.stdout + r.stderr), r.stdout + r.stderr


def test_real_errors_survive_the_filter(capfd):
    from tinygen import quiet

    quiet.setup(verbose=False)
    with quiet.native_stderr():
        os.write(2, b"I0000 00:00:1796117725.865394   11434 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 something real went wrong\n")
    err = capfd.readouterr().err
    assert "oneDNN" not in err and "something real went wrong" in err


# ---- done when: the demo flow, then run / bench --sim / report with no arguments ------------------

@needs_arm
@needs_qemu
@pytest.mark.slow
def test_demo_then_commands_from_inside_the_project(tmp_path):
    """`make demo`'s build (KWS for mps2-an505 into ./tinygen_project) and run, then from inside the
    project folder `tinygen run`, `tinygen bench --sim` and `tinygen report` without arguments."""
    model = shared_model(KWS)
    r = _tinygen("build", str(model), "--board", "mps2-an505", "-o", "tinygen_project", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _tinygen("run", "tinygen_project", cwd=tmp_path)                      # the demo's own run
    assert r.returncode == 0 and "TG_OK" in r.stdout, r.stdout + r.stderr
    inside = tmp_path / "tinygen_project"
    r = _tinygen("run", cwd=inside)
    assert r.returncode == 0 and "4 of 4 match" in r.stdout and r.stdout.rstrip().endswith("TG_OK"), r.stdout + r.stderr
    r = _tinygen("bench", "--sim", "-n", "2", "-w", "1", "--vectors", "2", "--no-progress", cwd=inside)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (inside / "bench.json").is_file() and json.loads((inside / "bench.json").read_text())["outputs_match"]
    r = _tinygen("report", cwd=inside)
    assert r.returncode == 0 and (inside / "report.html").is_file(), r.stdout + r.stderr
    assert not NOISE.search(r.stdout + r.stderr)
