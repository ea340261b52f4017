"""Robustness round 2 (issue 15): no undefined behaviour reaches the firmware, and no traceback.

Extreme quantization scale ratios on CONV/DEPTHWISE/FC are refused before any C is written;
every traceback of the adversarial round is one ``tinygen: error:`` line; an unexpected exception
is one ``internal error`` line; SIGTERM/SIGHUP unwind like Ctrl-C. Models are generated in the
tests (tests/opnets.py + the TFLite schema's object API). The bench host is in
test_robustness2_bench.py, calibration files and output folders in test_robustness2_files.py.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from modeledit import constant_graph_input, mutate
from modeledit import set_quant as _quant
from opnets import make_opnet
from test_robustness import build_cli, conv, fc, one_error_line

from tinygen import cli, quant
from tinygen.errors import UnsupportedError


def dw() -> bytes:
    return make_opnet("dwconv2d", in_shape=(7, 7, 3), kernel=(3, 3), padding="same")


def _in(sg):
    return sg.operators[0].inputs[0]


def _out(sg):
    return sg.operators[0].outputs[0]


# ---- 1. extreme scale ratios on CONV / DEPTHWISE / FC ------------------------------------------

EXTREME = [
    ("fc-input-scale-1e30", fc, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "FULLY_CONNECTED"),
    ("fc-output-scale-1e-30", fc, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "FULLY_CONNECTED"),
    ("conv-input-scale-1e30", conv, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "CONV_2D"),
    ("conv-output-scale-1e-30", conv, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "CONV_2D"),
    ("dw-input-scale-1e30", dw, lambda m, sg: _quant(sg, _in(sg), scale=[1e30]), "DEPTHWISE_CONV_2D"),
    ("dw-output-scale-1e-30", dw, lambda m, sg: _quant(sg, _out(sg), scale=[1e-30]), "DEPTHWISE_CONV_2D"),
    # a gain of 2^28: representable as a multiplier, but the shifted accumulator overflows int32
    ("fc-output-scale-2^-28", fc, lambda m, sg: _quant(sg, _out(sg), scale=[sg.tensors[_out(sg)].quantization.scale[0]
                                                                             / (1 << 28)]), "FULLY_CONNECTED"),
]


@pytest.mark.parametrize("case_id, base, edit, op", EXTREME, ids=[c[0] for c in EXTREME])
@pytest.mark.parametrize("board", ["host", "mps2-an505"])
def test_extreme_scale_ratio_refused(case_id, base, edit, op, board, tmp_path, capsys):
    """Refused before any C is written, on every board (a board build with --no-compile too)."""
    model = mutate(base, edit)(tmp_path)
    out = tmp_path / "out"
    code = cli.main(["build", str(model), "--board", board, "--backend", "portable", "-o", str(out), "--no-compile"])
    line = one_error_line(capsys.readouterr().err)
    assert code == UnsupportedError.exit_code, line
    assert op in line and "scale" in line and "overflow" in line or "2^30" in line, line
    assert not out.exists()


def test_moderate_gain_still_compiles_bit_exact(tmp_path, capsys):
    """A multiplier of 8 (shift 4) is within the int32 range: accepted and bit-exact."""
    model = mutate(fc, lambda m, sg: _quant(sg, _out(sg), scale=[sg.tensors[_out(sg)].quantization.scale[0] / 8]))(tmp_path)
    code, out, err = build_cli(capsys, model, tmp_path / "out")
    assert code == 0, err
    assert "matches the TFLite reference" in out


def test_requant_check_names_channel_and_cause():
    w = np.full((2, 4), 127, np.int8)
    quant.check_accumulator_requant(w, (1,), 0, None, 0.02, [0.01, 0.01], 0.05, 0)
    with pytest.raises(ValueError, match="channel 1: .*accumulator .* overflows int32"):
        quant.check_accumulator_requant(w, (1,), 0, np.array([0, 2**31 - 100]), 0.02, [0.01, 0.01], 0.05, 0)
    with pytest.raises(ValueError, match="shifted left by 23"):
        quant.check_accumulator_requant(w, (1,), 0, None, 0.02, [0.01, 0.01], 0.05 / 2**30, 0)
    with pytest.raises(ValueError, match="not a finite"):
        quant.quantize_multiplier(float("inf"), strict=True)
    assert quant.quantize_multiplier(1e-40, strict=True) == (0, 0)  # flushed to zero, as TFLite


# ---- 5. every traceback of the adversarial round is one error line ------------------------------


def _inplace_graph_input(m, sg):
    """op #0 writes the graph input in place while op #1 reads it."""
    import copy

    op0 = sg.operators[0]
    op1 = copy.deepcopy(op0)
    op0.outputs = [0]
    op1.inputs, op1.outputs = [0], [1]
    sg.operators = [op0, op1]


def _second_reader(m, sg):
    """A valid graph: the input feeds two RELUs, two graph outputs (must compile, bit-exact)."""
    import copy

    op1, t2 = copy.deepcopy(sg.operators[0]), copy.deepcopy(sg.tensors[1])
    t2.name = b"second"
    sg.tensors.append(t2)
    op1.outputs = [len(sg.tensors) - 1]
    sg.operators.append(op1)
    sg.outputs = [1, len(sg.tensors) - 1]


def _set_shape(shape):
    def edit(m, sg):
        for t in sg.tensors:
            t.shape = list(shape)
    return edit


def _relu():
    return make_opnet("relu", in_shape=(4, 4, 5))


MODEL_TRACEBACKS = [
    ("shape-wraps-int64", mutate(_relu, _set_shape([1, 2**31 - 1, 2**31 - 1, 4])), 2, ["too big", "2147483647"]),
    ("op-writes-graph-input", mutate(_relu, _inplace_graph_input), 2, ["writes the graph input"]),
    ("name-not-utf8", mutate(_relu, lambda m, sg: setattr(sg.tensors[0], "name", b"in\xff\xfe")), 2,
     ["not valid UTF-8", "0xff"]),
    ("graph-input-constant", mutate(_relu, constant_graph_input), 2, ["graph input", "constant data"]),
    # found by fuzz/hostile_sweep.py: the TFLite reference interpreter kills the process on a negative beta
    ("softmax-beta-negative", mutate(lambda: make_opnet("softmax", in_shape=(1, 1, 10)),
                                     lambda m, sg: setattr(sg.operators[0].builtinOptions, "beta", -1.0)), 3,
     ["SOFTMAX", "beta -1.0 must be a positive number"]),
    # beta 0.0 is the schema default, so the field is left out: TFLite reads 0.0 (and aborts), tinygen read 1.0
    ("softmax-beta-zero", mutate(lambda: make_opnet("softmax", in_shape=(1, 1, 10)),
                                 lambda m, sg: setattr(sg.operators[0].builtinOptions, "beta", 0.0)), 3,
     ["SOFTMAX", "beta 0.0 must be a positive number"]),
]


@pytest.mark.parametrize("case_id, builder, code, words", MODEL_TRACEBACKS, ids=[c[0] for c in MODEL_TRACEBACKS])
def test_former_tracebacks(case_id, builder, code, words, tmp_path, capsys):
    got, _, err = build_cli(capsys, builder(tmp_path), tmp_path / "out", "--no-compile")
    line = one_error_line(err)
    print(f"\n{case_id}: exit {got}: {line}")
    assert got == code, line
    for w in words:
        assert w in line, line
    assert not (tmp_path / "out").exists()


def test_input_read_by_two_ops_is_bit_exact(tmp_path, capsys):
    code, out, err = build_cli(capsys, mutate(_relu, _second_reader)(tmp_path), tmp_path / "out")
    assert code == 0 and "matches the TFLite reference" in out, err


def test_unexpected_exception_is_one_internal_error_line(tmp_path, capsys, monkeypatch):
    """A bug (any non-tinygen exception) is one line naming the type, message and stage; exit 70."""
    from tinygen import errors, plan

    def broken(g):
        return None[0]

    monkeypatch.setattr(plan, "schedule", broken)
    (tmp_path / "fc.tflite").write_bytes(fc())
    code = cli.main(["build", str(tmp_path / "fc.tflite"), "--board", "host", "-o", str(tmp_path / "o"), "--no-compile"])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert code == errors.INTERNAL_EXIT == 70
    assert err.startswith("tinygen: internal error (please report): TypeError:") and "test_robustness2.broken" not in err
    assert "in stage tinygen.driver._schedule" in err, err  # the driver stage that called the broken function


def _spawn(args, tmp_path):
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen([sys.executable, "-m", "tinygen.cli", *args], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_sigterm_during_a_write_leaves_no_temp_folder(tmp_path):
    """SIGTERM unwinds like Ctrl-C: the half-written .p.new-* folder is removed, exit 128 + 15."""
    import signal

    (tmp_path / "fc.tflite").write_bytes(fc())
    p = _spawn(["build", "fc.tflite", "--board", "host", "-o", "p", "--no-compile"], tmp_path)
    # wait until the project is being written (or written), then terminate
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        if any(e.name.startswith(".p.") for e in os.scandir(tmp_path)):
            break
        time.sleep(0.005)
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=60)
    assert "Traceback" not in err, err
    assert p.returncode in (0, 128 + signal.SIGTERM), (p.returncode, err)
    assert sorted(e.name for e in os.scandir(tmp_path) if e.name.startswith(".")) == []


def test_sigterm_sighup_are_like_ctrl_c(monkeypatch, capsys):
    """In-process: SIGTERM and SIGHUP raise errors.Terminated (a KeyboardInterrupt, so every cleanup
    that handles Ctrl-C runs: QEMU of a foreground flash is stopped), exit 128 + N, one line."""
    import signal

    from tinygen import errors

    for sig in (signal.SIGTERM, signal.SIGHUP):
        def cmd(a, sig=sig):
            os.kill(os.getpid(), sig)
            time.sleep(5)
            return 0

        ap = cli.parser()
        monkeypatch.setattr(cli, "parser", lambda: ap)
        ap._subparsers._group_actions[0].choices["run"].set_defaults(func=cmd)
        assert issubclass(errors.Terminated, KeyboardInterrupt)
        code = cli.main(["run", "nowhere"])
        assert code == 128 + sig
        assert capsys.readouterr().err.strip() == f"tinygen: stopped by {signal.Signals(sig).name}"
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored after the command


def _children(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.fixture(scope="module")
def fc_board_project(tmp_path_factory):
    import shutil

    missing = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")
    d = tmp_path_factory.mktemp("flash")
    (d / "fc.tflite").write_bytes(fc())
    assert cli.main(["build", str(d / "fc.tflite"), "--board", "mps2-an505", "--backend", "portable",
                     "-o", str(d / "proj")]) == 0
    return d / "proj"


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_foreground_flash_stops_qemu_on_signal(sig, fc_board_project, tmp_path):
    import signal

    p = _spawn(["flash", str(fc_board_project)], tmp_path)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "serial port" not in line and time.monotonic() < deadline:
            line = p.stdout.readline()
            assert line or p.poll() is None, p.stderr.read()
        assert "serial port" in line
        qemus = _children(p.pid)
        assert qemus and all(_alive(q) for q in qemus)
        p.send_signal(getattr(signal, sig))
        p.communicate(timeout=30)
        assert "Traceback" not in (p.stderr.read() if not p.stderr.closed else "")
        gone = time.monotonic() + 10  # a loaded machine (CI's 2 cores) may take a moment to reap it
        while any(_alive(q) for q in qemus) and time.monotonic() < gone:
            time.sleep(0.1)
        assert not any(_alive(q) for q in qemus), "QEMU outlived tinygen flash"
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


# ---- 6. no requantization shift of -31 reaches CMSIS-NN -----------------------------------------


def _tiny_channel(m, sg):
    """Channel 0 of the conv gets a real multiplier of 1.5 * 2^-32 (shift -31)."""
    op = sg.operators[0]
    sx = sg.tensors[op.inputs[0]].quantization.scale[0]
    sy = sg.tensors[op.outputs[0]].quantization.scale[0]
    q = sg.tensors[op.inputs[1]].quantization
    q.scale = [1.5 * 2.0**-32 * sy / sx] + [float(s) for s in q.scale[1:]]


def test_shift_minus_31_channel_is_flushed(tmp_path):
    """Bit-exact (the channel is 0 + zero point either way) and clean under UBSan with CMSIS-NN,
    whose arm_nn_divide_by_power_of_two(x, 31) computes 1 << 31 in int32 (undefined)."""
    import sys

    from tinygen import driver, ops

    buf = mutate(conv, _tiny_channel)(tmp_path).read_bytes()
    c = driver.compile_model(buf, "tiny", "portable")
    conv_op = next(op for op in c.graph.ops if op.kind == "CONV_2D")
    low = ops.lower(c.graph, conv_op)
    assert (int(low.arrays["mult"][0]), int(low.arrays["shift"][0])) == (0, 0)
    assert -31 not in low.arrays["shift"].tolist() and low.arrays["mult"][1:].all()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fuzz"))
    import run_sanitizers as rs

    os.environ.update({k: v for k, v in rs.SAN_ENV.items() if k not in os.environ})
    backends = ["portable"] + (["cmsis-nn"] if os.environ.get("CMSIS_NN_PATH") else [])
    for b in backends:  # no CMSIS waiver: a conv-only model needs none
        assert rs.check(buf, f"tiny-{b}", b, tmp_path, n_inputs=8, cflags=rs.SAN_CFLAGS) == "ok"
