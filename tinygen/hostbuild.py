"""Build and run the generated C on the host (gcc): the bit-exactness harness."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .errors import ToolchainError

CACHE = Path(os.environ.get("TINYGEN_CACHE", Path.home() / ".cache" / "tinygen"))


def cmsis_nn_path(required: bool = True) -> Path | None:
    """The CMSIS-NN install named by $CMSIS_NN_PATH, validated."""
    p = os.environ.get("CMSIS_NN_PATH")
    if not p:
        if required:
            raise ToolchainError("the cmsis-nn backend needs CMSIS-NN v7.0.0: set CMSIS_NN_PATH to its folder "
                                 "(git clone --branch v7.0.0 https://github.com/ARM-software/CMSIS-NN), or use --backend portable")
        return None
    path = Path(p)
    if not (path / "Include" / "arm_nnfunctions.h").exists() or not (path / "Source").is_dir():
        raise ToolchainError(f"CMSIS_NN_PATH={p} is not a CMSIS-NN checkout (no Include/arm_nnfunctions.h or Source/); "
                             "point it at CMSIS-NN v7.0.0")
    return path


def need(tool: str, install: str) -> str:
    exe = shutil.which(tool)
    if not exe:
        raise ToolchainError(f"'{tool}' not found on PATH; install it: {install}")
    return exe


def _run(cmd: list[str], cwd: Path | None = None, what: str = "") -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-15:])
        raise ToolchainError(f"{what or cmd[0]} failed (exit {r.returncode}):\n{tail}")


def cmsis_host_lib(cflags: str = "-O2") -> Path:
    """CMSIS-NN compiled for the host once per (path, flags), cached as a static library."""
    return cmsis_lib("gcc", cflags, "sudo apt-get install gcc", "ar")


def cmsis_lib(compiler: str, cflags: str, install: str, ar: str, root: Path | None = None) -> Path:
    """CMSIS-NN compiled once per (compiler, flags, sources), cached as a static library."""
    root = root or cmsis_nn_path()
    cc = need(compiler, install)
    srcs = sorted(p for p in (root / "Source").glob("*/*.c") if not p.name.endswith(("_f16.c", "_f32.c")))
    key = hashlib.sha256((compiler + str(root) + cflags + "".join(f"{p}:{p.stat().st_mtime_ns}" for p in srcs)).encode()).hexdigest()[:16]
    lib = CACHE / f"cmsis-nn-{Path(compiler).name}-{key}.a"
    if lib.exists():
        return lib
    obj_dir = CACHE / f"cmsis-nn-{Path(compiler).name}-{key}"
    obj_dir.mkdir(parents=True, exist_ok=True)
    objs = []
    procs = []
    for s in srcs:
        o = obj_dir / (s.parent.name + "_" + s.stem + ".o")
        objs.append(o)
        procs.append(subprocess.Popen([cc, *cflags.split(), f"-I{root / 'Include'}", "-c", str(s), "-o", str(o)],
                                      stderr=subprocess.PIPE))
        if len(procs) >= (os.cpu_count() or 2) * 2:
            for p in procs:
                if p.wait():
                    raise ToolchainError(f"building CMSIS-NN for the host failed: {p.stderr.read().decode()[:500]}")
            procs = []
    for p in procs:
        if p.wait():
            raise ToolchainError(f"building CMSIS-NN for the host failed: {p.stderr.read().decode()[:500]}")
    tmp = lib.with_suffix(".tmp.a")
    _run([need(ar, install), "rcs", str(tmp), *map(str, objs)], what=ar)
    tmp.replace(lib)
    return lib


def build(project: Path, backend: str, extra_cflags: str = "", cflags: str = "-O2 -g") -> Path:
    """`make` the host project; returns the program path."""
    need("make", "sudo apt-get install make")
    need("gcc", "sudo apt-get install gcc")
    from .project import link_of

    backend = link_of(project, backend)
    args = ["make", "-s", "-C", str(project), f"BACKEND={backend}", f"CFLAGS={cflags}", f"EXTRA_CFLAGS={extra_cflags}"]
    if backend == "cmsis-nn":
        # instrumented builds (sanitizers, guards) need CMSIS-NN compiled with the same flags
        args.append(f"NN_LIB={cmsis_host_lib(f'{cflags} {extra_cflags}') if extra_cflags else cmsis_host_lib()}")
    exe = project / "build" / "model_host"
    if exe.exists():
        exe.unlink()
    _run(args, what=f"host build of {project}")
    return exe


def run(exe: Path, packed: np.ndarray) -> np.ndarray:
    """Feed packed input records [N, TG_INPUT_SIZE] through the host program; returns [N, TG_OUTPUT_SIZE] int8."""
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(packed).tobytes(), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise ToolchainError(f"{exe} exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[:500]}")
    return np.frombuffer(r.stdout, dtype=np.int8).reshape((len(packed), -1))
