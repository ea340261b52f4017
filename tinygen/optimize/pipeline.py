"""``tinygen optimize``: baseline -> depthwise-separable rewrite -> channel pruning -> PTQ or QAT,
each step fine-tuned by distillation from the original model, costed by the compiler for the
target board and judged on the validation split (the test split only reports).

With a budget (:mod:`.budget`) pruning searches the greedy allocation for the least pruning
whose compiler cost meets it; every step whose int8 metric drops more than ``max_drop`` below
the original's is rejected (the previous model is kept).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinygen.errors import InputError

from ._tf import keras, seed_everything
from .budget import Budget
from .checkpoint import Checkpoint, run_key
from .cost import Cost, check_compiles, compiler_cost, target_for
from .data import check_range, load_data, synthetic_data
from .distill import ends_in_softmax, fine_tune
from .evaluate import Judge
from .metrics import StepRow, format_table, row_for, to_int8_tflite
from .modelio import load_model
from .prune import GRID, Space, allocation, apply, check_ratio, format_spaces, plan_and_prune, removed, scan
from .qat import quantize_aware
from .rewrite import Candidate, plan_and_rewrite
from .task import Task, degenerate, infer_task

REWRITES = ("dws",)
RECOVER = 9  # default --recover-epochs: 9 x --epochs more for every rewrite/prune step judged by --max-acc-drop
RECOVER_LR = 3.0  # the recovery run restarts the decaying learning rate at this many times lr


@dataclass
class OptimizeResult:
    rows: list[StepRow]  # one per step: baseline, rewrite, prune, ptq/qat
    model_path: str  # the Keras model the shipped int8 model comes from (the QAT model when QAT ships)
    tflite_path: str  # full-int8 model (int8 input/output) handed to the compiler
    tflite: bytes
    ptq_int8_acc: float | None = None  # test metric of PTQ after the final fine-tune (with --qat: equal epochs)
    qat_int8_acc: float | None = None
    shipped: str = "ptq"
    rewrite_report: list[Candidate] = field(default_factory=list)
    prune_report: list[Space] = field(default_factory=list)
    synthetic: bool = False  # metrics are fidelity to the original model
    task: Task | None = None
    cost: Cost | None = None  # the compiler's cost of the shipped model
    budget_misses: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # data used, seeds, target, budget (for optimize.json)

    def table(self) -> str:
        return format_table(self.rows)


def _check_args(model_path, rewrite, prune, epochs, data_path, synthetic, synthetic_range):
    if str(model_path).endswith(".tflite"):
        raise InputError(f"{model_path}: tinygen optimize needs the float Keras model (.h5 / .keras), "
                         "not an int8 .tflite (quantized models cannot be fine-tuned)")
    if rewrite not in (None, *REWRITES):
        raise InputError(f"--rewrite {rewrite!r}: unknown rewrite; choose one of {', '.join(REWRITES)}")
    if prune is not None:
        check_ratio(prune)
    if epochs < 0:
        raise InputError(f"--epochs {epochs}: must be 0 or more")
    if data_path is None and not synthetic:
        raise InputError("no training data: give --data data.npz (x_train, y_train, x_val, y_val; "
                         "see docs/optimize.md) or --synthetic to distil on synthetic inputs")
    if data_path is not None and synthetic:
        raise InputError("give either --data or --synthetic, not both")
    if synthetic:
        check_range(synthetic_range)


def optimize(model_path: str, data_path: str | None, *, rewrite: str | None = None,
             prune: float | None = None, qat: bool = False, epochs: int = 5, seed: int = 0,
             out_path: str, synthetic: bool = False, log=print,
             synthetic_range: tuple[float, float] = (0.0, 1.0), synthetic_samples: int = 2048,
             temperature: float = 4.0, alpha: float = 0.7, batch_size: int = 64,
             lr: float | None = None, rewrite_budget: float = 0.1, board: str | None = "mps2-an505",
             backend: str | None = None, budget: Budget | None = None, max_drop: float | None = None,
             exclude=(), prune_layers: dict[str, float] | None = None, measure: bool = False,
             resume: bool = False, recover_epochs: int | None = None) -> OptimizeResult:
    """Run the requested steps on the Keras model at ``model_path`` and save the result.

    ``synthetic``: no data; distil on Gaussian inputs in ``synthetic_range`` and report
    fidelity to the original. ``board``/``backend``: what candidates are costed for;
    ``measure``: latency counted under QEMU (emulated boards) instead of the cycle-model estimate.
    ``resume``: continue from the checkpoint of an interrupted run with the same model, data and
    flags (:mod:`.checkpoint`; checkpoints are written either way).
    ``recover_epochs`` (default 9 x ``epochs``): with ``max_drop``, every rewrite or prune step is
    fine-tuned this many more epochs (the learning rate restarted at 3 x ``lr`` and decayed again)
    before it is judged on the validation split; 0 = judged after ``epochs``.
    ``budget``: targets to meet (pruning searches for them); ``max_drop`` (default the
    budget's, else no limit): a step losing more is rejected. Writes ``out_path`` (Keras)
    and ``<out_path stem>_int8.tflite``.
    """
    _check_args(model_path, rewrite, prune, epochs, data_path, synthetic, synthetic_range)
    out = Path(out_path)
    if out.suffix not in (".h5", ".keras"):
        raise InputError(f"{out}: the output model must end in .h5 or .keras")
    budget = budget or Budget()
    max_drop = budget.max_drop if max_drop is None and not budget.empty else max_drop
    target = target_for(board, backend, measure)
    budget.check(needs_board=target.board is None)
    seed_everything(seed)
    teacher = load_model(model_path)
    in_shape, out_shape = tuple(teacher.input_shape[1:]), tuple(teacher.output_shape[1:])
    if synthetic:
        data = synthetic_data(in_shape, synthetic_samples, max(256, synthetic_samples // 8), seed, synthetic_range)
    else:
        data = load_data(data_path, in_shape, int(out_shape[-1]), out_shape, seed=seed)
    res = OptimizeResult([], str(out), "", b"", synthetic=synthetic)
    task = infer_task(in_shape, out_shape, ends_in_softmax(teacher), data.y_val, synthetic)
    if task.metric == "agree":
        bad, cls, share = degenerate(Judge(task, teacher, data).ref["val"])
        if bad:
            w = (f"WARNING: the original model predicts class {cls} for {share:.0%} of the "
                 f"{'synthetic' if synthetic else 'unlabeled'} inputs: top-1 agreement would be meaningless "
                 "(pruning anything keeps it). Judging by output divergence (KL) instead; give real "
                 "inputs (--data) or a --synthetic-range that matches the model's input scale.")
            log(w)
            res.warnings.append(w)
            task = Task("divergence", "kl", task.probs)
    judge = Judge(task, teacher, data)
    res.task = task
    src = "synthetic" if synthetic else str(data_path)
    res.info = {"data": src, "test_split": data.test_source, "seed": seed, "epochs": epochs, "board": target.name,
                "backend": target.backend, "latency": "QEMU" if measure else "estimate", "task": task.kind,
                "metric": task.metric, "metric_name": task.label,
                "budget": None if budget.empty else budget.as_dict(), "max_drop": max_drop,
                "samples": {s: int(len(getattr(data, f"x_{s}"))) for s in ("train", "val", "test")}}
    log(f"data: {src}; {len(data.x_train)} train / {len(data.x_val)} val / {len(data.x_test)} test "
        f"(test: {data.test_source}, only reported); metric: {task.label}; costs for {target.name} ({target.backend})")
    rep = data.x_train
    lr = lr if lr is not None else (1e-4 if synthetic else 1e-3)
    name = Path(model_path).stem

    def cost_of(model) -> Cost:
        """A search probe's cost: QEMU boots (--measure) only when the budget limits latency."""
        return compiler_cost(to_int8_tflite(model, rep), name, target, latency=budget.latency_ms is not None)

    def tune(student, what, n=None, peak=None):
        return fine_tune(student, teacher, data, epochs if n is None else n, task, temperature=temperature,
                         alpha=alpha, lr=peak or lr, batch_size=batch_size, log=log, what=what)

    recover = RECOVER * epochs if recover_epochs is None else max(0, int(recover_epochs))
    res.info["recover_epochs"] = recover
    res.info["recovered"] = []

    def tuned_row(step, cand, what):
        """Fine-tune ``cand`` for ``epochs``; with ``max_drop`` (a budget) then ``recover`` more epochs
        in one run, the learning rate restarted at RECOVER_LR x lr and decayed again, before the step is
        judged once on the validation split. A pruned model needs the long run to really recover, and
        the validation metric cannot tell (digits: 4/6 channels read 0.972 on validation after 30
        epochs at a constant lr and after 15 + 135 restarted, while the held-out accuracy rose from
        0.947 to 0.972), so the run is not
        cut short when validation first holds, and no round is picked by validation.
        Returns (model, row, tflite, cost)."""
        student = tune(cand, what)
        if max_drop is not None and epochs > 0 and recover > 0:
            tune(student, f"{what} (recovery)", recover, RECOVER_LR * lr)
            d = judge.drop(res.rows[0].val_int8, judge.tflite(to_int8_tflite(student, rep)))
            log(f"{what}: int8 validation drop {d:+.4f} after {epochs + recover} epochs "
                f"({'holds' if d <= max_drop else 'breaks'} --max-acc-drop {max_drop:g})")
            res.info["recovered"].append({"step": step, "epochs": epochs + recover, "tried": epochs + recover,
                                          "val_drop": float(d)})
        row, tfl, c = measure_row(step, student)
        return student, row, tfl, c

    def measure_row(step, model, tflite=None, acc_model=None, note=""):
        tfl = tflite if tflite is not None else to_int8_tflite(model, rep)
        cost = compiler_cost(tfl, name, target)
        fm = acc_model or model
        row = row_for(step, cost, judge.model(fm), judge.tflite(tfl), judge.model(fm, "test"),
                      judge.tflite(tfl, "test"), task.metric, note)
        log(format_table([row], baseline=res.rows[0] if res.rows else None).splitlines()[-1])
        return row, tfl, cost

    base_tfl = to_int8_tflite(teacher, rep)
    check_compiles(base_tfl, name, target)  # before any optimization
    base, tflite, cost = measure_row("baseline", teacher, base_tfl)
    res.rows.append(base)
    settings = dict(rewrite=rewrite, prune=prune, qat=qat, epochs=epochs, seed=seed, board=target.name,
                    backend=target.backend, measure=measure, budget=budget.as_dict(), max_drop=max_drop,
                    exclude=sorted(exclude), prune_layers=prune_layers, synthetic_range=list(synthetic_range),
                    synthetic_samples=synthetic_samples, temperature=temperature, alpha=alpha,
                    batch_size=batch_size, lr=lr, rewrite_budget=rewrite_budget, recover_epochs=recover)
    ckpt = Checkpoint(out, run_key(model_path, data_path, settings), resume, log)
    model = teacher
    if ckpt.state["done"]:
        model, tflite = ckpt.restore(res)
        base, cost = res.rows[0], compiler_cost(tflite, name, target)
    if not budget.empty:
        log(f"budget: {budget.describe()} on {target.name}; baseline "
            + ("meets it" if budget.met(cost) else "misses " + "; ".join(budget.misses(cost))))

    def accept(row) -> bool:
        d = judge.drop(res.rows[0].val_int8, row.val_int8)
        if max_drop is None or d <= max_drop:
            return True
        row.note = f"rejected: int8 drop {d:+.4f} > --max-acc-drop {max_drop:g}"
        log(f"{row.step}: {row.note}; keeping the previous model")
        return False

    if rewrite == "dws" and not ckpt.done("rewrite"):
        cand, res.rewrite_report = plan_and_rewrite(model, judge, data.x_train[:256], budget=rewrite_budget,
                                                    cost_of=cost_of, log=log)
        if cand is not model:
            cand, row, tfl, c = tuned_row("rewrite (dws)", cand, "rewrite")
            res.rows.append(row)
            if accept(row):
                model, tflite, cost = cand, tfl, c
        else:
            log("rewrite: no layer chosen; model unchanged")
        ckpt.save("rewrite", model, tflite, res)
    want_prune = prune is not None or prune_layers or (not budget.empty and not budget.met(cost))
    if want_prune and not ckpt.done("prune"):
        model, tflite, cost = _prune_step(model, prune, budget, judge, tuned_row, accept, cost_of, res,
                                          exclude=exclude, fixed=prune_layers, log=log) or (model, tflite, cost)
        ckpt.save("prune", model, tflite, res)
    if not ckpt.done("final"):
        if qat:
            model, tflite, cost = _ptq_or_qat(model, judge, measure_row, tune, accept, res, epochs, rep, log) \
                or (model, tflite, cost)
        else:
            res.ptq_int8_acc = res.rows[-1].int8_acc
        ckpt.save("final", model, tflite, res)
    res.cost = cost
    _warn_collapse(judge, tflite, res, log)
    if not budget.empty:
        res.budget_misses = budget.misses(cost)
        if not res.budget_misses:
            res.info.pop("budget_why", None)  # a back-off step met it after all
        elif not res.info.get("budget_why"):
            res.info["budget_why"] = ("no step was asked to cut that far (give --prune or a budget step)" if not want_prune
                                      else "the step that met it on compiler costs before fine-tuning costs more with "
                                      "its fine-tuned weights (the generated kernels are specialized on the weights)")
        why = res.info.get("budget_why")
        log("budget: met (" + budget.describe() + ")" if not res.budget_misses else
            "budget: NOT met, the shipped model misses " + "; ".join(res.budget_misses) + (f": {why}" if why else ""))
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # tf_keras's "HDF5 is legacy" notice: .h5 is what the user asked for
        warnings.simplefilter("ignore")
        model.save(out)
    tfl_path = out.with_name(out.stem + "_int8.tflite")
    tfl_path.write_bytes(tflite)
    res.tflite, res.tflite_path = tflite, str(tfl_path)
    log(format_table(res.rows))
    log(f"saved {out} and {tfl_path} ({len(tflite):,} bytes)")
    return res


def _warn_collapse(judge, tflite, res, log) -> None:
    """A classifier that ends up predicting one class almost everywhere (when the original did
    not) is said so: its agreement or accuracy can still read high on skewed data."""
    if not judge.task.soft_classes:
        return
    from .metrics import tflite_predict

    bad, cls, share = degenerate(tflite_predict(tflite, judge.x("val")))
    if bad and not degenerate(judge.ref["val"])[0]:
        w = (f"WARNING: the shipped model predicts class {cls} for {share:.0%} of the validation inputs "
             "(the original does not): it has collapsed; give more data or epochs, or prune less")
        log(w)
        res.warnings.append(w)


def _prune_step(model, prune, budget, judge, tuned_row, accept, cost_of, res, *, exclude, fixed, log):
    """Fixed-ratio pruning (``--prune R``, ``--prune-layer``) or the search to the budget.
    Returns (model, tflite, cost) of the accepted step, or None."""
    if prune is not None or budget.empty:
        if prune is not None:
            cand, res.prune_report = plan_and_prune(model, prune, judge, exclude=exclude, fixed=fixed, log=log)
        else:
            live = scan(model, judge, exclude=exclude, fixed=fixed, log=log)
            res.prune_report = [sp for sp, _ in live]
            cand = apply(model, live, allocation(live)[0])
        if cand is model:
            log("prune: nothing prunable; model unchanged")
            return None
        cand, row, tfl, c = tuned_row(f"prune ({prune:g})" if prune is not None else "prune (per layer)", cand,
                                      "prune")
        res.rows.append(row)
        return (cand, tfl, c) if accept(row) else None
    live = scan(model, judge, exclude=exclude, fixed=fixed, log=log)
    res.prune_report = [sp for sp, _ in live]
    states = allocation(live)
    if len(states) < 2:
        log("prune: nothing prunable; the budget cannot be reached by pruning")
        res.info["budget_why"] = "nothing in the model can be pruned (see the skipped layers above)"
        return None
    costs: dict[int, Cost] = {}

    def cost_at(i):
        if i not in costs:
            costs[i] = cost_of(apply(model, live, states[i]))
            log(f"prune: search state {i}/{len(states) - 1} ({removed(live, states[i])[0]} channels removed): "
                + ("meets the budget" if budget.met(costs[i]) else "misses " + "; ".join(budget.misses(costs[i]))))
        return costs[i]

    lo, hi = 1, len(states) - 1  # least pruning that meets the budget (costs fall as pruning grows)
    if not budget.met(cost_at(hi)):
        log(f"prune: even the most pruning the allocation allows misses the budget: {'; '.join(budget.misses(costs[hi]))}")
        res.info["budget_why"] = (f"even pruning every space to {max(GRID):.1%} misses it "
                                  f"({'; '.join(budget.misses(costs[hi]))}); exclude fewer layers or rewrite (--rewrite dws)")
        lo = hi
    while lo < hi:
        mid = (lo + hi) // 2
        if budget.met(cost_at(mid)):
            hi = mid
        else:
            lo = mid + 1
    tries = [hi] + [i for i in (hi * 2 // 3, hi // 3) if 0 < i < hi]
    refined = _refine(model, live, states[hi], budget, cost_of, log) if budget.met(costs[hi]) else states[hi]
    for i in tries:  # back off toward less pruning when fine-tuning cannot hold --max-acc-drop
        ratios = refined if i == hi else states[i]
        for sp, _ in live:
            sp.ratio = ratios[sp.root]
        log(format_spaces(res.prune_report, *removed(live, ratios)))
        cand = apply(model, live, ratios)
        cand, row, tfl, c = tuned_row(f"prune ({removed(live, ratios)[0]}/{removed(live, ratios)[1]} ch)",
                                      cand, "prune")
        res.rows.append(row)
        if i == hi and budget.met(c) and "budget_why" not in res.info:
            tried = next((r["tried"] for r in res.info["recovered"] if r["step"] == row.step), None)
            res.info["budget_why"] = (f"the least pruning that meets it ({row.step}: {'; '.join(budget.have(c))}) "
                                      f"loses {judge.drop(res.rows[0].val_int8, row.val_int8):.4f} on the validation "
                                      f"split after {tried or 'its'} fine-tune epochs, more than --max-acc-drop")
        if accept(row):
            if i == hi:
                res.info.pop("budget_why", None)
            return cand, tfl, c
    return None


PROBE = 3  # channels past the binary search's answer that _refine tries (costs are not monotone)


def _refine(model, live, ratios: dict[str, float], budget, cost_of, log) -> dict[str, float]:
    """The allocation moves a grid step (12.5% of a space) at a time, so its first state that meets
    the budget usually beats it by a margin. Give channels back, one space at a time (the most
    sensitive first), as many as the budget still allows: a binary search per space over the
    channels it loses, then :data:`PROBE` more channels tried one by one, on compiler costs only."""
    def removed_of(sp, r):
        return int(np.floor(r * sp.width))

    def ratio_for(sp, n):
        return (n + 0.5) / sp.width if n else 0.0

    from dataclasses import replace

    # fine-tuning changes the weights, and the generated kernels are specialized on them: keep 3%
    # of the latency and weights budgets as slack (the arena depends on the shapes only)
    budget = replace(budget, latency_ms=budget.latency_ms and budget.latency_ms * 0.97,
                     flash=budget.flash and int(budget.flash * 0.97))
    out = dict(ratios)
    order = sorted((sp for sp, _ in live if not sp.fixed and out[sp.root] > 0),
                   key=lambda sp: -sp.drops.get(out[sp.root], 0.0) / max(removed_of(sp, out[sp.root]), 1))
    def meets(sp, n):
        return budget.met(cost_of(apply(model, live, {**out, sp.root: ratio_for(sp, n)})))

    for sp in order:
        lo, hi = 0, removed_of(sp, out[sp.root])  # hi meets the budget
        while lo < hi:
            mid = (lo + hi) // 2
            if meets(sp, mid):
                hi = mid
            else:
                lo = mid + 1
        # the costs are not monotone in the channel count (the planner's patch bands and alignment: digits'
        # arena is 448 B at 4/4 channels, 512 B at 4/5 and 464 B at 4/6), so look a few channels past the
        # binary search's answer too
        for n in range(hi - 1, max(hi - 1 - PROBE, -1), -1):
            if meets(sp, n):
                hi = n
        if hi < removed_of(sp, out[sp.root]):
            log(f"prune: {'+'.join(sp.producers)} needs only {hi} of its {removed_of(sp, out[sp.root])} removed "
                f"channels removed for the budget (refined on compiler costs)")
            out[sp.root] = ratio_for(sp, hi)
    return out


def _ptq_or_qat(model, judge, measure_row, tune, accept, res, epochs, rep, log):
    """Fine-tune the final float model for ``epochs`` more epochs and post-training quantize it,
    or run QAT for the same ``epochs``: ship the better on the validation split, say so.
    Returns None (keep the previous step) when even the better one breaks ``max_drop``."""
    ptq_model = keras.models.clone_model(model)
    ptq_model.set_weights(model.get_weights())
    ptq_row, ptq_tfl, ptq_cost = measure_row(f"ptq (+{epochs} ep)", tune(ptq_model, "ptq"))
    qmodel = tune(quantize_aware(model), "qat")
    qat_row, qat_tfl, qat_cost = measure_row(f"qat ({epochs} ep)", model, tflite=to_int8_tflite(qmodel, rep),
                                         acc_model=qmodel)
    res.rows += [ptq_row, qat_row]
    res.ptq_int8_acc, res.qat_int8_acc = ptq_row.int8_acc, qat_row.int8_acc
    qat_wins = judge.drop(ptq_row.val_int8, qat_row.val_int8) < 0
    if qat_wins:
        res.shipped = "qat"
        qat_row.note, ptq_row.note = "shipped", "not shipped"
        log(f"QAT ({judge.task.fmt(qat_row.val_int8)}) beats PTQ ({judge.task.fmt(ptq_row.val_int8)}) on the "
            f"validation split at {epochs} epochs each: shipping QAT")
        if not accept(qat_row):
            res.shipped = "previous step (PTQ)"
            return None
        return qmodel, qat_tfl, qat_cost
    res.shipped = "ptq"
    ptq_row.note, qat_row.note = "shipped", "not shipped"
    w = (f"WARNING: QAT is not better than PTQ at the same {epochs} fine-tune epochs (validation "
         f"{judge.task.metric} QAT {judge.task.fmt(qat_row.val_int8)} vs PTQ {judge.task.fmt(ptq_row.val_int8)}): "
         "shipping the PTQ model")
    log(w)
    res.warnings.append(w)
    if not accept(ptq_row):
        res.shipped = "previous step (PTQ)"
        return None
    return ptq_model, ptq_tfl, ptq_cost
