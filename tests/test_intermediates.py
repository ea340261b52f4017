"""Every intermediate tensor, not only the outputs: the host build's --dump mode writes the arena
after each layer; each layer's output tensor (manifest offsets) must equal TFLite BUILTIN_REF's
tensor of the same index (interpreter with experimental_preserve_all_tensors), for every kernel set."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from conftest import shared_model
from opnets import make_opnet

from tinygen import driver, frontend, hostbuild, project, reference

pytestmark = [pytest.mark.tf, pytest.mark.toolchain]
KSETS = ["generated", "cmsis-nn", "portable"]
N = 3


def _dump(proj, kset: str, packed: np.ndarray, arena: int, n_layers: int) -> np.ndarray:
    exe = hostbuild.build(proj, kset, extra_cflags="-DTG_PROFILE")
    r = subprocess.run([str(exe), "--dump"], input=np.ascontiguousarray(packed).tobytes(), capture_output=True,
                       timeout=600, check=False)
    assert r.returncode == 0, r.stderr.decode(errors="replace")
    return np.frombuffer(r.stdout, np.int8).reshape(len(packed), n_layers, arena)


def _check(buf: bytes, name: str, kset: str, tmp_path) -> int:
    if kset == "cmsis-nn":
        import os

        if not os.environ.get("CMSIS_NN_PATH"):
            pytest.skip("CMSIS_NN_PATH not set: CMSIS-NN tests skipped (see README)")
    c = driver.compile_model(buf, name, kset, arch="none")
    project.write(tmp_path / "p", driver.host_project(c))
    man = json.loads((tmp_path / "p" / "manifest.json").read_text())
    layers = man["layers"]
    x = reference.random_inputs(buf, N, seed=5)
    got = _dump(tmp_path / "p", kset, reference.pack(x), man["arena_bytes"], len(layers))
    want = reference.run_tensors(buf, x, [ly["output"] for ly in layers if not ly.get("band")])
    checked = 0
    for s in range(N):
        for li, ly in enumerate(layers):
            if ly.get("band"):  # a band of a patch stage: no TFLite tensor (the layers after the stage read it)
                continue
            ref = np.ascontiguousarray(want[s][ly["output"]]).reshape(-1).view(np.int8)
            mine = got[s, li, ly["output_offset"]:ly["output_offset"] + ref.size]
            bad = np.flatnonzero(mine != ref)
            assert bad.size == 0, (f"{name}/{kset}: layer {li} {ly['op']} ({ly['kernel']}) differs from TFLite at "
                                   f"{bad.size} of {ref.size} bytes, first {bad[0]}: {mine[bad[0]]} != {ref[bad[0]]}")
            checked += 1
    return checked


@pytest.mark.parametrize("kset", KSETS)
@pytest.mark.parametrize("model", ["kws_ref_model.tflite", "pretrainedResnet_quant.tflite", "ad01_int8.tflite"])
def test_every_intermediate_tensor_of_the_shared_models(model, kset, tmp_path):
    buf = frontend.load(shared_model(model), log=lambda m: None)[0]
    assert _check(buf, model.split(".")[0], kset, tmp_path) >= N * 10


@pytest.mark.parametrize("kset", KSETS)
@pytest.mark.parametrize("case", [
    ("conv2d", dict(in_shape=(9, 8, 3), filters=5, kernel=(3, 3), strides=(2, 2), padding="same", act="relu")),
    ("dwconv2d", dict(in_shape=(9, 8, 3), kernel=(3, 3), strides=(2, 2), padding="valid")),
    ("add", dict(shape1=(4, 5, 3), shape2=(4, 5, 3))),
    ("avgpool", dict(in_shape=(7, 9, 4), pool=(3, 3), strides=(2, 2), padding="same")),
], ids=lambda c: c[0] if isinstance(c, tuple) else str(c))
def test_every_intermediate_tensor_of_op_nets(case, kset, tmp_path):
    kind, spec = case
    assert _check(make_opnet(kind, **spec), kind, kset, tmp_path) >= N
