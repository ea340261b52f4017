"""The host bit-exactness check the end-to-end tests share: write the host project of a compiled
model, build it with gcc, run random inputs through it and through TFLite's BUILTIN_REF, and
require every output byte to be equal."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tinygen import driver, hostbuild, project, reference


def assert_host_bit_exact(c, buf: bytes, out: Path, backend: str, *, n: int, seed: int, x=None, what: str = "",
                          detail: str = "", **build) -> None:
    """Write ``driver.host_project(c)`` to ``out``, ``hostbuild.build`` it for ``backend`` (``build``:
    its cflags / extra_cflags) and run ``x`` (default: ``n`` random inputs of ``buf`` from ``seed``);
    the outputs must equal the reference's on ``buf`` byte for byte. The failure names ``what``, how
    many bytes differ and the first [sample, byte], then ``detail`` (e.g. the plan table)."""
    project.write(out, driver.host_project(c))
    exe = hostbuild.build(out, backend, **build)
    x = reference.random_inputs(buf, n, seed=seed) if x is None else x
    want = reference.pack(reference.run(buf, x))
    got = hostbuild.run(exe, reference.pack(x))
    assert got.shape == want.shape, f"{what}: output records {got.shape}, the reference's {want.shape}{detail}"
    bad = np.argwhere(got != want)
    assert bad.size == 0, f"{what}: {len(bad)} of {got.size} bytes differ, first at {bad[0].tolist()}{detail}"
