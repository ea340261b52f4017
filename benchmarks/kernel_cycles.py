"""Cycle-weighted instruction counts of generated kernels vs CMSIS-NN, from a dynamic instruction-class
histogram taken under QEMU (mps2-an505, -icount shift=0).

    CMSIS_NN_PATH=../shared/deps/CMSIS-NN-7.0.0 PYTHONPATH=. .venv/bin/python benchmarks/kernel_cycles.py -k dw

The cases are kernel_bench.CASES (one firmware, tinygen.kernelgen.harness). QEMU logs every executed
translation block (``-d in_asm,exec,nochain``) of the generated functions, of the CMSIS-NN side
(``arm_*``, the tg_* backend wrappers, memcpy/memset) and of ``tg_profile_mark``, whose calls cut the
trace into the harness's layers (generated / cmsis-nn / reference / check; the reference is not
logged). Each block's instructions are classed and weighted per kernel_bench.CYCLE_WEIGHTS
(Cortex-M33 TRM-style: loads 2, LDRD 3, LDM/STM/PUSH/POP 1+n, taken branches 2, the rest 1).
A branch is taken when the next logged block does not start at its fall-through address.
This is an estimate of cycles, not a measurement (no pipeline, wait-state or bus model).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import kernel_bench as kb  # noqa: E402

from tinygen.kernelgen import harness  # noqa: E402

NN_FUNCS = re.compile(r"^(arm_|tg_(conv2d|dwconv2d|fully_connected|avgpool|maxpool|add|mul|mean)_s8$|memcpy$|memset$|"
                      r"status_to_tg|dims_ok|act_ok|axis_ok|scratch_ok|cdims|conv_common_ok|conv_cparams|dw_cparams|"
                      r"pool_ok|pool_cparams|same_dims|binary_direct_ok|requant_single|mve_)")
INSN = re.compile(r"^0x([0-9a-f]+):\s+((?:[0-9a-f]{4} ?){1,2})\s+(\S+)\s*(.*)$")
TRACE = re.compile(r"^Trace \d+: \S+ \[[0-9a-f]+/([0-9a-f]+)/")


def classify(mn: str, ops: str) -> tuple[str, int]:
    """(class, weighted cycles if not a branch) of one instruction."""
    m = mn.split(".")[0]
    w = kb.CYCLE_WEIGHTS
    if m in ("ldm", "ldmia", "ldmdb", "stm", "stmia", "stmdb", "push", "pop"):
        n = ops.count(",") + 1 if "{" in ops else 1
        n = len(re.findall(r"r\d+|sb|sl|fp|ip|lr|pc|sp", ops.split("{", 1)[-1])) if "{" in ops else n
        return "ldm/stm", 1 + n
    if m in ("ldrd",):
        return "ldrd", w["ldrd"]
    if m in ("strd",):
        return "strd", w["strd"]
    if m.startswith("ldr"):
        return "load", w["load"]
    if m.startswith("str"):
        return "store", w["store"]
    if m in ("b", "bl", "blx", "bx", "cbz", "cbnz") or (m.startswith("b") and len(m) == 3 and m != "bic"):
        return "branch", 1
    if m.startswith(("smla", "smul", "smmla", "smmul", "smuad", "smlsd", "mul", "mla", "mls", "umull", "smull",
                     "umlal", "smlal", "sdiv", "udiv")):
        return "mul", 6 if m in ("sdiv", "udiv") else w["mul"]
    return "other", w["other"]


def _symbols(elf: Path) -> list[tuple[int, int, str]]:
    out = subprocess.run(["arm-none-eabi-nm", "-S", str(elf)], capture_output=True, text=True, check=True).stdout
    syms = []
    for ln in out.splitlines():
        f = ln.split()
        if len(f) == 4 and f[2] in "Tt":
            syms.append((int(f[0], 16), int(f[1], 16), f[3]))
    return syms


def profile(elf: Path, gen_symbols: list[str], workdir: Path) -> list[dict]:
    """Per layer segment (4 per case: gen, nn, ref, check): instruction count, class histogram, weighted."""
    syms = _symbols(elf)
    gen = tuple(gen_symbols)   # a generated kernel and its static helpers share the symbol as prefix
    keep = [s for s in syms if s[2].startswith(gen) or NN_FUNCS.match(s[2]) or s[2] == "tg_profile_mark"]
    mark, mark_size = next((a, n) for a, n, name in syms if name == "tg_profile_mark")
    dfilter = ",".join(f"0x{a:x}+0x{n:x}" for a, n, _ in keep)
    log = workdir / "exec.log"
    cmd = ["qemu-system-arm", "-M", "mps2-an505", "-nographic", "-kernel", str(elf), "-semihosting-config",
           "enable=on,target=native", "-icount", "shift=0", "-d", "in_asm,exec,nochain", "-dfilter", dfilter,
           "-D", str(log)]
    subprocess.run(cmd, capture_output=True, timeout=1800, check=False)
    blocks: dict[int, list[tuple[int, int, str, str]]] = {}
    segs: list[Counter] = []
    seg = Counter()
    pending = None   # (last instruction of the previous block, its fall-through pc)
    cur: list | None = None
    with open(log, errors="replace") as fh:
        for ln in fh:
            m = INSN.match(ln)
            if m and cur is not None:
                size = 2 * len(m.group(2).split())
                cur.append((int(m.group(1), 16), size, m.group(3), m.group(4)))
                continue
            if ln.startswith("IN:"):
                cur = []
                continue
            if cur:
                blocks[cur[0][0]] = cur
                cur = None
            t = TRACE.match(ln)
            if not t:
                continue
            pc = int(t.group(1), 16)
            if pending is not None:
                taken = pc != pending
                seg["cycles"] += kb.CYCLE_WEIGHTS["branch"] if taken else 1
                seg["taken" if taken else "not taken"] += 1
                pending = None
            if mark <= pc < mark + mark_size:   # the marker itself is not counted
                if pc == mark:
                    segs.append(seg)
                    seg = Counter()
                continue
            for a, size, mn, ops in blocks.get(pc, []):
                cls, cyc = classify(mn, ops)
                seg[cls] += 1
                seg["insns"] += 1
                if cls == "branch":
                    pending = a + size
                else:
                    seg["cycles"] += cyc
    segs.append(seg)
    return segs[1:]   # segment i starts at the i-th mark


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-k", default="_dw", help="only cases whose name contains this (default: depthwise)")
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)
    picked = kb.selected_cases("kernel_cycles", args.k, args.seed)
    if picked is None:
        return 2
    sel, cases = picked
    with tempfile.TemporaryDirectory(prefix="tg_kcyc_") as tmp:
        res = harness.qemu_profile(cases, Path(tmp), "cmsis-nn", "mps2-an505")
        elf = Path(tmp) / "mps2-an505" / "build" / "firmware.elf"   # where qemu_profile builds it
        segs = profile(elf, [c.gen.symbol for c in cases], Path(tmp))
    print("estimated cycles from a dynamic instruction-class histogram (QEMU); instructions = QEMU proxy")
    hdr = (f"{'layer':14} {'gen ins':>9} {'gen cyc':>9} {'nn ins':>9} {'nn cyc':>9} {'ins ratio':>9} "
           f"{'cyc ratio':>9}  gen load/ldrd/ldm/mul/taken")
    print(hdr)
    print("-" * len(hdr))
    totals: dict[str, Counter] = {}
    for i, ((_, _, model, _, times), c, r) in enumerate(zip(sel, cases, res)):
        g, n = segs[4 * i], segs[4 * i + 1]
        t = totals.setdefault(model, Counter())
        for key, seg in (("g", g), ("n", n)):
            t[key + "i"] += times * seg["insns"]
            t[key + "c"] += times * seg["cycles"]
        print(f"{c.name:14} {g['insns']:>9,} {g['cycles']:>9,} {n['insns']:>9,} {n['cycles']:>9,} "
              f"{g['insns'] / max(n['insns'], 1):>9.3f} {g['cycles'] / max(n['cycles'], 1):>9.3f}  "
              f"{g['load']}/{g['ldrd']}/{g['ldm/stm']}/{g['mul']}/{g['taken']}  (QEMU gen {r['gen']:,} nn {r['nn']:,})")
    print()
    for model, t in totals.items():
        print(f"{model:9} these layers (x count): instructions {t['gi']:,} / {t['ni']:,} = {t['gi'] / t['ni']:.3f}, "
              f"weighted cycles {t['gc']:,} / {t['nc']:,} = {t['gc'] / t['nc']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
