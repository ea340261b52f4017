"""Every single-op test net through the whole compiler (import, passes, lowering, plan, emit),
built on the host and compared byte for byte with the TFLite reference on random inputs."""

import pytest
from conftest import backends
from opnets import OPNET_CASES, make_opnet

from tinygen import driver, hostbuild, project, reference

N_INPUTS = 40


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("case_id, kind, spec", OPNET_CASES, ids=[c[0] for c in OPNET_CASES])
def test_opnet_through_compiler(case_id, kind, spec, backend, tmp_path):
    buf = make_opnet(kind, **spec)
    c = driver.compile_model(buf, case_id, backend, arch="none")
    project.write(tmp_path / "p", driver.host_project(c))
    exe = hostbuild.build(tmp_path / "p", backend)
    x = reference.random_inputs(buf, N_INPUTS, seed=3)
    want = reference.pack(reference.run(buf, x))
    got = hostbuild.run(exe, reference.pack(x))
    assert got.shape == want.shape
    diff = (got != want).nonzero()
    assert len(diff[0]) == 0, f"{case_id}/{backend}: {len(diff[0])} bytes differ (first sample {diff[0][0]}, byte {diff[1][0]})"


REDUCE_CASES = [c for c in OPNET_CASES if c[1] == "reduce"]


@pytest.mark.parametrize("case_id, kind, spec", REDUCE_CASES, ids=[c[0] for c in REDUCE_CASES])
def test_reduce_opnets_with_the_generated_set(case_id, kind, spec, tmp_path):
    """The generated pooling family takes MEAN over H,W only; every other reduction runs the
    reduce kernel (the sanitizer run found MEAN over C / H,C / the last axis given to it)."""
    test_opnet_through_compiler(case_id, kind, spec, "generated", tmp_path)
