"""The kernel registry and the op table's facts (unit lane: no TensorFlow, compiler or emulator).

The kernel a layer runs is chosen once, at compile time: the CMSIS-NN entries must reproduce
CMSIS-NN's own wrapper choice, every op has a portable kernel, and the generated code calls
the chosen symbol directly.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

from tinygen import kernels, ops
from tinygen.errors import CompilerBug
from tinygen.ops import Arr, Lowered

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[1]


def _conv(k=(3, 3), stride=1, pad=(1, 1), dil=1, hw=(8, 8), cin=16, cout=16, depthwise=False, n=1, mult=1):
    d = lambda n_, h, w, c: {"n": n_, "h": h, "w": w, "c": c}  # noqa: E731
    filt = d(1, k[0], k[1], cin * mult) if depthwise else d(cout, k[0], k[1], cin)
    out_c = cin * mult if depthwise else cout
    p = {"in": d(n, *hw, cin), "filter": filt, "out": d(n, *hw, out_c), "stride_h": stride, "stride_w": stride,
         "pad_h": pad[0], "pad_w": pad[1], "dil_h": dil, "dil_w": dil, "ch_mult": mult if depthwise else 1,
         "in_offset": 0, "out_offset": 0, "act_min": -128, "act_max": 127, "mult": Arr("mult"),
         "shift": Arr("shift"), "weights": Arr("weights"), "bias": None}
    arrays = {"mult": np.full(out_c, 1 << 30, np.int32), "shift": np.full(out_c, -3, np.int32),
              "weights": np.zeros(1, np.int8)}
    return Lowered(p, arrays, "tg_conv_params_t")


@pytest.mark.parametrize("low, arch, want", [
    (_conv(k=(1, 1), pad=(0, 0)), "dsp", "arm_convolve_1x1_s8_fast"),
    (_conv(k=(1, 1), pad=(0, 0), stride=2), "dsp", "arm_convolve_1x1_s8"),
    (_conv(k=(1, 3), pad=(0, 1), hw=(1, 12), cin=4), "dsp", "arm_convolve_1_x_n_s8"),
    (_conv(k=(1, 3), pad=(0, 1), hw=(1, 12), cin=4), "mve", "arm_convolve_s8"),  # Helium 1xN not bit-exact
    (_conv(), "dsp", "arm_convolve_s8"),
    (_conv(k=(1, 1), pad=(0, 0), dil=2), "dsp", "arm_convolve_s8"),
])
def test_cmsis_conv_choice_follows_the_wrapper(low, arch, want):
    call = kernels.select("CONV_2D", low, "cmsis-nn", arch)
    assert call.kernel.name == want
    assert call.symbol == "tg_cmsis_" + want[len("arm_"):]
    assert "tg_ref_conv2d_s8" in call.alternatives  # the portable kernel always applies too


@pytest.mark.parametrize("low, arch, want, scratch", [
    (_conv(depthwise=True), "dsp", "arm_depthwise_conv_3x3_s8", 0),
    (_conv(depthwise=True), "mve", "arm_depthwise_conv_s8_opt", 4 * 124 * 9),
    (_conv(depthwise=True, k=(5, 5), pad=(2, 2)), "dsp", "arm_depthwise_conv_s8_opt", 16 * 25 * 2),
    (_conv(depthwise=True, mult=2), "dsp", "arm_depthwise_conv_s8", 0),
    (_conv(depthwise=True, dil=2), "dsp", "arm_depthwise_conv_s8", 0),
])
def test_cmsis_depthwise_choice_and_scratch(low, arch, want, scratch):
    call = kernels.select("DEPTHWISE_CONV_2D", low, "cmsis-nn", arch)
    assert (call.kernel.name, call.scratch) == (want, scratch)


def test_portable_set_runs_reference_kernels_only():
    call = kernels.select("CONV_2D", _conv(), "portable", "portable")
    assert call.kernel.name == "tg_ref_conv2d_s8" and call.scratch == 0 and call.alternatives == []


def test_fc_with_an_out_of_range_shift_stays_portable():
    p = {"batches": 1, "in_depth": 8, "out_depth": 4}
    ok = Lowered(p, {"mult": np.array([1 << 30], np.int32), "shift": np.array([-3], np.int32)}, "tg_fc_params_t")
    bad = Lowered(p, {"mult": np.array([1 << 30], np.int32), "shift": np.array([-40], np.int32)}, "tg_fc_params_t")
    assert kernels.select("FULLY_CONNECTED", ok, "cmsis-nn", "dsp").kernel.kset == "cmsis-nn"
    assert kernels.select("FULLY_CONNECTED", bad, "cmsis-nn", "dsp").kernel.name == "tg_ref_fully_connected_s8"


def test_every_op_has_a_portable_kernel_and_every_kernel_a_known_op():
    for kind, d in ops.TABLE.items():
        if d.shape_only or d.folded:  # aliases, and ops a graph pass folds away (SPACE_TO_BATCH_ND...)
            continue
        assert any(k.kset == "portable" for k in kernels.candidates(kind, "portable")), kind
    for k in kernels.REGISTRY:
        assert k.kset in kernels.KERNEL_SETS and k.symbol.startswith("tg_"), k
        assert all(op in ops.TABLE for op in k.ops), k


def test_registry_symbols_are_declared_in_tg_nn_h():
    header = (ROOT / "firmware" / "tg_nn.h").read_text()
    for k in kernels.REGISTRY:
        assert f" {k.symbol}(" in header, k.symbol
        if k.scratch_fn:
            assert f" {k.scratch_fn}(" in header, k.scratch_fn


def test_fc_chunk_matches_the_adapter():
    src = (ROOT / "firmware" / "tg_backend_cmsis.c").read_text()
    assert f"#define TG_FC_CHUNK {kernels.FC_CHUNK}\n" in src


def test_unknown_kernel_set_is_a_compiler_bug():
    with pytest.raises(CompilerBug, match="unknown kernel set"):
        kernels.select("CONV_2D", _conv(), "fast", "dsp")


def test_op_facts_live_in_the_table():
    assert ops.facts("ADD").inplace and ops.facts("ADD").fuses_act and ops.facts("ADD").required == 2
    assert ops.facts("RESHAPE").shape_only and ops.facts("RELU6").activation
    assert ops.facts("CONV_2D").roles[:2] == ("input", "weights") and ops.facts("CONV_2D").required == 2
    assert ops.facts("SUB").inplace and ops.facts("SUB").fuses_act


def _imports(path: Path) -> set[str]:
    """tinygen modules imported by ``path``, at module level or inside functions (a lazy import is
    still a dependency: a cycle through one is a design circle, not a load-order trick)."""
    tree = ast.parse(path.read_text())
    pkg = path.parent.relative_to(ROOT).as_posix().replace("/", ".")
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if not base.startswith("tinygen"):
                continue
            for a in node.names:
                cand = f"{base}.{a.name}"
                out.add(cand if (ROOT / (cand.replace(".", "/") + ".py")).exists() else base)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("tinygen")}
    return out


def test_no_import_cycle_in_tinygen():
    mods = {p.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."): p
            for p in (ROOT / "tinygen").rglob("*.py")}
    mods = {m.removesuffix(".__init__"): p for m, p in mods.items()}
    graph = {m: {i for i in _imports(p) if i in mods and i != m} for m, p in mods.items()}
    graph = {m: {i for i in deps if i != "tinygen"} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack + [m, d]))
            if d not in state:
                visit(d, stack + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


def test_generated_docs_are_current():
    assert (ROOT / "docs" / "kernels.md").read_text().split("\n", 4)[4] == kernels.kernels_markdown(), \
        "docs/kernels.md is stale: run make supported-ops"
    assert (ROOT / "SUPPORTED_OPS.md").read_text() == ops.supported_ops_markdown(), \
        "SUPPORTED_OPS.md is stale: run make supported-ops"


def test_ir_verify_blames_the_model_at_import_and_tinygen_after():
    from tinygen.errors import ModelError
    from tinygen.ir import Graph, Op, Tensor, verify

    ts = [Tensor(i, f"t{i}", (4,), "int8") for i in range(3)]
    g = Graph(ts, [Op("RELU", [1], [2], {}, 0), Op("RELU", [0], [1], {}, 1)], [0], [2])  # t1 read before written
    with pytest.raises(ModelError, match="before it is computed") as e:
        verify(g, "import")
    assert not isinstance(e.value, CompilerBug)
    with pytest.raises(CompilerBug, match="stage 'passes'.*before it is computed"):
        verify(g, "passes")
