"""The real MLPerf Tiny runner (mlcommons/tiny benchmark/runner, unmodified, from
../shared/deps/mlperf-tiny-runner, in its own venv from PyPI) drives tinygen firmware built with
``--mlperf ID`` on QEMU (mps2-an505) over a pty presented as a USB port (tests/mlperf_launcher.py).

Accuracy mode: every m-results the runner recorded equals what the TFLite reference interpreter
(BUILTIN_REF) gives through the reference DUTs' input conversion and th_results, and the runner's
Top-1 / AUC equal its own scoring of those reference values. Performance mode: five windows,
results equal too, and the timed region is inference only (the runner's elapsed time equals
N x the instruction-count ticks of one run, to the microsecond rounding).

Slow (minutes). Skips without arm-none-eabi-gcc / make / qemu-system-arm or the shared runner
(TINYGEN_REQUIRE_QEMU=1 forces); the runner venv is created on first use (needs PyPI).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from conftest import SHARED, shared_model

_MISSING = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
if _MISSING and os.environ.get("TINYGEN_REQUIRE_QEMU") != "1":
    pytest.skip(f"{', '.join(_MISSING)} not installed (sudo apt-get install gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi qemu-system-arm make)", allow_module_level=True)
if not (SHARED / "deps" / "mlperf-tiny-runner" / "main.py").exists():
    pytest.skip("../shared/deps/mlperf-tiny-runner not found", allow_module_level=True)
pytest.importorskip("serial")

import mlperf_runner as R  # noqa: E402

from tinygen.cli import main  # noqa: E402

pytestmark = pytest.mark.slow
BOARD = "mps2-an505"
MODELS = {"kws01": ("kws_ref_model.tflite", 12, 12), "ic01": ("pretrainedResnet_quant.tflite", 10, 10),
          "ad01": ("ad01_int8.tflite", 6, 2), "vww01": (None, 6, 2)}
# id -> (shared model, dataset files, classes); vww01: a MobileNet-class net with random weights
_BUILT: dict = {}


@pytest.fixture(scope="module")
def runner_py():
    py = R.runner_python()
    if py is None:
        pytest.skip("could not create the MLPerf runner venv (pip install pyyaml pyserial numpy scikit-learn "
                    "scipy matplotlib pyusb failed: no PyPI?)")
    return py


def build(tmp_path_factory, model_id: str):
    if model_id not in _BUILT:
        out = tmp_path_factory.mktemp(f"mlperf-{model_id}") / "proj"
        backend = "cmsis-nn" if os.environ.get("CMSIS_NN_PATH") else "portable"
        if MODELS[model_id][0] is None:
            h5, calib = R.make_vww_model(out.parent / "model")
            src = [str(h5), "--calib", str(calib)]
        else:
            src = [str(shared_model(MODELS[model_id][0]))]
        rc = main(["build", *src, "--board", BOARD, "--backend", backend, "--mlperf", model_id, "-o", str(out)])
        assert rc == 0
        _BUILT[model_id] = out
    return _BUILT[model_id]


@pytest.mark.parametrize("model_id", list(MODELS))
def test_runner_accuracy(tmp_path_factory, tmp_path, runner_py, model_id):
    proj = build(tmp_path_factory, model_id)
    man = json.loads((proj / "manifest.json").read_text())
    assert man["mlperf"]["model"] == model_id and man["profile"] is False
    _, n_files, n_classes = MODELS[model_id]
    data = R.make_dataset(tmp_path / "datasets", model_id, n_files, n_classes, seed=1)
    result, txt, log = R.run(proj / "build" / "firmware.elf", BOARD, data, "a", tmp_path / "run")
    assert f"Device model retrieved: {model_id}" in log
    sent = R.windows(data, model_id, "a")
    got = [r for r in result if "infer" in r]
    assert len(got) == len(sent)
    want = R.expected_results((proj / "model.tflite").read_bytes(), model_id, [s for _, _, s in sent])
    assert [r["file"] for r in got] == [f for f, _, _ in sent]
    assert [r["infer"]["results"] for r in got] == want               # every value, as printed
    if model_id == "ad01":
        assert all(len(w) == 1 for w in want)                         # ONE anomaly score per window
    # the runner's Top-1 / AUC == its own scoring of the reference values
    ref = [{"infer": {"results": w}, "class": str(c), "file": f} for (f, c, _), w in zip(sent, want)]
    assert R.metrics(txt) == R.metrics(R.score(ref, tmp_path / "score")) and "auc" in R.metrics(txt)


@pytest.mark.parametrize("model_id, infer", [("kws01", "4 1"), ("ad01", "20 2"), ("ic01", "2 1"), ("vww01", "2 1")])
def test_runner_performance(tmp_path_factory, tmp_path, runner_py, model_id, infer):
    proj = build(tmp_path_factory, model_id)
    _, n_files, n_classes = MODELS[model_id]
    data = R.make_dataset(tmp_path / "datasets", model_id, n_files, n_classes, seed=2)
    script = R.tests_yaml(tmp_path / "tests.yaml", model_id, infer)
    result, txt, log = R.run(proj / "build" / "firmware.elf", BOARD, data, "p", tmp_path / "run", test_script=script)
    got = [r for r in result if "infer" in r]
    assert len(got) == 5 and all(r["infer"]["throughput"] > 0 for r in got)
    sent = R.windows(data, model_id, "p")[:5]
    want = R.expected_results((proj / "model.tflite").read_bytes(), model_id, [s for _, _, s in sent])
    assert [r["infer"]["results"] for r in got] == want
    # timed region = inference only: elapsed us x clock MHz / N == the ticks of one tg_model_run
    # (the self-test's count, on another input: data-dependent branches move it by well under 1%);
    # -icount: one instruction = 1 ns, so the runner's us are virtual and deterministic
    from tinygen import qemu
    from tinygen.boards import load_board

    board = load_board(BOARD)
    one = qemu.run_selftest(proj / "build" / "firmware.elf", board).cycles
    n = int(infer.split()[0])
    per_run = np.array([r["infer"]["elapsed_time"] for r in got]) * (board.clock_hz / 1e6) / n
    assert np.all(np.abs(per_run / one - 1) < 0.01), (per_run, one)
    assert "Performance results for window 5" in txt
