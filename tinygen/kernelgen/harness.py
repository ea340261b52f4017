"""Test and measurement harness for generated kernels: host bit-exactness and QEMU instruction counts.

A :class:`Case` is one layer: its kind, the ``params``/``arrays`` of ``tinygen.ops`` lowering, an
input, and the :class:`~tinygen.kernelgen.Generated` kernel. :func:`host_check` compiles every
case with the reference kernels (``firmware/tg_kernels_ref.c``) into one host program (gcc -O2
-Wall -Wextra -Werror) and reports the cases whose output differs from ``tg_ref_*``.
:func:`qemu_profile` builds a stand-in "model" firmware whose layers are, per case, the generated
kernel, the kernel tinygen's registry picks in the ``backend`` set (cmsis-nn: the CMSIS-NN
function) and the reference, runs it under
QEMU (-icount shift=0) and returns per-layer instructions plus whether the outputs agree there.
C text lives in ``templates/kernels/harness_*.j2``.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import FIRMWARE
from . import Generated, c_array

# kind -> (params struct, reference kernel, binary op)
KINDS = {
    "CONV_2D": ("tg_conv_params_t", "tg_ref_conv2d_s8", False),
    "DEPTHWISE_CONV_2D": ("tg_conv_params_t", "tg_ref_dwconv2d_s8", False),
    "FULLY_CONNECTED": ("tg_fc_params_t", "tg_ref_fully_connected_s8", False),
    "AVERAGE_POOL_2D": ("tg_pool_params_t", "tg_ref_avgpool_s8", False),
    "MAX_POOL_2D": ("tg_pool_params_t", "tg_ref_maxpool_s8", False),
    "ADD": ("tg_binary_params_t", "tg_ref_add_s8", True),
    "MUL": ("tg_binary_params_t", "tg_ref_mul_s8", True),
}
HOST_CFLAGS = ["-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-Wshadow"]


@dataclass
class Case:
    name: str
    kind: str
    params: dict
    arrays: dict
    inputs: tuple[np.ndarray, ...]   # one int8 array, two for ADD/MUL
    gen: Generated


def out_size(kind: str, params: dict) -> int:
    if kind == "FULLY_CONNECTED":
        return int(params["batches"] * params["out_depth"])
    d = params["out"]
    return int(d["n"] * d["h"] * d["w"] * d["c"])


def _cvalue(v, prefix: str) -> str:
    from ..ops import Arr

    if isinstance(v, dict):
        return "{" + ", ".join(f".{k} = {_cvalue(x, prefix)}" for k, x in v.items()) + "}"
    if isinstance(v, Arr):
        return f"{prefix}_{v.name}"
    if v is None:
        return "NULL"
    if isinstance(v, str):  # the pre-registry placeholders "{arr:name}" / "NULL"
        return f"{prefix}_{v[5:-1]}" if v.startswith("{arr:") else v
    return str(int(v))


def _ctype(a: np.ndarray) -> str:
    return {np.dtype(np.int8): "int8_t", np.dtype(np.int32): "int32_t", np.dtype(np.int16): "int16_t"}[a.dtype]


def _nn_kernel(case: Case, kset: str):
    """The kernel tinygen's registry picks for this layer in ``kset`` (cmsis-nn: the CMSIS-NN adapter)."""
    from .. import kernels
    from ..ops import Lowered

    ptype = KINDS[case.kind][0]
    return kernels.select(case.kind, Lowered(case.params, case.arrays, ptype), kset, "dsp").kernel


def case_context(case: Case, index: int, kset: str = "portable") -> dict:
    from .. import kernels

    ptype, ref_fn, binary = KINDS[case.kind]
    nn = _nn_kernel(case, kset)
    prefix = f"tg_c{index}"
    arrays = [c_array(_ctype(np.asarray(a)), f"{prefix}_{n}", np.asarray(a)) for n, a in sorted(case.arrays.items())]
    ins = [np.asarray(x, np.int8).reshape(-1) for x in case.inputs]
    return {
        "name": case.name, "kind": case.kind, "prefix": prefix, "symbol": case.gen.symbol, "source": case.gen.source,
        "gen_args": case.gen.args, "arrays": arrays, "ptype": ptype, "ref_fn": ref_fn, "nn_fn": nn.symbol,
        "nn_name": nn.name, "nn_scratch": nn.scratch_fn or "", "nn_has_scratch": kernels.SCRATCH in nn.operands,
        "params_c": _cvalue(case.params, prefix),
        "input_c": c_array("int8_t", f"{prefix}_in", ins[0]),
        "input2_c": c_array("int8_t", f"{prefix}_in2", ins[1]) if binary else "",
    }


def _render(template: str, cases: list[Case], scratch: int, kset: str = "portable") -> str:
    from .conv import render

    ctxs = [case_context(c, i, kset) for i, c in enumerate(cases)]
    out_max = max(out_size(c.kind, c.params) for c in cases)
    scratch = max([scratch] + [c.gen.scratch for c in cases])
    return render(template, cases=ctxs, out_max=out_max, scratch=(scratch + 7) // 8 * 8)


def host_source(cases: list[Case]) -> str:
    return _render("kernels/harness_host.c.j2", cases, 16)


def host_check(cases: list[Case], workdir: Path, cflags: list[str] | None = None) -> list[str]:
    """Compile and run the host harness; returns the MISMATCH lines (empty: all bit-exact)."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "harness.c"
    src.write_text(host_source(cases))
    exe = workdir / "harness"
    cmd = ["gcc", *(cflags or HOST_CFLAGS), f"-I{FIRMWARE}", str(src), str(FIRMWARE / "tg_kernels_ref.c"),
           "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"host harness build failed:\n{r.stderr[-3000:]}")
    r = subprocess.run([str(exe)], capture_output=True, text=True, check=False, timeout=600)
    lines = r.stdout.splitlines()
    if not lines or not lines[-1].startswith("DONE"):
        raise RuntimeError(f"host harness crashed (exit {r.returncode}): {r.stdout[-2000:]}{r.stderr[-2000:]}")
    return [ln for ln in lines if ln.startswith("MISMATCH")]


def arm_compile(source: str, workdir: Path, cpu_flags: list[str]) -> Path:
    """Compile one generated kernel for a Cortex-M target with -Werror; returns the object."""
    workdir.mkdir(parents=True, exist_ok=True)
    src = workdir / "kernel.c"
    src.write_text('#include <stdint.h>\n#include "tg_dsp.h"\n' + source)
    obj = workdir / "kernel.o"
    cmd = ["arm-none-eabi-gcc", *cpu_flags, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffunction-sections",
           f"-I{FIRMWARE}", "-c", str(src), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise RuntimeError(f"arm build failed:\n{r.stderr[-3000:]}")
    return obj


def code_bytes(obj: Path) -> int:
    """Bytes of machine code (.text*) in an object built by :func:`arm_compile`."""
    r = subprocess.run(["arm-none-eabi-size", "-A", str(obj)], capture_output=True, text=True, check=True)
    return sum(int(parts[1]) for parts in (ln.split() for ln in r.stdout.splitlines())
               if len(parts) >= 2 and parts[0].startswith(".text") and parts[1].isdigit())


def _model_h(n_layers: int, n_out: int) -> str:
    from ..emit import render

    return render("kernels/harness_model.h.j2", n_layers=n_layers, n_out=n_out)


def qemu_profile(cases: list[Case], workdir: Path, backend: str = "cmsis-nn", board_name: str = "mps2-an505",
                 timeout: float = 600.0) -> list[dict]:
    """Per case: instructions of the generated / backend / reference kernel on ``board_name`` under QEMU,
    ``gen_ok`` (generated == reference on the target) and ``nn_ok`` (backend == reference)."""
    from ..boards import firmware_sources, load_board, render_board_files
    from ..emit import render
    from ..qemu import run_selftest
    from ..toolchain import make_firmware

    board = load_board(board_name)
    project = workdir / board_name
    if project.exists():
        shutil.rmtree(project)
    (project / "src").mkdir(parents=True)
    for rel, text in render_board_files(board, backend=backend).items():
        (project / rel).write_text(text)
    for src in firmware_sources(backend, generated=True):
        shutil.copy(src, project / "src" / src.name)
    (project / "src" / "model.h").write_text(_model_h(4 * len(cases), len(cases)))
    (project / "src" / "model.c").write_text(_render("kernels/harness_model.c.j2", cases, 65536, backend))
    (project / "src" / "model_test.c").write_text(render("kernels/harness_model_test.c.j2", n_out=len(cases)))
    info = make_firmware(project, backend, board=board)
    r = run_selftest(info.elf, board, timeout=timeout)
    if not r.ok and "TG_RESULT" not in r.output:
        raise RuntimeError(f"harness firmware failed:\n{r.output[-2000:]}")
    lay = {ly.name: ly.instructions for ly in r.layers}
    return [{"name": c.name, "gen": lay.get(f"{c.name}:gen"), "nn": lay.get(f"{c.name}:nn"),
             "ref": lay.get(f"{c.name}:ref"), "match": r.match, "nn_kernel": _nn_kernel(c, backend).name}
            for c in cases]


# ---- random layers with the lowering's params/arrays (tests and benchmarks) --------------------------
from ..ops import Arr  # noqa: E402

ACTS = ("NONE", "RELU", "RELU6", "RELU_N1_TO_1")


def _requant_arrays(rng: np.random.Generator, n: int, k: int, per_channel: bool, fc: bool = False):
    from ..quant import quantize_multiplier

    # effective scale ~ 1 / (sqrt(k) * 60): outputs spread over the int8 range, some saturate
    base = 1.0 / (np.sqrt(k) * 60.0)
    reals = base * rng.uniform(0.25, 4.0, n if per_channel else 1)
    ms, ss = zip(*(quantize_multiplier(float(r)) for r in reals))
    return np.array(ms, np.int32), np.array(ss, np.int32)


def _act_range(rng: np.random.Generator, act: str, zp: int) -> tuple[int, int]:
    from ..quant import activation_range

    scale = float(rng.uniform(0.01, 0.1))
    return activation_range(act, scale, zp)


def conv_case(rng: np.random.Generator, name: str, h: int, w: int, cin: int, cout: int, kh: int, kw: int,
              stride: int = 1, padding: str = "SAME", per_channel: bool = True, bias: bool = True,
              act: str = "NONE", zp_in: int | None = None, zp_out: int | None = None, weights_min: bool = False,
              stride_w: int | None = None) -> tuple[dict, dict, np.ndarray]:
    """A CONV_2D layer as ``ops._conv_params`` lowers it, with random int8 weights/input: (params, arrays, input)."""
    sh, sw = stride, stride if stride_w is None else stride_w
    if padding == "SAME":
        oh, ow = (h + sh - 1) // sh, (w + sw - 1) // sw
        ph = max((oh - 1) * sh + kh - h, 0) // 2
        pw = max((ow - 1) * sw + kw - w, 0) // 2
    else:
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        ph = pw = 0
    zx = int(rng.integers(-128, 128)) if zp_in is None else zp_in
    zy = int(rng.integers(-128, 128)) if zp_out is None else zp_out
    lo, hi = _act_range(rng, act, zy)
    wts = rng.integers(-127, 128, (cout, kh, kw, cin)).astype(np.int8)
    if weights_min:
        wts.reshape(-1)[rng.integers(0, wts.size, max(1, wts.size // 8))] = -128
    mult, shift = _requant_arrays(rng, cout, kh * kw * cin, per_channel)
    if not per_channel:
        mult, shift = np.repeat(mult, cout), np.repeat(shift, cout)
    params = {"in": {"n": 1, "h": h, "w": w, "c": cin}, "filter": {"n": cout, "h": kh, "w": kw, "c": cin},
              "out": {"n": 1, "h": oh, "w": ow, "c": cout}, "stride_h": sh, "stride_w": sw, "pad_h": ph, "pad_w": pw,
              "dil_h": 1, "dil_w": 1, "ch_mult": 1, "in_offset": -zx, "out_offset": zy, "act_min": lo, "act_max": hi,
              "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights"), "bias": None}
    arrays = {"mult": mult, "shift": shift, "weights": wts.reshape(-1)}
    if bias:
        arrays["bias"] = rng.integers(-20000, 20000, cout).astype(np.int32)
        params["bias"] = Arr("bias")
    x = rng.integers(-128, 128, h * w * cin).astype(np.int8)
    return params, arrays, x


def fc_case(rng: np.random.Generator, name: str, in_depth: int, out_depth: int, batches: int = 1,
            per_channel: bool = False, bias: bool = True, act: str = "NONE", zp_in: int | None = None,
            zp_out: int | None = None, weights_min: bool = False) -> tuple[dict, dict, np.ndarray]:
    """A FULLY_CONNECTED layer as ``ops._lower_fc`` lowers it: (params, arrays, input)."""
    zx = int(rng.integers(-128, 128)) if zp_in is None else zp_in
    zy = int(rng.integers(-128, 128)) if zp_out is None else zp_out
    lo, hi = _act_range(rng, act, zy)
    wts = rng.integers(-127, 128, (out_depth, in_depth)).astype(np.int8)
    if weights_min:
        wts.reshape(-1)[rng.integers(0, wts.size, max(1, wts.size // 8))] = -128
    mult, shift = _requant_arrays(rng, out_depth, in_depth, per_channel)
    params = {"batches": batches, "in_depth": in_depth, "out_depth": out_depth, "in_offset": -zx, "out_offset": zy,
              "act_min": lo, "act_max": hi, "per_channel": int(per_channel),
              "mult": Arr("mult"), "shift": Arr("shift"), "weights": Arr("weights"), "bias": None}
    arrays = {"mult": mult, "shift": shift, "weights": wts.reshape(-1)}
    if bias:
        arrays["bias"] = rng.integers(-20000, 20000, out_depth).astype(np.int32)
        params["bias"] = Arr("bias")
    x = rng.integers(-128, 128, batches * in_depth).astype(np.int8)
    return params, arrays, x


def case_macs(case: Case) -> int:
    p = case.params
    if case.kind == "FULLY_CONNECTED":
        return int(p["batches"] * p["in_depth"] * p["out_depth"])
    if case.kind == "CONV_2D":
        f = p["filter"]
        return out_size(case.kind, p) * f["h"] * f["w"] * f["c"]
    if case.kind == "DEPTHWISE_CONV_2D":
        f = p["filter"]
        return out_size(case.kind, p) * f["h"] * f["w"]
    return out_size(case.kind, p)
