"""Robustness round 2 (issue 15): no undefined behaviour reaches the firmware, a bench host that
trusts nothing from the device, bounded calibration reading, output folders that are never
damaged, and no traceback anywhere.

Models are generated in the tests (tests/opnets.py + the TFLite schema's object API), devices
are fake ones speaking the bench protocol on a pseudo-terminal, calibration files are written
by the tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from opnets import make_opnet
from test_robustness import _quant, build_cli, conv, fc, mutate, one_error_line
from tinygen import cli, quant
from tinygen.errors import UnsupportedError


def dw() -> bytes:
    return make_opnet("dwconv2d", in_shape=(7, 7, 3), kernel=(3, 3), padding="same")


def _in(sg):
    return sg.operators[0].inputs[0]


def _out(sg):
    return sg.operators[0].outputs[0]


# ---- 1. extreme scale ratios on CONV / DEPTHWISE / FC ------------------------------------------

EXTREME = [
    ("fc-input-scale-1e30", fc, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "FULLY_CONNECTED"),
    ("fc-output-scale-1e-30", fc, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "FULLY_CONNECTED"),
    ("conv-input-scale-1e30", conv, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "CONV_2D"),
    ("conv-output-scale-1e-30", conv, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "CONV_2D"),
    ("dw-input-scale-1e30", dw, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "DEPTHWISE_CONV_2D"),
    ("dw-output-scale-1e-30", dw, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "DEPTHWISE_CONV_2D"),
    # a gain of 2^28: representable as a multiplier, but the shifted accumulator overflows int32
    ("fc-output-scale-2^-28", fc, lambda m, sg: _quant(sg, _out(sg), scale=[sg.tensors[_out(sg)].quantization.scale[0]
                                                                             / (1 << 28)]), "FULLY_CONNECTED"),
]


@pytest.mark.parametrize("case_id, base, edit, op", EXTREME, ids=[c[0] for c in EXTREME])
@pytest.mark.parametrize("board", ["host", "mps2-an505"])
def test_extreme_scale_ratio_refused(case_id, base, edit, op, board, tmp_path, capsys):
    """Refused before any C is written, on every board (a board build with --no-compile too)."""
    model = mutate(base, edit)(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["build", str(model), "--board", board, "--backend", "portable", "-o", str(out), "--no-compile"])
    line = one_error_line(capsys.readouterr().err)
    assert code == UnsupportedError.exit_code, line
    assert op in line and "scale" in line and "overflow" in line or "2^30" in line, line
    assert not out.exists()


def test_moderate_gain_still_compiles_bit_exact(tmp_path, capsys):
    """A multiplier of 8 (shift 4) is within the int32 range: accepted and bit-exact."""
    model = mutate(fc, lambda m, sg: _quant(sg, _out(sg), scale=[sg.tensors[_out(sg)].quantization.scale[0] / 8]))(tmp_path)
    code, out, err = build_cli(capsys, model, tmp_path / "out")
    assert code == 0, err
    assert "matches the TFLite reference" in out


def test_requant_check_names_channel_and_cause():
    w = np.full((2, 4), 127, np.int8)
    quant.check_accumulator_requant(w, (1,), 0, None, 0.02, [0.01, 0.01], 0.05, 0)
    with pytest.raises(ValueError, match="channel 1: .*accumulator .* overflows int32"):
        quant.check_accumulator_requant(w, (1,), 0, np.array([0, 2**31 - 100]), 0.02, [0.01, 0.01], 0.05, 0)
    with pytest.raises(ValueError, match="shifted left by 23"):
        quant.check_accumulator_requant(w, (1,), 0, None, 0.02, [0.01, 0.01], 0.05 / 2**30, 0)
    with pytest.raises(ValueError, match="not a finite"):
        quant.quantize_multiplier(float("inf"), strict=True)
    assert quant.quantize_multiplier(1e-40, strict=True) == (0, 0)  # flushed to zero, as TFLite
