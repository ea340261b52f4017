"""CMSIS-NN kernel set: scratch-size formulas, kernel choice, bit-exactness on host and target.

Needs CMSIS-NN v7.0.0 sources at $CMSIS_NN_PATH (skipped otherwise) and gcc. Which kernel runs a
layer is chosen at compile time by the registry (tinygen/kernels.py); these tests take every
list of kernels, symbols and CMSIS-NN functions from that registry.

1. tinygen.cmsis_scratch vs the real CMSIS-NN *_get_buffer_size{,_dsp,_mve} functions,
   called from a host C probe, for several hundred parameter sets.
2. firmware/tg_backend_cmsis.c builds for Cortex-M33 and Cortex-M55 (Helium) with -Werror, calls
   every CMSIS-NN function the registry names, and every registry symbol links.
3. Host build (CMSIS-NN's pure-C paths) through ctypes: each single-op model of tests/opnets.py is
   compiled (driver, kernel set cmsis-nn, arch none) and run call by call, bit-exact against the
   TFLite reference interpreter (BUILTIN_REF); every layer CMSIS-NN can run got a CMSIS-NN kernel.
4. Random cases per CMSIS-NN sub-kernel (kernels.select picks, tg_ref_* is the oracle), on the
   host and under QEMU on Cortex-M33 (DSP) and Cortex-M55 (Helium), checking the C scratch-size
   functions against the planned sizes and that no kernel writes past its planned scratch.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
# the portable kernel sources (every .c of the kernel file list except the CMSIS-NN adapters)
REF_SOURCES = [FIRMWARE / f for f in __import__("tinygen.driver", fromlist=["KERNEL_FILES"]).KERNEL_FILES
               if f.endswith(".c") and f != "tg_backend_cmsis.c"]
sys.path.insert(0, str(ROOT))

from tinygen import cmsis_scratch, kernels  # noqa: E402
from tinygen.ops import Arr, Lowered  # noqa: E402

sys.path.insert(0, str(ROOT / "tests"))
import tg_structs  # noqa: E402
from tg_structs import STRUCTS, Dims  # noqa: E402

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



# ------------------------------------------------------------------ registry facts used below

CMSIS_KERNELS = [k for k in kernels.REGISTRY if k.kset == "cmsis-nn"]
PORTABLE_KERNELS = [k for k in kernels.REGISTRY if k.kset == "portable"]


def _registry_symbols() -> list[str]:
    """Every C function the generated model.c may call: kernel symbols and scratch-size functions."""
    out: list[str] = []
    for k in kernels.REGISTRY:
        for s in (k.symbol, k.scratch_fn):
            if s and s not in out:
                out.append(s)
    return out


def _cmsis_entries(ops) -> set[str]:
    return {k.name for k in CMSIS_KERNELS if set(k.ops) & set(ops)}


def test_registry_lists_are_not_empty():
    """Guards the derived lists below (an empty registry would make every check vacuous)."""
    assert len(CMSIS_KERNELS) >= 10 and PORTABLE_KERNELS
    assert all(k.symbol.startswith("tg_cmsis_") and k.name.startswith("arm_") for k in CMSIS_KERNELS)
    assert all(k.symbol.startswith("tg_ref_") for k in PORTABLE_KERNELS)


# ------------------------------------------------------------------ 2. target build (Cortex-M)

# one static CMSIS-NN library per CPU, shared by the build and QEMU tests (same flags, same cache)
CPU_FLAGS = {"cortex-m33": M33_FLAGS, "cortex-m55": M55_FLAGS}


def _nm(path: Path) -> dict[str, set[str]]:
    """symbol -> nm types (U, T, ...) of an object or ELF."""
    out: dict[str, set[str]] = {}
    for line in _run(["arm-none-eabi-nm", str(path)], "nm").stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            out.setdefault(parts[-1], set()).add(parts[-2])
    return out


def _link_probe_c() -> str:
    """A main referencing every registry symbol (through tg_nn.h's prototypes: -Werror catches a missing one)."""
    refs = ",\n".join(f"    (fn_t){s}" for s in _registry_symbols())
    return ("#include \"tg_nn.h\"\n/* Reference every kernel the registry can call so the link proves all resolve. */\n"
            f"typedef void (*fn_t)(void);\nvolatile fn_t tg_all[] = {{\n{refs}\n}};\n"
            "int main(void) { return (int)(tg_all[0] != 0); }\n")


@pytest.mark.parametrize("cpu", sorted(CPU_FLAGS))
def test_backend_builds_for_cortex_m(cmsis_root, cpu, tmp_path):
    _need_tool(ARM_CC)
    cpu_flags = CPU_FLAGS[cpu]
    inc = [f"-I{FIRMWARE}", f"-I{cmsis_root / 'Include'}"]
    obj = tmp_path / "tg_backend_cmsis.o"
    # our file: warnings are errors
    _run([ARM_CC, *cpu_flags, *WERROR, "-std=c99", "-DTG_BACKEND_CMSIS_NN", *inc, "-c",
          str(FIRMWARE / "tg_backend_cmsis.c"), "-o", str(obj)], f"{cpu} build of tg_backend_cmsis.c")
    syms = _nm(obj)
    for k in CMSIS_KERNELS:
        assert "U" in syms.get(k.name, ()), f"tg_backend_cmsis.o does not call {k.name} (registry entry {k.symbol})"
        assert "T" in syms.get(k.symbol, ()), f"tg_backend_cmsis.o does not define {k.symbol}"
        if k.scratch_fn:
            assert "T" in syms.get(k.scratch_fn, ()), f"tg_backend_cmsis.o does not define {k.scratch_fn}"
    registered = set(_registry_symbols())
    stale = sorted(s for s, t in syms.items() if s.startswith("tg_cmsis_") and "T" in t and s not in registered)
    assert not stale, f"adapters no registry entry calls: {stale}"
    # CMSIS-NN + reference kernels + a main referencing every registry symbol
    lib = _build_static_lib(ARM_CC, cpu_flags, cmsis_root, cpu)
    ref_objs = []
    for src in REF_SOURCES:
        ref_objs.append(tmp_path / f"{src.stem}.o")
        _run([ARM_CC, *cpu_flags, *WERROR, "-std=c99", *inc, "-c", str(src), "-o", str(ref_objs[-1])],
             f"{cpu} build of {src.name}")
    main_c = tmp_path / "main.c"
    main_c.write_text(_link_probe_c())
    elf = tmp_path / "probe.elf"
    _run([ARM_CC, *cpu_flags, *WERROR, "-std=c99", *inc, str(main_c), str(obj), *map(str, ref_objs), str(lib),
          "--specs=nosys.specs", "-lm", "-o", str(elf)], f"{cpu} link")
    linked = _nm(elf)
    missing = [s for s in _registry_symbols() + [k.name for k in CMSIS_KERNELS] if "T" not in linked.get(s, ())]
    assert not missing, f"not linked into the probe: {missing}"


# ------------------------------------------------------------------ 3. opnets on the host vs TFLite
#
# tests/test_kernels.py re-runs each op with parameters it derives from the model itself; this
# harness runs the compiler's own result instead: each opnet goes through the driver (kernel set
# cmsis-nn, arch "none": the host build has neither DSP nor MVE) up to the plan, and every layer's
# kernels.Call is executed on the shared library by its symbol, with arguments built from the
# kernel's operands as the emitter renders them (tinygen.emit.c_operand); the scratch is the planned
# size with a guard behind it, checked against the kernel's C scratch function. The outputs must
# equal the TFLite BUILTIN_REF interpreter's byte for byte.

I32, F32, I8 = ctypes.c_int32, ctypes.c_float, ctypes.c_int8
P_I32, P_I8 = ctypes.POINTER(ctypes.c_int32), ctypes.POINTER(ctypes.c_int8)


@pytest.fixture(scope="session")
def cmsis_lib(cmsis_root, host_cmsis_lib, tmp_path_factory):
    """tg_kernels_ref.c + tg_backend_cmsis.c + CMSIS-NN (host, pure-C paths) as one shared library."""
    d = tmp_path_factory.mktemp("cmsis_backend")
    shim = d / "shim.c"
    shim.write_text(tg_structs.layout_shim())
    so = d / "libtg_cmsis.so"
    _run(["gcc", "-O2", "-fPIC", "-shared", "-std=c99", "-Wall", "-Wextra", "-Werror", "-DTG_BACKEND_CMSIS_NN",
          f"-I{FIRMWARE}", f"-I{cmsis_root / 'Include'}", str(FIRMWARE / "tg_backend_cmsis.c"),
          *map(str, REF_SOURCES), str(shim), str(host_cmsis_lib), "-lm", "-o", str(so)],
         "host build of the CMSIS-NN kernel set")
    lib = ctypes.CDLL(str(so))
    tg_structs.check_layout(lib)
    for s in _registry_symbols():
        getattr(lib, s).restype = I32
    return lib


class _Keep(list):
    """Keeps numpy buffers and ctypes objects alive while C holds pointers into them."""

    def ptr(self, a: np.ndarray, ctype=ctypes.c_void_p):
        a = np.ascontiguousarray(a)
        self.append(a)
        return a.ctypes.data_as(ctype)


GUARD = 64


def _aligned(keep: _Keep, nbytes: int, guard: int = GUARD) -> tuple[np.ndarray, np.ndarray]:
    """A 16-byte aligned uint8 region of nbytes filled with stale 0x77, followed by `guard` 0xA5 canary bytes."""
    raw = np.full(nbytes + guard + 16, 0xA5, np.uint8)
    off = (-raw.ctypes.data) % 16
    keep.append(raw)
    raw[off:off + nbytes] = 0x77
    return raw[off:off + nbytes], raw[off + nbytes:off + nbytes + guard]


def _struct(ptype: str, params: dict, arrays: dict, keep: _Keep):
    """The ctypes struct of a Lowered params dict (Arr -> pointer into `arrays`, None -> NULL)."""
    cls = STRUCTS[ptype]
    fields = [f for f, _ in cls._fields_]
    assert set(params) == set(fields), f"lowered {ptype} fields {sorted(params)} != ctypes mirror {sorted(fields)}"
    s = cls()
    for name, ctype in cls._fields_:
        v = params[name]
        if isinstance(v, dict):
            setattr(s, name, Dims(**{k: int(v[k]) for k in "nhwc"}))
        elif isinstance(v, Arr):
            setattr(s, name, keep.ptr(arrays[v.name], ctype))
        elif v is None:
            setattr(s, name, None)
        else:
            setattr(s, name, int(v))
    keep.append(s)
    return s


def _imm(v):
    """An immediate operand: ints as int32, C float strings (exact hex, ops._cfloat) as float."""
    if isinstance(v, str):
        return F32(float.fromhex(v.rstrip("fF")))
    return I32(int(v))


def _run_call(lib, call: kernels.Call, ins: list, outs: list[np.ndarray], keep: _Keep, where: str,
              share_out: bool = False) -> None:
    """Run one kernels.Call on the library: arguments from the kernel's operands (as emit.c_operand),
    the planned scratch (NULL when none, as model.c) followed by a guard; checks the C scratch
    function against the plan. share_out: the output starts at the scratch's first byte (as the
    planner places it when the kernel's scratch_holds_output allows)."""
    k, low = call.kernel, call.low
    struct = _struct(low.ptype, low.params, low.arrays, keep) if low.ptype else None
    if k.scratch_fn:
        c_size = getattr(lib, k.scratch_fn)(ctypes.byref(struct))
        assert c_size == call.scratch, f"{where}: {k.scratch_fn} returns {c_size}, the plan has {call.scratch} bytes"
    else:
        assert call.scratch == 0, f"{where}: {k.name} has no scratch function but {call.scratch} planned bytes"
    scratch = guard = None
    if share_out:
        assert len(outs) == 1 and outs[0].dtype == np.int8
        scratch, guard = _aligned(keep, max(call.scratch, outs[0].nbytes))
        outs = [scratch[:outs[0].nbytes].view(np.int8).reshape(outs[0].shape)]
    elif call.scratch:
        scratch, guard = _aligned(keep, call.scratch)
    args = []
    for o in k.operands:
        if o.kind == "params":
            args.append(ctypes.byref(struct))
        elif o.kind == "in":
            args.append(keep.ptr(ins[o.index]))
        elif o.kind == "out":
            args.append(outs[o.index].ctypes.data_as(ctypes.c_void_p))
        elif o.kind == "ins":
            ptrs = (ctypes.c_void_p * len(ins))(*[keep.ptr(x).value for x in ins])
            keep.append(ptrs)
            args.append(ptrs)
        elif o.kind == "outs":
            ptrs = (ctypes.c_void_p * len(outs))(*[x.ctypes.data for x in outs])
            keep.append(ptrs)
            args.append(ptrs)
        elif o.kind == "scratch":
            args.append(scratch.ctypes.data_as(ctypes.c_void_p) if scratch is not None else None)
        elif o.kind == "arr":
            args.append(keep.ptr(low.arrays[o.name]))
        elif o.kind == "imm":
            args.append(_imm(low.imm[o.name]))
        else:
            raise AssertionError(f"{where}: unknown operand kind {o.kind!r} of {k.symbol}")
    rc = getattr(lib, k.symbol)(*args)
    assert rc == 0, f"{where}: {k.symbol} returned {rc}"
    if guard is not None:
        assert np.all(guard == 0xA5), f"{where}: {k.symbol} wrote past its {call.scratch}-byte scratch"
    return outs


def _poisoned(shape, dtype) -> np.ndarray:
    o = np.empty(shape, dtype=np.dtype(dtype))
    o.view(np.uint8).fill(0x5A)  # poison: every byte must be written
    return o


def _broadcasting(call: kernels.Call) -> bool:
    p = call.low.params
    return "in1" in p and not (p["in1"] == p["out"] and p["in2"] == p["out"])


def _run_compiled(lib, c, inputs: list[np.ndarray]) -> tuple[list[np.ndarray], list[str]]:
    """Run the compiled graph call by call; returns (graph outputs, kernel names)."""
    g = c.graph
    assert len(c.calls) == len(g.ops)
    bufs = {tid: np.ascontiguousarray(x.reshape(g.t(tid).shape)) for tid, x in zip(g.inputs, inputs)}

    def value(tid):
        return bufs[tid] if tid in bufs else g.t(tid).data

    keep = _Keep()
    names = []
    for op, call in zip(g.ops, c.calls):
        if call is None:  # shape-only: an alias of its input
            bufs[op.outputs[0]] = value(op.inputs[0]).reshape(g.t(op.outputs[0]).shape)
            continue
        k, where = call.kernel, f"{op.where()} ({call.kernel.symbol})"
        names.append(k.name)
        ins = [value(t) for t in op.inputs if t >= 0]
        outs = [_poisoned(g.t(t).shape, g.t(t).dtype) for t in op.outputs]
        _run_call(lib, call, ins, outs, keep, where)
        hold = k.scratch_holds_output
        if hold is not None and hold(call.low, call.scratch):
            shared = _run_call(lib, call, ins, [_poisoned(o.shape, o.dtype) for o in outs], keep, where, share_out=True)
            assert np.array_equal(shared[0], outs[0]), f"{where}: output at the scratch's first byte differs"
        bufs.update(zip(op.outputs, outs))
    return [bufs[t] for t in g.outputs], names


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


def _opnet_cases():
    try:
        from tests import opnets
    except ImportError:
        sys.path.insert(0, str(ROOT / "tests"))
        import opnets  # type: ignore
    return opnets


# op-net kinds whose layers this call-by-call runner has ctypes mirrors for: every op with a CMSIS-NN
# kernel plus the portable-only ops around them. The newer data-movement/reduction ops (portable kernels
# only) are compared end to end with both kernel sets by tests/test_e2e_opnets.py.
RUNNER_KINDS = {"conv2d", "dwconv2d", "fc", "avgpool", "maxpool", "add", "sub", "mul", "softmax", "logistic",
                "relu", "relu6", "mean", "pad", "concat", "quant_io", "requantize"}


def _case_params():
    try:
        return [pytest.param(kind, spec, id=cid) for cid, kind, spec in _opnet_cases().OPNET_CASES
                if kind in RUNNER_KINDS]
    except Exception as e:  # opnets.py is another engineer's file; make a missing one obvious
        return [pytest.param(None, None, id="opnets-unavailable", marks=pytest.mark.skip(reason=f"tests/opnets.py: {e}"))]


@pytest.mark.parametrize("kind,spec", _case_params())
def test_cmsis_backend_bit_exact_vs_tflite(cmsis_lib, kind, spec):
    from tinygen import driver

    model = _opnet_cases().make_opnet(kind, **spec)
    c = driver.compile_model(model, "opnet", "cmsis-nn", "none", stop_after="plan")
    # every layer CMSIS-NN can run got a CMSIS-NN kernel: the portable kernel only for ops without a
    # CMSIS-NN entry and for broadcasting ADD/SUB/MUL (CMSIS-NN's element-wise kernels need equal shapes)
    for op, call in zip(c.graph.ops, c.calls):
        if call is None:
            continue
        has_cmsis = any(op.kind in k.ops for k in CMSIS_KERNELS)
        want = "cmsis-nn" if has_cmsis and not _broadcasting(call) else "portable"
        assert call.kernel.kset == want, (f"{op.where()}: {call.kernel.name} ({call.kernel.kset}) chosen, a {want} "
                                          f"kernel expected; reasons: "
                                          f"{ {k.name: k.applies(call.low, 'none') for k in CMSIS_KERNELS if op.kind in k.ops} }")
    for seed in (0, 1):
        ins, want = _reference(model, seed)
        assert len(ins) == len(c.graph.inputs)
        got, names = _run_compiled(cmsis_lib, c, ins)
        assert len(got) == len(want)
        for k, (g_, w_) in enumerate(zip(got, want)):
            g_ = g_.reshape(w_.shape)
            assert g_.dtype == w_.dtype, (g_.dtype, w_.dtype)
            if not np.array_equal(g_, w_):
                bad = np.argwhere(g_ != w_)
                raise AssertionError(f"output {k} differs from TFLite BUILTIN_REF at {len(bad)} of {w_.size} "
                                     f"elements, first {bad[:5].tolist()}: got {g_[tuple(bad[0])]} "
                                     f"want {w_[tuple(bad[0])]} (kernels {names})")


# ------------------------------------------------------- 4. every CMSIS-NN sub-kernel vs tg_ref_*
#
# The opnets cover few shapes; these random cases drive each CMSIS-NN entry of the registry
# (1x1 fast, 1x1 strided, 1xN, generic, dilated; depthwise 3x3, opt, generic with ch_mult > 1;
# batches > 1; FC, pools, element-wise, softmax, pad): kernels.select picks the kernel for the
# layer, as the compiler does, and its output is compared with the portable kernel's (itself
# bit-exact with TFLite, tests/test_kernels.py).

def _geom(rng, in_, k, s, d):
    pad_mode = rng.choice(["same", "valid"])
    eff = (k - 1) * d + 1
    if pad_mode == "valid" and in_ < eff:
        pad_mode = "same"
    return _out_size(in_, k, s, d, pad_mode)


def _nhwc(t) -> dict:
    return dict(zip("nhwc", (int(v) for v in t)))


def _conv_lowered(c: dict, arrays: dict, in_offset=0, out_offset=0, act_min=-128, act_max=127) -> Lowered:
    """A CONV_2D / DEPTHWISE_CONV_2D layer as ops.lower gives it, from a _conv_case dict (tuple dims);
    `arrays` holds mult, shift, weights and optionally bias."""
    p = {"in": _nhwc(c["in"]), "filter": _nhwc(c["filter"]), "out": _nhwc(c["out"]),
         **{f: int(c[f]) for f in ("stride_h", "stride_w", "pad_h", "pad_w", "dil_h", "dil_w", "ch_mult")},
         "in_offset": in_offset, "out_offset": out_offset, "act_min": act_min, "act_max": act_max,
         "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights"),
         "bias": Arr("bias") if "bias" in arrays else None}
    return Lowered(p, arrays, "tg_conv_params_t")


def _fc_lowered(f: dict, arrays: dict, in_offset=0, out_offset=0, act_min=-128, act_max=127) -> Lowered:
    p = {**{k: int(f[k]) for k in ("batches", "in_depth", "out_depth", "per_channel")}, "in_offset": in_offset,
         "out_offset": out_offset, "act_min": act_min, "act_max": act_max, "mult": Arr("mult"),
         "shift": Arr("shift"), "weights": Arr("weights"), "bias": Arr("bias") if "bias" in arrays else None}
    return Lowered(p, arrays, "tg_fc_params_t")


def _pool_lowered(p: dict, act_min=-128, act_max=127) -> Lowered:
    q = {"in": _nhwc(p["in"]), "out": _nhwc(p["out"]),
         **{k: int(p[k]) for k in ("filter_h", "filter_w", "stride_h", "stride_w", "pad_h", "pad_w")},
         "act_min": act_min, "act_max": act_max}
    return Lowered(q, {}, "tg_pool_params_t")


def _rand_conv(rng, nrng, depthwise: bool, shape_kind: str):
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
        flt = (1, kh, kw, oc)
    else:
        cm = 1
        oc = rng.choice([1, 3, 4, 8, 9])
        flt = (oc, kh, kw, ic)
    w = nrng.integers(-127, 128, int(np.prod(flt)), dtype=np.int8)
    arrays = {"mult": nrng.integers(1 << 30, (1 << 31) - 1, oc, dtype=np.int64).astype(np.int32),
              "shift": nrng.integers(-11, -5, oc, dtype=np.int32), "weights": w}
    bias = nrng.integers(-20000, 20000, oc, dtype=np.int32)
    if rng.random() < 0.8:
        arrays["bias"] = bias
    c = {"in": (n, ih, iw, ic), "filter": flt, "out": (n, oh, ow, oc), "stride_h": s, "stride_w": s,
         "pad_h": ph, "pad_w": pw, "dil_h": d, "dil_w": d, "ch_mult": cm}
    low = _conv_lowered(c, arrays, rng.randint(-127, 128), rng.randint(-128, 127), rng.choice([-128, -128, -20]),
                        rng.choice([127, 127, 60]))
    x = nrng.integers(-128, 128, (n, ih, iw, ic), dtype=np.int8)
    return low, x, (n, oh, ow, oc)


def _desc(low: Lowered) -> dict:
    return {k: v for k, v in low.params.items() if not isinstance(v, Arr) and v is not None}


def _check_vs_ref(lib, kind: str, low: Lowered, ins: list[np.ndarray], out_shape, where: str) -> str:
    """kernels.select's CMSIS-NN kernel (arch none) vs the portable kernel on one layer; returns the kernel name."""
    call = kernels.select(kind, low, "cmsis-nn", "none")
    ref = kernels.select(kind, low, "portable", "none")
    assert ref.kernel.kset == "portable"
    keep = _Keep()
    where = f"{where} {kind} {_desc(low)}"
    got = _run_call(lib, call, ins, [_poisoned(out_shape, np.int8)], keep, f"{where} [{call.kernel.name}]")[0]
    want = _run_call(lib, ref, ins, [_poisoned(out_shape, np.int8)], keep, f"{where} [{ref.kernel.name}]")[0]
    assert call.kernel.kset == "cmsis-nn", f"{where}: no CMSIS-NN kernel chosen ({call.kernel.name})"
    if not np.array_equal(got, want):
        bad = np.argwhere(got != want)
        raise AssertionError(f"{where}: {call.kernel.name} differs from {ref.kernel.name} at {len(bad)} of "
                             f"{got.size} outputs, first at {bad[0].tolist()}: {got[tuple(bad[0])]} != "
                             f"{want[tuple(bad[0])]}")
    return call.kernel.name


def _assert_all_exercised(seen: dict[str, int], ops) -> None:
    missing = _cmsis_entries(ops) - set(seen)
    assert not missing, f"CMSIS-NN entries of {sorted(ops)} never chosen by the random cases: {sorted(missing)} (seen {seen})"


@pytest.mark.parametrize("depthwise", [False, True], ids=["conv", "dwconv"])
def test_cmsis_conv_subkernels_match_reference(cmsis_lib, depthwise):
    rng, nrng = random.Random(7 + depthwise), np.random.default_rng(7 + depthwise)
    kind = "DEPTHWISE_CONV_2D" if depthwise else "CONV_2D"
    shapes = ["1x1", "1xn", "3x3", "generic"]
    seen: dict[str, int] = {}
    for i in range(160):
        low, x, oshape = _rand_conv(rng, nrng, depthwise, shapes[i % 4])
        name = _check_vs_ref(cmsis_lib, kind, low, [x], oshape, f"case {i}")
        seen[name] = seen.get(name, 0) + 1
    _assert_all_exercised(seen, [kind])


def test_cmsis_fc_pool_elementwise_softmax_pad_match_reference(cmsis_lib):
    from tinygen import quant

    rng, nrng = random.Random(11), np.random.default_rng(11)
    seen: dict[str, int] = {}

    def check(kind, low, ins, out_shape, where):
        name = _check_vs_ref(cmsis_lib, kind, low, ins, out_shape, where)
        seen[name] = seen.get(name, 0) + 1

    for i in range(60):
        # FULLY_CONNECTED, batches > 1, per-tensor and per-channel, one and several chunks
        b, ind, outd = rng.randint(1, 4), rng.randint(1, 70), rng.choice([rng.randint(1, 20), rng.randint(30, 80)])
        per_ch = rng.random() < 0.5
        nq = outd if per_ch else 1
        arrays = {"mult": nrng.integers(1 << 30, (1 << 31) - 1, nq, dtype=np.int64).astype(np.int32),
                  "shift": nrng.integers(-11, -5, nq, dtype=np.int32),
                  "weights": nrng.integers(-127, 128, outd * ind, dtype=np.int8)}
        if i % 3:
            arrays["bias"] = nrng.integers(-9000, 9000, outd, dtype=np.int32)
        low = _fc_lowered({"batches": b, "in_depth": ind, "out_depth": outd, "per_channel": int(per_ch)}, arrays,
                          rng.randint(-127, 128), rng.randint(-128, 127), -128, rng.choice([127, 50]))
        check("FULLY_CONNECTED", low, [nrng.integers(-128, 128, (b, ind), dtype=np.int8)], (b, outd), f"FC case {i}")
        # pools
        n, ih, iw, c = rng.randint(1, 2), rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 20)
        fh, fw, s = rng.randint(1, 4), rng.randint(1, 4), rng.randint(1, 3)
        oh, ph = _geom(rng, ih, fh, s, 1)
        ow, pw = _geom(rng, iw, fw, s, 1)
        low = _pool_lowered({"in": (n, ih, iw, c), "out": (n, oh, ow, c), "filter_h": fh, "filter_w": fw,
                             "stride_h": s, "stride_w": s, "pad_h": ph, "pad_w": pw},
                            rng.choice([-128, -10]), rng.choice([127, 90]))
        x = nrng.integers(-128, 128, (n, ih, iw, c), dtype=np.int8)
        for kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            check(kind, low, [x], (n, oh, ow, c), f"pool case {i}")
        # ADD / SUB / MUL, equal shapes (CMSIS-NN) with TFLite-style parameters
        shape = (1, rng.randint(1, 5), rng.randint(1, 6), rng.randint(1, 9))
        s1, s2, so = (float(np.float32(rng.uniform(0.005, 0.1))) for _ in range(3))
        z1, z2, zo = (rng.randint(-128, 127) for _ in range(3))
        a = nrng.integers(-128, 128, shape, dtype=np.int8)
        b2 = nrng.integers(-128, 128, shape, dtype=np.int8)
        act = rng.choice(["NONE", "RELU"])
        for kind, qfn in (("ADD", quant.add_params), ("SUB", quant.sub_params), ("MUL", quant.mul_params)):
            p = {"in1": _nhwc(shape), "in2": _nhwc(shape), "out": _nhwc(shape), **qfn(s1, z1, s2, z2, so, zo, act=act)}
            check(kind, Lowered(p, {}, "tg_binary_params_t"), [a, b2], shape, f"{kind} case {i}")
            # broadcasting: CMSIS-NN cannot, the portable kernel runs it
            if shape[1] * shape[2] > 1:
                pb = {**p, "in2": _nhwc((1, 1, 1, shape[3]))}
                call = kernels.select(kind, Lowered(pb, {}, "tg_binary_params_t"), "cmsis-nn", "none")
                assert call.kernel.kset == "portable", f"{kind} case {i}: {call.kernel.name} for a broadcast"
        # SOFTMAX over rows of random length, scales as TFLite's converter gives them
        rows, row_size = rng.randint(1, 4), rng.choice([1, 2, 5, 10, 33, 100])
        mult, shift, diff_min = quant.softmax_params(1.0, float(np.float32(rng.uniform(0.01, 0.25))))
        low = Lowered({"rows": rows, "row_size": row_size, "mult": mult, "shift": shift, "diff_min": diff_min}, {},
                      "tg_softmax_params_t")
        check("SOFTMAX", low, [nrng.integers(-128, 128, (rows, row_size), dtype=np.int8)], (rows, row_size),
              f"softmax case {i}")
        # PAD on all four dims
        pin = [rng.randint(1, 3) for _ in range(4)]
        before = [rng.randint(0, 2) for _ in range(4)]
        after = [rng.randint(0, 2) for _ in range(4)]
        pout = [a_ + b_ + c_ for a_, b_, c_ in zip(pin, before, after)]
        low = Lowered({"in": _nhwc(pin), "out": _nhwc(pout), "before": _nhwc(before),
                       "pad_value": rng.randint(-128, 127)}, {}, "tg_pad_params_t")
        check("PAD", low, [nrng.integers(-128, 128, pin, dtype=np.int8)], tuple(pout), f"pad case {i}")
    _assert_all_exercised(seen, ["FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "SUB", "MUL",
                                 "SOFTMAX", "PAD"])


# ------------------------------------------------ 5. real target builds under QEMU (DSP and Helium)
#
# The host build is neither DSP nor MVE: there the DSP/Helium kernels and their scratch sizes are
# not exercised. For random convolutions, depthwise, FC, pools, ADD/SUB/MUL, softmax and pad cases,
# Python picks each case's kernel with kernels.select(..., arch) for the target
# (as the compiler would for a board with that arch) and puts its id, the portable kernel's id and
# the planned scratch in the case table; the harness (a switch generated from the registry) runs
# that tg_cmsis_* adapter with a scratch of exactly the planned size (NULL when 0, as model.c)
# followed by a guard, and reports the kernel's C scratch function (the real arm_*_get_buffer_size
# of that build), the return codes, and the outputs that differ from the tg_ref_* kernel's.
# (This is how the Helium 1xN conv bug and the FC rounding mismatch of CMSIS-NN v7.0.0 were found.)

QEMU_TARGETS = {
    "cortex-m33-dsp": dict(cpu="cortex-m33", arch="dsp", machine="mps2-an505", text=0x10000000, ram=0x38000000),
    "cortex-m55-mve": dict(cpu="cortex-m55", arch="mve", machine="mps3-an547", text=0x00000000, ram=0x01000000),
}
QEMU_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "SUB", "MUL",
            "SOFTMAX", "PAD")
QEMU_KERNELS = [k for k in kernels.REGISTRY if set(k.ops) & set(QEMU_OPS)]
SCRATCH_BYTES = 16384

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


def _dispatch_c() -> str:
    """run_kernel(id, ...) and kernel_scratch(id, p) over QEMU_KERNELS, from their operands."""
    arg = {("params", 0): "p", ("in", 0): "in", ("in", 1): "in2", ("out", 0): "out", ("scratch", 0): "scratch"}
    run, scr = [], []
    for i, k in enumerate(QEMU_KERNELS):
        assert all((o.kind, o.index) in arg and not o.cast for o in k.operands), k
        run.append(f"    case {i}: return {k.symbol}({', '.join(arg[o.kind, o.index] for o in k.operands)});")
        if k.scratch_fn:
            scr.append(f"    case {i}: return {k.scratch_fn}(p);")
    return ("static int32_t run_kernel(int32_t id, const void *p, const int8_t *in, const int8_t *in2, int8_t *out,\n"
            "                          int8_t *scratch)\n{\n    (void)in2;\n    (void)scratch;\n    switch (id) {\n"
            + "\n".join(run) + "\n    default: return -100;\n    }\n}\n"
            "/* the kernel's scratch-size function, -1 when it has none */\n"
            "static int32_t kernel_scratch(int32_t id, const void *p)\n{\n    (void)p;\n    switch (id) {\n"
            + "\n".join(scr) + "\n    default: return -1;\n    }\n}\n")


QEMU_MAIN_C = r"""
#include <stdio.h>
#include <string.h>
#include "tg_nn.h"
#include "cases.h"

#define GUARD 64
static uint32_t rng_state = 12345u;
static int32_t rnd(int32_t lo, int32_t hi) /* inclusive */
{
    rng_state = rng_state * 1664525u + 1013904223u;
    return lo + (int32_t)((rng_state >> 8) % (uint32_t)(hi - lo + 1));
}
static int8_t in_buf[4096], in2_buf[4096], w_buf[8192], out_a[4096], out_b[4096];
static int32_t mult[256], shift[256], bias[256];
static int8_t scratch[SCRATCH_BYTES + GUARD] __attribute__((aligned(16)));

static void fill(int8_t *p, int32_t n, int32_t lo) { for (int32_t i = 0; i < n; ++i) p[i] = (int8_t)rnd(lo, 127); }
static void fill_q(int32_t n) /* the ranges kernels.select was given in Python (tests/test_cmsis_backend.py) */
{
    for (int32_t i = 0; i < n; ++i) {
        mult[i] = rnd(1 << 30, 0x7fffffff);
        shift[i] = rnd(-11, -6);
        bias[i] = rnd(-20000, 20000);
    }
}
static int32_t diff(int32_t n) { int32_t d = 0; for (int32_t i = 0; i < n; ++i) d += out_a[i] != out_b[i]; return d; }

/* kernel kid with `planned` scratch bytes vs the portable kernel rid; prints
 * "<kind> <i> <scratch fn> <rc kid> <rc rid> <outputs differing> <guard bytes overwritten>" */
static void run_case(const char *kind, int i, const int32_t *c, const void *p, int32_t n_out)
{
    const int32_t kid = c[0], rid = c[1], planned = c[2];
    if (planned > SCRATCH_BYTES) { printf("%s %d toolarge\n", kind, i); return; }
    const int32_t sz = kernel_scratch(kid, p);
    memset(scratch, 0x77, sizeof scratch); /* stale garbage: accumulators must be reset */
    memset(scratch + planned, 0xA5, GUARD);
    memset(out_a, 0x5a, sizeof out_a); memset(out_b, 0x5b, sizeof out_b);
    const int32_t ra = run_kernel(kid, p, in_buf, in2_buf, out_a, planned ? scratch : NULL);
    int32_t guard = 0;
    for (int32_t j = 0; j < GUARD; ++j) guard += scratch[planned + j] != (int8_t)0xA5;
    const int32_t rb = run_kernel(rid, p, in_buf, in2_buf, out_b, NULL);
    printf("%s %d %ld %ld %ld %ld %ld\n", kind, i, (long)sz, (long)ra, (long)rb, (long)diff(n_out), (long)guard);
}

int main(void)
{
    for (int i = 0; i < (int)(sizeof conv_cases / sizeof conv_cases[0]); ++i) {
        const int32_t *c = conv_cases[i];
        tg_conv_params_t p;
        memset(&p, 0, sizeof p);
        p.in = (tg_dims_t){c[3], c[4], c[5], c[6]};
        p.filter = (tg_dims_t){c[7], c[8], c[9], c[10]};
        p.out = (tg_dims_t){c[11], c[12], c[13], c[14]};
        p.stride_h = c[15]; p.stride_w = c[16]; p.pad_h = c[17]; p.pad_w = c[18];
        p.dil_h = c[19]; p.dil_w = c[20]; p.ch_mult = c[21];
        p.in_offset = rnd(-127, 128); p.out_offset = rnd(-128, 127); p.act_min = -128; p.act_max = 127;
        fill_q(p.out.c);
        p.mult = mult; p.shift = shift; p.bias = (i % 5) ? bias : NULL; p.weights = w_buf;
        fill(in_buf, p.in.n * p.in.h * p.in.w * p.in.c, -128);
        fill(w_buf, p.filter.n * p.filter.h * p.filter.w * p.filter.c, -127);
        run_case("conv", i, c, &p, p.out.n * p.out.h * p.out.w * p.out.c);
    }
    for (int i = 0; i < (int)(sizeof fc_cases / sizeof fc_cases[0]); ++i) {
        const int32_t *c = fc_cases[i];
        tg_fc_params_t p;
        memset(&p, 0, sizeof p);
        p.batches = c[3]; p.in_depth = c[4]; p.out_depth = c[5]; p.per_channel = c[10];
        p.in_offset = rnd(-127, 128); p.out_offset = rnd(-128, 127); p.act_min = -128; p.act_max = 127;
        fill_q(p.out_depth);
        p.mult = mult; p.shift = shift; p.bias = (i % 3) ? bias : NULL; p.weights = w_buf;
        fill(in_buf, p.batches * p.in_depth, -128);
        fill(w_buf, p.in_depth * p.out_depth, -127);
        run_case("fc", i, c, &p, p.batches * p.out_depth);
    }
    for (int i = 0; i < (int)(sizeof pool_cases / sizeof pool_cases[0]); ++i) {
        const int32_t *c = pool_cases[i];
        tg_pool_params_t p;
        memset(&p, 0, sizeof p);
        p.in = (tg_dims_t){c[3], c[4], c[5], c[6]};
        p.out = (tg_dims_t){c[7], c[8], c[9], c[10]};
        p.filter_h = c[11]; p.filter_w = c[12]; p.stride_h = c[13]; p.stride_w = c[14]; p.pad_h = c[15]; p.pad_w = c[16];
        p.act_min = -128; p.act_max = 127;
        fill(in_buf, p.in.n * p.in.h * p.in.w * p.in.c, -128);
        run_case("pool", i, c, &p, p.out.n * p.out.h * p.out.w * p.out.c);
    }
    for (int i = 0; i < (int)(sizeof bin_cases / sizeof bin_cases[0]); ++i) { /* equal shapes */
        const int32_t *c = bin_cases[i];
        tg_binary_params_t p;
        p.in1 = (tg_dims_t){c[3], c[4], c[5], c[6]};
        p.in2 = (tg_dims_t){c[7], c[8], c[9], c[10]};
        p.out = (tg_dims_t){c[11], c[12], c[13], c[14]};
        p.in1_offset = c[15]; p.in1_mult = c[16]; p.in1_shift = c[17];
        p.in2_offset = c[18]; p.in2_mult = c[19]; p.in2_shift = c[20]; p.left_shift = c[21];
        p.out_offset = c[22]; p.out_mult = c[23]; p.out_shift = c[24]; p.act_min = c[25]; p.act_max = c[26];
        const int32_t n = p.out.n * p.out.h * p.out.w * p.out.c;
        fill(in_buf, n, -128);
        fill(in2_buf, n, -128);
        run_case("bin", i, c, &p, n);
    }
    for (int i = 0; i < (int)(sizeof softmax_cases / sizeof softmax_cases[0]); ++i) {
        const int32_t *c = softmax_cases[i];
        tg_softmax_params_t p;
        p.rows = c[3]; p.row_size = c[4]; p.mult = c[5]; p.shift = c[6]; p.diff_min = c[7];
        fill(in_buf, p.rows * p.row_size, -128);
        run_case("softmax", i, c, &p, p.rows * p.row_size);
    }
    for (int i = 0; i < (int)(sizeof pad_cases / sizeof pad_cases[0]); ++i) {
        const int32_t *c = pad_cases[i];
        tg_pad_params_t p;
        memset(&p, 0, sizeof p);
        p.in = (tg_dims_t){c[3], c[4], c[5], c[6]};
        p.out = (tg_dims_t){c[7], c[8], c[9], c[10]};
        p.before = (tg_dims_t){c[11], c[12], c[13], c[14]};
        p.pad_value = (int8_t)c[15];
        fill(in_buf, p.in.n * p.in.h * p.in.w * p.in.c, -128);
        run_case("pad", i, c, &p, p.out.n * p.out.h * p.out.w * p.out.c);
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
            s = rng.choice([1, 2])
            c = _conv_case(rng, depthwise=depthwise, kh=1, kw=1, sh=s, sw=s, padding="valid",
                           ih=rng.randint(1, 8), iw=rng.randint(1, 8), ic=rng.choice([1, 3, 4, 8, 16, 20]))
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
        if depthwise and c["in"][3] == 1 and rng.random() < 0.5:  # 1 input channel, large multiplier
            c = _conv_case(rng, depthwise=True, ic=1, ch_mult=rng.choice([4, 9, 16]), ih=rng.randint(2, 9),
                           iw=rng.randint(2, 9), kh=rng.choice([1, 3]), kw=rng.choice([1, 3]))
        n_in = np.prod(c["in"])
        n_w = np.prod(c["filter"])
        n_out = np.prod(c["out"])
        if max(n_in, n_out) <= 4096 and n_w <= 8192 and c["out"][3] <= 256 and min(c["out"][1:3]) >= 1:
            conv.append((depthwise, c))
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
    other = []  # (op kind, Lowered) of the struct-only kernels: element-wise, softmax, pad
    from tinygen import quant

    for i in range(30):
        shape = (rng.randint(1, 2), rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 24))
        s1, s2, so = (float(np.float32(rng.uniform(0.005, 0.1))) for _ in range(3))
        z1, z2, zo = (rng.randint(-128, 127) for _ in range(3))
        act = rng.choice(["NONE", "RELU"])
        for kind, qfn in (("ADD", quant.add_params), ("SUB", quant.sub_params), ("MUL", quant.mul_params)):
            p = {"in1": _nhwc(shape), "in2": _nhwc(shape), "out": _nhwc(shape), **qfn(s1, z1, s2, z2, so, zo, act=act)}
            other.append((kind, Lowered(p, {}, "tg_binary_params_t")))
        rows, row_size = rng.randint(1, 4), rng.choice([1, 2, 5, 10, 16, 33, 100, 255])
        mult, shift, diff_min = quant.softmax_params(1.0, float(np.float32(rng.uniform(0.01, 0.25))))
        other.append(("SOFTMAX", Lowered({"rows": rows, "row_size": row_size, "mult": mult, "shift": shift,
                                          "diff_min": diff_min}, {}, "tg_softmax_params_t")))
        pout = [9999]
        while np.prod(pout) > 4096:  # the harness's buffers
            pin = [rng.randint(1, 3), rng.randint(1, 6), rng.randint(1, 6), rng.randint(1, 20)]
            before = [rng.randint(0, 1), rng.randint(0, 2), rng.randint(0, 2), rng.randint(0, 3)]
            pout = [a + b + rng.randint(0, 2) for a, b in zip(pin, before)]
        other.append(("PAD", Lowered({"in": _nhwc(pin), "out": _nhwc(pout), "before": _nhwc(before),
                                      "pad_value": rng.randint(-128, 127)}, {}, "tg_pad_params_t")))
    return conv, fc, pool, other


def _q_arrays(n: int) -> dict:
    """Stand-ins for the harness's random mult/shift (same ranges): all kernels.select looks at."""
    return {"mult": np.full(n, 1 << 30, np.int32), "shift": np.full(n, -8, np.int32), "weights": np.zeros(1, np.int8)}


def _qemu_plan(conv, fc, pool, other, arch: str):
    """Per case: (table, label, op kind, Lowered, chosen Call, portable Call)."""
    rows = []
    for dw, c in conv:
        rows.append(("conv", "DEPTHWISE_CONV_2D" if dw else "CONV_2D", _conv_lowered(c, _q_arrays(c["out"][3]))))
    for f in fc:
        rows.append(("fc", "FULLY_CONNECTED", _fc_lowered(f, _q_arrays(f["out_depth"] if f["per_channel"] else 1))))
    for p in pool:
        for kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            rows.append(("pool", kind, _pool_lowered(p)))
    table = {"ADD": "bin", "SUB": "bin", "MUL": "bin", "SOFTMAX": "softmax", "PAD": "pad"}
    rows += [(table[kind], kind, low) for kind, low in other]
    return [(t, kind, low, kernels.select(kind, low, "cmsis-nn", arch), kernels.select(kind, low, "portable", arch))
            for t, kind, low in rows]


def _c_rows(name: str, rows: list[list[int]]) -> str:
    body = ",\n".join("    {" + ", ".join(str(int(v)) for v in r) + "}" for r in rows)
    return f"static const int32_t {name}[][{len(rows[0])}] = {{\n{body}\n}};\n"


QEMU_TABLES = ("conv", "fc", "pool", "bin", "softmax", "pad")


def _flat(low: Lowered) -> list[int]:
    """The params' scalar fields in struct order (dims as n, h, w, c; pointers left out): the harness's columns 3..."""
    out: list[int] = []
    for f, _ in STRUCTS[low.ptype]._fields_:
        v = low.params[f]
        if isinstance(v, dict):
            out += [int(v[d]) for d in "nhwc"]
        elif v is not None and not isinstance(v, Arr):
            out.append(int(v))
    return out


def _cases_h(plan) -> str:
    """Case tables: kernel id, portable kernel id, planned scratch bytes, then the struct's scalar fields."""
    ids = {k.symbol: i for i, k in enumerate(QEMU_KERNELS)}
    tables: dict[str, list[list[int]]] = {t: [] for t in QEMU_TABLES}
    for t, _kind, low, call, ref in plan:
        p = low.params
        n_out = (p["rows"] * p["row_size"] if t == "softmax" else p["batches"] * p["out_depth"] if t == "fc"
                 else int(np.prod(list(p["out"].values()))))
        assert n_out <= 4096, f"{t} case too large for the harness's buffers: {_desc(low)}"
        tables[t].append([ids[call.symbol], ids[ref.symbol], call.scratch, *_flat(low)])
    return (f"#define SCRATCH_BYTES {SCRATCH_BYTES}\n" + "".join(_c_rows(f"{t}_cases", r) for t, r in tables.items())
            + _dispatch_c())


@pytest.mark.parametrize("target", sorted(QEMU_TARGETS))
def test_cmsis_backend_on_qemu(cmsis_root, target, tmp_path):
    t = QEMU_TARGETS[target]
    _need_tool(ARM_CC)
    qemu = shutil.which("qemu-system-arm")
    if qemu is None:
        pytest.skip("qemu-system-arm not installed: target-run CMSIS-NN tests skipped")
    flags, arch = CPU_FLAGS[t["cpu"]], t["arch"]
    lib = _build_static_lib(ARM_CC, flags, cmsis_root, t["cpu"])
    plan = _qemu_plan(*_qemu_cases(sum(map(ord, target))), arch)
    (tmp_path / "cases.h").write_text(_cases_h(plan))
    (tmp_path / "start.c").write_text(QEMU_START_C)
    (tmp_path / "main.c").write_text(QEMU_MAIN_C)
    (tmp_path / "link.ld").write_text(QEMU_LD.format(text=t["text"], ram=t["ram"]))
    crt0 = _run([ARM_CC, *flags, "-print-file-name=rdimon-crt0.o"], "locating rdimon-crt0.o").stdout.strip()
    elf = tmp_path / "test.elf"
    inc = [f"-I{FIRMWARE}", f"-I{cmsis_root / 'Include'}", f"-I{tmp_path}"]
    _run([ARM_CC, *flags, "-std=c99", "-Wall", "-Wextra", "-DTG_BACKEND_CMSIS_NN", *inc, crt0,
          str(tmp_path / "start.c"), str(tmp_path / "main.c"), str(FIRMWARE / "tg_backend_cmsis.c"),
          *map(str, REF_SOURCES), str(lib), "-T", str(tmp_path / "link.ld"), "--specs=rdimon.specs",
          "-nostartfiles", "-lm", "-o", str(elf)], f"{target} link")
    r = subprocess.run([qemu, "-M", t["machine"], "-nographic", "-monitor", "none", "-serial", "none",
                        "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                       capture_output=True, text=True, timeout=180)
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and lines and lines[-1] == "done", f"qemu run failed ({r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}"
    by_table: dict[str, list] = {tb: [] for tb in QEMU_TABLES}
    for row in plan:
        by_table[row[0]].append(row)
    problems, seen = [], {}
    results = dict.fromkeys(QEMU_TABLES, 0)
    nonzero = 0
    for line in lines[:-1]:
        table, idx, *vals = line.split()
        _, kind, low, call, ref = by_table[table][int(idx)]
        k = call.kernel
        where = f"{table} {idx} {kind} [{k.name}] {_desc(low)}"
        results[table] += 1
        if vals == ["toolarge"]:
            problems.append(f"{where}: planned scratch {call.scratch} exceeds the test's buffer")
            continue
        size, ra, rb, ndiff, guard = map(int, vals)
        seen[k.name] = seen.get(k.name, 0) + 1
        nonzero += call.scratch > 0
        if k.scratch_fn and size != call.scratch:
            problems.append(f"{where}: {k.scratch_fn} on target {size} != planned {call.scratch}")
        if not k.scratch_fn and call.scratch:
            problems.append(f"{where}: {call.scratch} bytes planned for a kernel without a scratch function")
        if k.kset != "cmsis-nn":
            problems.append(f"{where}: no CMSIS-NN kernel chosen")
        if ra != 0 or rb != 0 or ndiff or guard:
            problems.append(f"{where}: rc {ra} ({k.symbol}) / {rb} ({ref.kernel.symbol}), {ndiff} outputs differ, "
                            f"{guard} guard bytes past the {call.scratch}-byte scratch overwritten")
    assert results == {tb: len(rows) for tb, rows in by_table.items()}, results
    assert not problems, f"{len(problems)} problems on {target}:\n" + "\n".join(problems[:20])
    assert nonzero > 20, "too few cases with a non-zero scratch: the sizes are not exercised"
    # every CMSIS-NN entry that applies on this arch to some case was chosen for one
    applicable = {k.name for k in CMSIS_KERNELS for _, kind, low, _, _ in plan
                  if kind in k.ops and k.applies(low, arch) is None}
    assert applicable <= set(seen), f"{target}: entries never chosen: {sorted(applicable - set(seen))} (seen {seen})"
    if arch == "dsp":  # no CMSIS-NN entry is excluded on DSP: the cases must reach all of them
        assert _cmsis_entries(QEMU_OPS) <= applicable, sorted(_cmsis_entries(QEMU_OPS) - applicable)
