"""Hostile and broken model files: one clear line (``tinygen: error: ...``), the right exit code,
no traceback, no hang, and no project written.

``BAD_INPUTS`` is the table: (id, builder, exit code, words the message must contain). Builders
mutate small generated single-op models (tests/opnets.py) with the TFLite schema's object API
(``schema_py_generated.ModelT``: unpack, edit a field, pack) or by byte surgery, and some use the
shared MLPerf Tiny models (skipped with a reason when ../shared is absent).

    pytest tests/test_robustness.py -s -k table      # prints the table: bad input -> message
"""

from __future__ import annotations

import signal
import struct
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_model
from modeledit import mutate
from modeledit import opcode as _opcode
from modeledit import set_fields as _set
from modeledit import set_quant as _quant
from opnets import make_opnet

from tinygen import cli, driver, ir
from tinygen.errors import ModelError, TinygenError, UnsupportedError

TIMEOUT_S = 60  # per bad input; a hang is a failure
CORPUS = Path(__file__).parent / "fuzz_corpus"


# ---- building hostile models -----------------------------------------------------------------


def fc() -> bytes:
    """FULLY_CONNECTED 16 -> 5: tensors 0 input, 1 bias, 2 weights, 3 output."""
    return make_opnet("fc", in_shape=(16,), units=5)


def relu() -> bytes:
    """RELU on [1, 4, 4, 5]: tensors 0 input, 1 output."""
    return make_opnet("relu", in_shape=(4, 4, 5))


def conv() -> bytes:
    return make_opnet("conv2d", in_shape=(7, 7, 3), filters=4, kernel=(3, 3), padding="same")


def raw(make, name="bad.tflite"):
    """A builder writing ``make()`` bytes to ``name``."""

    def build(tmp: Path) -> Path:
        p = tmp / name
        p.write_bytes(make())
        return p

    return build


def _tensor(sg, i):
    return sg.tensors[i]


def _second_subgraph(m, sg):
    import copy

    m.subgraphs.append(copy.deepcopy(sg))


def _custom_op(m, sg):
    oc = _opcode(m)
    oc.builtinCode = oc.deprecatedBuiltinCode = 32
    oc.customCode = b"MyVendorOp"
    sg.operators[0].builtinOptionsType = 0
    sg.operators[0].builtinOptions = None


def _builtin(code):
    def edit(m, sg):
        oc = _opcode(m)
        oc.builtinCode = code
        oc.deprecatedBuiltinCode = min(code, 127)

    return edit


def _dtype_all(t_type, zp_shift=0):
    """Every tensor of the relu net becomes ``t_type`` (graph I/O included), zero points shifted."""

    def edit(m, sg):
        for t in sg.tensors:
            t.type = t_type
            t.quantization.zeroPoint = [int(z) + zp_shift for z in t.quantization.zeroPoint]

    return edit


def _float16_weights(m, sg):
    w = sg.tensors[2]
    w.type = 1  # FLOAT16
    buf = m.buffers[w.buffer]
    buf.data = np.zeros(5 * 16 * 2, np.uint8)


def _weights_short(m, sg):
    buf = m.buffers[sg.tensors[2].buffer]
    buf.data = np.asarray(buf.data)[:-7]


def _hostile_name(m, sg):
    sg.tensors[0].name = b"evil */ int pwned = 1; /*\n\"?"


def _external_buffer(m, sg):
    buf = m.buffers[sg.tensors[2].buffer]
    buf.data = None
    buf.offset, buf.size = 1 << 40, 80


def kws_bytes() -> bytes:
    return shared_model("kws_ref_model.tflite").read_bytes()


def _patch_u32(buf: bytes, pos: int, value: int) -> bytes:
    b = bytearray(buf)
    struct.pack_into("<I", b, pos, value)
    return bytes(b)


def _root_vtable_bad(buf: bytes) -> bytes:
    root = struct.unpack_from("<I", buf, 0)[0]
    return _patch_u32(buf, root, 0x7FFFFFF0)  # soffset to the vtable points far outside the file


def _vtable_odd_length(buf: bytes) -> bytes:
    root = struct.unpack_from("<I", buf, 0)[0]
    vt = root - struct.unpack_from("<i", buf, root)[0]
    b = bytearray(buf)
    struct.pack_into("<H", b, vt, 3)
    return bytes(b)


def _field_pos(buf: bytes, table: int, field: int) -> int:
    vt = table - struct.unpack_from("<i", buf, table)[0]
    return table + struct.unpack_from("<H", buf, vt + 4 + 2 * field)[0]


def _huge_vector(buf: bytes) -> bytes:
    """The Model.buffers vector claims 0x0FFFFFFF entries."""
    root = struct.unpack_from("<I", buf, 0)[0]
    p = _field_pos(buf, root, 4)
    vec = p + struct.unpack_from("<I", buf, p)[0]
    return _patch_u32(buf, vec, 0x0FFFFFFF)


def _offset_outside(buf: bytes) -> bytes:
    """The Model.subgraphs offset points past the end of the file."""
    root = struct.unpack_from("<I", buf, 0)[0]
    p = _field_pos(buf, root, 2)
    return _patch_u32(buf, p, len(buf) * 4)


def _h5_bytes() -> bytes:
    return shared_model("ad01.h5").read_bytes()


def _h5_magic_random() -> bytes:
    return b"\x89HDF\r\n\x1a\n" + np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes()


PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)

# (id, builder, exit code, words the one-line message must contain)
BAD_INPUTS = [
    # file level
    ("empty-file", raw(lambda: b""), 2, ["file is empty (0 bytes)"]),
    ("truncated-3-bytes", raw(lambda: fc()[:3]), 2, ["not a valid .tflite", "truncated"]),
    ("truncated-half", raw(lambda: fc()[: len(fc()) // 2]), 2, ["truncated", "bytes"]),
    ("truncated-kws-90pct", raw(lambda: kws_bytes()[: int(len(kws_bytes()) * 0.9)]), 2, ["truncated", "re-export"]),
    ("text-as-tflite", raw(lambda: b"hello, not a model\n", "notes.tflite"), 2, ["not a valid .tflite"]),
    ("png-as-model", raw(lambda: PNG, "photo.png"), 2, ["unknown model format"]),
    ("h5-truncated", raw(lambda: _h5_bytes()[: len(_h5_bytes()) // 3], "cut.h5"), 2, ["cut.h5", "cannot load the Keras model"]),
    ("h5-magic-random-bytes", raw(_h5_magic_random, "noise.h5"), 2, ["noise.h5", "cannot load the Keras model"]),
    # flatbuffer structure
    ("vtable-offset-outside", raw(lambda: _root_vtable_bad(fc())), 2, ["corrupt", "Model"]),
    ("vtable-odd-length", raw(lambda: _vtable_odd_length(fc())), 2, ["bad vtable", "length 3"]),
    ("huge-vector-length", raw(lambda: _huge_vector(fc())), 2, ["Model.buffers", "needs bytes", "..10737"]),
    ("offset-past-end", raw(lambda: _offset_outside(fc())), 2, ["Model.subgraphs", "truncated"]),
    ("external-buffer-outside", mutate(fc, _external_buffer), 2, ["buffers[", "external data"]),
    # tensors
    ("huge-shape", mutate(relu, lambda m, sg: _set(sg.tensors[0], shape=[1, 100000, 100000, 5])), 2, ["too big", "100000"]),
    ("zero-sized-tensor", mutate(relu, lambda m, sg: _set(sg.tensors[1], shape=[1, 4, 0, 5])), 2, ["zero-sized", "[1, 4, 0, 5]"]),
    ("scale-zero", mutate(relu, lambda m, sg: _quant(sg, 1, scale=[0.0])), 2, ["invalid scale 0.0", "PartitionedCall"]),
    ("scale-nan", mutate(relu, lambda m, sg: _quant(sg, 0, scale=[float("nan")])), 2, ["scale nan", "tensor 0"]),
    ("scale-inf", mutate(relu, lambda m, sg: _quant(sg, 1, scale=[float("inf")])), 2, ["scale inf", "tensor 1"]),
    ("scale-negative", mutate(fc, lambda m, sg: _quant(sg, 2, scale=[-0.1] * 5)), 2, ["scale -0.1", "MatMul"]),
    ("weight-scale-zero", mutate(fc, lambda m, sg: _quant(sg, 2, scale=[0.0] * 5)), 2, ["weights", "invalid scale"]),
    ("zero-point-out-of-range", mutate(relu, lambda m, sg: _quant(sg, 0, zeroPoint=[300])), 2, ["zero point 300", "int8"]),
    ("int16-activations", mutate(relu, _dtype_all(7)), 3, ["int16", "int8"]),
    ("uint8-activations", mutate(relu, _dtype_all(3, 128)), 3, ["uint8", "int8"]),
    ("float16-weights", mutate(fc, _float16_weights), 3, ["FLOAT16", "MatMul", "int8 weights"]),
    ("dynamic-shape", mutate(fc, lambda m, sg: _set(sg.tensors[0], shapeSignature=[1, -1])), 3, ["dynamic shape", "[1, -1]"]),
    ("weights-wrong-byte-size", mutate(fc, _weights_short), 2, ["73 bytes", "needs 80"]),
    ("buffer-index-out-of-range", mutate(fc, lambda m, sg: _set(sg.tensors[2], buffer=99)), 2, ["buffer 99", "has 7"]),
    # graph and ops
    ("multiple-subgraphs", mutate(relu, _second_subgraph), 3, ["2 subgraphs", "single-subgraph"]),
    ("unknown-custom-op", mutate(relu, _custom_op), 3, ["custom op 'MyVendorOp'", "SUPPORTED_OPS.md"]),
    ("unsupported-builtin-op", mutate(relu, _builtin(50)), 3, ["LOG_SOFTMAX x1", "not supported"]),
    ("op-tensor-index-out-of-range", mutate(fc, lambda m, sg: _set(sg.operators[0], inputs=[0, 42, 1])), 2, ["tensor 42", "has 4"]),
    ("op-tensor-index-negative", mutate(fc, lambda m, sg: _set(sg.operators[0], inputs=[0, -7, 1])), 2, ["tensor -7"]),
    ("op-missing-weights", mutate(fc, lambda m, sg: _set(sg.operators[0], inputs=[0, -1, 1])), 2, ["no weights"]),
    ("op-without-output", mutate(relu, lambda m, sg: _set(sg.operators[0], outputs=[])), 2, ["needs exactly one output"]),
    ("opcode-index-out-of-range", mutate(relu, lambda m, sg: _set(sg.operators[0], opcodeIndex=9)), 2, ["opcode 9"]),
    ("graph-output-out-of-range", mutate(relu, lambda m, sg: _set(sg, outputs=[5])), 2, ["graph output", "tensor 5"]),
    ("output-smaller-than-input", mutate(relu, lambda m, sg: _set(sg.tensors[1], shape=[1, 4, 4, 2])), 2, ["differ in size"]),
    ("conv-negative-stride", mutate(conv, lambda m, sg: _set(sg.operators[0].builtinOptions, strideH=-1)), 2, ["stride"]),
    ("conv-output-batch-2", mutate(conv, lambda m, sg: _set(sg.tensors[sg.operators[0].outputs[0]], shape=[2, 7, 7, 4])), 2, ["batch 1 in, 2 out"]),
    ("softmax-beta-nan", mutate(lambda: make_opnet("softmax", in_shape=(1, 1, 10)),
                                lambda m, sg: _set(sg.operators[0].builtinOptions, beta=float("nan"))), 3, ["SOFTMAX", "out of range"]),
]


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (SIGALRM; the tests run in the main thread)."""

    def boom(*_):
        raise TimeoutError(f"no answer within {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def build_cli(capsys, model: Path, out: Path, *extra) -> tuple[int, str, str]:
    with deadline(TIMEOUT_S):
        code = cli.main(["build", str(model), "--board", "host", "-o", str(out), *extra])
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def one_error_line(err: str) -> str:
    """stderr holds exactly one line, ``tinygen: error: ...``, and no traceback."""
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tinygen: error: "), err
    return lines[0]


TABLE: dict[str, str] = {}


@pytest.mark.parametrize("case_id, builder, code, words", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input(case_id, builder, code, words, tmp_path, capsys):
    model = builder(tmp_path)
    out = tmp_path / "out"
    got, _, err = build_cli(capsys, model, out)
    line = one_error_line(err)
    TABLE[case_id] = line
    print(f"\n{case_id}: exit {got}: {line}")
    assert got == code, line
    for w in words:
        assert w in line, f"{case_id}: {w!r} not in {line!r}"
    assert not out.exists(), "a rejected model must not leave a project behind"


def test_table(capsys):
    """The bad-input table (run with -s): id -> exit code and message, also kept in docs/robustness.md."""
    import tempfile

    rows = []
    for case_id, builder, code, _ in BAD_INPUTS:
        with tempfile.TemporaryDirectory() as d:
            try:
                model = builder(Path(d))
            except pytest.skip.Exception as e:
                rows.append((case_id, "skipped", str(e)))
                continue
            got, _, err = build_cli(capsys, model, Path(d) / "out")
        line = one_error_line(err)
        assert got == code
        rows.append((case_id, str(got), line.removeprefix("tinygen: error: ")))
    with capsys.disabled():
        print("\n| bad input | exit | message |\n|---|---|---|")
        for r in rows:
            print(f"| {r[0]} | {r[1]} | {r[2].replace('|', '/')} |")
    assert len(rows) == len(BAD_INPUTS)


# ---- random damage: truncations and byte flips -----------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_damage_never_crashes(seed, tmp_path, capsys, monkeypatch):
    """Truncations at many points and random byte flips of a real model: either a valid project
    (the flip hit weight bytes) or one clean error line with exit 2/3; never a traceback. (The
    front end under test: the build's host check of the self-test vectors, a gcc build per
    accepted model, is left out to keep each build inside its deadline; test_robustness3 tests it.)"""
    monkeypatch.setattr(driver, "check_vectors", lambda *a, **k: None)
    src = bytearray(kws_bytes() if seed % 2 else conv())
    rng = np.random.default_rng(seed)
    results = []
    for k in range(6):
        b = bytearray(src)
        if k % 2 == 0:
            b = b[: int(rng.integers(1, len(b)))]
        else:
            for pos in rng.integers(0, len(b), int(rng.integers(1, 16))):
                b[pos] = int(rng.integers(0, 256))
        m = tmp_path / f"damaged{k}.tflite"
        m.write_bytes(bytes(b))
        code, _, err = build_cli(capsys, m, tmp_path / f"o{k}", "--no-compile")
        if code != 0:
            line = one_error_line(err)
            assert code in (ModelError.exit_code, UnsupportedError.exit_code), line
        results.append(code)
    assert len(results) == 6


def test_hostile_tensor_name_is_sanitized(tmp_path, capsys):
    """A tensor name with a newline, a comment terminator and quotes cannot break the one-line
    messages or inject C: the project builds with -Werror and matches the reference."""
    model = mutate(relu, _hostile_name)(tmp_path)
    code, out, err = build_cli(capsys, model, tmp_path / "out")
    assert code == 0, err
    c = (tmp_path / "out" / "src" / "model.c").read_text()
    assert "pwned" not in c or "*_/ int pwned" in c
    assert "matches the TFLite reference" in out


def test_fuzz_regressions_replay():
    """Every input in tests/fuzz_corpus (inputs that once crashed the compiler) now gives a
    TinygenError (or compiles); no other exception."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
    from fuzz_flatbuffer import compile_front

    files = sorted(p for p in CORPUS.iterdir() if p.suffix == ".tflite")
    assert files, "tests/fuzz_corpus is empty"
    outcomes = {}
    for p in files:
        with deadline(TIMEOUT_S):
            try:
                compile_front(p.read_bytes())
                outcomes[p.name] = "ok"
            except TinygenError as e:
                outcomes[p.name] = type(e).__name__
                assert "\n" not in str(e), f"{p.name}: multi-line message {e}"
    assert len(outcomes) == len(files)


def test_safe_name():
    assert ir.safe_name("a\nb*/c") == "a_b*_/c"
    assert len(ir.safe_name("x" * 10_000)) == 120
