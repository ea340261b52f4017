"""Planner: placement tables, the overlap checker, and planning of every shared model."""

import numpy as np
import pytest
from conftest import shared_model

from tinygen import driver, frontend, plan
from tinygen.errors import CompilerBug
from tinygen.ir import Graph, Op, Tensor
from tinygen.plan import Buffer, _place

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "bufs, peak",
    [
        ([(0, 1, 100), (1, 2, 100), (2, 3, 100)], 224),       # a chain needs two slots (aligned to 16)
        ([(0, 5, 64), (1, 1, 32), (2, 2, 32), (3, 3, 32)], 96),  # short-lived ones reuse one slot
        ([(0, 0, 16), (1, 1, 16), (2, 2, 16)], 16),            # disjoint lifetimes share everything
        ([(0, 3, 10), (0, 3, 20), (0, 3, 30)], 80),            # all live: aligned offsets 0, 32, 64
        ([(0, 2, 48), (1, 3, 16), (3, 4, 48)], 64),            # best fit reuses the freed 48 B gap
    ],
)
def test_place_peak(bufs, peak):
    bs = [Buffer(f"b{i}", size, s, e) for i, (s, e, size) in enumerate(bufs)]
    best = min(_place(bs, sorted(bs, key=key)) for key in plan.ORDERS.values())
    assert best == peak
    for a in bs:
        assert a.offset % plan.ALIGN == 0


def _kws_compiled(kset="portable", arch="none"):
    buf = frontend.load(shared_model("kws_ref_model.tflite"), log=lambda m: None)[0]
    return driver.compile_model(buf, "kws", kset, arch, stop_after="plan")


def test_verify_plan_catches_overlap():
    c = _kws_compiled()
    g, p = c.graph, c.plan
    # move the first op's output onto its input: both are live at step 0
    op = g.ops[0]
    p.offsets[op.outputs[0]] = p.offsets[op.inputs[0]]
    with pytest.raises(CompilerBug, match="overlaps"):
        plan.verify_plan(g, p, c.calls)


def test_verify_plan_catches_misalignment_and_bounds():
    c = _kws_compiled()
    g, p = c.graph, c.plan
    tid = g.ops[1].outputs[0]
    p.offsets[tid] += 1
    with pytest.raises(CompilerBug, match="misaligned"):
        plan.verify_plan(g, p, c.calls)
    p.offsets[tid] = p.arena_size
    with pytest.raises(CompilerBug, match="outside"):
        plan.verify_plan(g, p, c.calls)


def _chain_graph():
    """t0 -RELU-> t1; ADD(t1, t0) -> t2: t0 is still read after the RELU."""
    q = dict(scale=np.array([0.1], np.float32), zero_point=np.array([0]))
    ts = [Tensor(i, f"t{i}", (1, 4, 4, 4), "int8", **q) for i in range(3)]
    ops = [Op("RELU", [0], [1], {}, 0, "relu"), Op("ADD", [1, 0], [2], {"act": "NONE"}, 1, "add")]
    return Graph(ts, ops, [0], [2], "chain")


def test_verify_plan_accepts_legal_inplace_and_rejects_a_bogus_claim():
    g = _chain_graph()
    p = plan.plan(g, {})
    plan.verify_plan(g, p, {})
    # legal: the ADD writes over t1, which dies at the ADD (same size, op table says ADD is in-place)
    p.offsets[2] = p.offsets[1]
    p.arena_size = max(p.arena_size, p.offsets[1] + 64)
    plan.verify_plan(g, p, {})
    # bogus: the RELU "in place" over t0, which the ADD still reads afterwards
    p = plan.plan(g, {})
    p.offsets[1] = p.offsets[0]
    p.inplace[0] = 0  # the planner's own flag must not make it legal
    with pytest.raises(CompilerBug, match="overlaps"):
        plan.verify_plan(g, p, {})


def test_verify_plan_scratch_claims_come_from_the_kernel():
    c = _kws_compiled("cmsis-nn", "dsp")
    g, p = c.graph, c.plan
    pos = {call.kernel.name: i for i, call in enumerate(c.calls) if call is not None}
    fc, pool = pos["arm_nn_mat_mult_nt_t_s8_s32"], pos["arm_avgpool_s8"]
    # the FC kernel's output may sit on its own scratch (its access order allows it): planned that way
    assert p.offsets[g.ops[fc].outputs[0]] == p.scratch[fc][0]
    plan.verify_plan(g, p, c.calls)
    # the average pool's kernel does not allow it: an output moved onto its scratch is caught
    root = g.ops[pool].outputs[0]
    same = [t.id for t in g.tensors if t.id == root or t.alias_of == root]
    saved = p.offsets[root]
    for t in same:
        p.offsets[t] = p.scratch[pool][0]
    with pytest.raises(CompilerBug, match="overlaps"):
        plan.verify_plan(g, p, c.calls)
    for t in same:
        p.offsets[t] = saved
    # a scratch smaller than the kernel needs
    off, size = p.scratch[pool]
    p.scratch[pool] = (off, size - 16)
    with pytest.raises(CompilerBug, match="needs 256 B of scratch"):
        plan.verify_plan(g, p, c.calls)


@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"])
def test_arena_at_least_largest_live_set(model):
    """Without overlap, the arena can never be below the bytes simultaneously live at any step (the
    tensor-level bound); overlapping buffers (kernel access contracts) may only go lower."""
    buf = frontend.load(shared_model(model), log=lambda m: None)[0]
    c = driver.compile_model(buf, model, "portable")
    bufs, _ = plan.make_buffers(c.graph, {})
    steps = len(c.graph.ops) + 1
    lower = max(sum(plan.align(b.size) for b in bufs if b.start <= s <= b.end) for s in range(steps))
    whole = plan.plan(c.graph, c.calls, overlap=False)
    assert lower <= whole.arena_size
    # and the greedy plan stays within 25% of that bound on these models
    assert whole.arena_size <= 1.25 * lower
    assert c.plan.arena_size <= whole.arena_size
