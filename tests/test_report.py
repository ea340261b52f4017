"""tinygen report: the HTML renders in headless Chromium with its images loaded and visible."""

import base64
import json
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_model

from tinygen import driver, report, toolchain
from tinygen.errors import OutputError

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH: sudo apt-get install chromium")
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A real board project of the AD model (portable: no CMSIS-NN needed), with an
    optimization history beside it in the format tinygen build --prune writes."""
    out = tmp_path_factory.mktemp("proj") / "ad"
    driver.build(str(shared_model("ad01_int8.tflite")), "mps2-an505", out, "portable", log=lambda m: None)
    man = json.loads((out / "manifest.json").read_text())
    (out / "optimize.json").write_text(json.dumps(_history(man, synthetic=False)))
    return out


def _history(man, synthetic):
    """optimize.json as tinygen.optimize.commands.history writes it, from real result objects."""
    from tinygen.optimize.commands import history
    from tinygen.optimize.metrics import StepRow
    from tinygen.optimize.pipeline import OptimizeResult
    from tinygen.optimize.prune import Space
    from tinygen.optimize.rewrite import Candidate

    rows = [StepRow(s, acc, acc - 0.01, man["macs"] // k, man["weights_bytes"] // k, 0, man["arena_bytes"] // k,
                    man["weights_bytes"] // k, acc + 0.01, acc, 40.0 / k, 800_000 // k, "acc", note)
            for s, acc, k, note in (("baseline", 0.9, 1, ""), ("prune (12/48 ch)", 0.88, 2, ""),
                                    ("ptq (+3 ep)", 0.875, 2, "shipped"), ("qat (3 ep)", 0.86, 2, "not shipped"))]
    res = OptimizeResult(rows, "m.h5", "m_int8.tflite", b"", ptq_int8_acc=0.865, qat_int8_acc=0.85, shipped="ptq",
                         rewrite_report=[Candidate("conv2d_1", 294912, 41984, 0.031, True, "", 450000.0, 0.58)],
                         prune_report=[Space("dense_7", 128, ["dense_7"], "", {0.125: 0.001, 0.25: 0.004}, 0.25)],
                         synthetic=synthetic, budget_misses=["latency 20.00 ms > 10.00 ms (2.00x)"],
                         warnings=["WARNING: QAT is not better than PTQ at the same 3 fine-tune epochs"],
                         info={"data": "synthetic" if synthetic else "digits.npz", "test_split": "x_test/y_test",
                               "seed": 7, "epochs": 3, "board": "mps2-an505", "backend": "generated",
                               "latency": "QEMU", "task": "classify", "metric": "acc", "metric_name": "accuracy",
                               "budget": {"latency_ms": 10.0, "ram": None, "flash": None, "macs": None,
                                          "max_drop": 0.01}, "max_drop": 0.01,
                               "budget_why": "the least pruning that meets it loses 0.0300",
                               "samples": {"train": 1078, "val": 359, "test": 360}})
    return history(res, {"seed": 7, "epochs": 3, "qat": True, "target_latency": "10", "synthetic": synthetic,
                         "synthetic_range": [0.0, 255.0]})


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_report_is_self_contained(project, tmp_path):
    html = report.build_report(project)
    imgs = _images(html)
    # timeline, layers, gauges, history
    assert len(imgs) == 4 and all(i.startswith(b"\x89PNG\r\n\x1a\n") for i in imgs)
    assert "http://" not in html and "https://" not in html
    man = json.loads((project / "manifest.json").read_text())
    assert f"{man['arena_bytes']:,} B" in html
    for ly in man["layers"]:
        assert ly["name"][:60].replace("&", "&amp;") in html
    assert "prune" in html and "no optimize.json" not in html


def test_report_optimize_section_shows_optimize_json(project, tmp_path):
    """Sensitivity tables, flags, data used, seed, the PTQ-vs-QAT pair and the cost of every
    step come from optimize.json; a synthetic run is marked as such."""
    html = report.build_report(project)
    sec = html[html.index('id="optimize"'):html.index("<h2>Memory")]
    for words in ("digits.npz", "x_test/y_test", ">7<", "PTQ vs QAT", "0.8650", "0.8500", "conv2d_1", "58.0%",
                  "dense_7", "+0.004", "target_latency", "NOT met: latency 20.00 ms", "loses 0.0300",
                  "measured under QEMU", "800,000", "400,000", "20.00", "QAT is not better", "shipped"):
        assert words in sec, words
    assert "SYNTHETIC DATA" not in sec
    man = json.loads((project / "manifest.json").read_text())
    syn = tmp_path / "syn"
    syn.mkdir()
    shutil.copy(project / "manifest.json", syn / "manifest.json")
    (syn / "optimize.json").write_text(json.dumps(_history(man, synthetic=True)))
    html = report.build_report(syn)
    assert 'id="opt-synthetic"' in html and "SYNTHETIC DATA" in html and "0.0 .. 255.0" in html


def test_report_without_history_or_timings(project, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(project / "manifest.json", bare / "manifest.json")
    html = report.build_report(bare)
    assert "no optimize.json" in html and "no bench.json or run.json" in html


def test_report_latency_from_run_json(project, tmp_path):
    man = json.loads((project / "manifest.json").read_text())
    run = {"clock_hz": 1_000_000, "layers": [{"index": i, "instructions": 1000 * (i + 1)} for i in range(len(man["layers"]))]}
    lat, src = report.layer_latency(man, None, run, None)
    assert src.startswith("run.json") and lat == pytest.approx([i + 1 for i in range(len(man["layers"]))])
    lat, src = report.layer_latency(man, {"layers": [{"ms": 2.0}] * len(man["layers"])}, run, None)
    assert src.startswith("bench.json") and lat == [2.0] * len(man["layers"])


def test_report_on_a_non_project_is_one_error(tmp_path):
    with pytest.raises(OutputError, match="not a tinygen project"):
        report.build_report(tmp_path)
    r = subprocess.run([sys.executable, "-m", "tinygen.cli", "report", str(tmp_path)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode != 0 and r.stderr.startswith("tinygen: error:") and "Traceback" not in r.stderr


@needs_chromium
def test_report_renders_in_headless_chromium(project, tmp_path):
    if toolchain.have_tool("arm-none-eabi-gcc") and toolchain.have_tool("qemu-system-arm"):
        report.run_to_json(project)  # per-layer latency bars from the emulated board
    out = tmp_path / "report.html"
    r = subprocess.run([sys.executable, "-m", "tinygen.cli", "report", str(project), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    n_img = len(_images(html))
    # a probe copy writes each image's decoded width into the DOM once the page has loaded
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("</body>", "<script>window.addEventListener('load', () => {"
                                  "for (const i of document.images) i.setAttribute('data-w', i.naturalWidth);"
                                  "document.body.setAttribute('data-loaded', '1');});</script></body>"))
    profile = tmp_path / "chrome-profile"
    dom = subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000",
                          "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-loaded="1"' in dom.stdout, dom.stderr[-2000:]
    for table in ("opt-summary", "opt-steps", "opt-pair", "opt-prune", "opt-rewrite", "opt-flags"):
        assert f'id="{table}"' in dom.stdout, table  # the optimize section's tables, in the rendered page
    assert "digits.npz" in dom.stdout and "target_latency" in dom.stdout
    widths = [int(w) for w in re.findall(r'data-w="(\d+)"', dom.stdout)]
    assert len(widths) == n_img and all(w > 100 for w in widths), widths
    png = tmp_path / "shot.png"
    subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png}",
                    "--window-size=1200,2000", out.as_uri()], capture_output=True, text=True, timeout=120)
    import matplotlib.image as mpimg

    px = mpimg.imread(str(png))[..., :3]
    assert px.shape[0] == 2000 and px.shape[1] == 1200
    non_white = float(np.mean(px.min(axis=2) < 0.9))
    assert px.std() > 0.05 and non_white > 0.05, (px.std(), non_white)  # charts drawn, not a blank page
