"""Fuzz the TFLite flatbuffer loader and the compiler front half with atheris.

Bytes go through the driver's stages up to the plan (flatbuffer reader, importer, verify), the graph
passes, lowering for both backends and the arena planner (+ ``verify_plan``). A
:class:`tinygen.errors.TinygenError` is the expected answer to bad bytes; any other exception is
a crash: atheris stops and writes ``crash-<sha1>`` (copy it to ``tests/fuzz_corpus/`` as a
regression input; ``tests/test_robustness.py`` replays that folder).

    .venv/bin/python fuzz/fuzz_flatbuffer.py                      # 60 s, seeds from shared models + opnets
    .venv/bin/python fuzz/fuzz_flatbuffer.py -max_total_time=600  # longer
    .venv/bin/python fuzz/fuzz_flatbuffer.py -runs=0 tests/fuzz_corpus   # replay a folder

Extra arguments are passed to libFuzzer. Unless a corpus folder is given, the seed corpus (and
what the fuzzer adds to it) lives in ``$TMPDIR/tinygen-fuzz/corpus``; crashing inputs are written
to ``$TMPDIR/tinygen-fuzz/crash-*`` (``-artifact_prefix=`` overrides).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MAX_INPUT = 1 << 20  # bigger inputs only slow the fuzzer down
WORK = Path(tempfile.gettempdir()) / "tinygen-fuzz"


def compile_front(data: bytes) -> None:
    """Everything the compiler does with model bytes before the reference run and emission (the
    driver's stages up to ``plan``, verify_plan included), for every kernel set and arch; the
    generated set (the default) adds patch choice and the overlap planner's kernel trades."""
    from tinygen import driver

    for kset, arch in (("portable", "none"), ("cmsis-nn", "dsp"), ("cmsis-nn", "mve"), ("generated", "dsp")):
        driver.compile_model(data, "fuzz", kset, arch, stop_after="plan")


def one_input(data: bytes) -> None:
    """The fuzz target: TinygenError is fine, anything else propagates (a crash)."""
    from tinygen.errors import TinygenError

    try:
        compile_front(data)
    except TinygenError:
        pass


def seed_corpus(folder: Path) -> Path:
    """Shared MLPerf Tiny models (when ../shared exists) + a few opnets (cached, converted once)."""
    folder.mkdir(parents=True, exist_ok=True)
    shared = ROOT.parent / "shared" / "models" / "mlperf-tiny"
    for p in sorted(shared.glob("*.tflite")) if shared.exists() else []:
        if p.stat().st_size <= MAX_INPUT and "float" not in p.name:
            (folder / p.name).write_bytes(p.read_bytes())
    try:
        from opnets import OPNET_CASES, make_opnet

        for case_id, kind, spec in OPNET_CASES:
            (folder / f"opnet-{case_id}.tflite").write_bytes(make_opnet(kind, **spec))
    except Exception as e:  # noqa: BLE001 - the fuzzer still runs on the shared models
        print(f"fuzz: no opnet seeds ({type(e).__name__}: {e})", file=sys.stderr)
    for p in sorted((ROOT / "tests" / "fuzz_corpus").glob("*")) if (ROOT / "tests" / "fuzz_corpus").exists() else []:
        if p.is_file() and not p.name.endswith((".md", ".txt")):
            (folder / f"regress-{p.name}").write_bytes(p.read_bytes())
    return folder


def main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["tinygen"]):
        import tinygen.flatbuf  # noqa: F401
        import tinygen.ir  # noqa: F401
        import tinygen.ops  # noqa: F401
        import tinygen.passes  # noqa: F401
        import tinygen.plan  # noqa: F401
        import tinygen.quant  # noqa: F401

    args = list(argv)
    if not any(a.startswith("-max_total_time") or a.startswith("-runs") for a in args[1:]):
        args.append("-max_total_time=60")
    if not any(a.startswith("-max_len") for a in args[1:]):
        args.append(f"-max_len={MAX_INPUT}")
    if not any(a.startswith("-artifact_prefix") for a in args[1:]):
        WORK.mkdir(parents=True, exist_ok=True)
        args.append(f"-artifact_prefix={WORK}/")
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(str(seed_corpus(WORK / "corpus")))
    atheris.Setup(args, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
