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
    jobs = f"-j{max(1, len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count() or 1)}"
    args = ["make", "-s", jobs, "-C", str(project), f"BACKEND={backend}", f"CFLAGS={cflags}",
            f"EXTRA_CFLAGS={extra_cflags}"]
    if backend == "cmsis-nn":
        # instrumented builds (sanitizers, guards) need CMSIS-NN compiled with the same flags
        args.append(f"NN_LIB={cmsis_host_lib(f'{cflags} {extra_cflags}') if extra_cflags else cmsis_host_lib()}")
    exe = project / "build" / "model_host"
    if exe.exists():
        exe.unlink()
    shutil.rmtree(project / "build" / "obj", ignore_errors=True)  # objects of a build with other flags
    _run(args, what=f"host build of {project}")
    return exe


def run(exe: Path, packed: np.ndarray) -> np.ndarray:
    """Feed packed input records [N, TG_INPUT_SIZE] through the host program; returns [N, TG_OUTPUT_SIZE] int8."""
    r = subprocess.run([str(exe)], input=np.ascontiguousarray(packed).tobytes(), capture_output=True, timeout=600)
    if r.returncode != 0:
        raise ToolchainError(f"{exe} exited {r.returncode}: {r.stderr.decode(errors='replace').strip()[:500]}")
    return np.frombuffer(r.stdout, dtype=np.int8).reshape((len(packed), -1))


def _stale(project: Path, exe: Path) -> bool:
    t = exe.stat().st_mtime
    return any(p.stat().st_mtime > t for p in [project / "Makefile", *(project / "src").glob("*")] if p.is_file())


def run_selftest(project: Path, backend: str, rebuild: bool = False, timeout: float = 600.0):
    """`tinygen run` of a host project: build the program if needed, run its embedded self-test
    vectors (``model_host --selftest``) and parse the firmware-style TG_ lines it prints."""
    from .selftest import parse_selftest

    project = Path(project)
    exe = project / "build" / "model_host"
    if rebuild or not exe.is_file() or _stale(project, exe):
        exe = build(project, backend)
    try:
        r = subprocess.run([str(exe), "--selftest"], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{exe} --selftest did not finish within {timeout:.0f} s") from None
    if r.returncode not in (0, 1):
        raise ToolchainError(f"{exe} --selftest exited {r.returncode}: "
                             f"{(r.stderr or r.stdout).decode(errors='replace').strip()[:500]}")
    return parse_selftest(r.stdout.decode(errors="replace"), None, r.returncode)


# ---- the build's own check: the self-test vectors, compiled for the host ----------------------

CHECK_CFLAGS = "-O0"  # the check compiles once per build: the fastest to compile, the same C


def can_check() -> bool:
    """Whether the host can compile and run the generated model (gcc, make and the mkdir the
    Makefile runs, on PATH)."""
    return all(shutil.which(t) for t in ("gcc", "make", "mkdir"))


def check_vectors(c, files: dict[str, str | bytes]):
    """Every build's self-test check, before the project is written (any board, ``--no-compile``
    too): the generated model sources of ``c`` (the board's own model.c, kernels and vectors; the
    generated kernels' DSP intrinsics have exact C definitions in tg_dsp.h) compiled for the host
    with the host harness, their embedded vectors run. Returns the SelftestResult; a difference
    raises :func:`vector_difference`'s CompilerBug. ``files``: the host project
    (``driver.host_project(c)``). Sources that passed before (same bytes, flags and CMSIS-NN) are
    not compiled again: None."""
    import tempfile

    from .project import write_files

    h = hashlib.sha256(f"{CHECK_CFLAGS} {c.backend} {os.environ.get('CMSIS_NN_PATH', '')}".encode())
    for rel in sorted(files):
        data = files[rel] if isinstance(files[rel], bytes) else files[rel].encode()
        h.update(f"\0{rel}\0{len(data)}\0".encode() + data)
    passed = CACHE / "checked" / h.hexdigest()[:32]
    if passed.is_file():  # these exact sources passed their vectors before (tests rebuild one model often)
        return None
    with tempfile.TemporaryDirectory(prefix="tinygen-check-") as tmp:
        stage = Path(tmp) / "host"
        stage.mkdir()
        write_files(stage, files)
        r = check_project(stage, c, cflags=CHECK_CFLAGS)
    try:
        passed.parent.mkdir(parents=True, exist_ok=True)
        passed.write_text(f"{c.name}\n")
    except OSError:
        pass
    return r


def check_project(project: Path, c, cflags: str = "-O2 -g", outcome: str = "no project written"):
    """Build the host project ``project`` of ``c`` and run its self-test vectors; raises a
    CompilerBug naming the first differing output byte (and the first layer whose tensor differs)
    when any vector differs from the TFLite reference."""
    from .errors import CompilerBug
    from .selftest import parse_selftest

    exe = build(project, c.backend, cflags=cflags)
    try:
        r = subprocess.run([str(exe), "--selftest"], capture_output=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"the host self-test of {c.name} did not finish within 600 s") from None
    text = r.stdout.decode(errors="replace")
    if r.returncode == 2:  # a kernel returned an error status
        detail = r.stderr.decode(errors="replace").strip()[:300]
        raise CompilerBug("selftest", f"{c.name}: the generated code failed on the host self-test ({detail}); "
                          f"{outcome}")
    if r.returncode not in (0, 1):
        raise ToolchainError(f"{exe} --selftest exited {r.returncode}: "
                             f"{(r.stderr or r.stdout).decode(errors='replace').strip()[:500]}")
    res = parse_selftest(text, None, r.returncode)
    if res.ok and res.match:
        return res
    raise CompilerBug("selftest", vector_difference(project, c, res, outcome))


def _unpack(c, record: np.ndarray) -> list[np.ndarray]:
    """A packed input record -> one [1, *shape] array per graph input."""
    from .reference import io_details

    dins, _ = io_details(c.model_bytes)
    xs, k = [], 0
    for d in dins:
        dt = np.dtype(d["dtype"])
        shape = tuple(int(v) for v in d["shape"])
        n = int(np.prod(shape)) * dt.itemsize
        xs.append(np.frombuffer(record[k:k + n].tobytes(), dt).reshape((1, *shape)))
        k += n
    return xs


def first_differing_layer(project: Path, c, vector: int) -> str | None:
    """The first layer whose output tensor differs from the reference's tensor for self-test vector
    ``vector`` (host program built with -DTG_PROFILE, ``--dump``), as 'layer i OP 'name' (kernel)',
    or None when that cannot be told (every layer equal, or the dump failed)."""
    import json

    from . import reference

    m = json.loads((project / "manifest.json").read_text())
    layers, arena = m["layers"], m["arena_bytes"]
    try:
        exe = build(project, c.backend, extra_cflags="-DTG_PROFILE", cflags=CHECK_CFLAGS)
        r = subprocess.run([str(exe), "--dump"], input=np.ascontiguousarray(c.vectors[0][vector]).tobytes(),
                           capture_output=True, timeout=600)
        if r.returncode != 0 or len(r.stdout) != len(layers) * arena:
            return None
        got = np.frombuffer(r.stdout, np.int8).reshape(len(layers), arena)
        xs = _unpack(c, c.vectors[0][vector])
        want = reference.run_tensors(c.model_bytes, xs if len(xs) > 1 else xs[0], [ly["output"] for ly in layers])[0]
    except Exception:  # only a diagnosis: the difference itself is already known
        return None
    for li, ly in enumerate(layers):
        ref = np.ascontiguousarray(want[ly["output"]]).reshape(-1).view(np.int8)
        mine = got[li, ly["output_offset"]:ly["output_offset"] + ref.size]
        bad = np.flatnonzero(mine != ref)
        if bad.size:
            return (f"first differing layer {li} {ly['op']} '{ly['name']}' (kernel {ly['kernel']}): "
                    f"{bad.size} of {ref.size} bytes differ, first at byte {int(bad[0])}")
    return None


def vector_difference(project: Path, c, r, outcome: str = "no project written") -> str:
    """One line: which self-test vector and output differ first, got/want, and the layer if known."""
    import json

    m = json.loads((project / "manifest.json").read_text())
    first = next(iter(r.mismatches), None)
    where = "the outputs differ"
    vector = 0
    if first is not None:
        kv = dict(p.split("=", 1) for p in first.split()[1:] if "=" in p)
        vector, index = int(kv.get("vector", 0)), int(kv.get("index", 0))
        k = index
        name = "?"
        for o in m.get("outputs") or [m["output"]]:
            if k < o["bytes"]:
                name = o["name"]
                break
            k -= o["bytes"]
        where = (f"self-test vector {vector}: output '{name}' byte {k} is {kv.get('got')}, "
                 f"the TFLite reference says {kv.get('want')}")
    layer = first_differing_layer(project, c, vector)
    n = r.vectors
    got = r.matched if r.matched is not None else 0
    return (f"{c.name}: the generated code differs from the TFLite reference ({got} of {n} self-test vectors "
            f"match); {where}" + (f"; {layer}" if layer else "") + f"; {outcome}")
