"""Access contracts, overlap planning, the verifier's contract rule and the independent replay checker."""

import numpy as np
import pytest
from conftest import shared_model

from tinygen import driver, frontend, kernels, overlap, overlap_check, plan
from tinygen.errors import CompilerBug
from tinygen.ir import Graph, Op, Tensor
from tinygen.ops import Lowered

pytestmark = pytest.mark.unit


def _conv_params(h, w, cin, cout, k, stride, pad, oh=None, ow=None, depthwise=False):
    oh = oh if oh is not None else (h + 2 * pad - k) // stride + 1
    ow = ow if ow is not None else (w + 2 * pad - k) // stride + 1
    filt = {"n": 1 if depthwise else cout, "h": k, "w": k, "c": cout if depthwise else cin}
    return {"in": {"n": 1, "h": h, "w": w, "c": cin}, "out": {"n": 1, "h": oh, "w": ow, "c": cout}, "filter": filt,
            "stride_h": stride, "stride_w": stride, "pad_h": pad, "pad_w": pad, "dil_h": 1, "dil_w": 1}


@pytest.mark.parametrize(
    "shape, expect",
    [
        ((5, 7, 8, 8, 1, 1, 0), 8),                 # 1x1 conv: one output pixel ahead of its input pixel
        ((5, 7, 8, 16, 1, 1, 0), 16 * 35 - 8 * 34),  # expanding 1x1: the input in the tail of the output
        ((25, 5, 64, 64, 3, 1, 1), (5 + 2) * 64),   # 3x3 pad 1: one row + 2 pixels behind
    ],
)
def test_window_distance(shape, expect):
    h, w, cin, cout, k, s, pad = shape
    c = overlap.window(_conv_params(h, w, cin, cout, k, s, pad), k, k)
    assert overlap.distance(c.streams[0]) == expect


def _brute_distance(s):
    """Smallest in - out offset such that it and every larger one (the output further below) write no
    output byte over an input byte still to be read: byte by byte, from no overlap down."""
    n_in, n_out = len(s.last_read) * s.in_unit, len(s.write_step) * s.out_unit
    best = n_out
    for dist in range(n_out, -n_in - 1, -1):
        ok = True
        for b in range(n_out):
            x = b - dist  # input byte under output byte b
            if 0 <= x < n_in:
                w, r = s.write_step[b // s.out_unit], s.last_read[x // s.in_unit]
                if (w < r) if s.reads_first else (w <= r):
                    ok = False
                    break
        if not ok:
            return best
        best = dist
    return best


@pytest.mark.parametrize("k, stride, pad", [(1, 1, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0), (2, 2, 0)])
def test_distance_matches_brute_force(k, stride, pad):
    c = overlap.window(_conv_params(6, 5, 4, 4, k, stride, pad), k, k)
    assert overlap.distance(c.streams[0]) == _brute_distance(c.streams[0])


def test_elementwise_and_broadcast():
    d = {"n": 1, "h": 2, "w": 2, "c": 4}
    c = overlap.elementwise(d, [d, {"n": 1, "h": 1, "w": 1, "c": 4}])
    assert overlap.distance(c.streams[0]) == 0
    assert 1 not in c.streams  # a broadcast operand is read throughout: never overlapped


def test_registry_contracts_only_where_the_c_guarantees_them():
    low = Lowered(_conv_params(8, 8, 16, 16, 1, 1, 0))
    # CMSIS-NN's 1x1 conv (arm_nn_mat_mult_nt_t_s8: output-channel pairs outermost) re-reads the input
    assert kernels.by_name("arm_convolve_1x1_s8_fast").contract(low, "dsp") is None
    assert kernels.by_name("tg_ref_conv2d_s8").contract(low, "none") is not None
    assert kernels.by_name("tg_ref_fully_connected_s8").access is None
    dw = Lowered(dict(_conv_params(8, 8, 16, 16, 3, 1, 1, depthwise=True), ch_mult=1))
    assert kernels.by_name("arm_depthwise_conv_s8_opt").contract(dw, "mve") is None  # channel blocks outermost
    assert kernels.by_name("arm_depthwise_conv_s8_opt").contract(dw, "dsp") is not None
    grouped = Lowered(_conv_params(8, 8, 16, 16, 3, 1, 1) | {"filter": {"n": 16, "h": 3, "w": 3, "c": 8}})
    assert kernels.by_name("arm_convolve_s8").contract(grouped, "dsp") is None


# ---- a one-layer model: the replay checker and the verifier against exact distances ------------


def _one_layer(kernel="tg_ref_dwconv2d_s8", k=3, pad=1, h=6, w=5, c=8):
    p = _conv_params(h, w, c, c, k, 1, pad, depthwise=True)
    g = Graph([Tensor(0, "x", (1, h, w, c), "int8"), Tensor(1, "y", (1, p["out"]["h"], p["out"]["w"], c), "int8"),
               Tensor(2, "z", (1, p["out"]["h"], p["out"]["w"], c), "int8")],
              [Op("DEPTHWISE_CONV_2D", [0], [1], {}, 0), Op("RELU", [1], [2], {}, 1)], [0], [2])
    call = kernels.Call(kernels.by_name(kernel), Lowered(p), arch="none")
    lut = kernels.Call(kernels.by_name("tg_ref_lut_s8"), Lowered(imm={"size": g.t(1).nbytes}), arch="none")
    return g, [call, lut], p


def _check(g, calls, x_off, y_off, z_off):
    size = max(x_off + g.t(0).nbytes, y_off + g.t(1).nbytes, z_off + g.t(2).nbytes)
    overlap_check.check(g, calls, {0: x_off, 1: y_off, 2: z_off}, {}, size)


@pytest.mark.parametrize("kernel, pixels", [("arm_depthwise_conv_s8", 2), ("tg_ref_dwconv2d_s8", 1)])
def test_checker_accepts_the_exact_distance_and_catches_one_pixel_or_byte_closer(kernel, pixels):
    """3x3 pad 1: one row and two pixels behind (pixel contract), one row and one pixel (the portable
    kernel's byte contract: each output byte right after its own channel's window)."""
    g, calls, p = _one_layer(kernel)
    d = overlap.distance(calls[0].kernel.contract(calls[0].low, "none").streams[0])
    px, row = p["out"]["c"], p["out"]["c"] * p["out"]["w"]
    assert d == row + pixels * px
    far = 4096
    _check(g, calls, d, 0, far)  # output exactly D below the input: every byte read before it is overwritten
    for closer in (1, px, row):
        with pytest.raises(CompilerBug, match="before it last reads"):
            _check(g, calls, d - closer, 0, far)
    # the in-place RELU (element-wise contract) at the same offset is fine; its output ahead of its
    # input is not
    _check(g, calls, d, 0, 0)
    with pytest.raises(CompilerBug, match="before it last reads"):
        _check(g, calls, d, 0, 16)


def test_checker_without_contract_rejects_any_overlap():
    g, calls, p = _one_layer()
    calls[0] = kernels.Call(kernels.by_name("arm_depthwise_conv_s8_opt"), calls[0].low, arch="mve")
    with pytest.raises(CompilerBug, match="no access contract"):
        _check(g, calls, 200, 0, 8192)
    _check(g, calls, g.t(1).nbytes, 0, 8192)  # no shared bytes: fine


def test_checker_catches_scratch_over_a_live_input():
    g, calls, p = _one_layer()
    n = g.t(0).nbytes
    overlap_check.check(g, calls, {0: 0, 1: n, 2: n}, {0: (2 * n, 64)}, 2 * n + 64)
    with pytest.raises(CompilerBug, match="arena byte 32 holds scratch"):
        overlap_check.check(g, calls, {0: 0, 1: n, 2: n}, {0: (32, 64)}, 2 * n)


def test_verifier_derives_the_distance_from_the_contract():
    g, calls, p = _one_layer()
    # make x an intermediate: a RELU in front of the depthwise conv
    ts = [Tensor(0, "a", g.t(0).shape, "int8")] + [Tensor(i + 1, t.name, t.shape, "int8") for i, t in enumerate(g.tensors)]
    g2 = Graph(ts, [Op("RELU", [0], [1], {}, 0), Op("DEPTHWISE_CONV_2D", [1], [2], {}, 1), Op("RELU", [2], [3], {}, 2)],
               [0], [3])
    lut0 = kernels.Call(kernels.by_name("tg_ref_lut_s8"), Lowered(imm={"size": g.t(0).nbytes}), arch="none")
    calls2 = [lut0] + calls
    d = plan.align(overlap.distance(calls[0].kernel.contract(calls[0].low, "none").streams[0]))
    n = g.t(0).nbytes
    good = plan.Plan(d + 2 * n + 4096, [], {0: d + 4096, 1: d, 2: 0, 3: 4096 + d + n}, {}, {})
    plan.verify_plan(g2, good, calls2)
    overlap_check.check(g2, calls2, good.offsets, {}, good.arena_size)
    good.offsets[1] = d - 16  # 16 bytes too close (under one pixel of 8 B * 2): the verifier says no
    good.offsets[0] = d - 16 + 4096
    with pytest.raises(CompilerBug, match="overlaps"):
        plan.verify_plan(g2, good, calls2)
    with pytest.raises(CompilerBug, match="before it last reads"):
        overlap_check.check(g2, calls2, good.offsets, {}, good.arena_size)


# ---- the shared models: overlap plans, and the mutations they must reject -----------------------


def _compiled(model, kset, arch):
    buf = frontend.load(shared_model(model), log=lambda m: None)[0]
    return driver.compile_model(buf, model, kset, arch, stop_after="plan")


@pytest.mark.parametrize("model, kset, arch, most", [
    ("kws_ref_model.tflite", "portable", "none", 9_792),
    ("pretrainedResnet_quant.tflite", "portable", "none", 40_000),
    ("pretrainedResnet_quant.tflite", "cmsis-nn", "dsp", 40_000),
])
def test_shared_models_overlap_and_every_overlap_is_tight(model, kset, arch, most):
    c = _compiled(model, kset, arch)
    g, p = c.graph, c.plan
    whole = plan.plan(g, c.calls, overlap=False).arena_size
    assert p.arena_size <= most < whole
    # every overlapped (input, output) pair of an op: moving the output 16 bytes (one alignment step,
    # at most one pixel here) closer to its input is caught by the verifier and by the replay
    rng = plan.live_ranges(g)
    pairs = []
    for i, op in enumerate(g.ops):
        if c.calls[i] is None or not op.outputs:
            continue
        x, y = overlap._root(g, op.inputs[0]), overlap._root(g, op.outputs[0])
        xo, yo = p.offsets[x], p.offsets[y]
        if rng[x][1] == i and yo < xo + g.t(x).nbytes and xo < yo + g.t(y).nbytes and xo != yo:
            pairs.append((i, x, y))
    assert pairs
    tight = 0
    for i, x, y in pairs:
        d = overlap.op_distance(g, c.calls, i, x)
        assert p.offsets[x] - p.offsets[y] >= d
        if p.offsets[x] - p.offsets[y] - 16 >= d:
            continue  # not tight: 16 bytes closer is still legal
        saved = dict(p.offsets)
        for t in g.tensors:  # move the output (and its reshape aliases) 16 bytes up
            if overlap._root(g, t.id) == y:
                p.offsets[t.id] = saved[y] + 16
        with pytest.raises(CompilerBug):
            plan.verify_plan(g, p, c.calls)
        with pytest.raises(CompilerBug, match="overlap-check") as e:
            overlap_check.check(g, c.calls, p.offsets, p.scratch, p.arena_size + 16)
        assert g.ops[i].where() in str(e.value)
        p.offsets = saved
        tight += 1
    assert tight


def test_plans_are_deterministic():
    a = _compiled("kws_ref_model.tflite", "portable", "none").plan
    b = _compiled("kws_ref_model.tflite", "portable", "none").plan
    assert a.offsets == b.offsets and a.arena_size == b.arena_size
    assert np.all(np.array(sorted(a.offsets.values())) % plan.ALIGN == 0)


@pytest.mark.parametrize("k, stride, pad, mult", [(3, 1, 1, 1), (3, 2, 1, 1), (3, 1, 1, 2), (5, 1, 2, 3)])
def test_channel_window_distance_matches_brute_force(k, stride, pad, mult):
    p = _conv_params(5, 4, 3, 3 * mult, k, stride, pad, depthwise=True)
    s = overlap.channel_window(p, k, k).streams[0]
    assert overlap.distance(s) == _brute_distance(s)
    assert overlap.distance(s) <= overlap.distance(overlap.window(p, k, k).streams[0])


# ---- the generated set (the default): contracts, arenas, mutations ------------------------------


@pytest.mark.parametrize("model, most", [("kws_ref_model.tflite", 9_000), ("pretrainedResnet_quant.tflite", 40_000)])
def test_generated_models_overlap_and_a_distance_one_step_too_small_is_caught(model, most):
    """Every overlapped (input, output) pair of the generated kernels: one byte, one input pixel and
    one input row closer than the plan (toward where the contract says a byte is clobbered) is
    rejected by the verifier and by the replay, naming the op."""
    c = _compiled(model, "generated", "dsp")
    g, p = c.graph, c.plan
    assert p.arena_size <= most < plan.plan(g, c.calls, overlap=False).arena_size
    rng = plan.live_ranges(g)
    pairs = []
    for i, op in enumerate(g.ops):
        if c.calls[i] is None or not op.outputs or c.calls[i].generated is None:
            continue
        x, y = overlap._root(g, op.inputs[0]), overlap._root(g, op.outputs[0])
        xo, yo = p.offsets[x], p.offsets[y]
        if rng[x][1] == i and yo < xo + g.t(x).nbytes and xo < yo + g.t(y).nbytes:
            pairs.append((i, x, y))
    assert len(pairs) >= (8 if "kws" in model else 2)
    kinds, mutated, tight = set(), set(), set()
    for i, x, y in pairs:
        s = c.calls[i].kernel.contract(c.calls[i].low, c.calls[i].arch).streams[0]
        d = p.offsets[x] - p.offsets[y]
        assert overlap.safe(s, d)
        t = overlap.tightest(s)
        if d == t:
            tight.add(i)
        kinds.add(g.ops[i].kind)
        row = s.in_unit * (c.calls[i].low.params.get("in", {}).get("w", 1) if s.unit == "pixel" else 1)
        for closer in {1, s.in_unit, row}:
            dd = d + closer if s.reverse else d - closer
            if overlap.safe(s, dd):
                continue  # still legal (e.g. a channel plane one whole pixel further: same channel)
            saved = dict(p.offsets)
            for t in g.tensors:
                if overlap._root(g, t.id) == y:
                    p.offsets[t.id] = saved[y] + (d - dd)
            with pytest.raises(CompilerBug, match="overlap-check") as e:
                overlap_check.check(g, c.calls, p.offsets, p.scratch, p.arena_size + 4096)
            assert g.ops[i].where() in str(e.value)
            mutated.add(i)
            if (d - dd) % plan.ALIGN == 0 and p.offsets[y] >= 0:
                with pytest.raises(CompilerBug):
                    plan.verify_plan(g, p, c.calls)
            p.offsets = saved
    assert "DEPTHWISE_CONV_2D" in kinds or "CONV_2D" in kinds
    assert tight and tight <= mutated  # an overlap at the contract's distance is tight to the byte, pixel or row


def test_generated_contracts_exist_for_every_family():
    from tinygen.kernelgen import conv, dwconv, eltwise, fc, pool

    cp = _conv_params(6, 5, 8, 8, 3, 2, 1)
    s = conv.access("CONV_2D", cp, "dsp").streams[0]
    assert s.reads_first and s.write_step.tolist()[:4] == [0, 0, 1, 1]  # pixel pairs
    r = conv.access("CONV_2D", cp, "dsp", reverse=True).streams[0]
    assert r.reverse and r.write_step[-1] == 0 and overlap.tightest(r) < 0  # the output ends above its input's end
    dw = dict(_conv_params(6, 5, 8, 8, 3, 1, 1, depthwise=True), ch_mult=1)
    s = dwconv.access("DEPTHWISE_CONV_2D", dw, "dsp").streams[0]
    assert overlap.safe(s, 0) and not overlap.safe(s, 1) and overlap.tightest(s) == 0  # in place
    assert overlap.tightest(fc.access("FULLY_CONNECTED", {"batches": 1, "in_depth": 640, "out_depth": 128},
                                      "dsp").streams[0]) == 0
    d = {"n": 1, "h": 2, "w": 2, "c": 4}
    assert overlap.tightest(eltwise.access("ADD", {"in1": d, "in2": d, "out": d}, "dsp").streams[1]) == 0
    pp = {"in": d, "out": {"n": 1, "h": 1, "w": 1, "c": 4}, "filter_h": 2, "filter_w": 2, "stride_h": 2,
          "stride_w": 2, "pad_h": 0, "pad_w": 0}
    assert pool.access("AVERAGE_POOL_2D", pp, "dsp").streams[0].write_step.tolist() == [0]


def test_report_timeline_shows_the_overlaps():
    from tinygen import report

    c = _compiled("kws_ref_model.tflite", "generated", "dsp")
    p = c.plan
    bufs = [{"name": b.name, "offset": b.offset, "bytes": b.size, "start": b.start, "end": b.end}
            for b in sorted(p.buffers, key=lambda b: (b.offset, b.start, b.name))]
    ov = report.overlaps(bufs)
    assert len(ov) >= 8
    for i, j, step, lo, hi in ov:
        assert bufs[i]["end"] == bufs[j]["start"] == step and lo < hi
    png = report.arena_timeline({"buffers": bufs, "num_ops": len(c.graph.ops), "arena_bytes": p.arena_size,
                                 "arena_strategy": p.strategy})
    assert len(png) > 1000
