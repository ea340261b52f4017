"""Robustness round 3 (issue 15 leftovers): a build whose reference test vector differs leaves no
project and exits non-zero on every board, not only the host.

The difference is forced in-process: the lowering of the model's one FULLY_CONNECTED layer is
monkeypatched to add 3 to its output zero point, so the generated C (any kernel set) differs from
the TFLite reference by 3 on every output byte not clamped at -128/127.
"""

from __future__ import annotations

import json

import pytest
from test_robustness import fc, one_error_line

from tinygen import cli, ops
from tinygen.errors import CompilerBug

needs_gcc = pytest.mark.skipif(__import__("shutil").which("gcc") is None, reason="gcc not installed")


@pytest.fixture
def wrong_fc(monkeypatch):
    """Every FULLY_CONNECTED lowering with out_offset + 3: the generated code is wrong."""
    real = ops.lower

    def lower(g, op):
        low = real(g, op)
        if op.kind == "FULLY_CONNECTED":
            low.params = dict(low.params, out_offset=low.params["out_offset"] + 3)
        return low

    monkeypatch.setattr(ops, "lower", lower)


def _model(tmp_path):
    p = tmp_path / "fc.tflite"
    p.write_bytes(fc())
    return p


BOARDS = [("host", ()), ("host", ("--no-compile",)), ("mps2-an505", ("--no-compile",)),
          ("nucleo-u575", ("--no-compile",)), ("mps2-an505", ()), ("nucleo-u575", ())]


@needs_gcc
@pytest.mark.parametrize("backend", ["portable", "generated"])
@pytest.mark.parametrize("board, extra", BOARDS, ids=[f"{b}{'-no-compile' if e else ''}" for b, e in BOARDS])
def test_a_differing_vector_fails_every_build(board, extra, backend, tmp_path, capsys, wrong_fc, monkeypatch):
    """Exit CompilerBug's code, one line naming the output byte and the layer, no project left."""
    monkeypatch.delenv("CMSIS_NN_PATH", raising=False)  # the generated set falls back to portable C
    out = tmp_path / "proj"
    code = cli.main(["build", str(_model(tmp_path)), "--board", board, "--backend", backend, "-o", str(out), *extra])
    line = one_error_line(capsys.readouterr().err)
    assert code == CompilerBug.exit_code, line
    assert "differs from the TFLite reference" in line and "0 of 4 self-test vectors match" in line, line
    assert "self-test vector 0: output" in line and "byte 0 is" in line, line
    assert "first differing layer 0 FULLY_CONNECTED" in line, line
    assert not out.exists(), sorted(p.name for p in out.iterdir())


@needs_gcc
@pytest.mark.parametrize("board, extra", BOARDS[1:4], ids=["host-no-compile", "an505-no-compile", "u575-no-compile"])
def test_an_equal_vector_still_builds(board, extra, tmp_path, capsys):
    """The same builds without the forced difference: exit 0, a project, its manifest."""
    out = tmp_path / "proj"
    code = cli.main(["build", str(_model(tmp_path)), "--board", board, "--backend", "portable", "-o", str(out), *extra])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert json.loads((out / "manifest.json").read_text())["board"] == board


@needs_gcc
def test_an_earlier_project_is_kept_when_the_new_build_differs(tmp_path, capsys, monkeypatch):
    """A board build that differs writes nothing: the earlier good project in -o stays as it was."""
    out = tmp_path / "proj"
    model = _model(tmp_path)
    assert cli.main(["build", str(model), "--board", "mps2-an505", "--backend", "portable", "-o", str(out),
                     "--no-compile"]) == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real = ops.lower
    monkeypatch.setattr(ops, "lower", lambda g, op: _shifted(real(g, op), op))
    capsys.readouterr()
    code = cli.main(["build", str(model), "--board", "mps2-an505", "--backend", "portable", "-o", str(out),
                     "--no-compile"])
    one_error_line(capsys.readouterr().err)
    assert code == CompilerBug.exit_code
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def _shifted(low, op):
    if op.kind == "FULLY_CONNECTED":
        low.params = dict(low.params, out_offset=low.params["out_offset"] + 3)
    return low


# ---- 10,000 layers: build time linear in layers (benchmarks/build_time.py reports the time) -----


@needs_gcc
@pytest.mark.slow
def test_ten_thousand_layers_build_bit_exact(tmp_path, capsys):
    """A 10,000-layer chain (CONV_2D 1x1 / DEPTHWISE_CONV_2D 3x3 / ADD, own weights each) builds
    for the host and its self-test vectors equal the TFLite reference (no time asserted here)."""
    from benchmarks.build_time import chain_model
    from tinygen import kernels

    model = tmp_path / "chain.tflite"
    model.write_bytes(chain_model(10_000))
    out = tmp_path / "proj"
    code = cli.main(["build", str(model), "--board", "host", "-o", str(out)])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    assert "4 of 4 match; matches the TFLite reference: yes" in cap.out, cap.out[-2000:]
    m = json.loads((out / "manifest.json").read_text())
    assert len(m["layers"]) == 10_000
    generated = [ly for ly in m["layers"] if ly["kernel"].startswith("gen.")]
    assert 0 < len(generated) <= kernels.GENERATED_BUDGET
