"""Everyday Keras architectures with random weights, converted to full int8, through the whole
compiler on the host (both kernel sets), byte for byte against TFLite's BUILTIN_REF. The unrolled
GRU/LSTM/SimpleRNN, Conv2DTranspose, UpSampling2D, dilated-conv and activation heads are op nets
(tests/opnets.py, test_e2e_opnets.py); this file holds the whole applications."""

import pytest
from conftest import backends
from opnets import make_opnet
from test_lstm import make_lstm

from tinygen import driver, hostbuild, project, reference
from tinygen.flatbuf import read_model
from tinygen.tflite_names import BUILTIN_OPS

ZOO = [
    ("mobilenet_v3_small", dict(size=64), {"HARD_SWISH", "MEAN", "MUL"}),
    ("mobilenet_v3_small", dict(size=64, minimalistic=True), {"MEAN", "MUL"}),
    ("lstm", dict(t=12, f=8, units=[16], seq=False, dense=4), {"UNIDIRECTIONAL_SEQUENCE_LSTM"}),  # test_lstm.py
]


@pytest.mark.parametrize("backend", backends())
@pytest.mark.parametrize("kind, spec, ops", ZOO, ids=["mnv3s", "mnv3s_minimalistic", "lstm"])
def test_application_bit_exact(kind, spec, ops, backend, tmp_path):
    buf = make_lstm(spec) if kind == "lstm" else make_opnet(kind, **spec)
    fb = read_model(buf)
    kinds = {BUILTIN_OPS.get(fb.opcodes[o.opcode_index].builtin) for o in fb.subgraphs[0].operators}
    assert ops <= kinds, sorted(kinds)
    c = driver.compile_model(buf, kind, backend, arch="none")
    project.write(tmp_path / "p", driver.host_project(c))
    exe = hostbuild.build(tmp_path / "p", backend)
    x = reference.random_inputs(buf, 6, seed=7)
    want = reference.pack(reference.run(buf, x))
    got = hostbuild.run(exe, reference.pack(x))
    assert got.shape == want.shape and (got == want).all(), f"{int((got != want).sum())} bytes differ"
