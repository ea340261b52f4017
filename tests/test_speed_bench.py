"""The speed benchmark's cycle-weighted counter (benchmarks/cycletrace.py).

A hand-made QEMU log checks the parser's rules (window, taken / not-taken branches, QEMU's
rewound and stopped blocks, the weights); the slow test runs the counter on the AD model's
firmware under QEMU and checks that its plain count equals the firmware's own instruction count
(SysTick under -icount) within 1%, and that the firmware's output is bit-exact.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import shared_model

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cycletrace  # noqa: E402

# A tg_selftest block calls tg_model_run: push; a loop (taken, then a block logged but stopped by
# the instruction budget, then not taken); a block rewound at its MMIO load; pop {r4, pc} returns.
LOG = """\
----------------
IN: tg_selftest
0x10000100:  f000 f87e  bl       #0x10000200

Trace 0: 0x7f0000000100 [00000000/10000100/00000050/ff020200] tg_selftest
----------------
IN: tg_model_run
0x10000200:  b510       push     {r4, lr}
0x10000202:  3801       subs     r0, #1
0x10000204:  d1fd       bne      #0x10000202

Trace 0: 0x7f0000000200 [00000000/10000200/00000050/ff020200] tg_model_run
----------------
IN: tg_model_run
0x10000202:  3801       subs     r0, #1
0x10000204:  d1fd       bne      #0x10000202

Trace 0: 0x7f0000000300 [00000000/10000202/00000050/ff020200] tg_model_run
Trace 0: 0x7f0000000300 [00000000/10000202/00000050/ff020200] tg_model_run
Stopped execution of TB chain before 0x7f0000000300 [10000202] tg_model_run
Trace 0: 0x7f0000000300 [00000000/10000202/00000050/ff020200] tg_model_run
----------------
IN: tg_model_run
0x10000206:  6818       ldr      r0, [r3]
0x10000208:  bd10       pop      {r4, pc}

Trace 0: 0x7f0000000400 [00000000/10000206/00000050/ff020200] tg_model_run
cpu_io_recompile: rewound execution of TB to 10000206
----------------
IN: tg_model_run
0x10000206:  6818       ldr      r0, [r3]

Trace 0: 0x7f0000000500 [00000000/10000206/00000050/ff038201] tg_model_run
----------------
IN: tg_model_run
0x10000208:  bd10       pop      {r4, pc}

Trace 0: 0x7f0000000600 [00000000/10000208/00000050/ff020200] tg_model_run
----------------
IN: tg_selftest
0x10000104:  2800       cmp      r0, #0

Trace 0: 0x7f0000000700 [00000000/10000104/00000050/ff020200] tg_selftest
Trace 0: 0x7f0000000200 [00000000/10000200/00000050/ff020200] tg_model_run
"""


@pytest.mark.unit
def test_parser_rules_on_a_handmade_log():
    r = cycletrace.parse_log(LOG.splitlines(keepends=True))
    # push, subs, bne (taken) | subs, bne (taken) | subs, bne (not taken) | ldr (after the rewind) | pop
    assert r.instructions == 9
    assert dict(r.classes) == {"multi": 2, "other": 3, "branch_taken": 2, "branch_not_taken": 1, "load": 1}
    # push 1+2, subs 1, bne 3 | 1 + 3 | 1 + 1 | ldr 2 | pop 1+2 + refill 2
    assert r.cycles["cortex-m33"] == 7 + 4 + 2 + 2 + 5
    assert r.cycles["cortex-m33-b2"] == 7 - 1 + 4 - 1 + 2 + 2 + 5 - 1


@pytest.mark.unit
def test_parser_refuses_a_log_without_the_window():
    with pytest.raises(RuntimeError, match="never entered tg_model_run"):
        cycletrace.parse_log(LOG.replace("tg_model_run", "other_fn").splitlines(keepends=True))
    cut = LOG[:LOG.index("IN: tg_selftest\n0x10000104")]
    with pytest.raises(RuntimeError, match="never left tg_model_run"):
        cycletrace.parse_log(cut.splitlines(keepends=True))


@pytest.mark.slow
@pytest.mark.qemu
@pytest.mark.toolchain
@pytest.mark.tf
def test_weighted_count_of_ad_agrees_with_the_firmware(tmp_path):
    from tinygen import boards, driver, project, qemu, toolchain

    for tool in ("arm-none-eabi-gcc", "qemu-system-arm"):
        if not toolchain.have_tool(tool):
            pytest.skip(f"{tool} not installed")
    board = boards.load_board("mps2-an505")
    buf = shared_model("ad01_int8.tflite").read_bytes()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    c = driver.compile_model(buf, "ad01_int8", "generated", board.arch_features, board_name=board.name,
                             with_cmsis=False)
    out = tmp_path / "ad"
    project.write(out, driver.board_project(c, board))
    info = toolchain.make_firmware(out, c.link, board=board)
    r = qemu.run_selftest(info.elf, board, timeout=300)
    assert r.ok and r.match and r.matched == r.vectors  # bit-exact with the TFLite reference
    w = cycletrace.weighted_run(info.elf, board, timeout=300)
    assert abs(w.instructions - r.instructions) <= 0.01 * r.instructions, (w.instructions, r.instructions)
    assert sum(w.classes.values()) == w.instructions
    assert w.classes["mul"] > 0.2 * w.instructions  # the generated FC kernel is SMLAD-bound
    assert w.instructions < w.cycles["cortex-m33"] < 3 * w.instructions
