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
    steps = [{"step": s, "float_acc": acc, "int8_acc": acc - 0.01, "macs": man["macs"] // k,
              "params": man["weights_bytes"] // k, "conv_macs": 0, "arena": man["arena_bytes"], "flash": 0}
             for s, acc, k in (("baseline", 0.9, 1), ("prune", 0.88, 2))]
    (out / "optimize.json").write_text(json.dumps({"steps": steps}))
    return out


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
