"""Generated, per-layer specialized int8 kernels (the "gen" kernel set).

Each family module (``conv1x1``, ``fc``, ``conv``, ``dwconv``, ``pool``, ``eltwise``...) exposes

    applies(kind, params, arrays, arch) -> str | None
        None when the family can run this layer bit-exactly; otherwise a one-line reason.
    generate(kind, params, arrays, arch, symbol) -> Generated
        C source (rendered from a Jinja template in ``templates/kernels/``) that defines
        ``int32_t <symbol>(<args>)`` with every shape, stride, pad, offset, multiplier, shift and
        clamp bound baked in, plus the constant arrays it needs (re-laid-out weights, folded bias).
    cost(kind, params, arrays, arch) -> float
        estimated instructions on the target (for the compile-time choice against CMSIS-NN/ref).

``kind`` is the TFLite op (``"CONV_2D"``...), ``params`` and ``arrays`` are exactly what
``tinygen.ops`` lowering produces today (the fields of ``tg_conv_params_t`` / ``tg_fc_params_t`` /
``tg_pool_params_t`` / ``tg_binary_params_t`` as a dict, and the numpy arrays ``weights``,
``bias``, ``mult``, ``shift``), ``arch`` is ``"dsp"`` (Cortex-M33/M4 with the DSP extension),
``"none"`` (no DSP: plain C) or ``"portable"`` (host).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Generated:
    symbol: str                 # the C function defined by ``source``
    source: str                 # C text: static const arrays + the function; needs "tg_dsp.h", <stdint.h>
    args: tuple[str, ...]       # call operands in order: "in0", "in1", "out0", "scratch"
    scratch: int = 0            # bytes of scratch the function needs (4-byte aligned region)
    const_bytes: int = 0        # flash bytes of the constants inside ``source``
    notes: dict = field(default_factory=dict)  # e.g. {"variant": "1x1 4x2 blocked", "acc_bound": ...}


def c_array(ctype: str, name: str, values: np.ndarray, per_line: int = 24) -> str:
    """``static const <ctype> <name>[n] = {...};`` with deterministic formatting.

    >>> c_array("int8_t", "w", np.array([1, -2, 3], np.int8), per_line=2)
    'static const int8_t w[3] __attribute__((aligned(4))) = {\\n  1, -2,\\n  3\\n};\\n'
    """
    from ..emit import c_array_body

    flat = np.asarray(values).reshape(-1)
    return (f"static const {ctype} {name}[{flat.size}] __attribute__((aligned(4))) = {{\n"
            f"{c_array_body(flat, per_line)}\n}};\n")
