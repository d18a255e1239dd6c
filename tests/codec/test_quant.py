"""Tests of fedbench.codec.quant: step sizes, URQ rounding, DQ conformance, RDOQ properties."""

from __future__ import annotations

import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.codec.errors import InvalidTensorError, SettingsError
from fedbench.codec.quant import (
    dequantize,
    estimate_rd_cost,
    quantize,
    quantize_dq,
    quantize_rdoq,
    quantize_uniform,
    safe_qp,
    scan_positions,
    step_size,
)

CONFORMANCE = Path(__file__).parents[2].parent / "shared" / "conformance"
TRANS = {0: (0, 2), 1: (7, 5), 2: (1, 3), 3: (6, 4), 4: (2, 0), 5: (5, 7), 6: (3, 1), 7: (4, 6)}


def _dq_vectors() -> list:
    """One pytest param per DQ vector of the public conformance set, or a skip if it is absent."""
    manifest = CONFORMANCE / "manifest.json"
    if not manifest.is_file() or not (CONFORMANCE / "vectors.npz").is_file():
        return [
            pytest.param(
                None, marks=pytest.mark.skip(reason=f"no conformance set at {CONFORMANCE}")
            )
        ]
    entries = [v for v in json.loads(manifest.read_text())["vectors"] if v.get("quantization")]
    return [pytest.param(v, id=v["name"]) for v in entries]


@pytest.fixture(scope="module")
def vectors():
    with np.load(CONFORMANCE / "vectors.npz") as z:
        yield {k: z[k] for k in z.files}


def _walk_valid(levels_scan: np.ndarray) -> bool:
    """True if fine-grid DQ levels are even in even states and odd or zero in odd states."""
    state = 0
    for lv in levels_scan.tolist():
        if lv != 0 and (lv & 1) != (state & 1):
            return False
        k = 0 if lv == 0 else (lv + (state & 1) if lv > 0 else lv - (state & 1)) >> 1
        state = TRANS[state][k & 1]
    return True


# ----------------------------------------------------------------------------- step size


@pytest.mark.parametrize(
    ("qp", "step"),
    [(-38, 0.00146484375), (-32, 0.00390625), (-26, 0.01171875), (-20, 0.03125), (-14, 0.09375)],
)
def test_step_size_examples(qp, step):
    assert step_size(qp) == step
    assert step_size(qp, 2) == step


@pytest.mark.parametrize("d", [0, 1, 2, 3, 5])
def test_step_size_matches_exact_formula(d):
    k = 2**d
    for qp in range(-60 * k // 4, 20):
        exact = (1 + Fraction(qp % k, k)) * Fraction(2) ** (qp // k)
        assert step_size(qp, d) == float(np.float32(float(exact)))


def test_step_size_rejects_bad_settings():
    for bad in (1.5, "3", True, None):
        with pytest.raises(SettingsError):
            step_size(bad)
    for d in (-1, 8, 2.0):
        with pytest.raises(SettingsError):
            step_size(-32, d)
    with pytest.raises(SettingsError):
        step_size(-1000)


# ----------------------------------------------------------------------------- URQ


def _urq_reference(w: np.ndarray, qp: int, d: int = 2) -> np.ndarray:
    """Pure-Python URQ: float32(float32(1/step) * w), rounded half away from zero."""
    scale = np.float32(1.0) / np.float32(step_size(qp, d))
    out = []
    for x in w.reshape(-1).tolist():
        p = float(np.float32(scale * np.float32(x)))
        out.append(int(math.copysign(math.floor(abs(p) + 0.5), p)))
    return np.array(out, dtype=np.int32).reshape(w.shape)


def test_urq_ties_round_half_away_from_zero():
    step = step_size(-32)  # a power of two: scale * w is exact, so these are exact ties
    m = np.arange(-20, 20)
    w = ((m + 0.5) * step).astype(np.float32)
    got = quantize_uniform(w, -32)
    np.testing.assert_array_equal(got, _urq_reference(w, -32))
    np.testing.assert_array_equal(got, np.where(m >= 0, m + 1, m))
    assert not np.array_equal(got, np.round(w / step).astype(np.int32))  # half to even differs


@pytest.mark.parametrize("qp", [-38, -33, -30, -25])
def test_urq_matches_pure_python_on_ties_and_random(qp):
    rng = np.random.default_rng(-qp)
    step = step_size(qp)
    ties = ((rng.integers(-300, 300, 200) + 0.5) * step).astype(np.float32)
    rand = (rng.standard_normal(500) * 40 * step).astype(np.float32)
    for w in (ties, rand, rand.reshape(20, 25)):
        np.testing.assert_array_equal(quantize_uniform(w, qp), _urq_reference(w, qp))


def test_urq_reconstruction_error_bounded():
    rng = np.random.default_rng(3)
    w = (rng.standard_normal((64, 9)) * 0.05).astype(np.float32)
    rec = dequantize(quantize_uniform(w, -30), -30)
    assert rec.dtype == np.float32
    assert np.abs(rec - w).max() <= step_size(-30) / 2 * (1 + 1e-6)


# ----------------------------------------------------------------------------- DQ


@pytest.mark.parametrize("entry", _dq_vectors())
def test_dq_reproduces_conformance_levels(entry, vectors):
    args = entry["quantization"]["args"]
    i = entry["id"]
    floats = vectors[f"{i}_floats"]
    got = quantize_dq(
        floats,
        args["qp"],
        args["qpDensity"],
        lambda_scale=args["lambdaScale"],
        max_num_no_rem=args["maxNumNoRem"],
        scan_order=args["scan_order"],
        general_profile_idc=args["general_profile_idc"],
    )
    assert got.dtype == np.int32 and got.shape == floats.shape
    np.testing.assert_array_equal(got, vectors[f"{i}_levels"])
    assert step_size(args["qp"], args["qpDensity"]) == entry["quantization"]["step"]
    pos = scan_positions(floats.shape, args["scan_order"])
    assert _walk_valid(got.reshape(-1)[pos])


@pytest.mark.parametrize("lam", [0.0, 0.5, 2.0])
@pytest.mark.parametrize(("shape", "scan"), [((3000,), 0), ((40, 27), 1), ((70, 130), 2)])
def test_dq_levels_valid_for_state_walk(shape, scan, lam):
    rng = np.random.default_rng(len(shape) + scan)
    w = (rng.standard_normal(shape) * 0.03).astype(np.float32)
    w[rng.random(shape) < 0.3] = 0.0
    levels = quantize_dq(w, -32, lambda_scale=lam, scan_order=scan)
    assert _walk_valid(levels.reshape(-1)[scan_positions(shape, scan)])
    # Each branch offers levels 4 steps apart, so without a rate term no weight lands more than
    # 2 steps away (with one, zeroing a weight can be worth more error).
    if lam == 0.0:
        assert np.abs(dequantize(levels, -32) - w).max() <= 2 * step_size(-32) * (1 + 1e-6)


def test_dq_beats_urq_at_the_same_rate_grid():
    # DQ on step s interleaves two quantizers of step 2s: its error must be well below URQ(2s).
    rng = np.random.default_rng(7)
    w = (rng.standard_normal(20000) * 0.05).astype(np.float32)
    mse_dq = np.mean((dequantize(quantize_dq(w, -32), -32) - w) ** 2)
    mse_urq2 = np.mean((dequantize(quantize_uniform(w, -28), -28) - w) ** 2)
    assert mse_dq < 0.9 * mse_urq2


def test_dq_rate_aware_lowers_estimated_cost():
    rng = np.random.default_rng(11)
    w = (rng.standard_normal((50, 40)) * 0.02).astype(np.float32)
    plain = quantize_dq(w, -32)
    rated = quantize_dq(w, -32, lambda_scale=2.0)
    j_plain = estimate_rd_cost(w, plain, -32, lambda_scale=2.0, dq=True, cabac_unary_length=10)
    j_rated = estimate_rd_cost(w, rated, -32, lambda_scale=2.0, dq=True, cabac_unary_length=10)
    assert j_rated[2] < j_plain[2]  # fewer bits
    assert j_rated[0] < j_plain[0]


# ----------------------------------------------------------------------------- scan


def _prev_pos(x, y, stride, height, b):
    """Scan::getPreviousPosition, to check that the trellis' backward walk retraces the scan."""
    if x > 0 and x % b != 0:
        return x - 1, y
    if y > 0 and y % b != 0:
        return min(x + b - 1, stride - 1), y - 1
    if x > 0:
        return x - 1, min(y + b - 1, height - 1)
    if y > 0:
        return stride - 1, y - 1
    return x, y


@pytest.mark.parametrize("shape", [(16, 27), (64, 576), (10, 512), (70, 130), (9, 9), (130, 64)])
@pytest.mark.parametrize("scan", [1, 2, 3, 4])
def test_scan_is_a_permutation_that_walks_back(shape, scan):
    pos = scan_positions(shape, scan)
    n = int(np.prod(shape))
    assert np.array_equal(np.sort(pos), np.arange(n))
    stride = n // shape[0]
    x, y = int(pos[-1] % stride), int(pos[-1] // stride)
    for i in range(n - 1, 0, -1):
        x, y = _prev_pos(x, y, stride, shape[0], 4 << scan)
        assert y * stride + x == pos[i - 1]


def test_scan_block_order_and_fallbacks():
    pos = scan_positions((10, 20), 1)
    np.testing.assert_array_equal(pos[:10], [0, 1, 2, 3, 4, 5, 6, 7, 20, 21])
    np.testing.assert_array_equal(scan_positions((100,), 3), np.arange(100))  # 1-D: raster
    np.testing.assert_array_equal(scan_positions((1, 64), 1), np.arange(64))  # one row: raster


# ----------------------------------------------------------------------------- RDOQ


@pytest.mark.parametrize("reference_rate", [True, False])
@pytest.mark.parametrize("lam", [0.25, 1.0, 4.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rdoq_does_not_increase_estimated_rd_cost(seed, lam, reference_rate):
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((30, 40)) * 0.02).astype(np.float32)
    w[rng.random(w.shape) < 0.2] = 0.0
    urq = quantize_uniform(w, -32)
    rdoq = quantize_rdoq(w, -32, lambda_scale=lam, reference_rate=reference_rate)
    j_urq = estimate_rd_cost(w, urq, -32, lambda_scale=lam)
    j_rdoq = estimate_rd_cost(w, rdoq, -32, lambda_scale=lam)
    assert j_rdoq[0] <= j_urq[0]
    assert j_rdoq[2] < j_urq[2]


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    x=st.floats(-0.5, 0.5, width=32),
    lam=st.floats(0.01, 16.0),
    reference_rate=st.booleans(),
)
def test_rdoq_single_weight_never_worse_than_urq(x, lam, reference_rate):
    # With one weight the greedy choice is the exact optimum over {0, r-1, r}, which holds the
    # URQ level. (Over longer sequences greedy choices steer later contexts, so a few percent of
    # short random arrays end up a hair above URQ; large tensors are covered by the test above.)
    w = np.array([x], dtype=np.float32)
    urq = quantize_uniform(w, -32)
    rdoq = quantize_rdoq(w, -32, lambda_scale=lam, reference_rate=reference_rate)
    j_urq = estimate_rd_cost(w, urq, -32, lambda_scale=lam)[0]
    assert estimate_rd_cost(w, rdoq, -32, lambda_scale=lam)[0] <= j_urq * (1 + 1e-12)


def test_rdoq_importance_quantizes_important_weights_finer():
    rng = np.random.default_rng(5)
    w = (rng.standard_normal(4000) * 0.02).astype(np.float32)
    important = rng.random(4000) < 0.5
    imp = np.where(important, 50.0, 0.02)
    levels = quantize_rdoq(w, -32, lambda_scale=2.0, importance=imp)
    err = (dequantize(levels, -32) - w) ** 2
    assert err[important].mean() < 0.25 * err[~important].mean()
    # Uniform importance 1 is the unweighted path.
    np.testing.assert_array_equal(
        quantize_rdoq(w, -32, lambda_scale=2.0, importance=np.ones(4000)),
        quantize_rdoq(w, -32, lambda_scale=2.0),
    )


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    prefix=st.lists(st.floats(-0.125, 0.125, width=32), min_size=0, max_size=30),
    last=st.floats(-0.125, 0.125, width=32),
    f_lo=st.floats(0.0, 10.0),
    factor=st.floats(1.0, 1e4),
    lam=st.floats(0.05, 8.0),
)
def test_rdoq_more_importance_never_coarser(prefix, last, f_lo, factor, lam):
    # Greedy RDOQ decides the last weight with the same contexts in both runs, so raising its
    # importance can only lower its distortion (exchange argument on F*d + lambda*R).
    w = np.array([*prefix, last], dtype=np.float32)
    imp_lo = np.ones(w.size)
    imp_lo[-1] = f_lo
    imp_hi = imp_lo.copy()
    imp_hi[-1] = f_lo * factor + 1e-3
    step = step_size(-32)
    lo = quantize_rdoq(w, -32, lambda_scale=lam, importance=imp_lo)
    hi = quantize_rdoq(w, -32, lambda_scale=lam, importance=imp_hi)
    np.testing.assert_array_equal(lo[:-1], hi[:-1])
    assert abs(float(last) / step - hi[-1]) <= abs(float(last) / step - lo[-1]) + 1e-9


def test_rdoq_lambda_zero_is_urq_and_huge_importance_is_near_urq():
    rng = np.random.default_rng(9)
    w = (rng.standard_normal(2000) * 0.02).astype(np.float32)
    urq = quantize_uniform(w, -32)
    np.testing.assert_array_equal(quantize_rdoq(w, -32, lambda_scale=0.0), urq)
    hi = quantize_rdoq(w, -32, lambda_scale=1.0, importance=np.full(2000, 1e9))
    assert np.mean(hi == urq) > 0.999


def test_quantize_dispatch():
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((20, 30)) * 0.02).astype(np.float32)
    np.testing.assert_array_equal(quantize(w, -32), quantize_uniform(w, -32))
    np.testing.assert_array_equal(quantize(w, -32, dq=True), quantize_dq(w, -32))
    np.testing.assert_array_equal(
        quantize(w, -32, dq=True, lambda_scale=1.0, scan_order=1),
        quantize_dq(w, -32, lambda_scale=1.0, scan_order=1),
    )
    np.testing.assert_array_equal(
        quantize(w, -32, lambda_scale=1.0), quantize_rdoq(w, -32, lambda_scale=1.0)
    )
    with pytest.raises(SettingsError):
        quantize(w, -32, dq=True, importance=np.ones(w.shape))


# ----------------------------------------------------------------------------- reference


def _nncodec_quant_layer(w, dq, qp, d, lam, n, scan):
    deep_cabac = pytest.importorskip("nncodec.extensions.deepCABAC")
    enc = deep_cabac.Encoder()
    enc.initCtxModels(10, 0)
    out = np.zeros(w.shape, np.int32)
    qp_ret = enc.quantLayer(w, out, dq, d, qp, lam, n, scan, 1)
    return qp_ret, out


@pytest.mark.parametrize("case", range(12))
def test_matches_nncodec_quant_layer(case):
    rng = np.random.default_rng(100 + case)
    shape = [(500,), (40, 27), (70, 130), (16, 3, 3, 3)][case % 4]
    w = (rng.standard_normal(shape) * [0.01, 0.05, 0.2][case % 3]).astype(np.float32)
    w[rng.random(shape) < 0.4] = 0.0
    qp, d = int(rng.integers(-40, -24)), int(rng.integers(1, 4))
    lam, n, scan = [0.0, 0.5, 1.0, 3.0][case % 4], [10, 11, 4][case % 3], case % 5
    _, ref_dq = _nncodec_quant_layer(w, 1, qp, d, lam, n, scan)
    np.testing.assert_array_equal(quantize_dq(w, qp, d, lam, n, scan), ref_dq)
    _, ref_urq = _nncodec_quant_layer(w, 0, qp, d, lam, n, scan)
    ours = quantize_rdoq(w, qp, d, lam, cabac_unary_length=n, scan_order=scan)
    np.testing.assert_array_equal(ours, ref_urq)


@pytest.mark.parametrize(("shape", "scan", "dq"), [((90, 100), 0, False), ((200, 70), 1, True)])
def test_estimated_bits_track_nncodec_stream_size(shape, scan, dq):
    deep_cabac = pytest.importorskip("nncodec.extensions.deepCABAC")
    rng = np.random.default_rng(4)
    w = (rng.standard_normal(shape) * 0.02).astype(np.float32)
    levels = quantize_dq(w, -32, scan_order=scan) if dq else quantize_uniform(w, -32)
    enc = deep_cabac.Encoder()
    enc.initCtxModels(11, 0)
    off = deep_cabac.HdspMode.AlwaysOff
    zeros = np.zeros(shape[0], np.int32)
    enc.encodeLayer(levels, int(dq), scan, 1, 0, 0, zeros, off, np.zeros(2, np.int8), 0, 0)
    actual = 8 * len(enc.finish())
    _, _, bits = estimate_rd_cost(w, levels, -32, dq=dq, scan_order=scan)
    # The estimate leaves out ~60-80 side-info flags and termination; the rest is model error.
    assert 0.985 * actual < bits < actual


def test_safe_qp_matches_nncodec_fallback():
    w = np.array([1000.0, -300.0, 0.1], dtype=np.float32)
    qp_ret, ref = _nncodec_quant_layer(w, 0, -100, 2, 0.0, 10, 0)
    assert safe_qp(w, -100) == qp_ret != -100
    np.testing.assert_array_equal(quantize_uniform(w, qp_ret), ref)
    assert safe_qp(w, -32) == -32


@pytest.mark.parametrize(
    ("w", "qp", "d"),
    [([1.0], -62, 1), ([1.5, 0.3], -140, 2), ([0.7], -126, 2), ([-3e3, 2.0], -90, 0)],
)
def test_safe_qp_always_fits(w, qp, d):
    w = np.array(w, np.float32)
    q = safe_qp(w, qp, d)
    for levels in (quantize_uniform(w, q, d), quantize_dq(w, q, d), quantize_rdoq(w, q, d, 1.0)):
        assert int(np.abs(levels.astype(np.int64)).max()) <= 2**31 - 2
    if q != qp:  # minimal up to NNCodec's own formula: one step finer overflows
        with pytest.raises(SettingsError):
            quantize_dq(w, q - 1, d)


def test_safe_qp_where_nncodec_formula_falls_short():
    # NNCodec's fallback for these returns a QP that still overflows (quantLayer then fails).
    assert safe_qp(np.array([1.0], np.float32), -62, 1) == -61
    w = np.array([1.5, 0.3], np.float32)
    q = safe_qp(w, -140, 2)
    np.testing.assert_array_equal(quantize_uniform(w, q), _urq_reference(w, q))


def test_urq_overflow_bounds_match_quantize_urq():
    # At qp 0 (step 1) float32 values near 2^31 are spaced 128/256 apart: quantizeURQ accepts
    # levels in [-2^31, 2^31 - 1].
    ok = np.array([2147483520.0, -2147483648.0, 0.5, -0.5, 2.5], np.float32)
    np.testing.assert_array_equal(quantize_uniform(ok, 0, 0), [2147483520, -2147483648, 1, -1, 3])
    for bad in ([2147483648.0], [-2147483904.0], [1.0, 3e9]):
        with pytest.raises(SettingsError, match="overflow"):
            quantize_uniform(np.array(bad, np.float32), 0, 0)


@pytest.mark.parametrize("qp", [-75, -32, -4, 7])
def test_urq_matches_pure_python_with_zeros_and_ties(qp):
    rng = np.random.default_rng(qp + 100)
    step = np.float32(step_size(qp))
    ties = (rng.integers(-50, 50, 500) + 0.5).astype(np.float32) * step
    w = np.r_[rng.normal(0, 0.05, 5000).astype(np.float32), ties, np.float32(0), -np.float32(0)]
    try:
        got = quantize_uniform(w, qp)
    except SettingsError:
        assert np.abs(w).max() / step > 2**31 - 1
        return
    np.testing.assert_array_equal(got, _urq_reference(w, qp))


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("func", [quantize_uniform, quantize_dq, quantize_rdoq, quantize])
def test_bad_tensors_raise(func):
    ok = np.zeros(8, np.float32)
    for bad in (
        np.array([0.1, np.nan], np.float32),
        np.array([np.inf, 0.0]),
        np.array([1e300, 0.0]),  # beyond float32
        np.arange(8),
        np.ones(4, bool),
        np.ones(4, complex),
        np.array(["a", "b"]),
    ):
        with pytest.raises(InvalidTensorError):
            func(bad, -32)
    with pytest.raises(SettingsError):
        func(ok, 1.5)
    with pytest.raises(SettingsError):
        func(ok, -32, 9)


def test_bad_settings_raise():
    w = np.zeros((4, 4), np.float32)
    for lam in (-1.0, float("nan"), float("inf"), "1"):
        with pytest.raises(SettingsError):
            quantize_rdoq(w, -32, lambda_scale=lam)
        with pytest.raises(SettingsError):
            quantize_dq(w, -32, lambda_scale=lam)
    with pytest.raises(SettingsError):
        quantize_dq(w, -32, scan_order=5)
    with pytest.raises(SettingsError):
        quantize_dq(w, -32, max_num_no_rem=0)
    with pytest.raises(SettingsError):
        quantize_rdoq(w, -32, cabac_unary_length=-1)
    with pytest.raises(InvalidTensorError):
        quantize_rdoq(w, -32, importance=np.ones(3))
    with pytest.raises(InvalidTensorError):
        quantize_rdoq(w, -32, importance=-np.ones((4, 4)))
    big = np.array([1000.0], np.float32)
    for func in (quantize_uniform, quantize_dq, quantize_rdoq):
        with pytest.raises(SettingsError, match="overflow"):
            func(big, -100)
    with pytest.raises(InvalidTensorError):
        dequantize(np.ones(3, np.float32), -32)


def test_empty_and_scalar_tensors():
    for func in (quantize_uniform, quantize_dq, quantize_rdoq):
        assert func(np.zeros(0, np.float32), -32).shape == (0,)
        out = func(np.float32(0.01), -32)
        assert out.shape == () and out.dtype == np.int32
