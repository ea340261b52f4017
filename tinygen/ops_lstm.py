"""Op-table entry of UNIDIRECTIONAL_SEQUENCE_LSTM (a Keras LSTM layer, not unrolled), registered
into :data:`tinygen.opdefs.TABLE`.

TFLite quantizes it as its integer "8x8_16" LSTM: int8 input, weights, output and hidden state,
int32 gate biases, an int16 cell state with a power-of-two scale, Q3.12 gate pre-activations and
the hidden state's scale in the op's fifth intermediate tensor. The parameters (effective scales,
zero points folded into the biases) are :func:`tinygen.quant.lstm_params`; the kernel is
``tg_ref_lstm_s8`` (firmware/tg_kernels_lstm.c). The output and cell states are variable tensors
the importer turns into their initial value (the zero point): the kernel restarts from it on
every inference (Keras ``stateful=False``), as the TFLite reference does after a reset.

What Keras builds is supported; the LSTM variants Keras never produces are refused by name
(CIFG, peephole, projection, layer norm).
"""

from __future__ import annotations

import numpy as np

from . import quant
from .errors import ModelError
from .opdefs import Arr, Lowered, _bias, _fail, _int8_io, _opt, _params_in_range, _weights, register

ROLES = ("input", "input-to-input weights", "input-to-forget weights", "input-to-cell weights",
         "input-to-output weights", "recurrent-to-input weights", "recurrent-to-forget weights",
         "recurrent-to-cell weights", "recurrent-to-output weights", "cell-to-input weights",
         "cell-to-forget weights", "cell-to-output weights", "input gate bias", "forget gate bias",
         "cell gate bias", "output gate bias", "projection weights", "projection bias", "output state",
         "cell state", "input layer norm", "forget layer norm", "cell layer norm", "output layer norm")
W_IN, W_REC, BIAS = (1, 2, 3, 4), (5, 6, 7, 8), (12, 13, 14, 15)  # gates input, forget, cell, output
STATE_H, STATE_C = 18, 19
CELL_ACT = {4: "TANH", 6: "SIGMOID"}  # the cell gate's activation TFLite's integer LSTM implements


def _parse(t):
    return {"act": CELL_ACT.get(_opt(t, 0, "b"), f"activation {_opt(t, 0, 'b')}"), "cell_clip": _opt(t, 1, "f", 0.0),
            "proj_clip": _opt(t, 2, "f", 0.0), "time_major": bool(_opt(t, 3, "B"))}


def _present(op, k) -> bool:
    return k < len(op.inputs) and op.inputs[k] >= 0


def _dims(g, op) -> tuple[int, int, int, int]:
    """(batch, time, input features, cells) of the op."""
    x = g.t(op.inputs[0])
    if len(x.shape) != 3:
        _fail(op, f"expects a 3-D input (batch, time, features), got {x.describe()}")
    t, b = (x.shape[0], x.shape[1]) if op.attrs["time_major"] else (x.shape[1], x.shape[0])
    w = g.t(op.inputs[4]) if _present(op, 4) else None
    cells = w.shape[0] if w is not None and len(w.shape) == 2 else 0
    return b, t, x.shape[2], cells


def _check(g, op):
    """UNIDIRECTIONAL_SEQUENCE_LSTM (Keras LSTM, not unrolled): TFLite's integer LSTM (int8 input/output, int8 per-tensor weights, int32 biases, int16 cell state with a power-of-two scale 2^-30..2^-9), TANH or SIGMOID cell activation, return_sequences either way, batch- or time-major; no CIFG, peephole, projection or layer norm (Keras builds none of them); the state restarts on every inference (stateful=False)."""
    for k, feature in ((20, "layer normalization"), (21, "layer normalization"), (16, "projection"),
                       (17, "projection"), (9, "peephole connections"), (10, "peephole connections"),
                       (11, "peephole connections")):
        if _present(op, k):
            _fail(op, f"LSTM with {feature} is not supported (Keras LSTM layers have none)")
    if not (_present(op, 1) and _present(op, 5)):
        _fail(op, "CIFG LSTM (no input gate) is not supported (Keras LSTM layers have an input gate)")
    for k in (*W_IN, *W_REC, *BIAS, STATE_H, STATE_C):
        if not _present(op, k):
            raise ModelError(f"{op.where()}: has no {ROLES[k]}; the file is corrupt: re-export it")
    if op.attrs["act"] not in ("TANH", "SIGMOID"):
        _fail(op, f"cell activation {op.attrs['act']} is not supported (TFLite's integer LSTM: tanh or sigmoid)")
    if op.attrs["cell_clip"] < 0 or op.attrs["proj_clip"] < 0:
        raise ModelError(f"{op.where()}: negative cell/projection clip {op.attrs}")
    _int8_io(g, op)
    b, t, n_in, cells = _dims(g, op)
    y = g.t(op.outputs[0])
    want = (t, b, cells) if op.attrs["time_major"] else (b, t, cells)
    if cells < 1 or y.shape != want:
        raise ModelError(f"{op.where()}: output {y.describe()} does not fit input {g.t(op.inputs[0]).describe()} "
                         f"with {cells} cells")
    for k in (*W_IN, *W_REC):
        w = _weights(g, op, k, 1)
        cols = n_in if k in W_IN else cells
        if w.shape != (cells, cols):
            raise ModelError(f"{op.where()}: {ROLES[k]} {w.describe()} must be [{cells}, {cols}]")
    for k in BIAS:
        if _bias(g, op, k, cells) is None:
            raise ModelError(f"{op.where()}: has no {ROLES[k]}")
    h, c = g.t(op.inputs[STATE_H]), g.t(op.inputs[STATE_C])
    if h.dtype != "int8" or h.size != b * cells or h.scale.size != 1:
        _fail(op, f"output state {h.describe()} must be int8[{b * cells}] quantized per tensor")
    if c.dtype != "int16" or c.size != b * cells or c.scale.size != 1 or int(c.zero_point[0]) != 0:
        _fail(op, f"cell state {c.describe()} must be int16[{b * cells}] with zero point 0 (TFLite's integer LSTM)")
    hidden = _hidden(g, op)
    if hidden.scale.size != 1 or not hidden.scale[0] > 0:
        _fail(op, f"its hidden-state intermediate {hidden.describe()} has no per-tensor quantization")
    _params_in_range(op, _params, g, op)


def _hidden(g, op):
    inter = op.attrs.get("intermediates", [])
    if len(inter) != 5:
        _fail(op, f"has {len(inter)} intermediate tensors; TFLite's quantized LSTM has 5 (re-convert the model "
              "with a representative dataset and TFLITE_BUILTINS_INT8)")
    return g.t(inter[4])


def _params(g, op) -> dict:
    (sx, zx), (sh, zh) = g.t(op.inputs[0]).q(), g.t(op.inputs[STATE_H]).q()
    hidden = _hidden(g, op)
    w_in = [(g.t(op.inputs[k]).data, float(g.t(op.inputs[k]).scale[0])) for k in W_IN]
    w_rec = [(g.t(op.inputs[k]).data, float(g.t(op.inputs[k]).scale[0])) for k in W_REC]
    biases = [g.t(op.inputs[k]).data.reshape(-1) for k in BIAS]
    return quant.lstm_params(sx, zx, sh, zh, float(g.t(op.inputs[STATE_C]).scale[0]), float(hidden.scale[0]),
                             int(hidden.zero_point[0]), w_in, w_rec, biases)


def _lower(g, op):
    b, t, _, cells = _dims(g, op)
    q = _params(g, op)
    clip = op.attrs["cell_clip"]
    cell_clip = 0
    if clip > 0:  # TFLite: min(max(clip / scale, -32768), 32767) in float32, truncated to int16
        cell_clip = int(np.float32(min(max(np.float32(clip) / np.float32(g.t(op.inputs[STATE_C]).scale[0]), -32768.0),
                                       32767.0)))
    params = {"n_batch": b, "n_time": t, "n_input": g.t(op.inputs[0]).shape[2], "n_cell": cells,
              "time_major": int(op.attrs["time_major"]), "cell_scale": q["cell_scale"],
              "cell_act": 0 if op.attrs["act"] == "TANH" else 1, "cell_clip": cell_clip,
              "hidden_mult": q["hidden_mult"], "hidden_shift": q["hidden_shift"], "hidden_zp": q["hidden_zp"],
              "state_zp": int(g.t(op.inputs[STATE_H]).zero_point[0]), "mult": Arr("mult"), "shift": Arr("shift"),
              "w_in": Arr("w_in"), "w_rec": Arr("w_rec"), "b_in": Arr("b_in"), "b_rec": Arr("b_rec")}
    arrays = {"mult": np.array(q["mult"], np.int32), "shift": np.array(q["shift"], np.int32),
              "w_in": np.concatenate([g.t(op.inputs[k]).data.reshape(-1) for k in W_IN]).astype(np.int8),
              "w_rec": np.concatenate([g.t(op.inputs[k]).data.reshape(-1) for k in W_REC]).astype(np.int8),
              "b_in": q["b_in"], "b_rec": q["b_rec"]}
    return Lowered(params, arrays, "tg_lstm_params_t")


def _macs(g, op):
    b, t, n_in, cells = _dims(g, op)
    return b * t * 4 * cells * (n_in + cells)


register("UNIDIRECTIONAL_SEQUENCE_LSTM", _parse, _check, _lower, _macs, roles=ROLES, required=1,
         state=(STATE_H, STATE_C), doc=_check.__doc__)
