"""The data-movement and reduction kernels (tg_ref_remap_s8, tg_ref_split_s8, tg_ref_reduce_s8)
called directly: results against numpy, and every inconsistent argument refused (TG_ERR_ARG)
without touching the output. Their bit-exactness with TFLite is checked end to end by
test_e2e_opnets.py (op nets for every op they run)."""

from __future__ import annotations

import ctypes as C
from pathlib import Path

import numpy as np
import pytest

from tinygen.ops_reduce import fold_reduce
from tinygen.ops_shape import remap

FW = Path(__file__).resolve().parents[1] / "firmware"
TG_OK, TG_ERR_ARG = 0, -1
i32, P32, P8 = C.c_int32, C.POINTER(C.c_int32), C.POINTER(C.c_int8)


from tg_structs import STRICT_CFLAGS, Dims, ReduceParams, RemapParams, host_lib  # noqa: E402  (mirrors of tg_nn.h)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return host_lib(tmp_path_factory.mktemp("tgmove") / "libtgmove.so",
                    [FW / "tg_kernels_ref.c", FW / "tg_kernels_move.c"], STRICT_CFLAGS,
                    {"tg_ref_remap_s8": [C.POINTER(RemapParams), P8, P8],
                     "tg_ref_split_s8": [i32, P8, P32, i32, C.POINTER(P8)],
                     "tg_ref_reduce_s8": [C.POINTER(ReduceParams), P8, P8]})


def _p8(a):
    return a.ctypes.data_as(P8)


def _remap_params(low):
    off = np.ascontiguousarray(low.arrays["offsets"], np.int32)
    o = low.params["out"]
    return RemapParams(Dims(o["n"], o["h"], o["w"], o["c"]), low.params["in_size"], low.params["c_contiguous"],
                       off.ctypes.data_as(P32)), off


@pytest.mark.parametrize("perm", [(0, 2, 1, 3), (3, 1, 0, 2), (2, 3, 0, 1, 4)])
def test_remap_transposes_like_numpy(lib, perm):
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(2, 3, 4, 5, 3)[: len(perm)], dtype=np.int8)
    strides = [int(np.prod(x.shape[k + 1:])) for k in range(x.ndim)]
    low = remap(x.size, [np.arange(x.shape[p]) * strides[p] for p in perm])
    p, keep = _remap_params(low)
    out = np.zeros(x.size, np.int8)
    assert lib.tg_ref_remap_s8(C.byref(p), _p8(x), _p8(out)) == TG_OK
    assert np.array_equal(out, np.transpose(x, perm).reshape(-1))


def test_remap_strided_slice_folds_to_rows(lib):
    x = np.arange(2 * 6 * 8 * 4, dtype=np.int64).astype(np.int8).reshape(2, 6, 8, 4)
    st = [6 * 8 * 4, 8 * 4, 4, 1]
    rng = [range(2), range(5, 0, -2), range(1, 8, 3), range(4)]
    low = remap(x.size, [np.array(list(r)) * s for r, s in zip(rng, st)])
    assert low.params["c_contiguous"] == 1
    p, keep = _remap_params(low)
    out = np.zeros(2 * 3 * 3 * 4, np.int8)
    assert lib.tg_ref_remap_s8(C.byref(p), _p8(x), _p8(out)) == TG_OK
    assert np.array_equal(out, x[:, 5:0:-2, 1::3, :].reshape(-1))


def test_remap_refuses_reads_outside_its_input(lib):
    x = np.zeros(24, np.int8)
    low = remap(24, [np.arange(2) * 12, np.arange(3) * 4, np.arange(4)])
    p, off = _remap_params(low)
    out = np.full(24, 7, np.int8)
    p.in_size = 23  # one byte short: the last read would be out of bounds
    assert lib.tg_ref_remap_s8(C.byref(p), _p8(x), _p8(out)) == TG_ERR_ARG
    p.in_size = 24
    assert lib.tg_ref_remap_s8(C.byref(p), _p8(x), _p8(x)) == TG_ERR_ARG  # not in place
    off[0] = -1
    assert lib.tg_ref_remap_s8(C.byref(p), _p8(x), _p8(out)) == TG_ERR_ARG
    assert np.all(out == 7)


def test_split_is_the_inverse_of_concat(lib):
    x = np.arange(3 * 10, dtype=np.int8)  # 3 rows of 2 + 5 + 3 bytes
    sizes = np.array([2, 5, 3], np.int32)
    outs = [np.zeros(3 * s, np.int8) for s in sizes]
    ptrs = (P8 * 3)(*[_p8(o) for o in outs])
    assert lib.tg_ref_split_s8(3, _p8(x), sizes.ctypes.data_as(P32), 3, ptrs) == TG_OK
    rows = x.reshape(3, 10)
    assert [o.tolist() for o in outs] == [rows[:, :2].reshape(-1).tolist(), rows[:, 2:7].reshape(-1).tolist(),
                                         rows[:, 7:].reshape(-1).tolist()]
    bad = np.array([2, -1, 3], np.int32)
    assert lib.tg_ref_split_s8(3, _p8(x), bad.ctypes.data_as(P32), 3, ptrs) == TG_ERR_ARG
    assert lib.tg_ref_split_s8(0, _p8(x), sizes.ctypes.data_as(P32), 3, ptrs) == TG_ERR_ARG
    ptrs[1] = P8()
    assert lib.tg_ref_split_s8(3, _p8(x), sizes.ctypes.data_as(P32), 3, ptrs) == TG_ERR_ARG


@pytest.mark.parametrize("shape, axes, mode", [((2, 3, 4, 5), [1, 3], 1), ((3, 4, 5), [0, 2], 2), ((1, 6, 7, 2), [3], 1)])
def test_reduce_max_min_like_numpy(lib, shape, axes, mode):
    x = np.random.default_rng(2).integers(-128, 128, size=shape, dtype=np.int8)
    dims, red = fold_reduce(shape, axes)
    p = ReduceParams(Dims(*dims), Dims(*red), mode, 0, 0, 0, 0)
    want = (x.max if mode == 1 else x.min)(axis=tuple(axes))
    out = np.zeros(want.size, np.int8)
    assert lib.tg_ref_reduce_s8(C.byref(p), _p8(x), _p8(out)) == TG_OK
    assert np.array_equal(out, want.reshape(-1))


def test_reduce_refuses_bad_arguments(lib):
    x = np.zeros(24, np.int8)
    out = np.full(24, 5, np.int8)
    for mode, red, shift in ((4, (0, 1, 0, 0), 0), (0, (0, 2, 0, 0), 0), (0, (0, 1, 0, 0), 31)):
        p = ReduceParams(Dims(1, 2, 3, 4), Dims(*red), mode, 0, 0, 1 << 30, shift)
        assert lib.tg_ref_reduce_s8(C.byref(p), _p8(x), _p8(out)) == TG_ERR_ARG
    assert np.all(out == 5)
