"""Shared by the generated-kernel tests (test_kernelgen_conv.py, test_kernelgen_dw.py): the Cortex-M
compile flags they build for, the skips for a missing Arm toolchain / QEMU, and the layers of a
shared model as :class:`tinygen.kernelgen.harness.Case` s."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from conftest import shared_model

from tinygen.kernelgen import harness

HAVE_ARM = shutil.which("arm-none-eabi-gcc") is not None
HAVE_QEMU = HAVE_ARM and shutil.which("qemu-system-arm") is not None and shutil.which("make") is not None
needs_arm = pytest.mark.skipif(not HAVE_ARM, reason="arm-none-eabi-gcc not installed (sudo apt-get install "
                               "gcc-arm-none-eabi libnewlib-arm-none-eabi)")
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="qemu-system-arm / arm-none-eabi-gcc / make not installed")

M33 = ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"]
M33_NODSP = ["-mcpu=cortex-m33+nodsp", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-sp-d16"]
M4 = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
CPUS, CPU_IDS = [M33, M33_NODSP, M4], ["m33", "m33-nodsp", "m4"]  # @pytest.mark.parametrize("cpu", CPUS, ids=CPU_IDS)


def shared_model_cases(model: str, families: dict) -> list[harness.Case]:
    """Every layer of the shared ``model`` whose kind is a key of ``families`` (kind -> kernelgen
    module), with the params/arrays of ``ops.lower`` itself, the family's DSP-path kernel (which must
    apply) and seeded random int8 inputs (two for ADD / MUL)."""
    from tinygen import importer, ops, passes

    path = shared_model(model)
    g = importer.load(path.read_bytes(), path.stem)
    passes.run(g, None)
    rng = np.random.default_rng(12)
    cases = []
    for i, op in enumerate(g.ops):
        if op.kind not in families:
            continue
        low = ops.lower(g, op)
        fam = families[op.kind]
        assert fam.applies(op.kind, low.params, low.arrays, "dsp") is None, op.kind
        n_in = int(np.prod(g.t(op.inputs[0]).shape))
        xs = tuple(rng.integers(-128, 128, n_in).astype(np.int8) for _ in range(2 if op.kind in ("ADD", "MUL") else 1))
        gen = fam.generate(op.kind, low.params, low.arrays, "dsp", f"tg_gen_{path.stem}_{i}")
        cases.append(harness.Case(f"{op.kind.lower()}{i}", op.kind, low.params, low.arrays, xs, gen))
    return cases
