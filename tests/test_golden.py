"""Golden copies of generated C (model.c / model.h) for two shared models, updated only on purpose:

    TINYGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py

A diff here means the emitted code changed: review it, then update the golden files in the same
commit as the change that caused it (bit-exactness is checked by the e2e tests, not here)."""

import os
from pathlib import Path

import pytest
from conftest import shared_model

from tinygen import driver, frontend

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = [("kws_ref_model.tflite", "cmsis-nn", "dsp"), ("ad01_int8.tflite", "portable", "none")]


@pytest.mark.parametrize("model, backend, arch", CASES, ids=[c[0].split(".")[0] + "-" + c[1] for c in CASES])
@pytest.mark.parametrize("fname", ["model.c", "model.h"])
def test_generated_c_matches_golden(model, backend, arch, fname):
    buf, name = frontend.load(shared_model(model), log=lambda m: None)
    c = driver.compile_model(buf, name, backend, arch)
    got = c.emitted.files[fname]
    path = GOLDEN / f"{name}-{backend}" / fname
    if os.environ.get("TINYGEN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got)
    if not path.exists():
        pytest.fail(f"{path} missing: run TINYGEN_UPDATE_GOLDEN=1 pytest tests/test_golden.py and commit it")
    assert got == path.read_text(), f"generated {fname} for {name}/{backend} differs from {path}"
