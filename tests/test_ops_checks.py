"""Support checks of the later ops refuse what they cannot compile exactly, with one clear message:
real converted op nets, mutated the way a hand-edited or exotic model would be."""

import numpy as np
import pytest
from opnets import OPNET_CASES, make_opnet

from tinygen import importer, passes
from tinygen.errors import ModelError, UnsupportedError

CASES = {c[0]: c for c in OPNET_CASES}


def _graph(case_id):
    _, kind, spec = CASES[case_id]
    return importer.load(make_opnet(kind, **spec), case_id)


def _refused(g, err, match):
    with pytest.raises(err, match=match):
        passes.run(g)


def test_gather_index_out_of_range():
    g = _graph("gather_w")
    g.t(g.ops[0].inputs[1]).data = np.array([2, 0, 5, 4], np.int32)  # W is 5: index 5 is out of range
    _refused(g, ModelError, r"GATHER.*outside \[0, 5\)")


def test_gather_batch_dims_refused():
    g = _graph("gather_c")
    g.ops[0].attrs["batch_dims"] = 1
    _refused(g, UnsupportedError, "batch_dims 1 is not supported")


def test_strided_slice_ellipsis_refused():
    g = _graph("strided_slice")
    g.ops[0].attrs["ellipsis_mask"] = 2
    _refused(g, UnsupportedError, "ellipsis_mask")


def test_strided_slice_wrong_output_shape():
    g = _graph("strided_slice_shrink")
    g.t(g.ops[0].inputs[3]).data = np.array([1, 1, 1, 1], np.int32)  # strides 1: the output would be larger
    _refused(g, ModelError, "computes shape")


def test_transpose_needs_a_permutation():
    g = _graph("transpose_hw")
    g.t(g.ops[0].inputs[1]).data = np.array([0, 1, 1, 3], np.int32)
    _refused(g, ModelError, "is not a permutation")


def test_split_that_does_not_divide():
    g = _graph("split_v_h")
    g.t(g.ops[0].inputs[1]).data = np.array([1, 3, 3], np.int32)  # sums to 7, the dim is 6
    _refused(g, ModelError, "does not split into 3 outputs")


def test_reduce_max_must_keep_quantization():
    g = _graph("reduce_max_w")
    g.t(g.ops[0].outputs[0]).scale = np.array([0.5], np.float32)
    _refused(g, UnsupportedError, "must share scale and zero point")


def test_mean_axes_out_of_range():
    g = _graph("mean_last_keep")
    g.t(g.ops[0].inputs[1]).data = np.array([7], np.int32)
    _refused(g, ModelError, "axes")


def test_hard_swish_scales_tflite_refuses():
    g = _graph("hard_swish")
    g.t(g.ops[0].outputs[0]).scale = np.array([1e-6], np.float32)  # output multiplier exponent > 0
    _refused(g, UnsupportedError, "HARD_SWISH.*out of range")


def test_squared_difference_multiplier_must_be_below_one():
    g = _graph("sqdiff_same")
    g.t(g.ops[0].outputs[0]).scale = np.array([1e-7], np.float32)
    _refused(g, UnsupportedError, "SQUARED_DIFFERENCE.*out of range")


def test_resize_bilinear_align_corners_and_half_pixel():
    g = _graph("resize_bilinear_align")
    g.ops[0].attrs["half_pixel_centers"] = True
    _refused(g, UnsupportedError, "align_corners and half_pixel_centers")


@pytest.mark.parametrize("case_id", ["resize_nn_v1", "resize_bilinear_v1_down"])
@pytest.mark.parametrize("size", [[0, 5], [4, 5, 1]])
def test_resize_size_must_be_two_positive_ints(case_id, size):
    """Both resizes share one input check (ops_resize._resize_io)."""
    g = _graph(case_id)
    g.t(g.ops[0].inputs[1]).data = np.array(size, np.int32)
    _refused(g, UnsupportedError, r"RESIZE_.*expects a 4-D NHWC input and a size \[h, w\]")


@pytest.mark.parametrize("case_id", ["add_same_shape", "mul_same_shape", "maximum_same", "sqdiff_same"])
def test_binary_ops_share_one_input_check(case_id):
    """ADD/MUL (ops.py) and MAXIMUM/SQUARED_DIFFERENCE (ops_elementwise.py) refuse alike (opdefs._binary_io)."""
    g = _graph(case_id)
    y = g.t(g.ops[0].outputs[0])
    y.shape = y.shape[:-1] + (y.shape[-1] + 1,)
    _refused(g, ModelError, r"shapes \[.*\] and \[.*\] do not broadcast to \[1, \d, 5, (8|4)\]")
    g = _graph(case_id)
    g.ops[0].inputs = g.ops[0].inputs[:1]
    _refused(g, UnsupportedError, "expects two inputs")


def test_split_outputs_must_match():
    g = _graph("split_c")
    g.t(g.ops[0].inputs[0]).data = np.array([1], np.int32)  # split H (5) instead of C: the outputs no longer fit
    _refused(g, ModelError, "should be")


def test_every_unsupported_op_of_a_model_reported_together():
    g = importer.load(make_opnet("mix"), "mix")
    ss = next(op for op in g.ops if op.kind == "STRIDED_SLICE")
    ss.attrs["ellipsis_mask"] = 1
    for op in g.ops:
        if op.kind == "BATCH_TO_SPACE_ND":  # the dilated-conv pattern no longer folds: both ops are refused
            g.t(op.inputs[1]).data = np.array([3, 3], np.int32)
    with pytest.raises(UnsupportedError) as e:
        passes.run(g)
    msg = str(e.value)
    assert "ops cannot be compiled" in msg and "STRIDED_SLICE" in msg and "SPACE_TO_BATCH_ND" in msg, msg
    assert "BATCH_TO_SPACE_ND" in msg and "\n" not in msg


def test_sum_with_equal_quantization_refused():
    g = _graph("sum_w")
    x, y = g.t(g.ops[0].inputs[0]), g.t(g.ops[0].outputs[0])
    y.scale, y.zero_point = x.scale.copy(), x.zero_point.copy()  # TFLite's unrescaled int8 path
    _refused(g, UnsupportedError, "SUM with the same quantization in and out")


def test_batch_matmul_inner_dims_must_agree():
    g = _graph("bmm_const_b_batched")
    g.ops[0].attrs["adj_y"] = True  # [2, 4, 3] read as [2, 3, 4]: inner dims 4 and 3
    _refused(g, ModelError, "inner dims 4 and 3 differ")


def test_batch_matmul_batch_dims_must_broadcast():
    g = _graph("bmm_const_b_batched")
    w = g.t(g.ops[0].inputs[1])
    w.shape, w.data = (3, 4, 3), np.zeros((3, 4, 3), np.int8)
    _refused(g, ModelError, "do not broadcast")
