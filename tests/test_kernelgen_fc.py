"""The scratch-free FULLY_CONNECTED variants (tinygen.kernelgen.fc ``direct`` and ``split``) against
tg_ref_fully_connected_s8, byte for byte: host (C definitions of tg_dsp.h) and the DSP path under
qemu-system-arm -M mps2-an505. ``split`` keeps the int16 input lanes in the output row's tail: its
rows below the tail must be computed before a direct row overwrites them, at any output alignment."""

from __future__ import annotations

import ctypes as C

import numpy as np
import pytest
from kgtest import needs_qemu, shared_model_cases
from test_kernelgen_conv import _zp, needs_gcc
from test_kernelgen_dw import build_lib, p8

from tinygen.kernelgen import fc, harness


def variant_cases(seed: int, n: int) -> list[harness.Case]:
    """Random layers (in_depth % 4 == 0, row counts around the 6- and 4-row blocks), each as the
    direct variant and, where the output row has room for the lanes, the split one."""
    rng = np.random.default_rng(seed)
    cases = []
    for i in range(n):
        ind = int(rng.choice([4, 8, 12, 16, 28, 64, 100]))
        od = int(rng.choice([1, 2, 5, 6, 7, 11, 12, 13, 17, 24])) if i % 2 else int(2 * ind + rng.integers(7, 40))
        params, arrays, x = harness.fc_case(
            rng, f"fcv{i}", ind, od, batches=1 if i % 3 else int(rng.integers(1, 4)),
            per_channel=bool(rng.random() < 0.4), bias=bool(rng.random() < 0.7),
            act=harness.ACTS[int(rng.integers(0, 4))], zp_in=_zp(rng), zp_out=_zp(rng),
            weights_min=bool(rng.random() < 0.3))
        if i % 7 == 4 and "bias" in arrays:  # sums that wrap: the folded offset must wrap alike
            arrays["bias"][:] = rng.integers(-(1 << 31), (1 << 31) - 1, arrays["bias"].size)
        for v in ("direct", "split"):
            if v == "split" and fc._split_at(params) is None:
                continue
            gen = fc.generate("FULLY_CONNECTED", params, arrays, "dsp", f"tg_gen_fcv{i}_{v}", variant=v)
            cases.append(harness.Case(f"fcv{i}{v[0]}", "FULLY_CONNECTED", params, arrays, (x,), gen))
    return cases


def test_segments_cover_every_row_once():
    for od in range(1, 80):
        for start in (0, 4, 8, (od + 3) // 4 * 4):
            segs = fc.segments(od, start)
            rows = [g.row0 + j for g in segs for j in range(g.rows * g.full + g.partial)]
            assert rows == list(range(od)), (od, start, segs)
            assert all(g.direct == (g.row0 >= min(start, od)) for g in segs)


def test_variant_scratch_and_contract():
    params, arrays, _ = harness.fc_case(np.random.default_rng(1), "f", 128, 640)
    gens = {v: fc.generate("FULLY_CONNECTED", params, arrays, "dsp", "f", variant=v) for v in fc.VARIANTS}
    assert gens["lanes"].scratch == 256 and gens["direct"].scratch == 0 and gens["split"].scratch == 0
    assert "scratch" not in gens["split"].args and "row 380" in gens["split"].notes["variant"]
    # both scratch-free variants re-read the input: their output may not touch it
    assert not fc.access("FULLY_CONNECTED", params, "dsp", variant="split").streams
    # split is the cheaper of the two: only the rows of the tail are direct
    assert 0 < gens["split"].notes["cost_extra"] < gens["direct"].notes["cost_extra"]
    with pytest.raises(ValueError, match="out_depth >= 2 in_depth"):
        fc.generate("FULLY_CONNECTED", *harness.fc_case(np.random.default_rng(2), "g", 128, 128)[:2], "dsp", "g",
                    variant="split")


@pytest.mark.toolchain
@needs_gcc
@pytest.mark.parametrize("seed", [301, 302])
def test_variants_host_bitexact(tmp_path, seed):
    cases = variant_cases(seed, 40)
    assert sum(c.gen.notes["variant"].endswith("(no scratch)") for c in cases) == len(cases)
    assert any("tail" in c.gen.notes["variant"] for c in cases)
    assert harness.host_check(cases, tmp_path) == []


@pytest.mark.toolchain
@needs_gcc
def test_split_at_every_output_alignment(tmp_path):
    """The lanes' place is rounded up to 4 bytes from the output pointer: an output at offset 1, 2, 3
    gives the same bytes as at 0 (and as the lanes variant)."""
    rng = np.random.default_rng(5)
    params, arrays, x = harness.fc_case(rng, "f", 12, 33, bias=True)
    lanes = fc.generate("FULLY_CONNECTED", params, arrays, "portable", "tg_al_lanes")
    split = fc.generate("FULLY_CONNECTED", params, arrays, "portable", "tg_al_split", variant="split")
    L = build_lib(tmp_path, [lanes.source + split.source], "al")
    x = np.asarray(x, np.int8)
    want = np.zeros(33, np.int8)
    scratch = np.zeros(64, np.int8)
    assert L.tg_al_lanes(p8(x), p8(want), p8(scratch)) == 0
    for off in range(4):
        buf = np.full(33 + 8, 0x5A, np.int8)
        assert L.tg_al_split(p8(x), C.cast(C.addressof(p8(buf).contents) + off, C.POINTER(C.c_int8))) == 0
        assert np.array_equal(buf[off:off + 33], want), off
        assert (buf[:off] == 0x5A).all() and (buf[off + 33:] == 0x5A).all(), off


@pytest.mark.toolchain
@pytest.mark.qemu
@needs_qemu
def test_variants_qemu_an505_bitexact(tmp_path):
    """The DSP path (SXTB16 / SMLAD, the 6-row blocks) on the emulated Cortex-M33, compared there, and
    the AD autoencoder's two 640-wide layers as tinygen lowers them."""
    cases = variant_cases(303, 10)
    for c in shared_model_cases("ad01_int8.tflite", {"FULLY_CONNECTED": fc}):
        if 640 in (c.params["in_depth"], c.params["out_depth"]):
            for v in ("direct", "split"):
                if v == "split" and fc._split_at(c.params) is None:
                    continue
                gen = fc.generate("FULLY_CONNECTED", c.params, c.arrays, "dsp", f"tg_gen_ad_{c.name}_{v}", variant=v)
                cases.append(harness.Case(f"ad_{c.name}{v[0]}", c.kind, c.params, c.arrays, c.inputs, gen))
    assert len(cases) > 12
    res = harness.qemu_profile(cases, tmp_path, backend="portable", board_name="mps2-an505", timeout=120)
    assert all(r["match"] for r in res), res
