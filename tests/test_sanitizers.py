"""Generated C under ASan + UBSan with the arena guard words (a subset; fuzz/run_sanitizers.py runs
every model), and the guard itself: a deliberately corrupted plan is caught at run time."""

import os
import re
import sys
from pathlib import Path

import pytest
from conftest import backends
from opnets import OPNET_CASES, make_opnet

from tinygen import driver, hostbuild, project, reference
from tinygen.errors import ToolchainError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
import run_sanitizers as san  # noqa: E402

SUBSET = ["conv_3x3_s2_same_relu", "dw_5x5_s2_same_relu6_m3", "fc_rows", "add_bcast_hw", "softmax_rows", "concat_width3",
          "split_v_h", "resize_bilinear_half_pixel", "deconv_4x3_s2x1_valid_relu", "gru_unroll"]
CASES = {c[0]: c for c in OPNET_CASES}


@pytest.fixture(autouse=True)
def _san_env(monkeypatch):
    for k, v in san.SAN_ENV.items():
        monkeypatch.setenv(k, v)


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("case_id", SUBSET)
def test_opnet_clean_under_sanitizers(case_id, backend, tmp_path):
    _, kind, spec = CASES[case_id]
    flags = san.SAN_CFLAGS + (f" {san.CMSIS_WAIVER}" if backend == "cmsis-nn" else "")
    assert san.check(make_opnet(kind, **spec), case_id, backend, tmp_path, n_inputs=8, cflags=flags) == "ok"


def _ksets() -> list:
    skip = pytest.mark.skipif(not os.environ.get("CMSIS_NN_PATH"),
                              reason="CMSIS_NN_PATH not set: CMSIS-NN tests skipped (see README)")
    return ["generated", "portable", pytest.param("cmsis-nn", marks=skip)]


@pytest.mark.slow
@pytest.mark.parametrize("kset", _ksets())
def test_vww_class_model_clean_under_sanitizers(kset, tmp_path):
    """A VWW-class model (MobileNetV1-0.25 96x96, benchmarks/arena_mobilenet.py) with every kernel
    set under ASan + UBSan + the arena guard: bit-exact on random inputs, no finding (CMSIS-NN's
    own negative left shift waived when CMSIS-NN is linked, docs/robustness.md)."""
    assert san.check(san.vww_model(), san.VWW, kset, tmp_path, n_inputs=3) == "ok"


def _corrupt_arena(case_id: str, shrink_past_end: int, tmp_path: Path, guard: bool):
    """Build with TG_ARENA_SIZE cut so the highest buffer ends ``shrink_past_end`` bytes past it
    (verify_plan bypassed: the emitted header is edited); returns (exit status message or None)."""
    _, kind, spec = CASES[case_id]
    buf = make_opnet(kind, **spec)
    c = driver.compile_model(buf, case_id, "portable", arch="none")
    top = max(b.offset + b.size for b in c.plan.buffers)
    files = driver.host_project(c)
    header = files["src/model.h"]
    new_size = top - shrink_past_end
    assert f"#define TG_ARENA_SIZE {c.plan.arena_size}u" in header
    files["src/model.h"] = header.replace(f"#define TG_ARENA_SIZE {c.plan.arena_size}u", f"#define TG_ARENA_SIZE {new_size}u")
    project.write(tmp_path / "p", files)
    flags = san.SAN_CFLAGS if guard else san.SAN_CFLAGS.replace("-DTG_ARENA_GUARD", "")
    flags += " -Wno-array-bounds -Wno-stringop-overflow -Wno-stringop-overread"  # gcc may see the constant overflow at compile time
    exe = hostbuild.build(tmp_path / "p", "portable", extra_cflags=flags, cflags="-O1 -g")
    x = reference.pack(reference.random_inputs(buf, 2, seed=1))
    with pytest.raises(ToolchainError) as e:
        hostbuild.run(exe, x)
    return str(e.value)


def test_arena_guard_catches_overflow_into_guard_words(tmp_path):
    """The last buffer spills 4 bytes past the (shrunk) arena, into the guard words: ASan sees
    nothing (still inside the array), the guard check returns TG_ERR_ARENA_GUARD (-21)."""
    msg = _corrupt_arena("conv_3x3_same", 4, tmp_path, guard=True)
    assert "tg_model_run failed: -21" in msg, msg


def test_asan_catches_overflow_past_the_arena(tmp_path):
    """Without guard words an arena 64 bytes too small is an ASan global-buffer-overflow."""
    msg = _corrupt_arena("conv_3x3_same", 64, tmp_path, guard=False)
    assert re.search(r"AddressSanitizer: global-buffer-overflow|runtime error", msg), msg


def test_gcc_sees_a_constant_overflow(tmp_path):
    """With the default warnings (-Werror), a memcpy past the shrunk arena does not even compile."""
    _, kind, spec = CASES["conv_3x3_same"]
    c = driver.compile_model(make_opnet(kind, **spec), "conv_3x3_same", "portable", arch="none")
    top = max(b.offset + b.size for b in c.plan.buffers)
    files = driver.host_project(c)
    files["src/model.h"] = files["src/model.h"].replace(f"#define TG_ARENA_SIZE {c.plan.arena_size}u",
                                                        f"#define TG_ARENA_SIZE {top - 64}u")
    project.write(tmp_path / "p", files)
    with pytest.raises(ToolchainError, match="array-bounds|stringop-overflow"):
        hostbuild.build(tmp_path / "p", "portable")


def test_correct_plan_passes_the_guard(tmp_path):
    """The same model with its real arena size runs clean with the guard and the sanitizers."""
    _, kind, spec = CASES["conv_3x3_same"]
    assert san.check(make_opnet(kind, **spec), "conv_3x3_same", "portable", tmp_path, n_inputs=4) == "ok"


@pytest.mark.skipif(not os.environ.get("CMSIS_NN_PATH"), reason="CMSIS_NN_PATH not set: CMSIS-NN tests skipped (see README)")
def test_cmsis_lib_is_built_with_the_sanitizer_flags(tmp_path):
    """hostbuild passes extra_cflags to the cached CMSIS-NN library: the instrumented library
    references the ASan runtime."""
    import subprocess

    lib = hostbuild.cmsis_host_lib(f"-O1 -g {san.SAN_CFLAGS}")
    syms = subprocess.run(["nm", str(lib)], capture_output=True, text=True).stdout
    assert "__asan_" in syms
