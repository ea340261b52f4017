"""`tinygen report PROJECT`: one self-contained HTML page about a built project.

Reads the project's ``manifest.json`` (arena buffers, layers), and when present
``bench.json`` (``tinygen bench``), ``run.json`` (``tinygen report --run`` boots the
emulated board and writes it), ``optimize.json`` (``tinygen build --rewrite/--prune/--qat``)
and ``build/firmware.elf`` (sizes). Charts are matplotlib (Agg) PNGs embedded as base64
data URIs, so the page is one file with no network access.
"""

from __future__ import annotations

import base64
import html
import io
import json
import shutil
import subprocess
from pathlib import Path

from . import TEMPLATES, __version__
from .errors import InputError, OutputError

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7", "#9c755f")


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def overlaps(bufs: list[dict]) -> list[tuple[int, int, int, int, int]]:
    """(input buffer, output buffer, step, first shared byte, end) for each tensor whose bytes an op's
    output takes while that op still reads it (access-contract overlaps: the input's last step is the
    output's first). Scratch is left out (an output on its own kernel's scratch is not a tensor overlap).

    >>> overlaps([{"name": "a", "offset": 0, "bytes": 64, "start": 0, "end": 1},
    ...           {"name": "b", "offset": 32, "bytes": 64, "start": 1, "end": 2}])
    [(0, 1, 1, 32, 64)]
    """
    out = []
    for i, a in enumerate(bufs):
        for j, b in enumerate(bufs):
            if i == j or a["end"] != b["start"] or a["name"].startswith("scratch") or b["name"].startswith("scratch"):
                continue
            lo, hi = max(a["offset"], b["offset"]), min(a["offset"] + a["bytes"], b["offset"] + b["bytes"])
            if lo < hi:
                out.append((i, j, a["end"], lo, hi))
    return out


def arena_timeline(man: dict) -> str:
    """Tensors as boxes: x = execution steps they are live, y = arena bytes they occupy. Where an op
    writes its output over the consumed part of a dying input (access contracts), that step is split:
    the input's box ends in its first half, the output's starts in its second half, and the shared
    bytes are outlined in red (they hold the input, then the output, during that one op)."""
    plt = _plt()
    from matplotlib.patches import Rectangle

    bufs = man.get("buffers", [])
    steps = man.get("num_ops", 1) + 1
    ov = overlaps(bufs)
    ends_early = {i for i, _, _, _, _ in ov}
    starts_late = {j for _, j, _, _, _ in ov}
    fig, ax = plt.subplots(figsize=(11, 5.5))
    for i, b in enumerate(bufs):
        scratch = b["name"].startswith("scratch")
        color = "#bab0ac" if scratch else PALETTE[i % len(PALETTE)]
        x0 = b["start"] + (0.5 if i in starts_late else 0.0)
        x1 = b["end"] + (0.5 if i in ends_early else 1.0)
        ax.add_patch(Rectangle((x0, b["offset"]), x1 - x0, b["bytes"], facecolor=color,
                               edgecolor="black", linewidth=0.6, alpha=0.85, hatch="//" if scratch else None))
        if not scratch and b["bytes"] >= 0.06 * man["arena_bytes"]:
            ax.text(x0 + 0.1, b["offset"] + b["bytes"] / 2, f"{b['name'][:28]} ({b['bytes']:,} B)",
                    fontsize=7, va="center", clip_on=True)
    for _, _, step, lo, hi in ov:
        ax.add_patch(Rectangle((step, lo), 1.0, hi - lo, fill=False, edgecolor="red", linewidth=1.2, linestyle=":"))
    ax.axhline(man["arena_bytes"], color="red", linestyle="--", linewidth=1)
    ax.text(0, man["arena_bytes"], f" arena {man['arena_bytes']:,} B", color="red", va="bottom", fontsize=8)
    ax.set_xlim(0, steps)
    ax.set_ylim(0, man["arena_bytes"] * 1.08 or 1)
    ax.set_xlabel("execution step (op)")
    ax.set_ylabel("arena offset (bytes)")
    shared = f"; {len(ov)} outputs written over their dying input (red: shared bytes)" if ov else ""
    ax.set_title(f"Arena plan ({man.get('arena_strategy', '')}): tensors over time; hatched = kernel scratch{shared}",
                 fontsize=9)
    return _png(fig)


def layer_latency(man: dict, bench: dict | None, run: dict | None, board) -> tuple[list[float] | None, str]:
    """Per-layer latency in ms and where it came from (bench.json, run.json or nothing)."""
    n = len(man.get("layers", []))
    for src, data in (("bench.json", bench), ("run.json", run)):
        if not data or not isinstance(data.get("layers"), list) or len(data["layers"]) != n:
            continue
        clock = data.get("clock_hz") or (board.clock_hz if board else None)
        out = []
        for ly in data["layers"]:
            if "ms" in ly:
                out.append(float(ly["ms"]))
            elif "us" in ly:
                out.append(float(ly["us"]) / 1e3)
            elif ly.get("instructions") is not None and clock:  # QEMU: instructions, 1 per cycle
                out.append(1e3 * float(ly["instructions"]) / clock)
            elif "cycles" in ly and clock and src == "bench.json":  # a real board's cycle counter
                out.append(1e3 * float(ly["cycles"]) / clock)  # (run.json's "cycles" are SysTick ticks)
            else:
                out = []
                break
        if out:
            how = "measured on the board" if src == "bench.json" else \
                "QEMU instruction counts at the board clock (1 instruction = 1 cycle: an estimate)"
            return out, f"{src}: {how}"
    return None, "no bench.json or run.json in the project: run `tinygen bench` or `tinygen report --run`"


def layer_chart(man: dict, latency: list[float] | None) -> str:
    plt = _plt()
    layers = man.get("layers", [])
    labels = [f"{ly['index']} {ly['op'][:14]}" for ly in layers]
    rows = 2 if latency else 1
    fig, axes = plt.subplots(rows, 1, figsize=(11, 3.2 * rows + 0.3 * len(layers) / 4), squeeze=False)
    ax = axes[0][0]
    ax.barh(range(len(layers)), [ly["macs"] for ly in layers], color=PALETTE[0])
    ax.set_yticks(range(len(layers)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("MACs")
    ax.set_title(f"MACs per layer (total {man.get('macs', 0):,})")
    if latency:
        ax = axes[1][0]
        ax.barh(range(len(layers)), latency, color=PALETTE[1])
        ax.set_yticks(range(len(layers)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_xlabel("ms")
        ax.set_title(f"latency per layer (total {sum(latency):.2f} ms)")
    fig.tight_layout()
    return _png(fig)


def history_chart(opt: dict) -> str:
    plt = _plt()
    steps = opt["steps"]
    names = [s["step"] for s in steps]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    acc_f = [s.get("float_acc") for s in steps]
    acc_q = [s.get("int8_acc") for s in steps]
    axes[0].plot(names, acc_f, "o-", label="float")
    if any(a is not None for a in acc_q):
        axes[0].plot(names, [a if a is not None else float("nan") for a in acc_q], "s-", label="int8")
    axes[0].set_title("accuracy")
    axes[0].legend(fontsize=7)
    axes[1].bar(names, [s.get("macs", 0) for s in steps], color=PALETTE[0])
    axes[1].set_title("MACs")
    axes[2].bar(names, [s.get("params", 0) for s in steps], color=PALETTE[2])
    axes[2].set_title("parameters")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    return _png(fig)


def gauges_chart(rows: list[tuple[str, int, int]]) -> str:
    """Horizontal gauges: (label, used, capacity)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(11, 0.9 + 0.7 * len(rows)))
    for i, (label, used, cap) in enumerate(rows):
        frac = used / cap if cap else 0
        ax.barh(i, 1.0, color="#e6e6e6", edgecolor="black", linewidth=0.5)
        ax.barh(i, min(frac, 1.0), color="#e15759" if frac > 1 else ("#f28e2b" if frac > 0.8 else "#59a14f"))
        ax.text(min(frac, 1.0) + 0.01, i, f"{used:,} / {cap:,} B ({100 * frac:.1f}%)", va="center", fontsize=8)
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xlim(0, 1.35)
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_title("memory against the board")
    return _png(fig)


def _elf_sizes(project: Path) -> dict | None:
    elf = project / "build" / "firmware.elf"
    size = shutil.which("arm-none-eabi-size")
    if not elf.is_file() or size is None:
        return None
    from . import toolchain

    r = subprocess.run([size, "-A", str(elf)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return None
    secs = toolchain.parse_size_a(r.stdout)
    text = sum(n for s, n in secs.items() if s in toolchain.FLASH_SECTIONS and s != ".data")
    data, bss, stack = secs.get(".data", 0), secs.get(".bss", 0), secs.get(".tg_stack", 0)
    return {"flash": text + data, "ram": data + bss + stack, "stack": stack}


def _num(v, fmt="{:,}") -> str:
    return "-" if v is None else fmt.format(v)


def _metric(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4f}" if abs(v) >= 0.01 or v == 0 else f"{v:.4g}"


def optimize_view(opt: dict | None) -> dict | None:
    """The optimize section's tables from optimize.json (``tinygen.optimize.commands.history``):
    summary (data used or synthetic, seeds, board, budget, what shipped), every step with the
    compiler's cost, the PTQ-vs-QAT pair, the sensitivity tables and the flags."""
    if not opt or not opt.get("steps"):
        return None
    flags = opt.get("flags") or {}
    budget = opt.get("budget") or {}
    lat = opt.get("latency") or "estimate"
    summary = [("data", "synthetic (no dataset: metrics are fidelity to the original)" if opt.get("synthetic")
                else str(opt.get("data", "-"))),
               ("test split", str(opt.get("test_split", "-"))),
               ("samples", ", ".join(f"{k} {v:,}" for k, v in (opt.get("samples") or {}).items()) or "-"),
               ("seed", str(opt.get("seed", flags.get("seed", "-")))),
               ("epochs per step", str(opt.get("epochs", flags.get("epochs", "-")))
                + (f" (+ up to {opt['recover_epochs']} recovery epochs)" if opt.get("recover_epochs") else "")),
               ("costed for", f"{opt.get('board', '-')} ({opt.get('backend', '-')}), latency: "
                              + ("measured under QEMU (-icount)" if lat == "QEMU" else "cycle-model estimate")),
               ("task / metric", f"{opt.get('task', '-')} / {opt.get('metric_name', opt.get('metric', '-'))}")]
    if budget:
        parts = [f"latency <= {budget['latency_ms']:g} ms" if budget.get("latency_ms") else "",
                 f"arena <= {budget['ram']:,} B" if budget.get("ram") else "",
                 f"weights <= {budget['flash']:,} B" if budget.get("flash") else "",
                 f"MACs <= {budget['macs']:,}" if budget.get("macs") else ""]
        summary.append(("budget", ", ".join(p for p in parts if p)))
        misses = opt.get("budget_misses") or []
        summary.append(("budget result", "met" if not misses else "NOT met: " + "; ".join(misses)
                        + (f" ({opt['budget_why']})" if opt.get("budget_why") else "")))
    if opt.get("max_drop") is not None:
        summary.append(("max metric drop", f"{opt['max_drop']:g} (steps breaking it are rejected)"))
    summary.append(("shipped", str(opt.get("shipped", "-"))))
    for r in opt.get("recovered") or []:
        summary.append(("recovery fine-tune", f"{r['step']}: best after {r['epochs']} of {r['tried']} epochs, "
                                              f"validation drop {r['val_drop']:+.4f}"))
    steps = []
    for st in opt["steps"]:
        steps.append({"step": st.get("step", ""), "note": st.get("note", ""), "cells": [
            _metric(st.get("val_float")), _metric(st.get("val_int8")), _metric(st.get("float_acc")),
            _metric(st.get("int8_acc")), _num(st.get("macs")), _num(st.get("params")), _num(st.get("arena")),
            _num(st.get("flash")), _num(st.get("est_instructions")), _num(st.get("est_ms"), "{:.2f}")]})
    pair = []
    if opt.get("qat_int8_acc") is not None or any(str(s.get("step", "")).startswith("qat") for s in opt["steps"]):
        pair = [("PTQ (test int8)", _metric(opt.get("ptq_int8_acc"))), ("QAT (test int8)", _metric(opt.get("qat_int8_acc"))),
                ("shipped", str(opt.get("shipped", "-")))]
    sens = opt.get("sensitivity") or {}
    grid = sorted({r for sp in sens.get("prune", []) for r in (sp.get("drops") or {})}, key=float)
    prune = [{"producers": "+".join(sp["producers"]), "width": sp["width"], "ratio": f"{sp['ratio']:.3f}",
              "kept": sp["width"] - int(sp["ratio"] * sp["width"]),
              "drops": [f"{sp['drops'][r]:+.3f}" if r in sp.get("drops", {}) else
                        ("given" if sp.get("fixed") else "-") for r in grid]} for sp in sens.get("prune", [])]
    rewrite = [{"name": c["name"], "macs_before": _num(c.get("macs_before")), "macs_after": _num(c.get("macs_after")),
                "saving": _num(c.get("saving"), "{:,.0f}"), "share": _num(c.get("share"), "{:.1%}"),
                "sensitivity": _metric(c.get("sensitivity")),
                "chosen": "yes" if c.get("chosen") else ("no" + (f": {c['reason']}" if c.get("reason") else ""))}
               for c in sens.get("rewrite", [])]
    fl = [(k, " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)) for k, v in sorted(flags.items())]
    return {"synthetic": bool(opt.get("synthetic")), "synthetic_range": " .. ".join(map(str, flags["synthetic_range"]))
            if opt.get("synthetic") and flags.get("synthetic_range") else "",
            "metric_name": opt.get("metric_name", opt.get("metric", "accuracy")), "summary": summary,
            "warnings": opt.get("warnings") or [], "steps": steps, "pair": pair, "prune": prune,
            "prune_grid": [f"{float(r):g}" for r in grid], "rewrite": rewrite, "flags": fl,
            "target": f"{opt.get('board', 'the board')} ({opt.get('backend', '-')})",
            "latency_note": ("instructions counted under QEMU -icount per inference, ms = instructions / board clock "
                             "(1 instruction taken as 1 cycle)" if lat == "QEMU" else
                             "the cycle model's estimate in instructions (about cycles), ms = instructions / board clock")}


def build_report(project: Path | str) -> str:
    """The report's HTML for ``project``."""
    import jinja2

    project = Path(project)
    man = _read_json(project / "manifest.json")
    if man is None:
        raise OutputError(f"{project} is not a tinygen project (no manifest.json); run tinygen build first")
    board = None
    if man.get("board") and man["board"] != "host":
        from . import boards

        board = boards.load_board(man["board"])
    bench = _read_json(project / "bench.json")
    run = _read_json(project / "run.json")
    opt = _read_json(project / "optimize.json")
    latency, latency_src = layer_latency(man, bench, run, board)
    images = {"timeline": arena_timeline(man), "layers": layer_chart(man, latency)}
    gauge_rows, sizes_src = [], ""
    if board is not None:
        sizes = _elf_sizes(project)
        if sizes:
            gauge_rows = [("flash", sizes["flash"], board.flash_size), ("RAM", sizes["ram"], board.ram_size),
                          ("arena", man["arena_bytes"], board.ram_size - board.stack_size)]
            sizes_src = "measured from build/firmware.elf (arm-none-eabi-size)"
        else:
            from . import cyclemodel

            m = cyclemodel.load()
            kernels = sorted({ly["kernel"] for ly in man.get("layers", [])})
            flash = man["weights_bytes"] + m.code_bytes(man["backend"], board.core, kernels) + \
                m.flash_other(man["backend"], board.core, len(man.get("layers", [])))
            gauge_rows = [("flash (est.)", flash, board.flash_size),
                          ("RAM (est.)", man["arena_bytes"] + board.stack_size + m.ram_other(man["backend"], board.core),
                           board.ram_size), ("arena", man["arena_bytes"], board.ram_size - board.stack_size)]
            sizes_src = f"estimated (no build/firmware.elf); kernels {', '.join(kernels)}"
        images["gauges"] = gauges_chart(gauge_rows)
    if opt and opt.get("steps"):
        images["history"] = history_chart(opt)
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    layers = man.get("layers", [])
    return env.get_template("report.html.j2").render(
        version=__version__, man=man, board=board, images=images, layers=layers, latency=latency,
        latency_src=latency_src, opt=opt, ov=optimize_view(opt), gauges=gauge_rows, sizes_src=sizes_src,
        run=run, bench=bench, escape=html.escape)


def run_to_json(project: Path, timeout: float = 120.0) -> dict:
    """Boot the project's firmware on its emulated board and write run.json (per-layer instructions)."""
    from . import boards, qemu, toolchain

    man = _read_json(project / "manifest.json") or {}
    board = boards.load_board(man.get("board"))
    elf = project / "build" / "firmware.elf"
    if not elf.exists():
        toolchain.make_firmware(project, man["backend"], board=board)
    r = qemu.run_selftest(elf, board, timeout=timeout)
    data = {"board": board.name, "clock_hz": board.clock_hz, "match": r.match, "ok": r.ok,
            "instructions": r.instructions, "label": qemu.INSTRUCTIONS_LABEL,
            "layers": [{"index": ly.index, "name": ly.name, "instructions": ly.instructions, "cycles": ly.cycles}
                       for ly in r.layers]}
    (project / "run.json").write_text(json.dumps(data, indent=2) + "\n")
    return data


def cmd_report(a) -> int:
    from .project import resolve

    project = resolve(a.project)
    if a.run:
        run_to_json(project)
    out = Path(a.out) if a.out else project / "report.html"
    text = build_report(project)
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise OutputError(f"cannot write {out}: {e.strerror}") from None
    print(f"report written to {out} ({len(text):,} bytes)")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser("report", help="HTML report of a project: arena timeline, per-layer MACs/latency, memory gauges")
    p.add_argument("project", nargs="?", default=None,
                   help="project folder (default: the current folder if it is a tinygen project, else ./tinygen_project)")
    p.add_argument("-o", "--out", help="HTML file (default PROJECT/report.html)")
    p.add_argument("--run", action="store_true", help="first boot the emulated board (QEMU) and write run.json")
    p.set_defaults(func=cmd_report)

