"""The 256-entry tables of TANH / HARD_SWISH / LEAKY_RELU (tinygen.quant_lut) against TFLite's
BUILTIN_REF interpreter over every int8 input, at the scales of real converted op nets."""

import numpy as np
import pytest
from opnets import OPNET_CASES, make_opnet

from tinygen import importer, quant_lut, reference

LUT_CASES = [c for c in OPNET_CASES if c[1] in ("tanh", "hard_swish", "leaky_relu")]


def _all_int8(buf):
    """Every int8 value through the interpreter: the 256 outputs, in input order -128..127."""
    g = importer.load(buf, "lut")
    n = g.t(g.inputs[0]).size
    reps = -(-256 // n)
    x = np.resize(np.arange(-128, 128, dtype=np.int8), reps * n).reshape(reps, *g.t(g.inputs[0]).shape)
    return g, np.asarray(reference.run(buf, x)).reshape(-1)[:256]


@pytest.mark.parametrize("case_id, kind, spec", LUT_CASES, ids=[c[0] for c in LUT_CASES])
def test_table_matches_tflite_on_all_256_inputs(case_id, kind, spec):
    g, want = _all_int8(make_opnet(kind, **spec))
    op = g.ops[0]
    (sx, zx), (sy, zy) = g.t(op.inputs[0]).q(), g.t(op.outputs[0]).q()
    if kind == "tanh":
        got = quant_lut.lut_tanh(sx, zx, sy, zy)
    elif kind == "hard_swish":
        got = quant_lut.lut_hard_swish(sx, zx, sy, zy)
    else:
        assert op.attrs["alpha"] == pytest.approx(spec.get("alpha", 0.3))
        got = quant_lut.lut_leaky_relu(sx, zx, sy, zy, op.attrs["alpha"])
    bad = np.nonzero(got != want)[0]
    assert bad.size == 0, f"{case_id}: {bad.size} of 256 entries differ (first input {bad[0] - 128})"
    assert len(set(got.tolist())) > 16  # a real curve, not a constant table


def test_hard_swish_refuses_what_tflite_refuses():
    """TFLite's HardSwishPrepare needs an output multiplier exponent <= 0 (output scale >= input scale / 128)."""
    with pytest.raises(ValueError, match="exponent"):
        quant_lut.hard_swish_params(1.0, 1e-4)


def test_leaky_relu_identity_above_zero_point():
    t = quant_lut.lut_leaky_relu(0.1, -3, 0.1, -3, 0.25)
    x = np.arange(-128, 128)
    assert np.array_equal(t[x >= -3], x[x >= -3])
    assert np.all(t[x < -3] > x[x < -3])
