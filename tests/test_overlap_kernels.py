"""The generated kernels' access contracts against their C: every family's kernel, built on the host,
run with its output sharing one buffer with its input at the contract's distance, gives the same bytes
as with separate buffers (and as tg_ref_*); placed where the contract says a byte is clobbered (one
byte / one pixel / one row closer), the output does differ in some case of every family: the contracts
are neither wrong nor needlessly loose. The banded depthwise variant (strided layers with a large
channel plane) is also compared with tg_ref_dwconv2d_s8 on its own."""

from __future__ import annotations

import numpy as np
import pytest
from test_kernelgen_dw import binary_case, build_lib, chunks, dw_case, dw_ref, p8, pool_case, rand_i8, run_gen

from tinygen import overlap
from tinygen.kernelgen import conv, dwconv, eltwise, fc, harness, pool

pytestmark = pytest.mark.toolchain


def _n(d: dict) -> int:
    return d["n"] * d["h"] * d["w"] * d["c"]


def _run_at(L, gen, ins: list[np.ndarray], n_out: int, dist: int) -> np.ndarray:
    """Run ``gen`` with its output ``dist`` bytes below input 0 in one buffer (other inputs apart)."""
    fn = getattr(L, gen.symbol)
    n_in = ins[0].size
    o_out = max(0, -dist)
    o_in = o_out + dist
    arena = np.full(max(o_in + n_in, o_out + n_out) + 16, 0x55, np.int8)
    arena[o_in:o_in + n_in] = ins[0]
    args = [p8(arena[o_in:])] + [p8(a) for a in ins[1:]] + [p8(arena[o_out:])]
    scratch = np.full(max(gen.scratch, 4) + 16, 0x33, np.int8)
    if gen.args[-1] == "scratch":
        args.append(p8(scratch))
    assert fn(*args) == 0
    return arena[o_out:o_out + n_out].copy()


def _cases(rng):
    """(family module, kind, params, arrays, inputs[, variant]) of every generated family, random shapes."""
    out = []
    for k in range(24):
        params, arrays = dw_case(rng, k)
        out.append((dwconv, "DEPTHWISE_CONV_2D", params, arrays, [rand_i8(rng, _n(params["in"]))]))
    for spec in [(6, 5, 8, 8, 1, 1, 1), (5, 7, 8, 16, 1, 1, 1), (7, 6, 8, 8, 3, 3, 1), (8, 8, 4, 6, 3, 3, 2),
                 (9, 7, 3, 8, 3, 3, 2), (6, 6, 16, 8, 1, 1, 2), (5, 5, 4, 4, 5, 5, 1), (10, 4, 1, 16, 4, 3, 2)]:
        h, w, cin, cout, kh, kw, s = spec
        params, arrays, x = harness.conv_case(rng, "c", h, w, cin, cout, kh, kw, stride=s)
        out.append((conv, "CONV_2D", params, arrays, [np.asarray(x, np.int8)]))
        if s == 2:  # shrinking: the reverse walk too
            out.append((conv, "CONV_2D", params, arrays, [np.asarray(x, np.int8)], {"reverse": True}))
    for k in range(12):
        kind = ("AVERAGE_POOL_2D", "MAX_POOL_2D", "MEAN")[k % 3]
        params = pool_case(rng, kind, k)
        out.append((pool, kind, params, {}, [rand_i8(rng, _n(params["in"]))]))
    for k in range(8):
        kind = ("ADD", "MUL")[k % 2]
        params = binary_case(rng, kind, k)
        out.append((eltwise, kind, params, {}, [rand_i8(rng, _n(params["in1"])), rand_i8(rng, _n(params["in2"]))]))
    for k, (ind, od, b) in enumerate([(64, 12, 1), (40, 40, 1), (16, 64, 1), (24, 8, 3), (640, 128, 1), (128, 640, 1),
                                      (8, 128, 2), (36, 16, 1), (12, 31, 1), (20, 47, 1), (8, 30, 1), (4, 13, 1)]):
        params, arrays, x = harness.fc_case(rng, "f", ind, od, batches=b, per_channel=k % 2 == 1, bias=k % 3 != 2)
        out.append((fc, "FULLY_CONNECTED", params, arrays, [np.asarray(x, np.int8)]))
        if ind % 4 == 0:
            out.append((fc, "FULLY_CONNECTED", params, arrays, [np.asarray(x, np.int8)], {"variant": "direct"}))
        if fc._split_at(params) is not None:
            out.append((fc, "FULLY_CONNECTED", params, arrays, [np.asarray(x, np.int8)], {"variant": "split"}))
    return out


def _out_bytes(kind, params) -> int:
    if kind == "FULLY_CONNECTED":
        return params["batches"] * params["out_depth"]
    if kind == "MEAN":
        return params["in"]["n"] * params["in"]["c"]
    return _n(params["out"])


def test_generated_kernels_overlapped_at_their_contract_distance(tmp_path):
    rng = np.random.default_rng(12)
    cases = _cases(rng)
    cases = [c if len(c) == 6 else c + ({},) for c in cases]
    gens = [fam.generate(kind, p, a, "portable", f"tg_gen_ov{i}", **v) for i, (fam, kind, p, a, _, v) in enumerate(cases)]
    L = build_lib(tmp_path, chunks(gens), "ov")
    caught: dict[str, int] = {}
    in_place = set()
    forward: dict[int, np.ndarray] = {}
    for (fam, kind, params, arrays, ins, var), gen in zip(cases, gens):
        n_out = _out_bytes(kind, params)
        want = run_gen(L, gen, ins, n_out)
        if var:  # a variant gives the bytes of the family's kernel (itself checked against tg_ref_*)
            assert np.array_equal(want, forward[id(params)]), (gen.notes, params)
        forward.setdefault(id(params), want)
        contract = fam.access(kind, params, "portable", **var)
        if not contract.streams:  # read throughout (the direct FC): never overlapped
            continue
        s = contract.streams[0]
        assert len(s.last_read) * s.in_unit == ins[0].size and len(s.write_step) * s.out_unit == n_out
        d = overlap.tightest(s)
        got = _run_at(L, gen, ins, n_out, d)
        assert np.array_equal(got, want), (gen.notes, params, d)
        if d == 0:
            in_place.add(fam.__name__)
        name = fam.__name__ + (" reverse" if var else "")
        caught.setdefault(name, 0)
        for closer in sorted({1, s.in_unit, s.in_unit * params.get("in", {}).get("w", 1)}):
            dd = d + closer if s.reverse else d - closer
            if overlap.safe(s, dd):
                continue
            if not np.array_equal(_run_at(L, gen, ins, n_out, dd), want):
                caught[name] += 1
    assert "tinygen.kernelgen.conv reverse" in caught
    # the kernels that copy what they read before writing run in place
    assert {"tinygen.kernelgen.dwconv", "tinygen.kernelgen.eltwise", "tinygen.kernelgen.fc"} <= in_place
    assert all(v > 0 for v in caught.values()), caught


def test_banded_depthwise_bit_exact(tmp_path, monkeypatch):
    """Strided layers with a channel plane over BAND_BYTES walk it in bands of output rows."""
    monkeypatch.setattr(dwconv, "BAND_BYTES", 96)
    rng = np.random.default_rng(33)
    cases, gens = [], []
    for k in range(40):
        params, arrays = dw_case(rng, k)
        if params["stride_h"] < 2:
            continue
        gen = dwconv.generate("DEPTHWISE_CONV_2D", params, arrays, "portable", f"tg_gen_band{k}")
        cases.append((params, arrays))
        gens.append(gen)
    assert sum(dwconv._layout(dwconv._geom(p))["bands"] is not None for p, _ in cases) >= 5
    L = build_lib(tmp_path, chunks(gens), "band")
    for (params, arrays), gen in zip(cases, gens):
        x = rand_i8(rng, _n(params["in"]))
        want = dw_ref(L, params, arrays, x)
        assert np.array_equal(run_gen(L, gen, [x], want.size), want), (gen.notes, params)
        s = dwconv.access("DEPTHWISE_CONV_2D", params, "portable").streams[0]
        d = overlap.tightest(s)
        assert np.array_equal(_run_at(L, gen, [x], want.size, d), want), (gen.notes, params, d)
