"""CMSIS-NN backend: scratch-size formulas, bit-exactness on the host, target build.

Needs CMSIS-NN v7.0.0 sources at $CMSIS_NN_PATH (skipped otherwise) and gcc.

1. tinygen.cmsis_scratch vs the real CMSIS-NN *_get_buffer_size{,_dsp,_mve} functions,
   called from a host C probe, for several hundred parameter sets.
2. firmware/tg_backend_cmsis.c + tg_kernels_ref.c + CMSIS-NN (host build, i.e. CMSIS-NN's
   pure-C paths) through ctypes on the single-op models of tests/opnets.py, bit-exact
   against the TFLite reference interpreter (BUILTIN_REF).
3. tg_backend_cmsis.c builds for Cortex-M33 with -Wall -Wextra -Werror (and Cortex-M55 /
   Helium), and links with CMSIS-NN and the reference kernels.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
sys.path.insert(0, str(ROOT))

from tinygen import cmsis_scratch  # noqa: E402

SKIP_MSG = "CMSIS_NN_PATH not set: CMSIS-NN tests skipped (see README)"
CACHE_ROOT = Path(os.environ.get("TINYGEN_CACHE_DIR", Path(tempfile.gettempdir()) / "tinygen-cache"))

ARM_CC = "arm-none-eabi-gcc"
M33_FLAGS = ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16", "-O2"]
M55_FLAGS = ["-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard", "-O2"]
WERROR = ["-Wall", "-Wextra", "-Werror"]


# ------------------------------------------------------------------------------- build helpers

def _cmsis_root() -> Path:
    p = os.environ.get("CMSIS_NN_PATH")
    if not p:
        pytest.skip(SKIP_MSG)
    root = Path(p)
    if not (root / "Include" / "arm_nnfunctions.h").is_file():
        pytest.fail(f"CMSIS_NN_PATH={p!r} does not contain Include/arm_nnfunctions.h")
    return root


def _cmsis_sources(root: Path) -> list[Path]:
    srcs = sorted(
        s for s in (root / "Source").rglob("*.c") if not (s.name.endswith("_f16.c") or s.name.endswith("_f32.c"))
    )
    if not srcs:
        pytest.fail(f"no CMSIS-NN sources under {root / 'Source'}")
    return srcs


def _run(cmd: list[str], what: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise AssertionError(f"{what} failed ({r.returncode}):\n$ {' '.join(map(str, cmd))}\n{r.stdout}{r.stderr}")
    return r


def _need_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} not found on PATH (required for the CMSIS-NN tests)")
    return path


def _cc_version(cc: str) -> str:
    return subprocess.run([cc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]


def _build_static_lib(cc: str, flags: list[str], root: Path, tag: str) -> Path:
    """Compile every CMSIS-NN s8/s16/s4 source into one static library, cached on disk
    (key: compiler, flags, source paths/sizes/mtimes) so a session compiles it at most once."""
    srcs = _cmsis_sources(root)
    h = hashlib.sha256()
    h.update(_cc_version(cc).encode())
    h.update(" ".join(flags).encode())
    for s in srcs + sorted((root / "Include").rglob("*.h")):
        st = s.stat()
        h.update(f"{s}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    out_dir = CACHE_ROOT / f"cmsis-nn-{tag}-{h.hexdigest()[:16]}"
    lib = out_dir / "libcmsisnn.a"
    if lib.is_file():
        return lib
    CACHE_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f"cmsis-nn-{tag}-", dir=CACHE_ROOT))
    ar = "arm-none-eabi-ar" if "arm-none-eabi" in cc else "ar"

    def compile_one(i_src):
        i, src = i_src
        obj = work / f"{i:03d}_{src.stem}.o"
        _run([cc, *flags, f"-I{root / 'Include'}", "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        return obj

    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as ex:
        objs = list(ex.map(compile_one, enumerate(srcs)))
    _run([ar, "rcs", str(work / "libcmsisnn.a"), *map(str, objs)], "ar")
    for o in objs:
        o.unlink()
    try:
        work.rename(out_dir)  # atomic publish; a concurrent session may have won the race
    except OSError:
        shutil.rmtree(work, ignore_errors=True)
    if not lib.is_file():
        pytest.fail(f"could not publish the CMSIS-NN library to {out_dir}")
    return lib


@pytest.fixture(scope="session")
def cmsis_root() -> Path:
    return _cmsis_root()


@pytest.fixture(scope="session")
def host_cmsis_lib(cmsis_root) -> Path:
    _need_tool("gcc")
    return _build_static_lib("gcc", ["-O2", "-fPIC"], cmsis_root, "host")


# ------------------------------------------------------------------ 1. scratch formulas vs CMSIS-NN

PROBE_C = r"""
#include <stdio.h>
#include <string.h>
#include "arm_nnfunctions.h"

/* One query per stdin line, one answer line "none dsp mve" per query.
 *   conv <in n h w c> <filter n h w c> <out n h w c> stride_h stride_w pad_h pad_w dil_h dil_w
 *   dw   <same> ch_mult
 *   fc   in_depth out_depth
 *   avg  out_w in_c                                                              */
int main(void)
{
    char kind[8];
    while (scanf("%7s", kind) == 1) {
        if (!strcmp(kind, "conv") || !strcmp(kind, "dw")) {
            cmsis_nn_dims in, f, out;
            int sh, sw, ph, pw, dh, dw, cm = 1;
            if (scanf("%d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d", &in.n, &in.h, &in.w, &in.c,
                      &f.n, &f.h, &f.w, &f.c, &out.n, &out.h, &out.w, &out.c, &sh, &sw, &ph, &pw, &dh, &dw) != 18)
                return 2;
            if (!strcmp(kind, "dw") && scanf("%d", &cm) != 1)
                return 2;
            if (!strcmp(kind, "conv")) {
                cmsis_nn_conv_params p;
                memset(&p, 0, sizeof p);
                p.stride.h = sh; p.stride.w = sw; p.padding.h = ph; p.padding.w = pw;
                p.dilation.h = dh; p.dilation.w = dw; p.activation.min = -128; p.activation.max = 127;
                printf("%d %d %d\n", (int)arm_convolve_wrapper_s8_get_buffer_size(&p, &in, &f, &out),
                       (int)arm_convolve_wrapper_s8_get_buffer_size_dsp(&p, &in, &f, &out),
                       (int)arm_convolve_wrapper_s8_get_buffer_size_mve(&p, &in, &f, &out));
            } else {
                cmsis_nn_dw_conv_params p;
                memset(&p, 0, sizeof p);
                p.ch_mult = cm;
                p.stride.h = sh; p.stride.w = sw; p.padding.h = ph; p.padding.w = pw;
                p.dilation.h = dh; p.dilation.w = dw; p.activation.min = -128; p.activation.max = 127;
                printf("%d %d %d\n", (int)arm_depthwise_conv_wrapper_s8_get_buffer_size(&p, &in, &f, &out),
                       (int)arm_depthwise_conv_wrapper_s8_get_buffer_size_dsp(&p, &in, &f, &out),
                       (int)arm_depthwise_conv_wrapper_s8_get_buffer_size_mve(&p, &in, &f, &out));
            }
        } else if (!strcmp(kind, "fc")) {
            int in_depth, out_depth;
            if (scanf("%d %d", &in_depth, &out_depth) != 2)
                return 2;
            cmsis_nn_dims f = {in_depth, 1, 1, out_depth};
            printf("%d %d %d\n", (int)arm_fully_connected_s8_get_buffer_size(&f),
                   (int)arm_fully_connected_s8_get_buffer_size_dsp(&f),
                   (int)arm_fully_connected_s8_get_buffer_size_mve(&f));
        } else if (!strcmp(kind, "avg")) {
            int out_w, in_c;
            if (scanf("%d %d", &out_w, &in_c) != 2)
                return 2;
            printf("%d %d %d\n", (int)arm_avgpool_s8_get_buffer_size(out_w, in_c),
                   (int)arm_avgpool_s8_get_buffer_size_dsp(out_w, in_c),
                   (int)arm_avgpool_s8_get_buffer_size_mve(out_w, in_c));
        } else {
            return 3;
        }
    }
    return 0;
}
"""


def _out_size(in_: int, k: int, s: int, d: int, padding: str) -> tuple[int, int]:
    """TFLite output extent and leading pad for SAME / VALID."""
    eff = (k - 1) * d + 1
    if padding == "valid":
        return (in_ - eff) // s + 1, 0
    out = (in_ + s - 1) // s
    total = max((out - 1) * s + eff - in_, 0)
    return out, total // 2


def _conv_case(rng, *, depthwise: bool, n=1, ih=None, iw=None, ic=None, kh=None, kw=None, sh=None, sw=None,
               dh=1, dw=1, padding=None, ch_mult=None, oc=None, explicit_pad=None):
    ih = ih if ih is not None else rng.choice([1, 1, 2, 3, 5, 7, 8, 16, 17, 32])
    iw = iw if iw is not None else rng.choice([1, 2, 3, 5, 7, 8, 10, 16, 31, 49])
    ic = ic if ic is not None else rng.choice([1, 2, 3, 4, 5, 8, 12, 16, 17, 32, 64, 125, 130])
    kh = kh if kh is not None else rng.choice([1, 1, 2, 3, 3, 5, 7])
    kw = kw if kw is not None else rng.choice([1, 1, 2, 3, 3, 5, 7, 10])
    sh = sh if sh is not None else rng.choice([1, 1, 2, 3])
    sw = sw if sw is not None else rng.choice([1, 1, 2, 3, 4])
    padding = padding or rng.choice(["same", "valid"])
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    if padding == "valid":
        ih, iw = max(ih, eh), max(iw, ew)
    oh, ph = _out_size(ih, kh, sh, dh, padding)
    ow, pw = _out_size(iw, kw, sw, dw, padding)
    if explicit_pad is not None:
        ph, pw = explicit_pad
    if depthwise:
        cm = ch_mult if ch_mult is not None else rng.choice([1, 1, 1, 2, 3, 8])
        oc = ic * cm
        flt = (1, kh, kw, oc)
    else:
        cm = 1
        oc = oc if oc is not None else rng.choice([1, 3, 4, 8, 16, 33])
        flt = (oc, kh, kw, ic)
    return {"in": (n, ih, iw, ic), "filter": flt, "out": (n, oh, ow, oc), "stride_h": sh, "stride_w": sw,
            "pad_h": ph, "pad_w": pw, "dil_h": dh, "dil_w": dw, "ch_mult": cm}


def _scratch_cases() -> list[tuple[str, dict]]:
    rng = random.Random(20240607)
    cases: list[tuple[str, dict]] = []
    # edge cases first: every sub-kernel branch of the two wrappers
    for ic in (1, 3, 4, 8, 17, 64):
        cases.append(("conv", _conv_case(rng, depthwise=False, ih=8, iw=8, ic=ic, kh=1, kw=1, sh=1, sw=1,
                                         padding="valid")))                      # 1x1 fast
        cases.append(("conv", _conv_case(rng, depthwise=False, ih=9, iw=9, ic=ic, kh=1, kw=1, sh=2, sw=2,
                                         padding="valid")))                      # 1x1 strided
        for sw in (1, 2, 3, 4):
            for kw in (1, 2, 3, 5, 8):
                for pad in ("same", "valid"):
                    cases.append(("conv", _conv_case(rng, depthwise=False, ih=1, iw=rng.choice([7, 10, 16, 33]),
                                                     ic=ic, kh=1, kw=kw, sh=1, sw=sw, padding=pad)))  # 1xN
        cases.append(("conv", _conv_case(rng, depthwise=False, ih=1, iw=12, ic=ic, kh=1, kw=3, sh=1, sw=1,
                                         dw=2, padding="same")))                 # 1xN dilated -> generic
        cases.append(("conv", _conv_case(rng, depthwise=False, ih=6, iw=6, ic=ic, kh=3, kw=3, dh=2, dw=2,
                                         padding="same")))                       # dilated generic
        cases.append(("conv", _conv_case(rng, depthwise=False, ih=6, iw=6, ic=ic, kh=1, kw=1, sh=1, sw=1,
                                         padding="valid", explicit_pad=(0, 1))))  # 1x1 with pad -> generic
        for cm in (1, 2, 4):
            for k in (1, 3, 5):
                for pad in ("same", "valid"):
                    cases.append(("dw", _conv_case(rng, depthwise=True, ih=7, iw=9, ic=ic, kh=k, kw=k, padding=pad,
                                                   ch_mult=cm)))  # 3x3 / opt / generic, one-in-ch on MVE
            cases.append(("dw", _conv_case(rng, depthwise=True, ih=10, iw=10, ic=ic, kh=3, kw=3, padding="same",
                                           ch_mult=cm, explicit_pad=(2, 1))))   # 3x3 with pad 2 -> opt
            cases.append(("dw", _conv_case(rng, depthwise=True, ih=8, iw=8, ic=ic, kh=3, kw=3, dh=2, dw=2,
                                           padding="same", ch_mult=cm)))         # dilated -> generic
            cases.append(("dw", _conv_case(rng, depthwise=True, n=2, ih=8, iw=8, ic=ic, kh=3, kw=3,
                                           padding="same", ch_mult=cm)))         # batch 2 -> generic
            cases.append(("dw", _conv_case(rng, depthwise=True, ih=1, iw=16, ic=ic, kh=1, kw=4, sh=1,
                                           sw=rng.choice([1, 4]), padding="same", ch_mult=cm)))
    # random
    for _ in range(300):
        n = rng.choice([1, 1, 1, 2])
        dh = rng.choice([1, 1, 1, 2])
        dw = rng.choice([1, 1, 1, 2, 3])
        cases.append(("conv", _conv_case(rng, depthwise=False, n=n, dh=dh, dw=dw)))
        cases.append(("dw", _conv_case(rng, depthwise=True, n=n, dh=dh, dw=dw)))
    # non-canonical explicit pads (the size functions take any pad): C's truncating / and %
    # on negative totals in the Helium 1xN formula
    for _ in range(60):
        ic = rng.choice([4, 8, 12, 16])
        ep = (0, rng.randint(0, 4))
        cases.append(("conv", _conv_case(rng, depthwise=False, ih=1, kh=1, ic=ic, padding="valid", explicit_pad=ep)))
        cases.append(("dw", _conv_case(rng, depthwise=True, ih=1, kh=1, ic=1, ch_mult=rng.choice([2, 9, 16]),
                                       padding="valid", explicit_pad=ep)))
    for _ in range(40):
        cases.append(("fc", {"batches": rng.randint(1, 4), "in_depth": rng.randint(1, 2048),
                             "out_depth": rng.randint(1, 1000)}))
        iw, ic = rng.randint(1, 64), rng.randint(1, 300)
        k = rng.randint(1, 4)
        cases.append(("avg", {"in": (1, 8, iw + k - 1, ic), "out": (1, 9 - k, iw, ic), "filter_h": k,
                              "filter_w": k, "stride_h": 1, "stride_w": 1, "pad_h": 0, "pad_w": 0}))
    return cases


def _probe_line(kind: str, p: dict) -> str:
    if kind in ("conv", "dw"):
        nums = [*p["in"], *p["filter"], *p["out"], p["stride_h"], p["stride_w"], p["pad_h"], p["pad_w"],
                p["dil_h"], p["dil_w"]]
        if kind == "dw":
            nums.append(p["ch_mult"])
    elif kind == "fc":
        nums = [p["in_depth"], p["out_depth"]]
    else:
        nums = [p["out"][2], p["in"][3]]
    return kind + " " + " ".join(str(int(x)) for x in nums)


PY_FUNC = {  # the pure mirrors of CMSIS-NN's functions
    "conv": cmsis_scratch.convolve_wrapper_s8_get_buffer_size,
    "dw": cmsis_scratch.depthwise_conv_wrapper_s8_get_buffer_size,
    "fc": cmsis_scratch.fully_connected_s8_get_buffer_size,
    "avg": cmsis_scratch.avgpool_s8_get_buffer_size,
}


def test_scratch_formulas_match_cmsis_nn(cmsis_root, host_cmsis_lib, tmp_path):
    probe_c = tmp_path / "probe.c"
    probe_c.write_text(PROBE_C)
    exe = tmp_path / "probe"
    _run(["gcc", "-O1", "-std=c99", "-Wall", f"-I{cmsis_root / 'Include'}", str(probe_c), str(host_cmsis_lib),
          "-o", str(exe)], "building the buffer-size probe")
    cases = _scratch_cases()
    r = _run([str(exe)], "running the buffer-size probe", input="\n".join(_probe_line(k, p) for k, p in cases) + "\n")
    lines = r.stdout.splitlines()
    assert len(lines) == len(cases), f"probe answered {len(lines)} of {len(cases)} queries"
    mismatches = []
    nonzero = {"none": 0, "dsp": 0, "mve": 0}
    for (kind, params), line in zip(cases, lines):
        c_sizes = dict(zip(("none", "dsp", "mve"), map(int, line.split())))
        for arch, want in c_sizes.items():
            got = PY_FUNC[kind](params, arch)
            nonzero[arch] += want > 0
            if got != want:
                mismatches.append(f"{kind} {arch}: python {got} != CMSIS-NN {want} for {params}")
    assert not mismatches, f"{len(mismatches)} of {3 * len(cases)} sizes differ:\n" + "\n".join(mismatches[:20])
    # the case list must actually exercise non-trivial sizes on every arch
    assert all(v > 20 for v in nonzero.values()), nonzero
    assert len(cases) >= 600


def test_scratch_formulas_reject_bad_input():
    p = _conv_case(random.Random(0), depthwise=False)
    with pytest.raises(cmsis_scratch.ScratchParamError, match="arch"):
        cmsis_scratch.conv2d_scratch(p, "m4")
    with pytest.raises(cmsis_scratch.ScratchParamError, match="stride_w"):
        cmsis_scratch.conv2d_scratch({k: v for k, v in p.items() if k != "stride_w"}, "dsp")
    with pytest.raises(cmsis_scratch.ScratchParamError, match="in"):
        cmsis_scratch.dwconv2d_scratch({**p, "in": (1, 2, 3)}, "mve")
    # dict-form dims are accepted and equal to tuple form
    pd = {**p, "in": dict(zip("nhwc", p["in"])), "filter": dict(zip("nhwc", p["filter"])),
          "out": dict(zip("nhwc", p["out"]))}
    for arch in cmsis_scratch.ARCHS:
        assert cmsis_scratch.conv2d_scratch(pd, arch) == cmsis_scratch.conv2d_scratch(p, arch)


# ------------------------------------------------------------------ 3. target build (Cortex-M)

TARGET_MAIN_C = r"""
#include "tg_nn.h"
/* Reference every tg_* entry point so the link proves all of them resolve. */
typedef void (*fn_t)(void);
volatile fn_t tg_all[] = {
    (fn_t)tg_conv2d_s8, (fn_t)tg_dwconv2d_s8, (fn_t)tg_fully_connected_s8, (fn_t)tg_avgpool_s8,
    (fn_t)tg_maxpool_s8, (fn_t)tg_add_s8, (fn_t)tg_mul_s8, (fn_t)tg_softmax_s8, (fn_t)tg_lut_s8,
    (fn_t)tg_mean_s8, (fn_t)tg_pad_s8, (fn_t)tg_concat_s8, (fn_t)tg_quantize_f32_s8,
    (fn_t)tg_dequantize_s8_f32, (fn_t)tg_conv2d_s8_scratch, (fn_t)tg_dwconv2d_s8_scratch,
    (fn_t)tg_fully_connected_s8_scratch, (fn_t)tg_avgpool_s8_scratch,
};
int main(void) { return (int)(tg_all[0] != 0); }
"""


@pytest.mark.parametrize("cpu_flags", [M33_FLAGS, M55_FLAGS], ids=["cortex-m33", "cortex-m55"])
def test_backend_builds_for_cortex_m(cmsis_root, cpu_flags, tmp_path):
    _need_tool(ARM_CC)
    inc = [f"-I{FIRMWARE}", f"-I{cmsis_root / 'Include'}"]
    obj = tmp_path / "tg_backend_cmsis.o"
    # our file: warnings are errors
    _run([ARM_CC, *cpu_flags, *WERROR, "-std=c99", "-DTG_BACKEND_CMSIS_NN", *inc, "-c",
          str(FIRMWARE / "tg_backend_cmsis.c"), "-o", str(obj)], "target build of tg_backend_cmsis.c")
    syms = _run(["arm-none-eabi-nm", str(obj)], "nm").stdout
    for called in ("arm_convolve_wrapper_s8", "arm_depthwise_conv_wrapper_s8", "arm_nn_mat_mult_nt_t_s8_s32",
                   "arm_avgpool_s8", "arm_max_pool_s8",
                   "arm_elementwise_add_s8", "arm_elementwise_mul_s8", "arm_softmax_s8", "arm_pad_s8"):
        assert f" U {called}\n" in syms, f"tg_backend_cmsis.o does not call {called}"
    if cpu_flags is M33_FLAGS:
        # CMSIS-NN itself (plainer flags) + reference kernels + a main referencing every tg_* symbol
        lib = _build_static_lib(ARM_CC, cpu_flags, cmsis_root, "m33")
        ref_obj = tmp_path / "tg_kernels_ref.o"
        _run([ARM_CC, *cpu_flags, "-std=c99", "-DTG_BACKEND_CMSIS_NN", *inc, "-c",
              str(FIRMWARE / "tg_kernels_ref.c"), "-o", str(ref_obj)], "target build of tg_kernels_ref.c")
        main_c = tmp_path / "main.c"
        main_c.write_text(TARGET_MAIN_C)
        elf = tmp_path / "probe.elf"
        _run([ARM_CC, *cpu_flags, *WERROR, *inc, str(main_c), str(obj), str(ref_obj), str(lib),
              "--specs=nosys.specs", "-lm", "-o", str(elf)], "target link")
        linked = _run(["arm-none-eabi-nm", str(elf)], "nm").stdout
        assert " T arm_convolve_wrapper_s8\n" in linked and " T tg_ref_mean_s8\n" in linked


# ------------------------------------------------------------------ 2. kernels on the host vs TFLite
#
# tests/test_kernels.py re-runs each op with parameters it derives from the model itself; this
# harness instead runs the compiler's own lowering (so it also checks what tinygen emits for the
# cmsis-nn backend, scratch sizes included): each opnet goes through (tinygen.ir -> passes -> ops.lower(arch="none")), the resulting tg_*_params_t
# values are marshalled into ctypes structs and the graph is run op by op on the shared
# library; the output must equal the TFLite BUILTIN_REF interpreter's byte for byte.

import ctypes  # noqa: E402

import numpy as np  # noqa: E402

I32, F32, I8 = ctypes.c_int32, ctypes.c_float, ctypes.c_int8
P_I32, P_I8 = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int8)


class Dims(ctypes.Structure):
    _fields_ = [("n", I32), ("h", I32), ("w", I32), ("c", I32)]


def _ints(*names):
    return [(n, I32) for n in names]


class ConvP(ctypes.Structure):
    _fields_ = [("in", Dims), ("filter", Dims), ("out", Dims),
                *_ints("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "ch_mult", "in_offset",
                       "out_offset", "act_min", "act_max"),
                ("mult", P_I32), ("shift", P_I32), ("weights", P_I8), ("bias", P_I32)]


class FcP(ctypes.Structure):
    _fields_ = [*_ints("batches", "in_depth", "out_depth", "in_offset", "out_offset", "act_min", "act_max",
                       "per_channel"),
                ("mult", P_I32), ("shift", P_I32), ("weights", P_I8), ("bias", P_I32)]


class PoolP(ctypes.Structure):
    _fields_ = [("in", Dims), ("out", Dims),
                *_ints("filter_h", "filter_w", "stride_h", "stride_w", "pad_h", "pad_w", "act_min", "act_max")]


class BinP(ctypes.Structure):
    _fields_ = [("in1", Dims), ("in2", Dims), ("out", Dims),
                *_ints("in1_offset", "in1_mult", "in1_shift", "in2_offset", "in2_mult", "in2_shift", "left_shift",
                       "out_offset", "out_mult", "out_shift", "act_min", "act_max")]


class SoftP(ctypes.Structure):
    _fields_ = _ints("rows", "row_size", "mult", "shift", "diff_min")


class MeanP(ctypes.Structure):
    _fields_ = [("in", Dims), *_ints("in_zp", "out_zp", "mult", "shift", "num_elements")]


class PadP(ctypes.Structure):
    _fields_ = [("in", Dims), ("out", Dims), ("before", Dims), ("pad_value", I8)]


STRUCTS = {"tg_conv_params_t": ConvP, "tg_fc_params_t": FcP, "tg_pool_params_t": PoolP,
           "tg_binary_params_t": BinP, "tg_softmax_params_t": SoftP, "tg_mean_params_t": MeanP,
           "tg_pad_params_t": PadP}

REF_FUNCS = ("conv2d_s8", "dwconv2d_s8", "fully_connected_s8", "avgpool_s8", "maxpool_s8", "add_s8", "mul_s8",
             "softmax_s8", "lut_s8", "mean_s8", "pad_s8", "concat_s8", "quantize_f32_s8", "dequantize_s8_f32")

# Test-only shim linked into the shared library: struct sizes (layout check) and a counter per
# tg_ref_* kernel, hooked with `ld --wrap`, so the tests see which calls fell back.
SHIM_C = "#include <stddef.h>\n#include \"tg_nn.h\"\n" + "".join(
    f"size_t shim_sizeof_{t}(void) {{ return sizeof({t}); }}\n" for t in STRUCTS) + \
    "int32_t shim_ref_calls[%d];\n" % len(REF_FUNCS) + \
    "void shim_reset(void) { for (int i = 0; i < %d; ++i) shim_ref_calls[i] = 0; }\n" % len(REF_FUNCS) + \
    "#define WRAP(i, name, params, args) int32_t __real_tg_ref_##name params; \\\n" \
    "  int32_t __wrap_tg_ref_##name params { shim_ref_calls[i]++; return __real_tg_ref_##name args; }\n" + """
WRAP(0, conv2d_s8, (const tg_conv_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(1, dwconv2d_s8, (const tg_conv_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(2, fully_connected_s8, (const tg_fc_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(3, avgpool_s8, (const tg_pool_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(4, maxpool_s8, (const tg_pool_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(5, add_s8, (const tg_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *o), (p, a, b, o))
WRAP(6, mul_s8, (const tg_binary_params_t *p, const int8_t *a, const int8_t *b, int8_t *o), (p, a, b, o))
WRAP(7, softmax_s8, (const tg_softmax_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(8, lut_s8, (const int8_t *l, const int8_t *in, int8_t *out, int32_t n), (l, in, out, n))
WRAP(9, mean_s8, (const tg_mean_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(10, pad_s8, (const tg_pad_params_t *p, const int8_t *in, int8_t *out), (p, in, out))
WRAP(11, concat_s8, (int32_t k, const int8_t *const *ins, const int32_t *s, int32_t o, int8_t *out),
     (k, ins, s, o, out))
WRAP(12, quantize_f32_s8, (const float *in, int8_t *out, int32_t n, float s, int32_t z), (in, out, n, s, z))
WRAP(13, dequantize_s8_f32, (const int8_t *in, float *out, int32_t n, float s, int32_t z), (in, out, n, s, z))
"""


@pytest.fixture(scope="session")
def cmsis_lib(cmsis_root, host_cmsis_lib, tmp_path_factory):
    """tg_kernels_ref.c + tg_backend_cmsis.c + CMSIS-NN (host, pure-C paths) as one shared library."""
    d = tmp_path_factory.mktemp("cmsis_backend")
    shim = d / "shim.c"
    shim.write_text(SHIM_C)
    so = d / "libtg_cmsis.so"
    wrap = ",".join(f"--wrap=tg_ref_{f}" for f in REF_FUNCS)
    _run(["gcc", "-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Wextra", "-DTG_BACKEND_CMSIS_NN",
          f"-I{FIRMWARE}", f"-I{cmsis_root / 'Include'}", str(FIRMWARE / "tg_backend_cmsis.c"),
          str(FIRMWARE / "tg_kernels_ref.c"), str(FIRMWARE / "tg_backend_portable.c"), str(shim),
          f"-Wl,{wrap}", str(host_cmsis_lib), "-lm", "-o", str(so)], "host build of the CMSIS-NN backend")
    lib = ctypes.CDLL(str(so))
    for t, cls in STRUCTS.items():
        fn = getattr(lib, f"shim_sizeof_{t}")
        fn.restype = ctypes.c_size_t
        assert fn() == ctypes.sizeof(cls), f"ctypes layout of {t} is stale: C {fn()} != ctypes {ctypes.sizeof(cls)}"
    return lib


def _ref_calls(lib) -> dict[str, int]:
    arr = (I32 * len(REF_FUNCS)).in_dll(lib, "shim_ref_calls")
    return {f: int(arr[i]) for i, f in enumerate(REF_FUNCS) if arr[i]}


class _Keep(list):
    """Keeps numpy buffers alive while ctypes holds pointers into them."""

    def ptr(self, a: np.ndarray, ctype=ctypes.c_void_p):
        a = np.ascontiguousarray(a)
        self.append(a)
        return a.ctypes.data_as(ctype)


def _aligned(keep: _Keep, nbytes: int, guard: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A 16-byte aligned uint8 scratch of nbytes followed by `guard` canary bytes."""
    raw = np.full(nbytes + guard + 16, 0xA5, np.uint8)
    off = (-raw.ctypes.data) % 16
    keep.append(raw)
    return raw[off:off + nbytes], raw[off + nbytes:off + nbytes + guard]


def _struct(ptype: str, params: dict, arrays: dict, keep: _Keep):
    cls = STRUCTS[ptype]
    s = cls()
    for name, ctype in cls._fields_:
        if name not in params:
            raise AssertionError(f"lowered {ptype} lacks field {name!r}: {sorted(params)}")
        v = params[name]
        if isinstance(v, dict):
            setattr(s, name, Dims(**{k: int(v[k]) for k in "nhwc"}))
        elif isinstance(v, str) and v.startswith("{arr:"):
            arr = arrays[v[5:-1]]
            setattr(s, name, keep.ptr(arr, ctype))
        elif v == "NULL":
            setattr(s, name, None)
        elif isinstance(v, str):  # exact hex float literal from ops._cfloat
            setattr(s, name, float.fromhex(v.rstrip("fF")))
        else:
            setattr(s, name, int(v))
    return s


SCRATCH_FN = {"tg_conv2d_s8": "tg_conv2d_s8_scratch", "tg_dwconv2d_s8": "tg_dwconv2d_s8_scratch",
              "tg_fully_connected_s8": "tg_fully_connected_s8_scratch", "tg_avgpool_s8": "tg_avgpool_s8_scratch"}


def _run_graph(lib, model_bytes: bytes, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], dict, list[str]]:
    """Run the lowered graph on the library; returns (outputs, tg_ref_* calls, kernel names)."""
    from tinygen import ir, passes
    from tinygen import ops as optable

    g = ir.load(model_bytes, "opnet")
    # the compiler's passes minus its whole-model "one input, one output" rule (multi-input opnets)
    for name, fn in passes.PASSES:
        if name != "check_io":
            while fn(g):
                pass
        ir.verify(g, name)
    bufs = {tid: np.ascontiguousarray(x.reshape(g.t(tid).shape)) for tid, x in zip(g.inputs, inputs)}
    lib.shim_reset()
    keep = _Keep()
    kernels = []
    for op in g.ops:
        low = optable.lower(g, op, "none")  # the host build has neither DSP nor MVE
        if low.alias:
            bufs[op.outputs[0]] = bufs[op.inputs[0]].reshape(g.t(op.outputs[0]).shape)
            continue
        kernels.append(low.func)
        outs = []
        for tid in op.outputs:
            t = g.t(tid)
            o = np.empty(t.shape, dtype=np.dtype(t.dtype))
            o.view(np.uint8).fill(0x5A)  # poison: every byte must be written
            bufs[tid] = o
            outs.append(o)
        struct = _struct(low.ptype, low.params, low.arrays, keep) if low.ptype else None
        scratch = guard = None
        if low.func in SCRATCH_FN:
            c_size = getattr(lib, SCRATCH_FN[low.func])(ctypes.byref(struct))
            assert c_size == low.scratch, (
                f"{low.func}: backend needs {c_size} scratch bytes, cmsis_scratch planned {low.scratch}")
        if low.scratch:
            scratch, guard = _aligned(keep, low.scratch)
        args = []
        for a in low.args:
            if a == "&{params}":
                args.append(ctypes.byref(struct))
            elif a == "{scratch}":
                args.append(scratch.ctypes.data_as(ctypes.c_void_p) if scratch is not None else None)
            elif a.startswith("{arr:"):
                args.append(keep.ptr(low.arrays[a[5:-1]]))
            elif a.startswith("(const int8_t *const[])"):
                ks = [int(k) for k in re.findall(r"\{in(\d+)\}", a)]
                ptrs = (ctypes.c_void_p * len(ks))(*[bufs[op.inputs[k]].ctypes.data for k in ks])
                keep.append(ptrs)
                args.append(ptrs)
            elif "{in" in a:
                k = int(a[a.index("{in") + 3:a.index("}", a.index("{in"))])
                args.append(bufs[op.inputs[k]].ctypes.data_as(ctypes.c_void_p))
            elif "{out" in a:
                k = int(a[a.index("{out") + 4:a.index("}", a.index("{out"))])
                args.append(outs[k].ctypes.data_as(ctypes.c_void_p))
            elif a.lstrip("-").isdigit():
                args.append(I32(int(a)))
            else:
                args.append(F32(float.fromhex(a.rstrip("fF"))))
        fn = getattr(lib, low.func)
        fn.restype = I32
        rc = fn(*args)
        assert rc == 0, f"{low.func} returned {rc} for {op.where()}"
        if guard is not None:
            assert np.all(guard == 0xA5), f"{low.func} wrote past its {low.scratch}-byte scratch"
    return [bufs[t] for t in g.outputs], _ref_calls(lib), kernels


def _reference(model_bytes: bytes, seed: int):
    """Random inputs (full int8 range / normal floats) and the BUILTIN_REF outputs."""
    from tinygen import reference

    it = reference.interpreter(model_bytes)
    rng = np.random.default_rng(seed)
    ins = []
    for d in it.get_input_details():
        if d["dtype"] == np.int8:
            x = rng.integers(-128, 128, size=tuple(d["shape"]), dtype=np.int8)
        else:
            x = (rng.standard_normal(tuple(d["shape"])) * 4).astype(np.float32)
        it.set_tensor(d["index"], x)
        ins.append(x)
    it.invoke()
    outs = [it.get_tensor(d["index"]).copy() for d in it.get_output_details()]
    return ins, outs


# which tg_* calls must reach CMSIS-NN (no tg_ref_* fallback) for the default opnets
ALWAYS_REF = {"tg_lut_s8", "tg_mean_s8", "tg_concat_s8", "tg_quantize_f32_s8", "tg_dequantize_s8_f32"}


def _opnet_cases():
    try:
        from tests import opnets
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests"))
        import opnets  # type: ignore
    return opnets


def _case_params():
    try:
        return [pytest.param(kind, spec, id=cid) for cid, kind, spec in _opnet_cases().OPNET_CASES]
    except Exception as e:  # opnets.py is another engineer's file; make a missing one obvious
        return [pytest.param(None, None, id="opnets-unavailable", marks=pytest.mark.skip(reason=f"tests/opnets.py: {e}"))]


@pytest.mark.parametrize("kind,spec", _case_params())
def test_cmsis_backend_bit_exact_vs_tflite(cmsis_lib, kind, spec):
    model = _opnet_cases().make_opnet(kind, **spec)
    for seed in (0, 1):
        ins, want = _reference(model, seed)
        got, ref_calls, kernels = _run_graph(cmsis_lib, model, ins)
        assert len(got) == len(want)
        for k, (g_, w_) in enumerate(zip(got, want)):
            g_ = g_.reshape(w_.shape)
            assert g_.dtype == w_.dtype, (g_.dtype, w_.dtype)
            if not np.array_equal(g_.view(np.uint8) if g_.dtype == np.int8 else g_, w_.view(np.uint8)
                                  if w_.dtype == np.int8 else w_):
                bad = np.argwhere(g_ != w_)
                raise AssertionError(f"output {k} differs from TFLite BUILTIN_REF at {len(bad)} of {w_.size} "
                                     f"elements, first {bad[:5].tolist()}: got {g_[tuple(bad[0])]} "
                                     f"want {w_[tuple(bad[0])]} (kernels {kernels})")
        # routing: CMSIS-NN-capable calls must not have fallen back
        expect_ref = sum(1 for f in kernels if f in ALWAYS_REF)
        broadcasting = kind in ("add", "mul") and tuple(spec.get("shape1", ())) != tuple(spec.get("shape2", spec.get("shape1", ())))
        expect_ref += sum(1 for f in kernels if f in ("tg_add_s8", "tg_mul_s8")) if broadcasting else 0
        assert sum(ref_calls.values()) == expect_ref, f"tg_ref_* calls {ref_calls} for kernels {kernels}"


# ------------------------------------------------------- 2b. every CMSIS-NN sub-kernel vs tg_ref_*
#
# The opnets cover few shapes; these random cases drive each branch of the CMSIS-NN wrappers
# (1x1 fast, 1x1 strided, 1xN, generic, dilated; depthwise 3x3, opt, generic with ch_mult > 1;
# batches > 1) and compare with the reference kernels (themselves bit-exact with TFLite).

def _geom(rng, in_, k, s, d):
    pad_mode = rng.choice(["same", "valid"])
    eff = (k - 1) * d + 1
    if pad_mode == "valid" and in_ < eff:
        pad_mode = "same"
    return _out_size(in_, k, s, d, pad_mode)


def _rand_conv(rng, nrng, depthwise: bool, keep: _Keep, shape_kind: str):
    n = rng.choice([1, 1, 2])
    if shape_kind == "1x1":
        ih, iw, kh, kw, s, d = rng.randint(1, 9), rng.randint(1, 9), 1, 1, rng.choice([1, 1, 2, 3]), 1
    elif shape_kind == "1xn":
        ih, iw, kh, kw, s, d = 1, rng.randint(4, 20), 1, rng.randint(1, 6), rng.choice([1, 2, 4]), 1
    elif shape_kind == "3x3":
        ih, iw, kh, kw, s, d = rng.randint(3, 10), rng.randint(3, 10), 3, 3, rng.choice([1, 2]), 1
    else:
        ih, iw, kh, kw = rng.randint(1, 10), rng.randint(1, 10), rng.randint(1, 5), rng.randint(1, 5)
        s, d = rng.choice([1, 2, 3]), rng.choice([1, 1, 2])
    ic = rng.choice([1, 2, 3, 4, 8, 12, 16, 20]) if shape_kind != "1xn" else rng.choice([1, 2, 4, 8, 12])
    oh, ph = _geom(rng, ih, kh, s, d)
    ow, pw = _geom(rng, iw, kw, s, d)
    if depthwise:
        cm = rng.choice([1, 1, 2, 3])
        oc = ic * cm
        flt = Dims(1, kh, kw, oc)
        w = nrng.integers(-127, 128, (kh, kw, oc), dtype=np.int8)
    else:
        cm = 1
        oc = rng.choice([1, 3, 4, 8, 9])
        flt = Dims(oc, kh, kw, ic)
        w = nrng.integers(-127, 128, (oc, kh, kw, ic), dtype=np.int8)
    mult = nrng.integers(1 << 30, (1 << 31) - 1, oc, dtype=np.int64).astype(np.int32)
    shift = nrng.integers(-11, -5, oc, dtype=np.int32)
    bias = nrng.integers(-20000, 20000, oc, dtype=np.int32)
    lo = rng.choice([-128, -128, -20])
    hi = rng.choice([127, 127, 60])
    p = ConvP()
    setattr(p, "in", Dims(n, ih, iw, ic))
    p.filter, p.out = flt, Dims(n, oh, ow, oc)
    p.stride_h = p.stride_w = s
    p.pad_h, p.pad_w, p.dil_h, p.dil_w, p.ch_mult = ph, pw, d, d, cm
    p.in_offset, p.out_offset = rng.randint(-127, 128), rng.randint(-128, 127)
    p.act_min, p.act_max = lo, hi
    p.mult, p.shift = keep.ptr(mult, P_I32), keep.ptr(shift, P_I32)
    p.weights = keep.ptr(w, P_I8)
    p.bias = keep.ptr(bias, P_I32) if rng.random() < 0.8 else None
    x = nrng.integers(-128, 128, (n, ih, iw, ic), dtype=np.int8)
    return p, x, (n, oh, ow, oc)


def _call_both(lib, name: str, scratch_fn: str | None, p, ins: list[np.ndarray], out_shape, keep: _Keep):
    """tg_<name> (CMSIS-NN) and tg_ref_<name>; returns (cmsis_out, ref_out, fallbacks during tg_<name>)."""
    outs = []
    for fn_name in (f"tg_{name}", f"tg_ref_{name}"):
        o = np.full(out_shape, 0x5A, np.uint8).view(np.int8)
        args = [ctypes.byref(p)] if p is not None else []
        args += [x.ctypes.data_as(ctypes.c_void_p) for x in ins] + [o.ctypes.data_as(ctypes.c_void_p)]
        guard = None
        if fn_name.startswith("tg_") and not fn_name.startswith("tg_ref_") and scratch_fn:
            size = getattr(lib, scratch_fn)(ctypes.byref(p))
            scratch, guard = _aligned(keep, max(size, 0))
            args.append(scratch.ctypes.data_as(ctypes.c_void_p) if size > 0 else None)
        lib.shim_reset()
        fn = getattr(lib, fn_name)
        fn.restype = I32
        rc = fn(*args)
        assert rc == 0, f"{fn_name} returned {rc}"
        if guard is not None:
            assert np.all(guard == 0xA5), f"{fn_name} overran its scratch"
        if not fn_name.startswith("tg_ref_"):
            fallbacks = _ref_calls(lib)
        outs.append(o)
    return outs[0], outs[1], fallbacks


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "dwconv"])
def test_cmsis_conv_subkernels_match_reference(cmsis_lib, depthwise):
    rng, nrng = random.Random(7 + depthwise), np.random.default_rng(7 + depthwise)
    name = "dwconv2d_s8" if depthwise else "conv2d_s8"
    kinds = ["1x1", "1xn", "3x3", "generic"]
    for i in range(160):
        keep = _Keep()
        p, x, oshape = _rand_conv(rng, nrng, depthwise, keep, kinds[i % 4])
        got, want, fb = _call_both(cmsis_lib, name, f"tg_{name}_scratch", p, [x], oshape, keep)
        desc = {f: getattr(p, f) for f, _ in ConvP._fields_ if f not in ("mult", "shift", "weights", "bias")}
        desc = {k: (tuple((v.n, v.h, v.w, v.c)) if isinstance(v, Dims) else v) for k, v in desc.items()}
        assert not fb, f"case {i}: fell back to {fb} for {desc}"
        assert np.array_equal(got, want), f"case {i}: CMSIS-NN != reference for {desc}"


def test_cmsis_fc_pool_elementwise_pad_match_reference(cmsis_lib):
    rng, nrng = random.Random(11), np.random.default_rng(11)
    for i in range(60):
        keep = _Keep()
        # FULLY_CONNECTED, batches > 1, per-tensor and per-channel
        b, ind, outd = rng.randint(1, 4), rng.randint(1, 70), rng.randint(1, 20)
        per_ch = rng.random() < 0.5
        nq = outd if per_ch else 1
        fc = FcP(b, ind, outd, rng.randint(-127, 128), rng.randint(-128, 127), -128, rng.choice([127, 50]), int(per_ch))
        fc.mult = keep.ptr(nrng.integers(1 << 30, (1 << 31) - 1, nq, dtype=np.int64).astype(np.int32), P_I32)
        fc.shift = keep.ptr(nrng.integers(-11, -5, nq, dtype=np.int32), P_I32)
        fc.weights = keep.ptr(nrng.integers(-127, 128, (outd, ind), dtype=np.int8), P_I8)
        fc.bias = keep.ptr(nrng.integers(-9000, 9000, outd, dtype=np.int32), P_I32) if i % 3 else None
        x = nrng.integers(-128, 128, (b, ind), dtype=np.int8)
        got, want, fb = _call_both(cmsis_lib, "fully_connected_s8", "tg_fully_connected_s8_scratch", fc, [x],
                                   (b, outd), keep)
        assert not fb and np.array_equal(got, want), f"FC case {i} (b={b}, in={ind}, out={outd}, per_ch={per_ch})"
        # pools
        n, ih, iw, c = rng.randint(1, 2), rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 20)
        fh, fw, s = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3)
        oh, ph = _geom(rng, ih, fh, s, 1)
        ow, pw = _geom(rng, iw, fw, s, 1)
        pp = PoolP()
        setattr(pp, "in", Dims(n, ih, iw, c))
        pp.out = Dims(n, oh, ow, c)
        pp.filter_h, pp.filter_w, pp.stride_h, pp.stride_w, pp.pad_h, pp.pad_w = fh, fw, s, s, ph, pw
        pp.act_min, pp.act_max = rng.choice([-128, -10]), rng.choice([127, 90])
        x = nrng.integers(-128, 128, (n, ih, iw, c), dtype=np.int8)
        for name, sfn in (("avgpool_s8", "tg_avgpool_s8_scratch"), ("maxpool_s8", None)):
            got, want, fb = _call_both(cmsis_lib, name, sfn, pp, [x], (n, oh, ow, c), keep)
            assert not fb and np.array_equal(got, want), f"{name} case {i}"
        # ADD / MUL, equal shapes (CMSIS-NN) with TFLite-style parameters
        from tinygen import quant

        shape = (1, rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 9))
        s1, s2, so = (float(np.float32(rng.uniform(0.005, 0.1))) for _ in range(3))
        z1, z2, zo = (rng.randint(-128, 127) for _ in range(3))
        a = nrng.integers(-128, 128, shape, dtype=np.int8)
        b2 = nrng.integers(-128, 128, shape, dtype=np.int8)
        for name, qfn in (("add_s8", quant.add_params), ("mul_s8", quant.mul_params)):
            q = qfn(s1, z1, s2, z2, so, zo)
            bp = BinP()
            bp.in1 = bp.in2 = bp.out = Dims(*shape)
            for f, _ in BinP._fields_[3:]:
                setattr(bp, f, int(q[f]))
            got, want, fb = _call_both(cmsis_lib, name, None, bp, [a, b2], shape, keep)
            assert not fb and np.array_equal(got, want), f"{name} case {i}: {q}"
        # PAD on all four dims
        pin = [rng.randint(1, 3) for _ in range(4)]
        before = [rng.randint(0, 2) for _ in range(4)]
        after = [rng.randint(0, 2) for _ in range(4)]
        pout = [a_ + b_ + c_ for a_, b_, c_ in zip(pin, before, after)]
        pd = PadP()
        setattr(pd, "in", Dims(*pin))
        pd.out, pd.before, pd.pad_value = Dims(*pout), Dims(*before), rng.randint(-128, 127)
        x = nrng.integers(-128, 128, pin, dtype=np.int8)
        got, want, fb = _call_both(cmsis_lib, "pad_s8", None, pd, [x], tuple(pout), keep)
        assert not fb and np.array_equal(got, want), f"pad case {i}"


# ------------------------------------------------ 4. real target builds under QEMU (DSP and Helium)
#
# The host build is neither DSP nor MVE: there the DSP/Helium kernels and their scratch sizes
# are not exercised. Build the backend + CMSIS-NN for Cortex-M33 (DSP,
# QEMU mps2-an505) and Cortex-M55 (Helium, mps3-an547), run with semihosting, and check
#   - tg_*_scratch() (the real arm_*_get_buffer_size of that build) == cmsis_scratch(arch)
#   - tg_conv2d/dwconv2d/fully_connected/avgpool (CMSIS-NN DSP / MVE kernels) == tg_ref_* on
#     random data, bit-exact. (This is how the Helium 1xN conv bug and the FC rounding
#     mismatch of CMSIS-NN v7.0.0 were found.)

QEMU_TARGETS = {
    "cortex-m33-dsp": dict(arch="dsp", machine="mps2-an505", flags=M33_FLAGS, text=0x10000000, ram=0x38000000),
    "cortex-m55-mve": dict(arch="mve", machine="mps3-an547", flags=M55_FLAGS, text=0x00000000, ram=0x01000000),
}

QEMU_START_C = r"""
#include <stdint.h>
extern uint32_t __stack_top;
extern void _start(void);
void _init(void) {}
void _fini(void) {}
static void reset_handler(void)
{
    *(volatile uint32_t *)0xE000ED88 |= (0xFu << 20); /* CPACR: CP10/CP11 full access (FPU, MVE) */
    __asm volatile("dsb\n isb");
    _start();
    for (;;) {}
}
static void fault_handler(void) { for (;;) {} }
__attribute__((section(".vectors"), used)) const void *const tg_vectors[16] = {
    &__stack_top, (const void *)reset_handler, (const void *)fault_handler, (const void *)fault_handler,
    (const void *)fault_handler, (const void *)fault_handler, (const void *)fault_handler, 0, 0, 0, 0,
    (const void *)fault_handler, (const void *)fault_handler, 0, (const void *)fault_handler,
    (const void *)fault_handler};
"""

QEMU_LD = """
MEMORY {{ TEXT (rx) : ORIGIN = {text:#x}, LENGTH = 2M
         RAM (rwx) : ORIGIN = {ram:#x}, LENGTH = 2M }}
ENTRY(_start)
SECTIONS {{
  .text : {{ KEEP(*(.vectors)) *(.text*) *(.rodata*) . = ALIGN(4); }} > TEXT
  .ARM.exidx : {{ *(.ARM.exidx*) }} > TEXT
  .data : {{ *(.data*) . = ALIGN(4); }} > RAM
  .bss (NOLOAD) : {{ __bss_start__ = .; *(.bss*) *(COMMON) . = ALIGN(4); __bss_end__ = .; }} > RAM
  end = .; _end = .; __end__ = .;
  __stack_top = ORIGIN(RAM) + LENGTH(RAM);
}}
"""

QEMU_MAIN_C = r"""
#include <stdio.h>
#include <string.h>
#include "tg_nn.h"
#include "cases.h"

static uint32_t rng_state = 12345u;
static int32_t rnd(int32_t lo, int32_t hi) /* inclusive */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return lo + (int32_t)((rng_state >> 8) % (uint32_t)(hi - lo + 1));
}
static int8_t in_buf[4096], w_buf[8192], out_a[4096], out_b[4096];
static int32_t mult[256], shift[256], bias[256];
static int8_t scratch[16384] __attribute__((aligned(16)));

static void fill(int8_t *p, int32_t n, int32_t lo) { for (int32_t i = 0; i < n; ++i) p[i] = (int8_t)rnd(lo, 127); }
static void fill_q(int32_t n)
{
    for (int32_t i = 0; i < n; ++i) {
        mult[i] = rnd(1 << 30, 0x7fffffff);
        shift[i] = rnd(-11, -6);
        bias[i] = rnd(-20000, 20000);
    }
}
static int32_t diff(int32_t n) { int32_t d = 0; for (int32_t i = 0; i < n; ++i) d += out_a[i] != out_b[i]; return d; }

int main(void)
{
    for (int i = 0; i < (int)(sizeof conv_cases / sizeof conv_cases[0]); ++i) {
        const int32_t *c = conv_cases[i];
        tg_conv_params_t p;
        memset(&p, 0, sizeof p);
        p.in = (tg_dims_t){c[1], c[2], c[3], c[4]};
        p.filter = (tg_dims_t){c[5], c[6], c[7], c[8]};
        p.out = (tg_dims_t){c[9], c[10], c[11], c[12]};
        p.stride_h = c[13]; p.stride_w = c[14]; p.pad_h = c[15]; p.pad_w = c[16];
        p.dil_h = c[17]; p.dil_w = c[18]; p.ch_mult = c[19];
        p.in_offset = rnd(-127, 128); p.out_offset = rnd(-128, 127); p.act_min = -128; p.act_max = 127;
        const int32_t oc = p.out.c;
        fill_q(oc);
        p.mult = mult; p.shift = shift; p.bias = (i % 5) ? bias : NULL; p.weights = w_buf;
        fill(in_buf, p.in.n * p.in.h * p.in.w * p.in.c, -128);
        fill(w_buf, p.filter.n * p.filter.h * p.filter.w * p.filter.c, -127);
        const int32_t sz = c[0] ? tg_dwconv2d_s8_scratch(&p) : tg_conv2d_s8_scratch(&p);
        memset(out_a, 0x5a, sizeof out_a); memset(out_b, 0x5b, sizeof out_b);
        const int32_t n_out = p.out.n * p.out.h * p.out.w * p.out.c;
        int32_t ra, rb;
        if (sz > (int32_t)sizeof scratch) { printf("conv %d %ld toolarge\n", i, (long)sz); continue; }
        if (c[0]) { ra = tg_dwconv2d_s8(&p, in_buf, out_a, scratch); rb = tg_ref_dwconv2d_s8(&p, in_buf, out_b); }
        else      { ra = tg_conv2d_s8(&p, in_buf, out_a, scratch);   rb = tg_ref_conv2d_s8(&p, in_buf, out_b); }
        printf("conv %d %ld %ld %ld %ld\n", i, (long)sz, (long)ra, (long)rb, (long)diff(n_out));
    }
    for (int i = 0; i < (int)(sizeof fc_cases / sizeof fc_cases[0]); ++i) {
        const int32_t *c = fc_cases[i];
        tg_fc_params_t p;
        memset(&p, 0, sizeof p);
        p.batches = c[0]; p.in_depth = c[1]; p.out_depth = c[2]; p.per_channel = c[3];
        p.in_offset = rnd(-127, 128); p.out_offset = rnd(-128, 127); p.act_min = -128; p.act_max = 127;
        fill_q(p.out_depth);
        p.mult = mult; p.shift = shift; p.bias = (i % 3) ? bias : NULL; p.weights = w_buf;
        fill(in_buf, p.batches * p.in_depth, -128);
        fill(w_buf, p.in_depth * p.out_depth, -127);
        const int32_t sz = tg_fully_connected_s8_scratch(&p);
        memset(scratch, 0x77, sizeof scratch); /* stale garbage: the accumulators must be reset */
        memset(out_a, 0x5a, sizeof out_a); memset(out_b, 0x5b, sizeof out_b);
        const int32_t ra = tg_fully_connected_s8(&p, in_buf, out_a, scratch);
        const int32_t rb = tg_ref_fully_connected_s8(&p, in_buf, out_b);
        printf("fc %d %ld %ld %ld %ld\n", i, (long)sz, (long)ra, (long)rb, (long)diff(p.batches * p.out_depth));
    }
    for (int i = 0; i < (int)(sizeof pool_cases / sizeof pool_cases[0]); ++i) {
        const int32_t *c = pool_cases[i];
        tg_pool_params_t p;
        memset(&p, 0, sizeof p);
        p.in = (tg_dims_t){c[0], c[1], c[2], c[3]};
        p.out = (tg_dims_t){c[4], c[5], c[6], c[7]};
        p.filter_h = c[8]; p.filter_w = c[9]; p.stride_h = c[10]; p.stride_w = c[11]; p.pad_h = c[12]; p.pad_w = c[13];
        p.act_min = -128; p.act_max = 127;
        fill(in_buf, p.in.n * p.in.h * p.in.w * p.in.c, -128);
        const int32_t sz = tg_avgpool_s8_scratch(&p);
        memset(out_a, 0x5a, sizeof out_a); memset(out_b, 0x5b, sizeof out_b);
        const int32_t ra = tg_avgpool_s8(&p, in_buf, out_a, scratch);
        const int32_t rb = tg_ref_avgpool_s8(&p, in_buf, out_b);
        printf("pool %d %ld %ld %ld %ld\n", i, (long)sz, (long)ra, (long)rb,
               (long)diff(p.out.n * p.out.h * p.out.w * p.out.c));
    }
    printf("done\n");
    return 0;
}
"""


def _qemu_cases(seed: int):
    rng = random.Random(seed)
    conv, fc, pool = [], [], []
    kinds = ["1x1", "1xn", "3x3", "generic"]
    while len(conv) < 120:
        depthwise = len(conv) % 2 == 1
        k = kinds[(len(conv) // 2) % 4]
        if k == "1x1":
            c = _conv_case(rng, depthwise=depthwise, kh=1, kw=1, sh=rng.choice([1, 2]), sw=None, padding="valid",
                           ih=rng.randint(1, 8), iw=rng.randint(1, 8), ic=rng.choice([1, 3, 4, 8, 16, 20]))
            c["stride_w"] = c["stride_h"]
            c = _conv_case(rng, depthwise=depthwise, kh=1, kw=1, sh=c["stride_h"], sw=c["stride_h"],
                           padding="valid", ih=c["in"][1], iw=c["in"][2], ic=c["in"][3])
        elif k == "1xn":
            c = _conv_case(rng, depthwise=depthwise, ih=1, kh=1, iw=rng.randint(4, 20), kw=rng.randint(1, 5),
                           sh=1, sw=rng.choice([1, 2, 4]), ic=rng.choice([1, 4, 8, 12]),
                           ch_mult=rng.choice([1, 2]) if depthwise else None)
        elif k == "3x3":
            c = _conv_case(rng, depthwise=depthwise, kh=3, kw=3, ih=rng.randint(3, 9), iw=rng.randint(3, 9),
                           ic=rng.choice([1, 3, 8, 16]), ch_mult=1 if depthwise else None)
        else:
            c = _conv_case(rng, depthwise=depthwise, ih=rng.randint(2, 9), iw=rng.randint(2, 9),
                           kh=rng.randint(1, 4), kw=rng.randint(1, 4), ic=rng.choice([1, 2, 5, 8]),
                           dh=rng.choice([1, 2]), dw=rng.choice([1, 2]), ch_mult=rng.choice([1, 2, 16]) if depthwise else None)
        if depthwise and c["in"][3] == 1 and rng.random() < 0.5:  # Helium: 1 input channel -> converted to conv
            c = _conv_case(rng, depthwise=True, ic=1, ch_mult=rng.choice([4, 9, 16]), ih=rng.randint(2, 9),
                           iw=rng.randint(2, 9), kh=rng.choice([1, 3]), kw=rng.choice([1, 3]))
        n_in = np.prod(c["in"])
        n_w = np.prod(c["filter"])
        n_out = np.prod(c["out"])
        if max(n_in, n_out) <= 4096 and n_w <= 8192 and c["out"][3] <= 256 and min(c["out"][1:3]) >= 1:
            conv.append((int(depthwise), c))
    for i in range(40):
        outd = rng.choice([1, 3, 4, 5, 16, 17, 40, 100, 256])
        ind = rng.randint(1, max(1, min(300, 8192 // outd)))
        fc.append({"batches": rng.randint(1, 3), "in_depth": ind, "out_depth": outd, "per_channel": i % 2})
    while len(pool) < 30:
        n, ih, iw, c_ = rng.randint(1, 2), rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 40)
        fh, fw, s = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3)
        oh, ph = _geom(rng, ih, fh, s, 1)
        ow, pw = _geom(rng, iw, fw, s, 1)
        if n * ih * iw * c_ <= 4096:
            pool.append({"in": (n, ih, iw, c_), "out": (n, oh, ow, c_), "filter_h": fh, "filter_w": fw,
                         "stride_h": s, "stride_w": s, "pad_h": ph, "pad_w": pw})
    return conv, fc, pool


def _c_rows(name: str, rows: list[list[int]]) -> str:
    body = ",\n".join("    {" + ", ".join(str(int(v)) for v in r) + "}" for r in rows)
    return f"static const int32_t {name}[][{len(rows[0])}] = {{\n{body}\n}};\n"


@pytest.mark.parametrize("target", sorted(QEMU_TARGETS))
def test_cmsis_backend_on_qemu(cmsis_root, target, tmp_path):
    t = QEMU_TARGETS[target]
    _need_tool(ARM_CC)
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        pytest.skip("qemu-system-arm not installed: target-run CMSIS-NN tests skipped")
    flags = t["flags"]
    lib = _build_static_lib(ARM_CC, flags, cmsis_root, target)
    conv, fc, pool = _qemu_cases(sum(map(ord, target)))
    (tmp_path / "cases.h").write_text(
        _c_rows("conv_cases", [[dw, *c["in"], *c["filter"], *c["out"], c["stride_h"], c["stride_w"], c["pad_h"],
                                c["pad_w"], c["dil_h"], c["dil_w"], c["ch_mult"]] for dw, c in conv])
        + _c_rows("fc_cases", [[f["batches"], f["in_depth"], f["out_depth"], f["per_channel"]] for f in fc])
        + _c_rows("pool_cases", [[*p["in"], *p["out"], p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"],
                                  p["pad_h"], p["pad_w"]] for p in pool]))
    (tmp_path / "start.c").write_text(QEMU_START_C)
    (tmp_path / "main.c").write_text(QEMU_MAIN_C)
    (tmp_path / "link.ld").write_text(QEMU_LD.format(text=t["text"], ram=t["ram"]))
    crt0 = _run([ARM_CC, *flags, "-print-file-name=rdimon-crt0.o"], "locating rdimon-crt0.o").stdout.strip()
    elf = tmp_path / "test.elf"
    inc = [f"-I{FIRMWARE}", f"-I{cmsis_root / 'Include'}", f"-I{tmp_path}"]
    _run([ARM_CC, *flags, "-std=c99", "-DTG_BACKEND_CMSIS_NN", *inc, crt0, str(tmp_path / "start.c"),
          str(tmp_path / "main.c"), str(FIRMWARE / "tg_backend_cmsis.c"), str(FIRMWARE / "tg_kernels_ref.c"),
          str(lib), "-T", str(tmp_path / "link.ld"), "--specs=rdimon.specs", "-nostartfiles", "-lm", "-o", str(elf)],
         f"{target} link")
    r = subprocess.run([qemu, "-M", t["machine"], "-nographic", "-monitor", "none", "-serial", "none",
                        "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                       capture_output=True, text=True, timeout=120)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines and lines[-1] == "done", f"qemu run failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    arch = t["arch"]
    problems = []
    seen = {"conv": 0, "fc": 0, "pool": 0}
    nonzero = 0
    for line in lines[:-1]:
        kind, idx, *vals = line.split()
        idx = int(idx)
        if vals == ["toolarge"]:
            problems.append(f"{line}: scratch exceeds the test's buffer")
            continue
        size, ra, rb, ndiff = map(int, vals)
        seen[kind] += 1
        if kind == "conv":
            dw, params = conv[idx]
            want = (cmsis_scratch.dwconv2d_scratch if dw else cmsis_scratch.conv2d_scratch)(params, arch)
        elif kind == "fc":
            params = fc[idx]
            want = cmsis_scratch.fully_connected_scratch(params, arch)
        else:
            params = pool[idx]
            want = cmsis_scratch.avgpool_scratch(params, arch)
        nonzero += size > 0
        if size != want:
            problems.append(f"{kind} {idx}: target scratch {size} != cmsis_scratch {want} for {params}")
        if ra != 0 or rb != 0 or ndiff:
            problems.append(f"{kind} {idx}: rc {ra}/{rb}, {ndiff} outputs differ from tg_ref_* for {params}")
    assert seen == {"conv": len(conv), "fc": len(fc), "pool": len(pool)}, seen
    assert not problems, f"{len(problems)} problems on {target}:\n" + "\n".join(problems[:20])
    assert nonzero > 20, "too few cases with a non-zero scratch: the sizes are not exercised"
