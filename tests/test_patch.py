"""Patch-based first stage (tinygen.patch), without TensorFlow: the halo arithmetic against a
brute-force receptive field, the band rewrite of a hand-built chain, its planner / overlap-checker
acceptance, and the verifier's mutations (a band input view one halo row short, a wrong top pad,
a band missing)."""

import itertools

import numpy as np
import pytest

from tinygen import patch, plan
from tinygen.errors import CompilerBug
from tinygen.ir import Graph, Op, Tensor, verify

pytestmark = pytest.mark.unit


def _brute(k: int, dil: int, s: int, p: int, h: int, o0: int, o1: int) -> tuple[int, int, int]:
    rows = [o * s - p + ky * dil for o in range(o0, o1) for ky in range(k)]
    inside = [r for r in rows if 0 <= r < h]
    return min(inside), max(inside) + 1, o0 * s - p


@pytest.mark.parametrize("k,dil,s", [(1, 1, 1), (3, 1, 1), (3, 1, 2), (5, 1, 2), (3, 2, 1), (2, 1, 2), (7, 1, 3)])
def test_rows_needed_is_the_receptive_field(k, dil, s):
    keff = (k - 1) * dil + 1
    for h, p in itertools.product(range(keff, 20), range(0, keff)):
        oh = (h + 2 * p - keff) // s + 1
        geo = patch.Geom(keff, s, p, h, oh)
        for o0 in range(oh):
            for o1 in range(o0 + 1, oh + 1):
                i0, i1, pad = patch.rows_needed(geo, o0, o1)
                b0, b1, first = _brute(k, dil, s, p, h, o0, o1)
                hull = (max(first, 0), min((o1 - 1) * s - p + keff, h))  # dilated: taps skip rows inside
                assert (i0, i1) == ((b0, b1) if dil == 1 else hull) and i0 <= b0 and i1 >= b1, (geo, o0, o1)
                assert i0 - pad == first  # the band's row 0 minus its pad is the layer's first window row


def test_plan_rows_compose_through_the_stage():
    geos = [patch.Geom(3, 2, 0, 96, 48), patch.Geom(3, 1, 1, 48, 48), patch.Geom(1, 1, 0, 48, 48),
            patch.Geom(3, 2, 0, 48, 24)]
    for bands in (2, 3, 4, 6, 8):
        rows = patch.plan_rows(geos, bands)
        assert [r[-1][2:4] for r in rows] == patch.band_rows(24, bands)
        for band in rows:
            for j in range(1, len(geos)):  # each layer outputs exactly the rows the next one reads
                assert band[j - 1][2:4] == band[j][0:2]
            # brute force over the whole chain: the stage input rows the band's outputs depend on
            need = set(range(*band[-1][2:4]))
            for geo in reversed(geos):
                need = {o * geo.s - geo.p + ky for o in need for ky in range(geo.k)} & set(range(geo.h))
            assert (min(need), max(need) + 1) == band[0][0:2]


def _q(t: Tensor, scale=0.05, zp=-3) -> Tensor:
    t.scale, t.zero_point = np.array([scale], np.float32), np.array([zp], np.int64)
    return t


def _chain() -> Graph:
    """input 16x8x4 -> conv 3x3 s2 SAME (8 ch) -> depthwise 3x3 s1 SAME -> conv 1x1 (8 ch) -> max pool 2x2 s2."""
    rng = np.random.default_rng(0)
    ts: list[Tensor] = []

    def t(shape, data=None, dtype="int8"):
        x = Tensor(len(ts), f"t{len(ts)}", tuple(shape), dtype, data=data)
        ts.append(_q(x) if data is None or dtype == "int8" else x)
        return x.id

    x = t((1, 16, 8, 4))
    w0, b0 = t((8, 3, 3, 4), rng.integers(-20, 20, (8, 3, 3, 4), dtype=np.int8)), \
        t((8,), np.zeros(8, np.int32), "int32")
    y0 = t((1, 8, 4, 8))
    w1, b1 = t((1, 3, 3, 8), rng.integers(-20, 20, (1, 3, 3, 8), dtype=np.int8)), \
        t((8,), np.zeros(8, np.int32), "int32")
    y1 = t((1, 8, 4, 8))
    w2, b2 = t((8, 1, 1, 8), rng.integers(-20, 20, (8, 1, 1, 8), dtype=np.int8)), \
        t((8,), np.zeros(8, np.int32), "int32")
    y2 = t((1, 8, 4, 8))
    y3 = t((1, 4, 2, 8))
    conv = dict(padding="SAME", stride_w=2, stride_h=2, act="NONE", dil_w=1, dil_h=1)
    ops = [Op("CONV_2D", [x, w0, b0], [y0], conv, 0, "c0"),
           Op("DEPTHWISE_CONV_2D", [y0, w1, b1], [y1], dict(conv, stride_w=1, stride_h=1, depth_multiplier=1), 1, "d1"),
           Op("CONV_2D", [y1, w2, b2], [y2], dict(conv, stride_w=1, stride_h=1), 2, "c2"),
           Op("MAX_POOL_2D", [y2], [y3], dict(padding="VALID", stride_w=2, stride_h=2, filter_w=2, filter_h=2,
                                               act="NONE"), 3, "p3")]
    return Graph(ts, ops, [x], [y3])


@pytest.mark.parametrize("n,bands", [(1, 2), (2, 2), (3, 4), (4, 2), (4, 4)])
def test_split_verifies_and_plans(n, bands):
    g = _chain()
    assert patch.stage(g) == [0, 1, 2, 3]
    g2 = patch.split(g, n, bands)
    verify(g2, "patch")
    patch.verify(g2)
    assert sum("band" in op.attrs for op in g2.ops) == n * bands
    for ext in (False, True):
        p = plan.plan(g2, {}, external_input=ext)  # verify_plan + overlap_check run inside
        x = g2.inputs[0]
        for t in g2.tensors:
            if t.view_of is not None and t.view_of[0] == x:
                assert p.offsets[t.id] == p.offsets[x] + t.view_of[1]
        assert (x in p.external) == ext


def test_second_stage_reads_views_of_the_first_stage_output():
    g = patch.split(patch.split(_chain(), 2, 2, 2), 2, 2, 0)
    verify(g, "patch")
    patch.verify(g)
    assert len(g.patch["stages"]) == 2
    plan.plan(g, {})


def _first_band_input(g: Graph) -> Tensor:
    return g.t(next(op for op in g.ops if "band" in op.attrs).inputs[0])


def test_verifier_rejects_a_band_missing_a_halo_row():
    g = patch.split(_chain(), 3, 2)
    x = _first_band_input(g)
    x.shape = (1, x.shape[1] - 1) + x.shape[2:]  # the view stops one row short of the first band's halo
    with pytest.raises(CompilerBug, match="needs rows"):
        patch.verify(g)


def test_verifier_rejects_a_view_one_row_off():
    g = patch.split(_chain(), 2, 2)
    v = next(g.t(op.inputs[0]) for op in g.ops if op.attrs.get("band", {}).get("index") == 1)
    row = v.nbytes // v.shape[1]
    v.view_of = (v.view_of[0], v.view_of[1] + row)
    with pytest.raises(CompilerBug, match="needs rows"):
        patch.verify(g)


def test_verifier_rejects_a_wrong_top_pad_and_a_missing_band():
    g = patch.split(_chain(), 2, 2)
    op = next(op for op in g.ops if "band" in op.attrs)
    op.attrs["pad_h"] = 0  # SAME 3x3 stride 2 on 16 rows: top pad 0 already; use the depthwise (pad 1)
    dw = next(op for op in g.ops if op.kind == "DEPTHWISE_CONV_2D")
    dw.attrs["pad_h"] = 0
    with pytest.raises(CompilerBug, match="pad"):
        patch.verify(g)
    g = patch.split(_chain(), 2, 4)
    last = [op for op in g.ops if op.attrs.get("band", {}).get("index") == 3]
    g.ops = [op for op in g.ops if op not in last]
    with pytest.raises(CompilerBug, match="cover"):
        patch.verify(g)


def test_planner_rejects_a_view_outside_its_parent():
    g = patch.split(_chain(), 2, 2)
    p = plan.plan(g, {})
    v = next(t for t in g.tensors if t.view_of is not None)
    p.offsets[v.id] += 16
    with pytest.raises(CompilerBug, match="view"):
        plan.verify_plan(g, p, {})


def test_feasible_needs_aligned_rows_and_rows_per_band():
    g = _chain()
    assert patch.feasible(g, [0, 1], 2)
    assert not patch.feasible(g, [0, 1], 9)  # more bands than output rows
    assert not patch.feasible(g, [0, 1], 1)


def test_flags_parse_into_compile_options():
    from tinygen import cli
    from tinygen.errors import ModelError

    a = cli.parser().parse_args(["build", "m.tflite", "--patch-overhead", "5", "--input-external"])
    assert patch.options(a) == {"patches": True, "patch_overhead": 0.05, "external_input": True}
    a = cli.parser().parse_args(["analyze", "m.tflite", "--no-patches"])
    assert patch.options(a) == {"patches": False, "patch_overhead": 0.10, "external_input": False}
    with pytest.raises(ModelError, match="percentage"):
        patch.options(cli.parser().parse_args(["build", "m.tflite", "--patch-overhead", "-1"]))


def test_choice_reports_per_layer_peaks():
    ch = patch.Choice(layers=2, bands=3, arena=100, arena_before=200, instr=11, instr_before=10,
                      stages=[(0, 2, 3)], peaks_before={0: 200, 1: 150, 2: 50}, peaks_after={0: 100, 1: 90, 2: 50})
    m = ch.manifest()
    assert m["stages"] == [{"first_op": 0, "layers": 2, "bands": 3}]
    assert [r["after"] for r in m["layer_peaks"]] == [100, 90, 50]
    table = ch.peak_table({0: "CONV_2D"})
    assert "CONV_2D" in table and table.count("*") == 2
    assert "ops 0..1 in 3 row bands" in ch.describe() and "x1.100" in ch.describe()


def test_external_input_needs_one_input():
    from tinygen.errors import UnsupportedError

    g = _chain()
    g.inputs = g.inputs + [g.ops[0].outputs[0]]
    with pytest.raises(UnsupportedError, match="one caller-owned input"):
        plan.external_roots(g, True)
    assert plan.external_roots(g, False) == frozenset()
