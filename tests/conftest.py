"""Shared fixtures: paths to the shared reference models, CMSIS-NN availability, quiet TF."""

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MLPERF = SHARED / "models" / "mlperf-tiny"


def shared_model(name: str) -> Path:
    p = MLPERF / name
    if not p.exists():
        pytest.skip(f"{p} not found: the shared MLPerf Tiny models live in ../shared beside the checkout")
    return p


def backends() -> list:
    """Both kernel backends; cmsis-nn skips with a reason when CMSIS_NN_PATH is unset."""
    skip = pytest.mark.skipif(not os.environ.get("CMSIS_NN_PATH"),
                              reason="CMSIS_NN_PATH not set: CMSIS-NN tests skipped (see README)")
    return ["portable", pytest.param("cmsis-nn", marks=skip)]


# ---- markers: which lane a test belongs to --------------------------------------------------------
# unit       fast, no TensorFlow, no compiler, no emulator (`make test-unit`, < 1 min); a module opts in
#            with `pytestmark = pytest.mark.unit`; doctests of tinygen/ are unit tests too
# tf         needs TensorFlow (the reference interpreter or the Keras front end)
# toolchain  runs gcc / arm-none-eabi-gcc
# qemu       boots firmware in qemu-system-arm
# cmsis      needs CMSIS-NN (CMSIS_NN_PATH); with TINYGEN_REQUIRE_CMSIS=1 (CI) it fails instead of skipping
# slow       long (training, soak, many emulator runs)
MODULE_MARKS = {
    "test_analyze": ("tf", "toolchain", "qemu"), "test_bench_faults": ("qemu", "toolchain"),
    "test_bench_protocol": ("toolchain",), "test_bench_qemu": ("qemu", "toolchain", "tf"),
    "test_boards": ("toolchain", "qemu"), "test_cmsis_backend": ("cmsis", "toolchain", "tf"),
    "test_e2e_models": ("tf", "toolchain"), "test_e2e_opnets": ("tf", "toolchain"),
    "test_env_faults": ("toolchain", "qemu"), "test_errors": ("tf",), "test_firmware_models": ("toolchain", "qemu", "tf"),
    "test_firmware_qemu": ("qemu", "toolchain"), "test_fuzz_parser": ("toolchain",), "test_golden": ("tf",),
    "test_kernels": ("tf", "toolchain"), "test_quant_lut": ("tf",), "test_kernels_more": ("toolchain",), "test_passes_dilated": ("tf",), "test_calib_frontdoor": ("tf",), "test_ops_checks": ("tf",), "test_e2e_mix": ("tf", "toolchain", "qemu"), "test_e2e_zoo": ("tf", "toolchain", "slow"), "test_optimize": ("tf", "slow"), "test_report": ("tf", "toolchain"),
    "test_overlap_kernels": ("toolchain",), "test_patch_e2e": ("tf", "toolchain", "qemu"),
    "test_robustness": ("tf",), "test_robustness3": ("tf", "toolchain"), "test_lstm": ("tf", "toolchain"), "test_sanitizers": ("tf", "toolchain"), "test_soak": ("qemu", "slow"),
}


def pytest_configure(config):
    for name, what in (("unit", "fast: no TensorFlow, compiler or emulator"), ("tf", "needs TensorFlow"),
                       ("toolchain", "runs a C compiler"), ("qemu", "boots firmware in QEMU"),
                       ("cmsis", "needs CMSIS-NN (CMSIS_NN_PATH)"), ("slow", "long-running (training, emulation)")):
        config.addinivalue_line("markers", f"{name}: {what}")


def pytest_collection_modifyitems(config, items):
    for item in items:
        mod = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        for m in MODULE_MARKS.get(mod, ()):
            item.add_marker(getattr(pytest.mark, m))
        if "cmsis" in item.name:
            item.add_marker(pytest.mark.cmsis)
        if isinstance(item, pytest.DoctestItem):
            item.add_marker(pytest.mark.unit)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under TINYGEN_REQUIRE_CMSIS=1 (CI), a test skipped for want of CMSIS-NN is a failure."""
    outcome = yield
    rep = outcome.get_result()
    if (os.environ.get("TINYGEN_REQUIRE_CMSIS") == "1" and rep.skipped and not hasattr(rep, "wasxfail")
            and "CMSIS" in str(rep.longrepr)):  # an expected failure is reported as skipped too
        rep.outcome = "failed"
        rep.longrepr = f"TINYGEN_REQUIRE_CMSIS=1 but this test was skipped: {rep.longrepr}"
