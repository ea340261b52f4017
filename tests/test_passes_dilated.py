"""The dilated-convolution fold (tinygen/passes_dilated.py) on Keras dilated convolutions converted
with an unknown batch: SPACE_TO_BATCH_ND -> CONV_2D/DEPTHWISE_CONV_2D -> BATCH_TO_SPACE_ND becomes one
dilated convolution (bit-exactness of the result: the *_s2b op nets in test_e2e_opnets.py)."""

import numpy as np
import pytest
from opnets import OPNET_CASES, make_opnet

from tinygen import driver, importer, passes
from tinygen.errors import UnsupportedError

S2B_CASES = [c for c in OPNET_CASES if c[0].endswith("_s2b")]


@pytest.mark.parametrize("case_id, kind, spec", S2B_CASES, ids=[c[0] for c in S2B_CASES])
def test_fold_leaves_one_dilated_convolution(case_id, kind, spec):
    buf = make_opnet(kind, **spec)
    before = [op.kind for op in importer.load(buf, case_id).ops]
    assert before[0] == "SPACE_TO_BATCH_ND" and before[2] == "BATCH_TO_SPACE_ND"
    c = driver.compile_model(buf, case_id, "portable", stop_after="lower")
    kinds = [op.kind for op in c.graph.ops]
    assert "SPACE_TO_BATCH_ND" not in kinds and "BATCH_TO_SPACE_ND" not in kinds
    conv = c.graph.ops[0]
    assert conv.kind == before[1] and conv.attrs["padding"] == "EXPLICIT"
    assert (conv.attrs["dil_h"], conv.attrs["dil_w"]) == tuple(spec["dilation"])
    assert c.graph.t(conv.inputs[0]).id == c.graph.inputs[0]
    low = c.calls[0].low
    assert (low.params["dil_h"], low.params["dil_w"]) == tuple(spec["dilation"])


def test_pattern_that_does_not_fold_is_refused_with_a_hint():
    case = next(c for c in S2B_CASES if c[0] == "conv_dil2_same_s2b")
    g = importer.load(make_opnet(case[1], **case[2]), "x")
    b2s = g.ops[2]
    block = g.t(b2s.inputs[1])
    block.data = np.array([3, 3], np.int32)  # the block sizes no longer match: not a dilated convolution
    with pytest.raises(UnsupportedError, match="SPACE_TO_BATCH_ND.*batch_size=1"):
        passes.run(g)


S2B_1D_CASES = [c for c in OPNET_CASES if c[0].endswith("_s2b1d")]


@pytest.mark.parametrize("case_id, kind, spec", S2B_1D_CASES, ids=[c[0] for c in S2B_1D_CASES])
def test_conv1d_fold_leaves_reshape_conv_reshape(case_id, kind, spec):
    buf = make_opnet(kind, **spec)
    g0 = importer.load(buf, case_id)
    before = [op.kind for op in g0.ops]
    assert "SPACE_TO_BATCH_ND" in before and "BATCH_TO_SPACE_ND" in before, before
    s2b_in = g0.t(next(op for op in g0.ops if op.kind == "SPACE_TO_BATCH_ND").inputs[0]).shape  # after a causal PAD
    c = driver.compile_model(buf, case_id, "portable", stop_after="lower")
    kinds = [op.kind for op in c.graph.ops]
    assert "SPACE_TO_BATCH_ND" not in kinds and "BATCH_TO_SPACE_ND" not in kinds, kinds
    conv = next(op for op in c.graph.ops if op.kind == "CONV_2D")
    assert conv.attrs["padding"] == "EXPLICIT" and (conv.attrs["dil_h"], conv.attrs["dil_w"]) == (1, spec["dilation"])
    assert c.graph.t(conv.inputs[0]).shape == (1, 1) + tuple(s2b_in[1:])
