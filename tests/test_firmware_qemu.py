"""Bare-metal firmware built with the rendered Makefile and run under QEMU.

A hand-made stand-in model (model.h / model.c / model_test.c written into the test's
temporary project, never into firmware/) exercises the runtime: startup, UART, cycle
counter, self-test, per-layer marks and the semihosting exit. Skipped when
arm-none-eabi-gcc, make or qemu-system-arm is missing, unless TINYGEN_REQUIRE_QEMU=1.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from tinygen import FIRMWARE
from tinygen.boards import firmware_sources, load_board, render_board_files
from tinygen.errors import BoardError, DeviceError
from tinygen.qemu import INSTRUCTIONS_LABEL, resume, run_selftest, start_pty, stop
from tinygen.quant import multiply_by_quantized_multiplier, quantize_multiplier
from tinygen.toolchain import make_firmware

_MISSING = [t for t in ("arm-none-eabi-gcc", "make", "qemu-system-arm") if shutil.which(t) is None]
if _MISSING and os.environ.get("TINYGEN_REQUIRE_QEMU") != "1":
    pytest.skip(f"{', '.join(_MISSING)} not installed (sudo apt-get install gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi qemu-system-arm make)", allow_module_level=True)

pytestmark = pytest.mark.slow
EMULATED = ["mps2-an505", "mps2-an386", "netduinoplus2"]
N_IN, N_HID, N_OUT = 64, 32, 16
HAVE_KERNELS = all((FIRMWARE / f).is_file() for f in ("tg_nn.h", "tg_kernels_ref.c"))


def _c_array(name: str, ctype: str, values: np.ndarray) -> str:
    return f"{ctype} {name}[{values.size}] = {{{', '.join(str(int(v)) for v in values.ravel())}}};\n"


def write_standin_model(dest: Path, *, use_kernels: bool, run_extra: str = "", wrong_expected: bool = False,
                        extra_decl: str = "", fc_kernel: bool = False, backend: str = "portable") -> dict[str, object]:
    """Three layers: an int8 dense layer (in C, or with ``fc_kernel`` the FULLY_CONNECTED kernel of the
    ``backend`` kernel set: tg_ref_fully_connected_s8 or tg_cmsis_fully_connected_s8),
    a ReLU table (tg_ref_lut_s8 when the kernel library exists) and a pairwise max.
    Returns the expected checksum and hash."""
    rng = np.random.default_rng(1234)
    x = rng.integers(-128, 128, N_IN, dtype=np.int64)
    w = rng.integers(-128, 128, (N_HID, N_IN), dtype=np.int64)
    if fc_kernel:
        mult, shift = quantize_multiplier(1.0 / 1000.0)
        acc = [int(multiply_by_quantized_multiplier(int(v), mult, shift)) for v in w @ x]
        r = np.maximum(np.clip(np.array(acc), -128, 127), 0)
        call = ("tg_cmsis_fully_connected_s8(&fc, in, hid, scratch)" if backend == "cmsis-nn"
                else "tg_ref_fully_connected_s8(&fc, in, hid)")
        dense = f"""    rc = {call};
    if (rc != 0) return rc;
"""
        fc_decl = f"""static const int32_t fc_mult[1] = {{{mult}}};
static const int32_t fc_shift[1] = {{{shift}}};
static const tg_fc_params_t fc = {{.batches = 1, .in_depth = {N_IN}, .out_depth = {N_HID}, .in_offset = 0,
    .out_offset = 0, .act_min = -128, .act_max = 127, .per_channel = 0, .mult = fc_mult, .shift = fc_shift,
    .weights = weights, .bias = 0}};
static int8_t scratch[1024];
"""
        init = ("if (tg_cmsis_fully_connected_s8_scratch(&fc) > (int32_t)sizeof scratch) return -2; "
                if backend == "cmsis-nn" else "(void)scratch; ")
    else:
        r = np.maximum(np.clip((w @ x) >> 10, -128, 127), 0)
        dense = f"""    for (int32_t j = 0; j < {N_HID}; j++) {{
        int32_t acc = 0;
        for (int32_t i = 0; i < {N_IN}; i++) acc += (int32_t)weights[j * {N_IN} + i] * in[i];
        acc >>= 10;
        hid[j] = (int8_t)(acc < -128 ? -128 : acc > 127 ? 127 : acc);
    }}
"""
        fc_decl = init = ""
    y = np.maximum(r[0::2], r[1::2]).astype(np.int8)
    lut = np.array([max(v - 128, 0) for v in range(256)], dtype=np.int64)
    digest = hashlib.sha256(x.tobytes() + w.tobytes()).hexdigest()[:16]
    (dest / "model.h").write_text(f"""/* stand-in model for tests */
#ifndef MODEL_H
#define MODEL_H
#include <stdint.h>
#define TG_MODEL_HASH "{digest}"
#define TG_MODEL_NAME "standin"
#define TG_INPUT_SIZE {N_IN}u
#define TG_OUTPUT_SIZE {N_OUT}u
#define TG_ARENA_SIZE {N_IN + N_HID + N_OUT}u
#define TG_NUM_LAYERS 3
extern const char *const tg_layer_names[TG_NUM_LAYERS];
int32_t tg_model_init(void);
int8_t *tg_model_input(void);
int8_t *tg_model_output(void);
void tg_model_set_input(const int8_t *in);
void tg_model_get_output(int8_t *out);
int32_t tg_model_run(void);
void tg_profile_mark(int32_t layer);
#endif
""")
    if use_kernels:
        relu = f"    rc = tg_ref_lut_s8(relu_lut, hid, hid, {N_HID});\n    if (rc != 0) return rc;\n"
    else:
        relu = f"    for (int32_t i = 0; i < {N_HID}; i++) hid[i] = relu_lut[(uint8_t)(hid[i] + 128)];\n"
    (dest / "model.c").write_text(f"""/* stand-in model for tests */
#include "model.h"
#include "tg_uart.h"
{'#include "tg_nn.h"' if use_kernels else ''}
#ifdef TG_PROFILE
#define MARK(i) tg_profile_mark(i)
#else
#define MARK(i) ((void)0)
#endif
const char *const tg_layer_names[TG_NUM_LAYERS] = {{"dense", "relu", "maxpair"}};
static {_c_array("weights", "const int8_t", w)}static {_c_array("relu_lut", "const int8_t", lut)}{extra_decl}{fc_decl}
static int8_t arena[TG_ARENA_SIZE];
static int8_t *const in = arena;
static int8_t *const hid = arena + {N_IN};
static int8_t *const out = arena + {N_IN + N_HID};
static int32_t ready;
int32_t tg_model_init(void) {{ {init}ready = 1; return 0; }}
int8_t *tg_model_input(void) {{ return in; }}
int8_t *tg_model_output(void) {{ return out; }}
void tg_model_set_input(const int8_t *src) {{ for (uint32_t i = 0; i < TG_INPUT_SIZE; i++) in[i] = src[i]; }}
void tg_model_get_output(int8_t *dst) {{ for (uint32_t i = 0; i < TG_OUTPUT_SIZE; i++) dst[i] = out[i]; }}
int32_t tg_model_run(void)
{{
    int32_t rc = 0;
    if (!ready) return -1;
    MARK(0);
{dense}    MARK(1);
{relu}    MARK(2);
    for (int32_t k = 0; k < {N_OUT}; k++) out[k] = hid[2 * k] > hid[2 * k + 1] ? hid[2 * k] : hid[2 * k + 1];
{run_extra}    MARK(3);
    return rc;
}}
""")
    expected = y.copy()
    if wrong_expected:
        expected[3] ^= 1
    (dest / "model_test.c").write_text(
        '#include "model.h"\nconst uint32_t tg_test_vectors = 1u;\n'
        + _c_array("tg_test_input", "const int8_t", x).replace("[", "[1][", 1).replace("= {", "= {{").replace("};", "}};")
        + _c_array("tg_test_expected", "const int8_t", expected).replace("[", "[1][", 1).replace("= {", "= {{")
        .replace("};", "}};"))
    return {"hash": digest, "crc32": zlib.crc32(y.tobytes())}


def make_project(root: Path, board_name: str, backend: str = "portable",
                 **model_kw: object) -> tuple[Path, dict[str, object]]:
    board = load_board(board_name)
    project = root / board_name
    (project / "src").mkdir(parents=True)
    for rel, text in render_board_files(board, backend=backend).items():
        (project / rel).write_text(text)
    for src in firmware_sources(backend):
        shutil.copy(src, project / "src" / src.name)
    facts = write_standin_model(project / "src", use_kernels=HAVE_KERNELS, backend=backend, **model_kw)  # type: ignore[arg-type]
    return project, facts


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One portable-backend build per emulated board (module-scoped: built once)."""
    root = tmp_path_factory.mktemp("fw")
    out = {}
    for name in EMULATED:
        project, facts = make_project(root, name)
        info = make_firmware(project, "portable", board=load_board(name))
        out[name] = (project, facts, info)
    return out


def read_to_verdict(s, serial) -> list[bytes]:
    """Stripped serial lines up to TG_OK / TG_FAIL, or until silence or the port closes (QEMU
    exits through semihosting right after the verdict)."""
    lines: list[bytes] = []
    try:
        while not lines or lines[-1] not in (b"TG_OK", b"TG_FAIL"):
            line = s.readline()
            if not line:
                break
            lines.append(line.strip())
    except serial.SerialException:
        pass
    return lines


@pytest.mark.parametrize("name", EMULATED)
def test_selftest_passes_under_qemu(built, name):
    project, facts, info = built[name]
    board = load_board(name)
    assert info.elf.is_file() and (project / "build" / "firmware.bin").is_file()
    assert (project / "build" / "firmware.hex").is_file()
    assert 0 < info.flash_bytes <= board.flash_size and 0 < info.ram_bytes <= board.ram_size
    assert info.stack_reserved == board.stack_size
    assert info.weights_bytes >= N_HID * N_IN and info.arena_bytes >= N_IN + N_HID + N_OUT
    assert 0 < info.max_stack_frame < board.stack_size
    r = run_selftest(info.elf, board, timeout=30)
    assert r.ok and r.match and r.exit_code == 0, r.output
    assert "TG_OK" in r.output
    assert (r.board, r.model_hash, r.clock_hz, r.counter) == (name, facts["hash"], board.clock_hz, "systick")
    assert r.checksum == facts["crc32"]
    assert r.cycles > 0 and r.instructions is not None and r.instructions > 0
    assert r.instructions_label == INSTRUCTIONS_LABEL
    assert [(ly.index, ly.name) for ly in r.layers] == [(0, "dense"), (1, "relu"), (2, "maxpair")]
    assert sum(ly.cycles for ly in r.layers) <= r.cycles
    assert r.layers[0].cycles > r.layers[2].cycles      # 2048 MACs vs 16 compares
    assert r.stack_used is not None and 0 < r.stack_used < board.stack_size


def test_instruction_proxy_agrees_across_machines(built):
    """The same C code on three machines with different SysTick rates gives about the same
    instruction count once ticks are converted (M33 vs M4 code differs a little)."""
    counts = [run_selftest(built[n][2].elf, load_board(n), timeout=30).layers[0].instructions for n in EMULATED]
    assert max(counts) < 1.2 * min(counts), counts                  # type: ignore[type-var, operator]


def test_mismatch_reports_fail(tmp_path):
    project, _ = make_project(tmp_path, "mps2-an505", wrong_expected=True)
    info = make_firmware(project, "portable")
    r = run_selftest(info.elf, load_board("mps2-an505"), timeout=30)
    assert not r.ok and not r.match and r.exit_code == 1
    assert "TG_FAIL" in r.output and "TG_MISMATCH vector=0 index=3" in r.output


def test_fault_prints_and_exits(tmp_path):
    project, _ = make_project(tmp_path, "mps2-an505", run_extra='    __asm volatile("udf #0");\n')
    info = make_firmware(project, "portable")
    with pytest.raises(DeviceError, match=r"HardFault \(exception 3\) at pc 0x[0-9a-f]{8}.*UNDEFINSTR"):
        run_selftest(info.elf, load_board("mps2-an505"), timeout=30)
    r = subprocess.run(["qemu-system-arm", "-M", "mps2-an505", "-nographic", "-kernel", str(info.elf),
                        "-semihosting-config", "enable=on,target=native"], capture_output=True, timeout=30)
    assert r.returncode == 3 and b"TG_FAULT" in r.stdout


def test_hang_times_out(tmp_path):
    project, _ = make_project(tmp_path, "mps2-an386", run_extra="    for (;;) { __asm volatile(\"nop\"); }\n")
    info = make_firmware(project, "portable")
    t0 = time.monotonic()
    with pytest.raises(DeviceError, match="did not finish within 2 s"):
        run_selftest(info.elf, load_board("mps2-an386"), timeout=2)
    assert time.monotonic() - t0 < 10


def test_model_too_big_for_flash(tmp_path):
    big = "static const int8_t huge[1200000] = {1, 2, 3};\n"
    project, _ = make_project(tmp_path, "netduinoplus2", extra_decl=big,
                              run_extra="    out[0] = (int8_t)(out[0] + huge[(uint8_t)in[0] * 4000]);\n")
    with pytest.raises(BoardError) as e:
        make_firmware(project, "portable", board=load_board("netduinoplus2"))
    msg = str(e.value)
    assert "FLASH overflowed" in msg and "netduinoplus2" in msg and "weights 12" in msg


def test_pty_serial(built):
    serial = pytest.importorskip("serial")
    proc, port = start_pty(built["mps2-an505"][2].elf, load_board("mps2-an505"), paused=True)
    try:
        assert port.startswith("/dev/pts/")
        s = serial.Serial(port, 115200, timeout=5)
        resume(proc)
        lines = read_to_verdict(s, serial)
        s.close()
        assert lines and lines[0].startswith(b"TG_BOOT ") and lines[-1] == b"TG_OK", lines
    finally:
        stop(proc)


@pytest.mark.skipif(not HAVE_KERNELS, reason="firmware/tg_kernels_ref.c not there yet")
def test_portable_kernel_fc_matches(tmp_path):
    project, facts = make_project(tmp_path, "mps2-an386", fc_kernel=True)
    info = make_firmware(project, "portable")
    r = run_selftest(info.elf, load_board("mps2-an386"), timeout=30)
    assert r.ok and r.match and r.checksum == facts["crc32"], r.output


def _cmsis_nn_path() -> Path | None:
    p = os.environ.get("CMSIS_NN_PATH")
    return Path(p) if p and (Path(p) / "Include" / "arm_nnfunctions.h").is_file() else None


@pytest.mark.skipif(_cmsis_nn_path() is None or not (FIRMWARE / "tg_backend_cmsis.c").is_file(),
                    reason="CMSIS_NN_PATH (CMSIS-NN v7.0.0) not set, or no firmware/tg_backend_cmsis.c")
def test_cmsis_nn_backend_under_qemu(tmp_path):
    """The Makefile's cmsis-nn path: CMSIS-NN Source/ (no f16/f32) built for the M33 with DSP."""
    project, facts = make_project(tmp_path, "mps2-an505", backend="cmsis-nn", fc_kernel=True)
    info = make_firmware(project, "cmsis-nn", board=load_board("mps2-an505"), cmsis_nn_path=_cmsis_nn_path(),
                         cache_nn=False)  # the Makefile builds CMSIS-NN Source/ itself
    assert any((project / "build" / "obj-cmsis-nn" / "cmsis-nn").rglob("arm_fully_connected_s8.o"))
    r = run_selftest(info.elf, load_board("mps2-an505"), timeout=60)
    assert r.ok and r.match and r.checksum == facts["crc32"], r.output


def test_uart_getc_timeout_over_pty(tmp_path):
    """tg_uart_getc_timeout: a byte sent by the host arrives; with nothing sent it times out."""
    serial = pytest.importorskip("serial")
    extra = """    {
        int32_t ch = -1, got = tg_uart_getc_timeout(&ch, 20000u);
        tg_uart_print("TG_GETC "); tg_uart_print_i32(got); tg_uart_print(" "); tg_uart_print_i32(ch);
        got = tg_uart_getc_timeout(&ch, 5u);
        tg_uart_print(" "); tg_uart_print_i32(got); tg_uart_print("\\r\\n");
    }
"""
    project, _ = make_project(tmp_path, "netduinoplus2", run_extra=extra)
    info = make_firmware(project, "portable")
    proc, port = start_pty(info.elf, load_board("netduinoplus2"), paused=True)
    try:
        s = serial.Serial(port, 115200, timeout=10)
        resume(proc)
        assert s.readline().startswith(b"TG_BOOT ")
        s.write(b"x")
        lines = read_to_verdict(s, serial)
        s.close()
        assert b"TG_GETC 0 120 -1" in lines, lines
    finally:
        stop(proc)
