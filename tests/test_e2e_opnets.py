"""Every single-op test net through the whole compiler (import, passes, lowering, plan, emit),
built on the host and compared byte for byte with the TFLite reference on random inputs."""

import pytest
from conftest import backends
from hostcheck import assert_host_bit_exact
from opnets import OPNET_CASES, make_opnet

from tinygen import driver, hostbuild

N_INPUTS = 40


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("case_id, kind, spec", OPNET_CASES, ids=[c[0] for c in OPNET_CASES])
def test_opnet_through_compiler(case_id, kind, spec, backend, tmp_path):
    buf = make_opnet(kind, **spec)
    c = driver.compile_model(buf, case_id, backend, arch="none")
    assert_host_bit_exact(c, buf, tmp_path / "p", backend, n=N_INPUTS, seed=3, what=f"{case_id}/{backend}")


REDUCE_CASES = [c for c in OPNET_CASES if c[1] == "reduce"]


@pytest.mark.parametrize("case_id, kind, spec", REDUCE_CASES, ids=[c[0] for c in REDUCE_CASES])
def test_reduce_opnets_with_the_generated_set(case_id, kind, spec, tmp_path):
    """The generated pooling family takes MEAN over H,W only; every other reduction runs the
    reduce kernel (the sanitizer run found MEAN over C / H,C / the last axis given to it)."""
    test_opnet_through_compiler(case_id, kind, spec, "generated", tmp_path)


def test_host_check_catches_one_flipped_byte(tmp_path, monkeypatch):
    """The shared check (tests/hostcheck.py) is not vacuous: one output byte off fails it, naming it."""
    case_id, kind, spec = OPNET_CASES[0]
    buf = make_opnet(kind, **spec)
    c = driver.compile_model(buf, case_id, "portable", arch="none")
    real = hostbuild.run

    def flipped(exe, packed):
        got = real(exe, packed).copy()
        got[2, 1] ^= 1
        return got

    monkeypatch.setattr(hostbuild, "run", flipped)
    with pytest.raises(AssertionError, match=r"1 of \d+ bytes differ, first at \[2, 1\]"):
        assert_host_bit_exact(c, buf, tmp_path / "p", "portable", n=4, seed=3, what=case_id)
