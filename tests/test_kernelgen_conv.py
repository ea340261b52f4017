"""Generated CONV_2D / FULLY_CONNECTED kernels (tinygen.kernelgen.conv / fc) against tg_ref_*, byte for byte.

Host: several hundred seeded random layers per family (odd shapes, 1x1 / 3x3 / first-layer windows,
stride 1 and 2, SAME and VALID, per-tensor and per-channel, with and without bias, every fused
activation range, zero points -128 and 127, weights of -128, the general requantization path)
compiled into one program with firmware/tg_kernels_ref.c (gcc -O2 -Wall -Wextra -Werror, the C
definitions of firmware/tg_dsp.h): every output byte must equal the reference's. Every CONV_2D and
FULLY_CONNECTED of the shared KWS / ResNet-8 / AD models, as tinygen.ops lowers it, likewise.
Target: the same kernels built for cortex-m33 (DSP), cortex-m33+nodsp and cortex-m4 with -Werror,
and a few run under qemu-system-arm -M mps2-an505 against the reference there.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from kgtest import CPU_IDS, CPUS, M33, needs_arm, needs_qemu, shared_model_cases

from tinygen import quant
from tinygen.kernelgen import conv, fc, harness, requant

HAVE_GCC = shutil.which("gcc") is not None
needs_gcc = pytest.mark.skipif(not HAVE_GCC, reason="gcc not installed (sudo apt-get install gcc)")
FAMILY = {"CONV_2D": conv, "FULLY_CONNECTED": fc}


# ---- random layers -------------------------------------------------------------------------------

def _zp(rng: np.random.Generator) -> int:
    """Zero points with the extremes over-represented."""
    r = rng.random()
    return -128 if r < 0.15 else 127 if r < 0.3 else int(rng.integers(-128, 128))


def conv_cases(seed: int, n: int) -> list[harness.Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        family = ("1x1", "3x3", "first", "kxk")[i % 4]
        stride = int(rng.integers(1, 3))
        padding = "SAME" if rng.random() < 0.6 else "VALID"
        if family == "1x1":
            kh = kw = 1
            cin = int(rng.choice([4, 8, 12, 16, 5, 3, 7]))
        elif family == "3x3":
            kh = kw = 3
            cin = int(rng.choice([4, 8, 16]))
        elif family == "first":
            kh, kw = int(rng.integers(2, 5)), int(rng.integers(2, 5))
            cin = int(rng.integers(1, 4))
        else:
            kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
            cin = int(rng.integers(1, 9))
        h = int(rng.integers(max(kh, 1), 9))
        w = int(rng.integers(max(kw, 1), 9))
        cout = int(rng.integers(1, 12))
        params, arrays, x = harness.conv_case(
            rng, f"conv{i}", h, w, cin, cout, kh, kw, stride, padding, per_channel=bool(rng.random() < 0.7),
            bias=bool(rng.random() < 0.8), act=harness.ACTS[int(rng.integers(0, 4))], zp_in=_zp(rng), zp_out=_zp(rng),
            weights_min=bool(rng.random() < 0.3), stride_w=int(rng.integers(1, 3)))
        if i % 17 == 5 and "bias" in arrays:
            arrays["bias"][0] = (1 << 30) + 12345        # no accumulator bound: the general requantization
        if i % 13 == 7:
            arrays["shift"][:] = rng.integers(0, 3, arrays["shift"].size)  # left shifts (real multiplier >= 1)
        cases.append(_case(f"conv{i}", "CONV_2D", conv, params, arrays, x))
    return cases


def fc_cases(seed: int, n: int) -> list[harness.Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        ind = int(rng.choice([1, 3, 4, 7, 8, 13, 16, 33, 64, 100]))
        od = int(rng.integers(1, 20))
        params, arrays, x = harness.fc_case(
            rng, f"fc{i}", ind, od, batches=int(rng.integers(1, 4)), per_channel=bool(rng.random() < 0.4),
            bias=bool(rng.random() < 0.8), act=harness.ACTS[int(rng.integers(0, 4))], zp_in=_zp(rng), zp_out=_zp(rng),
            weights_min=bool(rng.random() < 0.3))
        if i % 11 == 3:
            arrays["shift"][:] = -1                       # t = 32: the SMMULR form
        elif i % 11 == 6:
            arrays["shift"][:] = rng.integers(-1, 2, arrays["shift"].size)  # shifts >= -1: the 64-bit form
        if i % 9 == 4 and "bias" in arrays:
            arrays["bias"][:] = rng.integers(-(1 << 31), (1 << 31) - 1, arrays["bias"].size)  # wrapping sums
        cases.append(_case(f"fc{i}", "FULLY_CONNECTED", fc, params, arrays, x))
    return cases


def _case(name, kind, family, params, arrays, x) -> harness.Case:
    assert family.applies(kind, params, arrays, "dsp") is None
    return harness.Case(name, kind, params, arrays, (x,), family.generate(kind, params, arrays, "dsp", f"tg_gen_{name}"))


# ---- requantization math (no compiler) ------------------------------------------------------------

def _tflite_double(acc: np.ndarray, m: int, s: int) -> np.ndarray:
    return np.array([quant.multiply_by_quantized_multiplier(int(a), m, s) for a in acc])


def _fast_conv(acc: np.ndarray, rq: dict, c: int) -> np.ndarray:
    """The "fast" C expression of conv_requant.j2, in exact Python integers."""
    m, ls, e, rnd, nm = rq["m"][c], rq["ls"][c], rq["e"][c], rq["rnd"][c], rq["nm"][c]
    y = [((int(a) << ls) * m + (1 << 31)) >> 32 for a in acc]       # SMMULR
    return np.array([(v + rnd + ((v >> 31) & nm)) >> e for v in y])


def _smmlar_conv(acc: np.ndarray, rq: dict, c: int) -> np.ndarray:
    """The "smmlar" C expression (out_offset folded into K), in exact Python integers."""
    m, ls, e, k = rq["m"][c], rq["ls"][c], rq["e"][c], rq["k"][c]
    return np.array([((((int(a) << ls) * m + (1 << 31)) >> 32) + k + (-1 if a < 0 else 0)) >> e for a in acc])


@pytest.mark.unit
def test_fast_double_rounding_equals_tflite():
    rng = np.random.default_rng(3)
    seen = set()
    for i in range(300):
        m = int(rng.integers(1 << 30, 1 << 31)) if i % 10 else 1 << 30   # 2^30: the power-of-two scales
        s = int(rng.integers(-12, 3))
        zp = int(rng.integers(-128, 128))
        bound = int(rng.integers(1, 1 << 22))
        rq = requant.conv_requant(np.array([m]), np.array([s]), np.array([bound]), zp)
        seen.add(rq["mode"])
        acc = np.concatenate([rng.integers(-bound, bound + 1, 300), [bound, -bound, 0, -1, 1, -2, 2]])
        want = _tflite_double(acc, m, s)
        if rq["mode"] == "smmlar":
            assert s < 0
            assert np.array_equal(_smmlar_conv(acc, rq, 0), want + zp), (m, s, bound, zp)
        else:
            assert rq["mode"] == "fast" and s >= 0
            assert np.array_equal(_fast_conv(acc, rq, 0), want), (m, s, bound)
    assert seen == {"smmlar", "fast"}


@pytest.mark.unit
def test_unbounded_accumulator_uses_general_requant():
    rq = requant.conv_requant(np.array([1 << 30]), np.array([2]), np.array([1 << 29]))
    assert rq["mode"] == "general"


def _tflite_single(acc: int, m: int, s: int) -> int:
    t = 31 - s
    return max(min((acc * m + (1 << (t - 1))) >> t, (1 << 31) - 1), -(1 << 31))


@pytest.mark.unit
def test_fc_single_rounding_forms_equal_reference():
    rng = np.random.default_rng(4)
    for _ in range(200):
        m = int(rng.integers(1 << 30, 1 << 31))
        s = int(rng.integers(-20, 0))
        zp = int(rng.integers(-128, 128))
        rq = requant.fc_requant(np.array([m]), np.array([s]), 1, zp)
        accs = [int(v) for v in rng.integers(-(1 << 31), 1 << 31, 200)] + [-(1 << 31), (1 << 31) - 1, 0, -1]
        for a in accs:
            if rq["mode"] == "smmul":                     # SMMLA with rnd + zp * 2^e folded
                got = (((a * m) >> 32) + rq["k"][0]) >> rq["e"][0]
                assert -(1 << 31) <= ((a * m) >> 32) + rq["k"][0] < 1 << 31
            else:
                assert rq["mode"] == "smmulr"
                got = ((a * m + (1 << 31)) >> 32) + zp
            assert got == _tflite_single(a, m, s) + zp, (a, m, s)


@pytest.mark.unit
def test_conv_weight_layout_is_a_permutation():
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (5, 3, 3, 8)).astype(np.int8)
    lay = conv.layout_weights(w, 5, 3, 3, 8, perm=True)
    assert lay.shape == (6, 72)
    assert np.array_equal(lay[:5].reshape(5, 18, 4)[:, :, conv.PERM4], w.reshape(5, 18, 4))
    assert not lay[5].any()
    lay1 = conv.layout_weights(w[:, :1, :1, :3], 5, 1, 1, 3, perm=False)
    assert lay1.shape == (6, 4) and np.array_equal(lay1[:5, :3], w[:, 0, 0, :3]) and not lay1[:, 3].any()


@pytest.mark.unit
def test_fc_weight_layout_round_trips():
    rng = np.random.default_rng(6)
    w = rng.integers(-128, 128, (6, 10)).astype(np.int8)
    words = fc.layout_weights(w, 6, 10)                       # 2 blocks x 3 groups x 4 rows
    b = words.astype("<u4").view(np.int8).reshape(2, 3, 4, 4)  # block, group, row, byte
    back = b.transpose(0, 2, 1, 3).reshape(8, 12)
    assert np.array_equal(back[:6, :10], w) and not back[6:].any() and not back[:, 10:].any()


@pytest.mark.unit
def test_applies_reasons():
    rng = np.random.default_rng(7)
    params, arrays, _ = harness.conv_case(rng, "c", 6, 6, 4, 4, 3, 3)
    assert conv.applies("CONV_2D", params, arrays, "dsp") is None
    assert "dilated" in conv.applies("CONV_2D", dict(params, dil_h=2), arrays, "dsp")
    assert "batch" in conv.applies("CONV_2D", dict(params, **{"in": dict(params["in"], n=2)}), arrays, "dsp")
    assert "not CONV_2D" in conv.applies("DEPTHWISE_CONV_2D", params, arrays, "dsp")
    fp, fa, _ = harness.fc_case(rng, "f", 16, 4)
    assert fc.applies("FULLY_CONNECTED", fp, fa, "dsp") is None
    assert "not FULLY_CONNECTED" in fc.applies("CONV_2D", fp, fa, "dsp")
    assert conv.cost("CONV_2D", params, arrays, "dsp") < conv.cost("CONV_2D", params, arrays, "none")


@pytest.mark.unit
def test_generation_is_deterministic():
    a = conv_cases(8, 4)
    b = conv_cases(8, 4)
    assert [c.gen.source for c in a] == [c.gen.source for c in b]
    assert [c.gen.source for c in fc_cases(9, 3)] == [c.gen.source for c in fc_cases(9, 3)]
    assert all("tg_gen_conv0" in a[0].gen.source and c.gen.const_bytes > 0 for c in a)


# ---- host bit-exactness ---------------------------------------------------------------------------

@pytest.mark.toolchain
@needs_gcc
@pytest.mark.parametrize("seed", [101, 102])
def test_conv_host_bitexact(tmp_path, seed):
    cases = conv_cases(seed, 100)
    modes = {c.gen.notes["requant"] for c in cases}
    variants = {c.gen.notes["variant"].split()[0] for c in cases}
    assert modes == {"smmlar", "fast", "general"} and variants == {"1x1", "kxk", "first"}
    assert harness.host_check(cases, tmp_path) == []


@pytest.mark.toolchain
@needs_gcc
def test_conv_host_bitexact_int8_weights(tmp_path, monkeypatch):
    """The int8-weight variant (large layers: weights widened in the inner loop) on the same random layers."""
    monkeypatch.setattr(conv, "INT16_MAX_WEIGHTS", 0)
    cases = conv_cases(103, 80)
    assert {c.gen.notes["variant"].split(", ")[-1] for c in cases} == {"int8 weights"}
    assert harness.host_check(cases, tmp_path) == []


@pytest.mark.toolchain
@needs_gcc
@pytest.mark.parametrize("seed", [201, 202])
def test_fc_host_bitexact(tmp_path, seed):
    cases = fc_cases(seed, 100)
    assert {c.gen.notes["requant"] for c in cases} == {"smmul", "smmulr", "general"}
    assert harness.host_check(cases, tmp_path) == []


@pytest.mark.toolchain
@needs_gcc
def test_host_check_reports_a_wrong_kernel(tmp_path):
    """The harness itself: a generated kernel off by one output LSB is reported, not passed."""
    good = conv_cases(11, 2)
    bad = harness.Case(good[1].name, good[1].kind, good[1].params, good[1].arrays, good[1].inputs,
                       harness.Generated(**{**good[1].gen.__dict__,
                                            "source": good[1].gen.source.replace("return (int8_t)y;",
                                                                                 "return (int8_t)(y ^ 1);")}))
    assert bad.gen.source != good[1].gen.source
    mism = harness.host_check([good[0], bad], tmp_path)
    assert len(mism) == 1 and mism[0].startswith("MISMATCH 1 ")


@pytest.mark.toolchain
@needs_gcc
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"])
def test_shared_model_layers_host_bitexact(tmp_path, model):
    cases = shared_model_cases(model, FAMILY)
    assert cases
    assert harness.host_check(cases, tmp_path) == []


# ---- target builds and QEMU -----------------------------------------------------------------------

@pytest.mark.toolchain
@needs_arm
@pytest.mark.parametrize("cpu", CPUS, ids=CPU_IDS)
def test_builds_for_cortex_m_with_werror(tmp_path, cpu):
    cases = conv_cases(21, 8) + fc_cases(22, 6)
    src = "\n".join(c.gen.source for c in cases)
    obj = harness.arm_compile(src, tmp_path, cpu)
    assert obj.stat().st_size > 0
    if cpu is M33:   # the DSP path really uses the DSP instructions
        dis = __import__("subprocess").run(["arm-none-eabi-objdump", "-d", str(obj)], capture_output=True,
                                           text=True, check=True).stdout
        assert "smlad" in dis and "sxtab16" in dis and "ldrd" in dis and "smmul" in dis


@pytest.mark.toolchain
@pytest.mark.qemu
@pytest.mark.slow
@needs_qemu
def test_qemu_an505_bitexact(tmp_path):
    """Generated (DSP path) vs tg_ref_* on the emulated Cortex-M33, one firmware, outputs compared there."""
    cases = conv_cases(31, 6) + fc_cases(32, 4)
    big = harness.conv_case(np.random.default_rng(33), "big", 6, 5, 64, 64, 3, 3, 1, "SAME")  # 36,864 int8 weights
    cases.append(_case("big", "CONV_2D", conv, *big))
    assert "int8 weights" in cases[-1].gen.notes["variant"]
    res = harness.qemu_profile(cases, tmp_path, backend="portable", board_name="mps2-an505", timeout=120)
    assert all(r["match"] for r in res), res
    assert all(r["gen"] and r["ref"] and r["gen"] < r["ref"] for r in res), res
