"""Generated kernels of part B (tinygen.kernelgen.dwconv / pool / eltwise) against tg_ref_*, byte for byte.

Each family draws several hundred seeded random cases (odd shapes, both strides, SAME/VALID,
per-tensor and per-channel quantization, with/without bias, every fused activation range,
zero points -128/127, weights of -128). All generated kernels of a family are compiled into one
host shared library together with firmware/tg_kernels_ref.c (gcc -O2 -Wall -Wextra -Werror, the
C definitions of firmware/tg_dsp.h), and every output must equal tg_ref_* on the same params.
The cortex-m33 build (DSP path, -Werror) and a run under qemu-system-arm -M mps2-an505 compare
the target's bytes with the host's.
"""

from __future__ import annotations

import ctypes as C
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinygen import quant  # noqa: E402
from tinygen.kernelgen import dwconv, eltwise, harness, pool  # noqa: E402
from tinygen.ops import Arr  # noqa: E402

FW = ROOT / "firmware"
CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow"]
ACTS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")

i32, P32, P8 = C.c_int32, C.POINTER(C.c_int32), C.POINTER(C.c_int8)


sys.path.insert(0, str(Path(__file__).resolve().parent))
from kgtest import CPU_IDS, CPUS, M33, M33_NODSP, needs_arm, needs_qemu, shared_model_cases  # noqa: E402
from tg_structs import BinaryParams, ConvParams, Dims, MeanParams, PoolParams, dims, host_lib  # noqa: E402, F401


def p8(a):
    return a.ctypes.data_as(P8)


def p32(a):
    return a.ctypes.data_as(P32)


def build_lib(tmp: Path, sources: list[str], name: str) -> C.CDLL:
    """One host shared library: every generated kernel + the reference kernels."""
    files = []
    for k, src in enumerate(sources):
        f = tmp / f"{name}_{k}.c"
        f.write_text(src)
        files.append(f)
    return host_lib(tmp / f"lib{name}.so", [*files, FW / "tg_kernels_ref.c"], CFLAGS)


def chunks(gens, per_file: int = 40) -> list[str]:
    """Group generated sources into a few translation units (faster to compile than one each)."""
    return ["\n".join(g.source for g in gens[i:i + per_file]) for i in range(0, len(gens), per_file)]


def rand_zp(rng) -> int:
    return int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))


def rand_act(rng, scale: float, zp: int) -> tuple[int, int]:
    return quant.activation_range(str(rng.choice(ACTS)), scale, zp)


def rand_i8(rng, shape) -> np.ndarray:
    a = rng.integers(-128, 128, size=shape).astype(np.int8)
    if a.size and rng.random() < 0.3:
        a.reshape(-1)[rng.integers(0, a.size, size=max(1, a.size // 8))] = rng.choice([-128, 127])
    return a


# ---- DEPTHWISE_CONV_2D ------------------------------------------------------------------------


def dw_case(rng, k: int):
    kh, kw = (3, 3) if k % 3 else ((5, 5) if k % 2 else (int(rng.integers(1, 8)), int(rng.integers(1, 8))))
    n = 2 if k % 17 == 0 else 1
    h, w = int(rng.integers(1, 10)), int(rng.integers(1, 10))
    c = int(rng.choice([1, 2, 3, 5, 8, 13, 16]))
    sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
    padding = "SAME" if rng.random() < 0.6 else "VALID"
    if padding == "VALID" and (h < kh or w < kw):
        padding = "SAME"
    oh, ph = quant.conv_pad(h, kh, sh, 1, padding)
    ow, pw = quant.conv_pad(w, kw, sw, 1, padding)
    zx, zy = rand_zp(rng), rand_zp(rng)
    sx, sy = float(rng.uniform(0.005, 0.1)), float(rng.uniform(0.005, 0.2))
    wsc = rng.uniform(0.001, 0.05, size=c) if rng.random() < 0.7 else np.full(c, rng.uniform(0.001, 0.05))
    if k % 11 == 0:   # multipliers >= 0.5 (shift >= 0): the exact general requantization
        sy = sx * float(wsc.max()) * 0.7
    mult, shift = quant.conv_multipliers(sx, wsc, sy)
    wts = rand_i8(rng, (1, kh, kw, c))
    bias = None
    if rng.random() < 0.8:
        lim = (1 << 30) if k % 13 == 0 else (1 << 16)
        bias = rng.integers(-lim, lim, size=c).astype(np.int32)
    lo, hi = rand_act(rng, sy, zy)
    params = {"in": {"n": n, "h": h, "w": w, "c": c}, "filter": {"n": 1, "h": kh, "w": kw, "c": c},
              "out": {"n": n, "h": oh, "w": ow, "c": c}, "stride_h": sh, "stride_w": sw, "pad_h": ph, "pad_w": pw,
              "dil_h": 1, "dil_w": 1, "ch_mult": 1, "in_offset": -zx, "out_offset": zy, "act_min": lo, "act_max": hi,
              "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights"),
              "bias": None if bias is None else Arr("bias")}
    arrays = {"mult": np.array(mult, np.int32), "shift": np.array(shift, np.int32), "weights": wts.reshape(-1)}
    if bias is not None:
        arrays["bias"] = bias
    return params, arrays


def dw_ref(L, params, arrays, x):
    p = params
    out = np.zeros(p["out"]["n"] * p["out"]["h"] * p["out"]["w"] * p["out"]["c"], np.int8)
    keep = [arrays["mult"], arrays["shift"], arrays["weights"]]
    bias = arrays.get("bias")
    cp = ConvParams(dims(p["in"]), dims(p["filter"]), dims(p["out"]), p["stride_h"], p["stride_w"], p["pad_h"],
                    p["pad_w"], 1, 1, 1, p["in_offset"], p["out_offset"], p["act_min"], p["act_max"],
                    p32(keep[0]), p32(keep[1]), p8(keep[2]), p32(bias) if bias is not None else None)
    assert L.tg_ref_dwconv2d_s8(C.byref(cp), p8(x), p8(out)) == 0
    return out


def run_gen(L, gen, ins: list[np.ndarray], out_size: int) -> np.ndarray:
    fn = getattr(L, gen.symbol)
    fn.restype = i32
    out = np.full(out_size, 0x55, np.int8)
    scratch = np.full(max(gen.scratch, 4) + 16, 0x33, np.int8)
    if gen.args[-1] == "scratch":
        assert fn(*[p8(a) for a in ins], p8(out), p8(scratch)) == 0
    else:
        assert fn(*[p8(a) for a in ins], p8(out)) == 0
    return out


DW_CASES = 320


@pytest.mark.toolchain
def test_dwconv_bit_exact_random(tmp_path):
    rng = np.random.default_rng(20261201)
    cases, gens = [], []
    for k in range(DW_CASES):
        params, arrays = dw_case(rng, k)
        assert dwconv.applies("DEPTHWISE_CONV_2D", params, arrays, "portable") is None, params
        gens.append(dwconv.generate("DEPTHWISE_CONV_2D", params, arrays, "portable", f"tg_gen_dw{k}"))
        cases.append((params, arrays))
    L = build_lib(tmp_path, chunks(gens), "dw")
    variants = set()
    for (params, arrays), gen in zip(cases, gens):
        p = params
        for trial in range(2):
            x = rand_i8(rng, p["in"]["n"] * p["in"]["h"] * p["in"]["w"] * p["in"]["c"])
            want = dw_ref(L, params, arrays, x)
            got = run_gen(L, gen, [x], want.size)
            assert np.array_equal(got, want), (gen.notes, params, np.nonzero(got != want)[0][:10])
        variants.add((gen.notes["requant"], gen.notes["fold_offset"], p["stride_w"]))
    # both requantization forms and both strides were exercised
    assert {v[0] for v in variants} == {"smmlar", "exact64"} and {v[2] for v in variants} == {1, 2}


@pytest.mark.toolchain
def test_a_wrong_kernel_is_caught(tmp_path):
    """The comparison really compares: an off-by-one in the stored byte or a missing rounding
    correction (the ties of RoundingDivideByPOT for negative values) is reported."""
    rng = np.random.default_rng(9)
    params, arrays = dw_case(rng, 1)
    params.update(in_offset=0, out_offset=0, act_min=-128, act_max=127)
    arrays["weights"] = rng.integers(-1, 2, arrays["weights"].size).astype(np.int8)  # small: no clamping
    arrays.pop("bias", None)
    params["bias"] = None
    arrays["shift"] = np.full_like(arrays["shift"], -1)   # right shift 1: every odd value is a tie
    arrays["mult"] = np.full_like(arrays["mult"], (1 << 31) - 1)
    good = dwconv.generate("DEPTHWISE_CONV_2D", params, arrays, "portable", "tg_gen_good")
    assert good.notes["requant"] == "smmlar"
    bad1 = good.source.replace("tg_gen_good", "tg_gen_bad1").replace("= (int8_t)y;", "= (int8_t)(y ^ 1);")
    bad2 = good.source.replace("tg_gen_good", "tg_gen_bad2").replace(") >> 31)", ") >> 31) * 0")
    assert bad1 != good.source.replace("tg_gen_good", "tg_gen_bad1") and "* 0" in bad2
    L = build_lib(tmp_path, [good.source, bad1, bad2], "wrong")
    x = rng.integers(-40, 40, params["in"]["h"] * params["in"]["w"] * params["in"]["c"]).astype(np.int8)
    want = dw_ref(L, params, arrays, x)
    out = {}
    for sym in ("tg_gen_good", "tg_gen_bad1", "tg_gen_bad2"):
        out[sym] = run_gen(L, type("G", (), {"symbol": sym, "scratch": good.scratch, "args": good.args}), [x],
                           want.size)
    assert np.array_equal(out["tg_gen_good"], want)
    assert not np.array_equal(out["tg_gen_bad1"], want) and not np.array_equal(out["tg_gen_bad2"], want)


@pytest.mark.unit
def test_dwconv_applies_reasons():
    rng = np.random.default_rng(1)
    params, arrays = dw_case(rng, 1)
    assert "multiplier" in dwconv.applies("DEPTHWISE_CONV_2D", {**params, "ch_mult": 2}, arrays, "dsp")
    assert "dilation" in dwconv.applies("DEPTHWISE_CONV_2D", {**params, "dil_h": 2}, arrays, "dsp")
    assert dwconv.applies("CONV_2D", params, arrays, "dsp") is not None


@pytest.mark.unit
def test_dwconv_deterministic():
    rng = np.random.default_rng(2)
    params, arrays = dw_case(rng, 1)
    a = dwconv.generate("DEPTHWISE_CONV_2D", params, arrays, "dsp", "tg_gen_x")
    b = dwconv.generate("DEPTHWISE_CONV_2D", params, arrays, "dsp", "tg_gen_x")
    assert a.source == b.source and a.const_bytes == b.const_bytes > 0


# ---- ADD / MUL --------------------------------------------------------------------------------


def binary_case(rng, kind: str, k: int):
    shape = {"n": 1, "h": int(rng.integers(1, 6)), "w": int(rng.integers(1, 6)), "c": int(rng.choice([1, 3, 4, 7, 16]))}
    z1, z2, zo = rand_zp(rng), rand_zp(rng), rand_zp(rng)
    s1, s2 = float(rng.uniform(0.002, 0.2)), float(rng.uniform(0.002, 0.2))
    so = float(rng.uniform(0.002, 0.3)) if kind == "ADD" else float(s1 * s2 * rng.uniform(20, 300))
    if k % 9 == 0:  # output scale close to the inputs' product: MUL multiplier >= 1 (left shift)
        so = s1 * s2 * float(rng.uniform(0.3, 1.5)) if kind == "MUL" else max(s1, s2) * 0.05
    fn = quant.add_params if kind == "ADD" else quant.mul_params
    p = {"in1": dict(shape), "in2": dict(shape), "out": dict(shape)}
    p.update(fn(s1, z1, s2, z2, so, zo))
    p["act_min"], p["act_max"] = rand_act(rng, so, zo)
    if kind == "ADD" and k % 10 == 5:  # output shift >= 0: the exact general requantization
        p["out_shift"], p["out_mult"] = int(rng.integers(0, 3)), int(rng.integers(1 << 30, 1 << 31))
    return p


def binary_ref(L, kind, p, a, b):
    out = np.zeros(a.size, np.int8)
    bp = BinaryParams(dims(p["in1"]), dims(p["in2"]), dims(p["out"]), p["in1_offset"], p["in1_mult"], p["in1_shift"],
                      p["in2_offset"], p["in2_mult"], p["in2_shift"], p["left_shift"], p["out_offset"],
                      p["out_mult"], p["out_shift"], p["act_min"], p["act_max"])
    fn = L.tg_ref_add_s8 if kind == "ADD" else L.tg_ref_mul_s8
    assert fn(C.byref(bp), p8(a), p8(b), p8(out)) == 0
    return out


BIN_CASES = 240


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", ["ADD", "MUL"])
def test_eltwise_bit_exact_random(tmp_path, kind):
    rng = np.random.default_rng(7 if kind == "ADD" else 8)
    cases, gens = [], []
    for k in range(BIN_CASES):
        p = binary_case(rng, kind, k)
        assert eltwise.applies(kind, p, {}, "portable") is None
        gens.append(eltwise.generate(kind, p, {}, "portable", f"tg_gen_{kind.lower()}{k}"))
        cases.append(p)
    L = build_lib(tmp_path, chunks(gens, 60), kind.lower())
    forms = set()
    for p, gen in zip(cases, gens):
        n = p["out"]["n"] * p["out"]["h"] * p["out"]["w"] * p["out"]["c"]
        a, b = rand_i8(rng, n), rand_i8(rng, n)
        if rng.random() < 0.2:  # every byte pattern of both inputs at least once
            a = np.resize(np.arange(-128, 128, dtype=np.int8), n)
            b = np.resize(np.arange(127, -129, -1).astype(np.int8), n)
        want = binary_ref(L, kind, p, a, b)
        got = run_gen(L, gen, [a, b], n)
        assert np.array_equal(got, want), (gen.notes, p)
        inplace = a.copy()   # out == in1, as the planner allows for ADD/MUL
        fn = getattr(L, gen.symbol)
        assert fn(p8(inplace), p8(b), p8(inplace)) == 0
        assert np.array_equal(inplace, want)
        forms.add(gen.notes["requant"])
    assert forms == {"smmlar", "exact64"}


@pytest.mark.unit
def test_eltwise_broadcast_not_generated():
    rng = np.random.default_rng(3)
    p = binary_case(rng, "ADD", 1)
    p["in2"] = {**p["in2"], "h": 1}
    p["out"]["h"] = max(p["out"]["h"], 2)
    p["in1"]["h"] = p["out"]["h"]
    assert "broadcast" in eltwise.applies("ADD", p, {}, "dsp")


# ---- AVERAGE_POOL_2D / MAX_POOL_2D / MEAN -------------------------------------------------------


def pool_case(rng, kind: str, k: int):
    n = 2 if k % 19 == 0 else 1
    h, w, c = int(rng.integers(1, 12)), int(rng.integers(1, 12)), int(rng.choice([1, 3, 4, 5, 8, 12, 17]))
    if kind == "MEAN":
        if k % 15 == 0:  # more than 256 pixels: int16 lanes widened per row
            h, w = int(rng.integers(17, 30)), int(rng.integers(12, 20))
        zi, zo = rand_zp(rng), rand_zp(rng)
        si = float(rng.uniform(0.005, 0.1))
        so = si * float(rng.uniform(0.3, 3.0)) if k % 7 else si * 80  # also a multiplier >= 1 (left shift)
        q = quant.mean_params((n, h, w, c), si, zi, so, zo)
        return {"in": {"n": n, "h": h, "w": w, "c": c}, "in_zp": q["in_zp"], "out_zp": q["out_zp"], "mult": q["mult"],
                "shift": q["shift"], "num_elements": q["num_elements"]}
    if k % 5 == 0:   # global pooling (KWS 25x5, ResNet-8 8x8)
        fh, fw, sh, sw, padding = h, w, h, w, "VALID"
    else:
        fh, fw = int(rng.integers(1, min(h, 4) + 1)), int(rng.integers(1, min(w, 4) + 1))
        sh, sw = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        padding = "SAME" if rng.random() < 0.5 else "VALID"
    oh, ph = quant.conv_pad(h, fh, sh, 1, padding)
    ow, pw = quant.conv_pad(w, fw, sw, 1, padding)
    lo, hi = rand_act(rng, float(rng.uniform(0.01, 0.1)), rand_zp(rng))
    return {"in": {"n": n, "h": h, "w": w, "c": c}, "out": {"n": n, "h": oh, "w": ow, "c": c}, "filter_h": fh,
            "filter_w": fw, "stride_h": sh, "stride_w": sw, "pad_h": ph, "pad_w": pw, "act_min": lo, "act_max": hi}


def pool_ref(L, kind, p, x):
    if kind == "MEAN":
        out = np.zeros(p["in"]["n"] * p["in"]["c"], np.int8)
        mp = MeanParams(dims(p["in"]), p["in_zp"], p["out_zp"], p["mult"], p["shift"], p["num_elements"])
        assert L.tg_ref_mean_s8(C.byref(mp), p8(x), p8(out)) == 0
        return out
    out = np.zeros(p["out"]["n"] * p["out"]["h"] * p["out"]["w"] * p["out"]["c"], np.int8)
    pp = PoolParams(dims(p["in"]), dims(p["out"]), p["filter_h"], p["filter_w"], p["stride_h"], p["stride_w"],
                    p["pad_h"], p["pad_w"], p["act_min"], p["act_max"])
    fn = L.tg_ref_avgpool_s8 if kind == "AVERAGE_POOL_2D" else L.tg_ref_maxpool_s8
    assert fn(C.byref(pp), p8(x), p8(out)) == 0
    return out


POOL_CASES = 200


@pytest.mark.toolchain
@pytest.mark.parametrize("kind", ["AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN"])
def test_pool_bit_exact_random(tmp_path, kind):
    rng = np.random.default_rng({"AVERAGE_POOL_2D": 31, "MAX_POOL_2D": 32, "MEAN": 33}[kind])
    cases, gens = [], []
    for k in range(POOL_CASES):
        p = pool_case(rng, kind, k)
        assert pool.applies(kind, p, {}, "portable") is None, p
        gens.append(pool.generate(kind, p, {}, "portable", f"tg_gen_pool{k}"))
        cases.append(p)
    L = build_lib(tmp_path, chunks(gens, 50), kind.lower())
    variants = set()
    for p, gen in zip(cases, gens):
        x = rand_i8(rng, p["in"]["n"] * p["in"]["h"] * p["in"]["w"] * p["in"]["c"])
        want = pool_ref(L, kind, p, x)
        got = run_gen(L, gen, [x], want.size)
        assert np.array_equal(got, want), (gen.notes, p)
        variants.add(gen.notes["variant"].split()[-1])
    assert variants == ({"full"} if kind == "MEAN" else {"full", "clipped"})


# ---- real graphs, target builds, QEMU ------------------------------------------------------------

FAMILY = {"DEPTHWISE_CONV_2D": dwconv, "ADD": eltwise, "MUL": eltwise, "AVERAGE_POOL_2D": pool, "MAX_POOL_2D": pool}


@pytest.mark.toolchain
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite"])
def test_shared_model_layers_host_bitexact(tmp_path, model):
    cases = shared_model_cases(model, FAMILY)
    kinds = {c.kind for c in cases}
    assert kinds == ({"DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D"} if model.startswith("kws") else {"ADD", "AVERAGE_POOL_2D"})
    assert harness.host_check(cases, tmp_path) == []


def sample_cases(seed: int, n: int) -> list:
    """A few random layers of every part-B kind, as the lowering produces them."""
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(n):
        params, arrays = dw_case(rng, k)
        p = params
        x = rand_i8(rng, p["in"]["n"] * p["in"]["h"] * p["in"]["w"] * p["in"]["c"])
        cases.append(harness.Case(f"dw{k}", "DEPTHWISE_CONV_2D", params, arrays, (x,),
                                  dwconv.generate("DEPTHWISE_CONV_2D", params, arrays, "dsp", f"tg_gen_dw{k}")))
        for kind in ("ADD", "MUL"):
            bp = binary_case(rng, kind, k)
            m = bp["out"]["h"] * bp["out"]["w"] * bp["out"]["c"]
            cases.append(harness.Case(f"{kind.lower()}{k}", kind, bp, {}, (rand_i8(rng, m), rand_i8(rng, m)),
                                      eltwise.generate(kind, bp, {}, "dsp", f"tg_gen_{kind.lower()}{k}")))
        for kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            pp = pool_case(rng, kind, k)
            pp = {**pp, "in": {**pp["in"], "n": 1}, "out": {**pp["out"], "n": 1}}
            m = pp["in"]["h"] * pp["in"]["w"] * pp["in"]["c"]
            cases.append(harness.Case(f"{kind[:3].lower()}{k}", kind, pp, {}, (rand_i8(rng, m),),
                                      pool.generate(kind, pp, {}, "dsp", f"tg_gen_{kind[:3].lower()}{k}")))
    return cases


@pytest.mark.toolchain
@needs_arm
@pytest.mark.parametrize("cpu", CPUS, ids=CPU_IDS)
def test_builds_for_cortex_m_with_werror(tmp_path, cpu):
    rng = np.random.default_rng(41)
    srcs = [c.gen.source for c in sample_cases(41, 12)]
    mp = pool_case(rng, "MEAN", 1)
    srcs.append(pool.generate("MEAN", mp, {}, "dsp", "tg_gen_mean").source)
    obj = harness.arm_compile("\n".join(srcs), tmp_path, cpu)
    dis = subprocess.run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    if cpu is M33:   # the DSP path really uses the DSP instructions
        for insn in ("smlad", "smlabb", "smmlar", "sxtab16", "ssub8", "sel", "ssat"):
            assert f"\t{insn}" in dis, insn
    else:
        assert "\tsmlad" not in dis if cpu is M33_NODSP else "\tsmlad" in dis


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.slow
@needs_qemu
def test_qemu_an505_bitexact(tmp_path):
    """Generated (DSP path) vs tg_ref_* on the emulated Cortex-M33, one firmware, outputs compared there."""
    cases = sample_cases(51, 3)
    res = harness.qemu_profile(cases, tmp_path, backend="portable", board_name="mps2-an505", timeout=120)
    assert all(r["match"] for r in res), res
    assert all(r["gen"] and r["ref"] and r["gen"] < r["ref"] for r in res), res
