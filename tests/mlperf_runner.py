"""Test helper: the real MLPerf Tiny runner (``../shared/deps/mlperf-tiny-runner``, unmodified)
against tinygen firmware under QEMU, and what the TFLite reference interpreter says it must report.

- :func:`runner_python`: the runner's own venv (PyPI: pyyaml, pyserial, numpy, scikit-learn, scipy,
  matplotlib, pyusb), created once under ``$TINYGEN_MLPERF_VENV`` (default
  ``~/.cache/tinygen-tests/mlperf-runner-venv``). ``python tests/mlperf_runner.py --setup`` makes it
  ahead of time (CI).
- :func:`make_dataset`: a small dataset in the runner's layout (``<id>/y_labels.csv`` + files).
- :func:`run`: QEMU on a pty (boot output drained), the runner through ``mlperf_launcher.py``;
  returns its ``results.json`` and ``results.txt``.
- :func:`expected_results`: per download, the values the DUT must print, from the reference
  interpreter (BUILTIN_REF kernels) and the reference DUTs' conversions, formatted as the firmware
  formats them (%0.3f).
- :func:`score`: Top-1 / AUC of a result list through the runner's own ``summarize_result``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT.parent / "shared" / "deps" / "mlperf-tiny-runner"
LAUNCHER = Path(__file__).with_name("mlperf_launcher.py")
REQUIREMENTS = ("pyyaml", "pyserial", "numpy", "scikit-learn", "scipy", "matplotlib", "pyusb")
VID, PID = 0x1209, 0x7467   # pid.codes test VID; any pair works, the devices yaml names it
F32 = np.float32
AD_WINDOW, AD_STRIDE = 2560, 512  # bytes_to_send / stride of ad01 (640 float32 per window, 128-value hop)


def venv_dir() -> Path:
    return Path(os.environ.get("TINYGEN_MLPERF_VENV", Path.home() / ".cache" / "tinygen-tests" / "mlperf-runner-venv"))


def runner_python(create: bool = True) -> Path | None:
    """The runner venv's python (created when missing and ``create``); None when it cannot be made."""
    v = venv_dir()
    py, stamp = v / "bin" / "python", v / ".tinygen-ready"
    if stamp.exists():
        return py
    if not create:
        return None
    r = subprocess.run([sys.executable, "-m", "venv", "--clear", str(v)], capture_output=True, text=True)
    if r.returncode == 0:
        r = subprocess.run([str(py), "-m", "pip", "install", "-q", *REQUIREMENTS], capture_output=True, text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout + r.stderr)
        return None
    stamp.write_text(" ".join(REQUIREMENTS) + "\n")
    return py


# ---------------------------------------------------------------------------------------------
# datasets in the runner's layout (datasets.py: y_labels.csv rows file, classes, class[, bytes, stride])

def make_dataset(root: Path, model_id: str, n_files: int, n_classes: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    d = root / model_id
    d.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_files):
        name = f"{model_id}_{i:03d}.bin"
        label = i % n_classes
        if model_id == "kws01":
            data = rng.integers(-128, 128, 490, dtype=np.int8).tobytes()
        elif model_id == "ic01":
            data = rng.integers(0, 256, 32 * 32 * 3, dtype=np.uint8).tobytes()
        elif model_id == "vww01":
            data = rng.integers(0, 256, 96 * 96 * 3, dtype=np.uint8).tobytes()
        elif model_id == "ad01":  # log-mel-like float32 frames; anomalous files shifted
            frames = AD_WINDOW // 4 + 2 * AD_STRIDE // 4
            data = rng.normal(-25.0 + 8.0 * label, 9.0, frames).astype(F32).tobytes()
        else:
            raise ValueError(model_id)
        (d / name).write_bytes(data)
        rows.append(f"{name}, {n_classes}, {label}" + (f", {AD_WINDOW}, {AD_STRIDE}" if model_id == "ad01" else ""))
    (d / "y_labels.csv").write_text("\n".join(rows) + "\n")
    return root


def windows(dataset: Path, model_id: str, mode: str) -> list[tuple[str, int, bytes]]:
    """(file, class, bytes sent) per download, in the runner's order (script.py _ScriptDownloadStep)."""
    out = []
    for row in (dataset / model_id / "y_labels.csv").read_text().splitlines():
        f = [x.strip() for x in row.split(",")]
        data = (dataset / model_id / f[0]).read_bytes()
        if model_id == "ad01":
            size, stride = int(f[3]), int(f[4])
            segs = [data[s:s + size] for s in range(0, len(data) - size + 1, stride)]
            out += [(f[0], int(f[2]), s) for s in (segs[:1] if mode in "pe" else segs)]
        else:
            out.append((f[0], int(f[2]), data))
    return out


VWW_MODEL = r'''
import os, sys
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
import numpy as np, tf_keras as k
k.utils.set_random_seed(0)
L = k.layers
inp = L.Input((96, 96, 3))
x = L.Conv2D(8, 3, 2, padding="same", use_bias=False)(inp)
x = L.ReLU(6.0)(L.BatchNormalization()(x))
for ch, s in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)):   # MobileNetV1 (alpha 0.25) blocks
    x = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, s, padding="same", use_bias=False)(x)))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(ch, 1, use_bias=False)(x)))
out = L.Softmax()(L.Dense(2)(L.GlobalAveragePooling2D()(x)))
k.Model(inp, out).save(sys.argv[1])
np.savez(sys.argv[2], x=np.random.default_rng(0).uniform(-1, 1, (16, 96, 96, 3)).astype("float32"))
'''


def make_vww_model(folder: Path) -> tuple[Path, Path]:
    """A MobileNetV1-class person-detection net (96x96x3 -> 2, random weights) and calibration data.
    Five depthwise-separable blocks: with the sixth (128 channels at 6x6) TF 2.21's BUILTIN_REF
    interpreter aborts in allocate_tensors, so there would be no reference to compare with."""
    folder.mkdir(parents=True, exist_ok=True)
    h5, calib = folder / "vww.h5", folder / "calib.npz"
    if not h5.exists():
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
        r = subprocess.run([sys.executable, "-c", VWW_MODEL, str(h5), str(calib)], capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-2000:]
    return h5, calib


# ---------------------------------------------------------------------------------------------
# what a conforming DUT reports

def fmt3(v) -> str:
    """The firmware's %0.3f (tg_bench.c put_milli, float32): (uint64)(|v| * 1000 + 0.5)."""
    a = abs(F32(v))
    milli = int(F32(F32(a * F32(1000)) + F32(0.5)))
    return f"{'-' if F32(v) < 0 and milli else ''}{milli // 1000}.{milli % 1000:03d}"


def quantize(x: np.ndarray, scale: float, zp: int) -> np.ndarray:
    """QuantizeFloatToInt8 of the reference DUTs: round(x / scale) + zp, half away from zero, saturated."""
    q = (x.astype(F32) / F32(scale)).astype(np.float64)
    return np.clip(np.sign(q) * np.floor(np.abs(q) + 0.5) + zp, -128, 127).astype(np.int8)


def expected_results(model_bytes: bytes, model_id: str, sent: list[bytes]) -> list[list[float]]:
    """m-results of each download: the reference interpreter on the converted input, then the
    reference DUT's th_results (dequantized vector, or ad01's MSE), printed to 3 decimals."""
    import tensorflow as tf

    it = tf.lite.Interpreter(model_content=model_bytes,
                             experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    i0, o0 = it.get_input_details()[0], it.get_output_details()[0]
    (isc, izp), (osc, ozp) = i0["quantization"], o0["quantization"]
    out = []
    for data in sent:
        if model_id == "ad01":
            xf = np.frombuffer(data, "<f4")
            x = quantize(xf, isc, izp)
        elif model_id in ("ic01", "vww01"):
            x = (np.frombuffer(data, np.uint8).astype(np.int16) - 128).astype(np.int8)
        else:
            x = np.frombuffer(data, np.int8)
        it.set_tensor(i0["index"], x.reshape(i0["shape"]))
        it.invoke()
        y = it.get_tensor(o0["index"]).reshape(-1)
        deq = [F32(F32(int(v) - ozp) * F32(osc)) for v in y]
        if model_id == "ad01":
            s = F32(0)
            for d_i, x_i in zip(deq, xf):
                d = F32(d_i - x_i)
                s = F32(s + F32(d * d))
            vals = [F32(s / F32(len(deq)))]
        else:
            vals = deq
        out.append([float(fmt3(v)) for v in vals])
    return out


# ---------------------------------------------------------------------------------------------
# running the runner

def devices_yaml(path: Path, baud: int = 115200) -> Path:
    path.write_text(f"- name: tinygen-qemu\n  type: dut\n  baud: {baud}\n  usb:\n    {VID:#06x}: {PID:#06x}\n")
    return path


def tests_yaml(path: Path, model_id: str, infer: str) -> Path:
    """A performance test script as the runner's tests_performance.yaml (``loop 5: download,
    infer N W``, for ad01 with its watchdog reset), with ``infer`` = "N W": that file asks 1500 x 5
    inferences for ad01 and 70-20 for the others, minutes of emulation."""
    reset = "      - reset 20\n" if model_id == "ad01" else ""
    path.write_text(f"{model_id}:\n  name: {model_id}\n  model: {model_id}\n  truth_file: y_labels.csv\n"
                    f"  script:\n    - loop 5:\n      - download\n      - infer {infer}\n{reset}")
    return path


def run(elf: Path, board: str, dataset: Path, mode: str, work: Path, test_script: Path | None = None,
        timeout: float = 900.0) -> tuple[list[dict], str, str]:
    """The runner in ``mode`` ('a' accuracy, 'p' performance) against ``elf`` on QEMU.
    Returns (results.json, results.txt, log)."""
    import serial

    from tinygen import qemu
    from tinygen.boards import load_board
    from tinygen.device import flash

    py = runner_python()
    assert py is not None, "the MLPerf runner venv could not be created (pip install failed)"
    work.mkdir(parents=True, exist_ok=True)
    proc, pty = flash.start_emulator(elf, load_board(board), paused=True)
    try:
        with serial.Serial(pty, 115200, timeout=0.2) as s:   # drain the boot output: the runner
            qemu.resume(proc)                                 # expects nothing before its name%
            buf, deadline = b"", time.monotonic() + 60
            while b"m-ready" not in buf and time.monotonic() < deadline:
                buf += s.read(256)
            assert b"m-ready" in buf, buf[-400:]
        script = test_script or (RUNNER / {"a": "tests_accuracy.yaml", "p": "tests_performance.yaml"}[mode])
        cmd = [str(py), str(LAUNCHER), str(RUNNER), pty, hex(VID), hex(PID), "--",
               "--device_list", str(devices_yaml(work / "devices.yaml")), "--test_script", str(script),
               "--dataset_path", str(dataset), "--mode", mode]
        r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=timeout)
    finally:
        qemu.stop(proc)
    sessions = sorted((work / "sessions").glob("*"))
    log = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0 and sessions, f"runner failed (exit {r.returncode}):\n{log}"
    res, txt, full = (sessions[-1] / n for n in ("results.json", "results.txt", "log.txt"))
    assert res.exists(), f"no results.json:\n{log}"
    return json.loads(res.read_text()), txt.read_text() if txt.exists() else "", full.read_text()


SCORE = r'''
import json, sys, os
sys.path.insert(0, sys.argv[1])
os.chdir(sys.argv[2])
import main as runner_main
result = json.load(open(sys.argv[3]))
runner_main.summarize_result(result, None, mode="a", results_file=sys.argv[4])
'''


def score(result: list[dict], work: Path) -> str:
    """results.txt lines (Top 1%, AUC) the runner's own summarize_result gives for ``result``."""
    py = runner_python()
    work.mkdir(parents=True, exist_ok=True)
    (work / "score.py").write_text(SCORE)
    (work / "result.json").write_text(json.dumps(result))
    out = work / "score.txt"
    r = subprocess.run([str(py), str(work / "score.py"), str(RUNNER), str(work), str(work / "result.json"), str(out)],
                       cwd=work, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out.read_text()


def metrics(results_txt: str) -> dict[str, float]:
    """{"top1": .., "auc": ..} from results.txt lines ``... Top 1% = 75.0`` / ``... AUC = 0.812``."""
    got = {}
    for ln in results_txt.splitlines():
        if "Top 1% =" in ln:
            got["top1"] = float(ln.rsplit("=", 1)[1])
        elif "AUC =" in ln:
            got["auc"] = float(ln.rsplit("=", 1)[1])
    return got


if __name__ == "__main__":
    if sys.argv[1:] == ["--setup"]:
        p = runner_python()
        print(p or "could not create the MLPerf runner venv")
        sys.exit(0 if p else 1)
    sys.exit("usage: python tests/mlperf_runner.py --setup")
