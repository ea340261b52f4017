"""ctypes mirrors of the parameter structs in firmware/tg_nn.h, shared by every test that calls the C
kernels directly (test_kernels, test_kernels_more, test_kernelgen_dw, test_cmsis_backend).

Field names are the C names (``in`` included: set it with ``Struct(**{"in": dims})`` or
``setattr``). :func:`layout_shim` is test-only C that reports ``sizeof`` and every ``offsetof`` of
the mirrored structs, and :func:`check_layout` compares them with ctypes, so a struct that changes
in tg_nn.h fails loudly instead of passing garbage to a kernel (tests/test_kernels.py builds the
shim on its own and checks it in ``test_struct_mirrors_match_tg_nn_h``). :func:`host_lib` compiles
C sources with the firmware headers into the host shared library those tests call.
"""

from __future__ import annotations

import ctypes as C
import shutil
import subprocess
from pathlib import Path

import pytest

FW = Path(__file__).resolve().parents[1] / "firmware"
STRICT_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow", "-Wconversion", "-pedantic"]

I32, I8, F32 = C.c_int32, C.c_int8, C.c_float
P32, P8 = C.POINTER(C.c_int32), C.POINTER(C.c_int8)


def _ints(*names):
    return [(n, I32) for n in names]


class Dims(C.Structure):
    _fields_ = _ints("n", "h", "w", "c")


class ConvParams(C.Structure):
    _fields_ = [("in", Dims), ("filter", Dims), ("out", Dims),
                *_ints("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "ch_mult", "in_offset",
                       "out_offset", "act_min", "act_max"),
                ("mult", P32), ("shift", P32), ("weights", P8), ("bias", P32)]


class FcParams(C.Structure):
    _fields_ = [*_ints("batches", "in_depth", "out_depth", "in_offset", "out_offset", "act_min", "act_max",
                       "per_channel"),
                ("mult", P32), ("shift", P32), ("weights", P8), ("bias", P32)]


class BmmParams(C.Structure):
    _fields_ = _ints("batch0", "batch1", "batch2", "lhs_step0", "lhs_step1", "lhs_step2", "rhs_step0", "rhs_step1",
                     "rhs_step2", "rows", "cols", "depth", "adj_x", "adj_y", "lhs_offset", "rhs_offset", "out_offset",
                     "mult", "shift")


class PoolParams(C.Structure):
    _fields_ = [("in", Dims), ("out", Dims),
                *_ints("filter_h", "filter_w", "stride_h", "stride_w", "pad_h", "pad_w", "act_min", "act_max")]


class BinaryParams(C.Structure):
    _fields_ = [("in1", Dims), ("in2", Dims), ("out", Dims),
                *_ints("in1_offset", "in1_mult", "in1_shift", "in2_offset", "in2_mult", "in2_shift", "left_shift",
                       "out_offset", "out_mult", "out_shift", "act_min", "act_max")]


class SoftmaxParams(C.Structure):
    _fields_ = _ints("rows", "row_size", "mult", "shift", "diff_min")


class MeanParams(C.Structure):
    _fields_ = [("in", Dims), *_ints("in_zp", "out_zp", "mult", "shift", "num_elements")]


class ReduceParams(C.Structure):
    _fields_ = [("in", Dims), ("reduce", Dims), *_ints("mode", "in_zp", "out_zp", "mult", "shift")]


class PadParams(C.Structure):
    _fields_ = [("in", Dims), ("out", Dims), ("before", Dims), ("pad_value", I8)]


class RemapParams(C.Structure):
    _fields_ = [("out", Dims), *_ints("in_size", "c_contiguous"), ("offsets", P32)]


class ResizeParams(C.Structure):
    _fields_ = [("in", Dims), ("out", Dims), ("rows", P32), ("cols", P32)]


class LstmParams(C.Structure):
    _fields_ = [*_ints("n_batch", "n_time", "n_input", "n_cell", "time_major", "cell_scale", "cell_act", "cell_clip",
                       "hidden_mult", "hidden_shift", "hidden_zp", "state_zp"),
                ("mult", P32), ("shift", P32), ("w_in", P8), ("w_rec", P8), ("b_in", P32), ("b_rec", P32)]


# C type name -> mirror
STRUCTS: dict[str, type[C.Structure]] = {
    "tg_dims_t": Dims, "tg_conv_params_t": ConvParams, "tg_fc_params_t": FcParams,
    "tg_pool_params_t": PoolParams, "tg_binary_params_t": BinaryParams, "tg_softmax_params_t": SoftmaxParams,
    "tg_mean_params_t": MeanParams, "tg_reduce_params_t": ReduceParams, "tg_pad_params_t": PadParams,
    "tg_remap_params_t": RemapParams, "tg_resize_params_t": ResizeParams, "tg_bmm_params_t": BmmParams,
    "tg_lstm_params_t": LstmParams,
}


def dims(d) -> Dims:
    """A Dims from a lowered dims dict ({"n", "h", "w", "c"}) or a 4-sequence."""
    if isinstance(d, dict):
        return Dims(*(int(d[k]) for k in "nhwc"))
    return Dims(*(int(v) for v in d))


def layout_shim() -> str:
    """Test-only C (include tg_nn.h): ``shim_sizeof_<t>()`` and ``shim_offsetof_<t>(i)`` per mirror."""
    lines = ["#include <stddef.h>", '#include "tg_nn.h"']
    for t, cls in STRUCTS.items():
        lines.append(f"size_t shim_sizeof_{t}(void) {{ return sizeof({t}); }}")
        offs = ", ".join(f"offsetof({t}, {f})" for f, _ in cls._fields_)
        lines.append(f"static const size_t shim_off_{t}[] = {{{offs}}};")
        lines.append(f"size_t shim_offsetof_{t}(int i) {{ return shim_off_{t}[i]; }}")
    return "\n".join(lines) + "\n"


def check_layout(lib: C.CDLL) -> None:
    """Assert every mirror's size and field offsets equal the C compiler's (lib links layout_shim())."""
    for t, cls in STRUCTS.items():
        size = getattr(lib, f"shim_sizeof_{t}")
        size.restype = C.c_size_t
        assert size() == C.sizeof(cls), f"ctypes layout of {t} is stale: C {size()} != ctypes {C.sizeof(cls)}"
        off = getattr(lib, f"shim_offsetof_{t}")
        off.restype = C.c_size_t
        off.argtypes = [C.c_int]
        for i, (f, _) in enumerate(cls._fields_):
            assert off(i) == getattr(cls, f).offset, f"ctypes field {t}.{f} is stale: C offset {off(i)}"


def host_lib(so: Path, sources: list, cflags: list[str], signatures: dict | None = None) -> C.CDLL:
    """Compile the C ``sources`` (paths; ``-I firmware/``) with the host gcc (else cc) and ``cflags``
    into the shared library ``so`` and load it; no host compiler skips the test. ``signatures``:
    function name -> argtypes, each function then returning int32 (the kernels' tg_status)."""
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no host C compiler")
    cmd = [cc, *cflags, "-shared", "-fPIC", "-I", str(FW), *map(str, sources), "-o", str(so)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stderr[:4000]}"
    lib = C.CDLL(str(so))
    for name, args in (signatures or {}).items():
        fn = getattr(lib, name)
        fn.argtypes, fn.restype = args, I32
    return lib
