"""MLPerf Tiny DUT set-up of a build: which benchmark the firmware answers for (``--mlperf``),
how the runner's db bytes become the int8 input and what ``m-results`` holds.

As the reference submissions (mlcommons/tiny ``benchmark/reference_submissions``):

======  ===========================================  ==============================================
id      db bytes -> int8 input (th_load_tensor)      m-results (th_results)
======  ===========================================  ==============================================
kws01   int8, as they are                            every output value dequantized
ic01    uint8 pixels, byte - 128                     every output value dequantized
vww01   uint8 pixels, byte - 128                     every output value dequantized
ad01    float32 (LE), round(x / scale) + zero point  one score: mean squared error of the
                                                     dequantized output against the float input
======  ===========================================  ==============================================

The id is never guessed from a file name: without ``--mlperf`` the firmware answers
``profile%`` with an ``e-[...]`` line saying how to set one. A build with ``--mlperf`` leaves
the per-layer profile marks out (timed region = inference only).
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import BoardError, ModelError

# id -> (input conversion, bytes per element the runner sends, result)
MODELS = {
    "kws01": ("int8", 1, "vector"),
    "ic01": ("uint8", 1, "vector"),
    "vww01": ("uint8", 1, "vector"),
    "ad01": ("float32", 4, "mse"),
}
_IN_MACRO = {"int8": "TG_BENCH_MLPERF_IN_INT8", "uint8": "TG_BENCH_MLPERF_IN_UINT8",
             "float32": "TG_BENCH_MLPERF_IN_FLOAT32"}
_RES_MACRO = {"vector": "TG_BENCH_MLPERF_RES_VECTOR", "mse": "TG_BENCH_MLPERF_RES_MSE"}


@dataclass(frozen=True)
class Options:
    """``tinygen build --mlperf ID [--mlperf-energy]``."""

    model: str
    energy: bool = False

    @property
    def input(self) -> str:
        return MODELS[self.model][0]

    @property
    def result(self) -> str:
        return MODELS[self.model][2]


def options(model: str | None, energy: bool = False) -> Options | None:
    if model is None:
        if energy:
            raise BoardError("--mlperf-energy needs --mlperf kws01|ic01|vww01|ad01 (the benchmark the firmware runs)")
        return None
    if model not in MODELS:
        raise BoardError(f"--mlperf {model}: unknown MLPerf Tiny benchmark; use one of {', '.join(MODELS)}")
    return Options(model, energy)


def check(opt: Options | None, manifest: dict, board) -> None:
    """The model and board must fit the benchmark's conventions; raises with what to do."""
    if opt is None:
        return
    ins, outs = manifest["inputs"], manifest["outputs"]
    if len(ins) != 1 or ins[0]["dtype"] != "int8":
        raise ModelError(f"--mlperf {opt.model}: the model must have one int8 input "
                         f"(it has {', '.join(i['dtype'] for i in ins)}); quantize it to full int8")
    if opt.result == "mse" and (len(outs) != 1 or outs[0]["bytes"] != ins[0]["bytes"] or outs[0]["dtype"] != "int8"):
        raise ModelError(f"--mlperf {opt.model}: the anomaly score compares the output with the input, so the model "
                         f"needs one int8 output of the input's size ({ins[0]['bytes']} values; it has "
                         f"{sum(o['bytes'] for o in outs)}): build an autoencoder, or choose another --mlperf id")
    if opt.energy and (board is None or board.timestamp_pin is None):
        name = "host" if board is None else board.name
        raise BoardError(f"--mlperf-energy: {name} has no MLPerf timestamp pin ([mlperf] timestamp_pin in "
                         "boards/<board>.toml); energy mode runs on a real board wired to the energy interface board")


def manifest_entry(opt: Options | None) -> dict | None:
    if opt is None:
        return None
    return {"model": opt.model, "input": opt.input, "result": opt.result, "energy": opt.energy,
            "db_bytes_per_element": MODELS[opt.model][1]}


def header_context(opt: Options | None, manifest: dict) -> dict:
    """What templates/tg_bench_model.h.j2 needs."""
    i0, o0 = manifest["inputs"][0], manifest["outputs"][0]

    def first(v, default):
        return v[0] if v else default

    ctx = {
        "in_scale": repr(float(first(i0.get("scale"), 1.0))), "in_zp": int(first(i0.get("zero_point"), 0)),
        "out_scale": repr(float(first(o0.get("scale"), 1.0))), "out_zp": int(first(o0.get("zero_point"), 0)),
        "mlperf": opt,
    }
    if opt is not None:
        ctx.update(in_macro=_IN_MACRO[opt.input], res_macro=_RES_MACRO[opt.result], per=MODELS[opt.model][1])
    return ctx
