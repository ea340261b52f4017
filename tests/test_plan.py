"""Planner: placement tables, the overlap checker, and planning of every shared model."""

import pytest

from conftest import shared_model
from tinygen import driver, frontend, plan
from tinygen.errors import ModelError
from tinygen.plan import Buffer, _place


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


def _kws_compiled():
    buf = frontend.load(shared_model("kws_ref_model.tflite"), log=lambda m: None)[0]
    return driver.compile_model(buf, "kws", "portable")


def test_verify_plan_catches_overlap():
    c = _kws_compiled()
    g, p = c.graph, c.plan
    # move the first op's output onto its input: both are live at step 0
    op = g.ops[0]
    p.offsets[op.outputs[0]] = p.offsets[op.inputs[0]]
    with pytest.raises(ModelError, match="overlaps"):
        plan.verify_plan(g, p)


def test_verify_plan_catches_misalignment_and_bounds():
    c = _kws_compiled()
    g, p = c.graph, c.plan
    tid = g.ops[1].outputs[0]
    p.offsets[tid] += 1
    with pytest.raises(ModelError, match="misaligned"):
        plan.verify_plan(g, p)
    p.offsets[tid] = p.arena_size
    with pytest.raises(ModelError, match="outside"):
        plan.verify_plan(g, p)


@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"])
def test_arena_at_least_largest_live_set(model):
    """The arena can never be below the bytes simultaneously live at any step (a lower bound)."""
    buf = frontend.load(shared_model(model), log=lambda m: None)[0]
    c = driver.compile_model(buf, model, "portable")
    bufs, _ = plan.make_buffers(c.graph, {})
    steps = len(c.graph.ops) + 1
    lower = max(sum(plan.align(b.size) for b in bufs if b.start <= s <= b.end) for s in range(steps))
    assert lower <= c.plan.arena_size
    # and the greedy plan stays within 25% of that bound on these models
    assert c.plan.arena_size <= 1.25 * lower
