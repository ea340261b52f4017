"""Checkpoints per step, so an interrupted ``tinygen optimize`` resumes (``--resume``) where it
stopped instead of starting over.

After each finished step (rewrite, prune, final PTQ/QAT) the folder ``<out stem>.steps/``
beside ``-o`` holds the accepted model (``model.h5``), its int8 flatbuffer and ``state.json``
(the steps done, the table rows, the sensitivity reports, warnings). The state is keyed by
the hashes of the model and data files and the flags that change the result; a state with
another key is ignored (and replaced), never mixed in.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path

from ._tf import keras
from .metrics import StepRow
from .prune import Space
from .rewrite import Candidate

STEPS = ("rewrite", "prune", "final")


def _sha(path) -> str:
    if path is None:
        return "synthetic"
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def run_key(model_path, data_path, settings: dict) -> str:
    blob = json.dumps({"model": _sha(model_path), "data": _sha(data_path), **settings}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Checkpoint:
    def __init__(self, out: Path, key: str, resume: bool, log=print):
        self.dir = out.with_name(out.stem + ".steps")
        self.key, self.log = key, log
        self.state: dict = {"key": key, "done": []}
        state = self.dir / "state.json"
        if resume and state.is_file():
            old = json.loads(state.read_text())
            if old.get("key") == key:
                self.state = old
                log(f"resume: {', '.join(old['done']) or 'no step'} already done (from {self.dir})")
            else:
                log(f"resume: {self.dir} is from another model, data or flags; starting over")
        elif resume:
            log(f"resume: no checkpoint in {self.dir}; starting from the beginning")

    def done(self, step: str) -> bool:
        return step in self.state["done"]

    def save(self, step: str, model, tflite: bytes, res) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save(self.dir / "model.h5")
        (self.dir / "model_int8.tflite").write_bytes(tflite)
        self.state["done"] = [s for s in STEPS if s in self.state["done"] or s == step]
        self.state.update(rows=[r.as_dict() for r in res.rows], warnings=res.warnings, shipped=res.shipped,
                          ptq=res.ptq_int8_acc, qat=res.qat_int8_acc,
                          rewrite=[asdict(c) for c in res.rewrite_report],
                          prune=[{**asdict(s), "drops": {str(k): v for k, v in s.drops.items()}}
                                 for s in res.prune_report])
        tmp = self.dir / "state.json.tmp"
        tmp.write_text(json.dumps(self.state, indent=1, default=float))
        tmp.replace(self.dir / "state.json")

    def restore(self, res):
        """(model, tflite) of the last finished step, with ``res`` filled from the state."""
        import tensorflow_model_optimization as tfmot

        s = self.state
        res.rows = [StepRow(**r) for r in s["rows"]]
        res.warnings, res.shipped, res.ptq_int8_acc, res.qat_int8_acc = s["warnings"], s["shipped"], s["ptq"], s["qat"]
        res.rewrite_report = [Candidate(**c) for c in s["rewrite"]]
        res.prune_report = [Space(**{**p, "drops": {float(k): v for k, v in p["drops"].items()}}) for p in s["prune"]]
        with tfmot.quantization.keras.quantize_scope():  # a shipped QAT model
            model = keras.models.load_model(self.dir / "model.h5", compile=False)
        return model, (self.dir / "model_int8.tflite").read_bytes()
