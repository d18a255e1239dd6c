"""Update compressors: exact round trips, sizes, error accumulation."""

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedbench.fl.compressors import (
    COMPRESSORS,
    CompressorError,
    TensorSpec,
    build_compressor,
    compress_with_feedback,
    golomb_decode,
    golomb_encode,
    optimal_golomb_parameter,
)
from fedbench.fl.sparsify import keep_count


def make_update(seed=0):
    """A small model-like update: two weight tensors, a bias, a BN statistic, a factor."""
    rng = np.random.default_rng(seed)
    u = {
        "conv.weight": rng.normal(0, 0.01, (16, 8, 3, 3)).astype(np.float32),
        "conv.adf_scale": rng.normal(0, 0.001, (16, 1, 1, 1)).astype(np.float32),
        "bn.running_mean": rng.normal(0, 0.1, 16).astype(np.float32),
        "fc.weight": rng.normal(0, 0.01, (10, 64)).astype(np.float32),
        "fc.bias": rng.normal(0, 0.01, 10).astype(np.float32),
    }
    tpl = {
        n: TensorSpec(t.shape, "weight" if t.ndim >= 2 and n.endswith("weight") else "fine")
        for n, t in u.items()
    }
    return u, tpl


def n_params(u):
    return sum(t.size for t in u.values())


def test_registry_has_all_methods():
    assert {"fp32", "deepcabac", "stc", "topk-fp16"} <= set(COMPRESSORS)
    with pytest.raises(CompressorError):
        build_compressor("nope", {})


def test_fp32_exact_and_four_bytes_per_param():
    u, tpl = make_update()
    c = build_compressor("fp32", tpl)
    bits = c.encode(u)
    assert len(bits) == 4 * n_params(u)
    dec = c.decode(bits)
    for n in u:
        np.testing.assert_array_equal(dec[n], u[n])
    with pytest.raises(CompressorError):
        c.decode(bits[:-1])
    with pytest.raises(CompressorError):
        c.encode({k: v for k, v in u.items() if k != "fc.bias"})


@pytest.mark.parametrize("b", [0, 1, 3, 7])
def test_golomb_round_trip(b):
    rng = np.random.default_rng(b)
    pos = np.sort(rng.choice(10000, 300, replace=False))
    np.testing.assert_array_equal(golomb_decode(golomb_encode(pos, b), pos.size, b), pos)


def test_optimal_golomb_parameter_values():
    # b* = 1 + floor(log2(log(phi-1)/log(1-p))) (Sattler et al. 2020)
    assert optimal_golomb_parameter(0.1) == 3
    assert optimal_golomb_parameter(0.01) == 6
    assert optimal_golomb_parameter(1.0) == 0


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99])
def test_stc_round_trip_exact_and_smaller_than_fp32(sparsity):
    u, tpl = make_update(1)
    c = build_compressor("stc", tpl, sparsity=sparsity)
    bits = c.encode(u)
    dec = c.decode(bits)
    assert len(bits) < 4 * n_params(u)
    for n, spec in tpl.items():
        if spec.kind != "weight":
            np.testing.assert_array_equal(dec[n], u[n].astype(np.float16).astype(np.float32))
            continue
        flat = u[n].reshape(-1)
        k = keep_count(flat.size, sparsity)
        keep = np.argsort(-np.abs(flat))[:k]
        mu = np.float32(np.abs(flat[keep].astype(np.float64)).mean())
        ref = np.zeros_like(flat)
        ref[keep] = np.where(flat[keep] < 0, -mu, mu)
        np.testing.assert_array_equal(dec[n].reshape(-1), ref)  # exact ternary decode
    # re-encoding the decoded update reproduces it exactly (the bitstream is lossless
    # for ternary input)
    dec2 = c.decode(c.encode(dec))
    for n in u:
        np.testing.assert_array_equal(dec2[n], dec[n])


@pytest.mark.parametrize("name", ["stc", "topk-fp16"])
def test_sparse_compressors_global_topk(name):
    u, tpl = make_update(7)
    u["fc.weight"] *= 10  # the larger tensor should take most of the global budget
    c = build_compressor(name, tpl, sparsity=0.9, sparsifier="topk-global")
    dec = c.decode(c.encode(u))
    weights = [n for n, s in tpl.items() if s.kind == "weight"]
    total = sum(u[n].size for n in weights)
    assert sum(np.count_nonzero(dec[n]) for n in weights) == keep_count(total, 0.9)
    assert np.count_nonzero(dec["fc.weight"]) > keep_count(u["fc.weight"].size, 0.9)


def test_stc_truncated_stream_raises():
    u, tpl = make_update(2)
    c = build_compressor("stc", tpl, sparsity=0.9)
    bits = c.encode(u)
    with pytest.raises(CompressorError):
        c.decode(bits[: len(bits) // 2])


def test_topk_fp16_round_trip():
    u, tpl = make_update(3)
    c = build_compressor("topk-fp16", tpl, sparsity=0.8)
    dec = c.decode(c.encode(u))
    for n, spec in tpl.items():
        if spec.kind == "weight":
            nz = dec[n] != 0
            assert nz.sum() == keep_count(u[n].size, 0.8)
            np.testing.assert_array_equal(
                dec[n][nz], u[n][nz].astype(np.float16).astype(np.float32)
            )


@pytest.mark.parametrize(
    "name,opts",
    [
        ("fp32", {}),
        ("stc", {"sparsity": 0.9}),
        ("topk-fp16", {"sparsity": 0.9}),
    ],
)
def test_error_accumulation_identity(name, opts):
    """u = decoded + residual each step, and over steps sum(dW) = sum(decoded) + residual."""
    u0, tpl = make_update(4)
    c = build_compressor(name, tpl, **opts)
    rng = np.random.default_rng(5)
    residual = {n: np.zeros_like(t) for n, t in u0.items()}
    sum_dw = {n: np.zeros(t.shape, np.float64) for n, t in u0.items()}
    sum_dec = {n: np.zeros(t.shape, np.float64) for n, t in u0.items()}
    for _ in range(5):
        dw = {n: rng.normal(0, 0.01, t.shape).astype(np.float32) for n, t in u0.items()}
        u = {n: dw[n] + residual[n] for n in dw}
        _bits, dec, residual = compress_with_feedback(c, u)
        for n, un in u.items():
            np.testing.assert_allclose(dec[n] + residual[n], un, atol=1e-7)
            sum_dw[n] += dw[n]
            sum_dec[n] += dec[n]
    for n in u0:
        np.testing.assert_allclose(sum_dec[n] + residual[n], sum_dw[n], atol=1e-6)


def _has_codec():
    try:
        from fedbench.codec import CodecConfig, decode, encode  # noqa: F401
    except ImportError:
        return False
    return True


def _nnc_step(qp: int, qp_density: int) -> float:
    """NNCodec's quantizer step, (2^d + (qp & (2^d - 1))) * 2^((qp >> d) - d).

    Written out here rather than taken from fedbench.codec, so that a codec step coarser than
    NNCodec's shows up; it equals 2^(qp / 2^d) only where qp is a multiple of 2^d and is
    larger in between.
    """
    k = 1 << qp_density
    return (k + (qp & (k - 1))) * 2.0 ** ((qp >> qp_density) - qp_density)


def _expected_keep(
    u: dict[str, np.ndarray], weights: list[str], sparsity: float, sparsifier: str
) -> dict[str, np.ndarray]:
    """Boolean masks of the weight entries the sparsifier must keep, computed independently."""

    def top(mag: np.ndarray, n_keep: int) -> np.ndarray:
        order = np.argsort(-mag, kind="stable")
        # no tie at the threshold, or "the k largest" would not be one set
        if 0 < n_keep < mag.size:
            assert mag[order[n_keep - 1]] > mag[order[n_keep]]
        keep = np.zeros(mag.size, dtype=bool)
        keep[order[:n_keep]] = True
        return keep

    def n_kept(n: int) -> int:
        return n - round(sparsity * n)  # exactly round(sparsity * n) entries are zeroed

    if sparsifier == "topk-global":
        mag = np.concatenate([np.abs(u[n]).reshape(-1) for n in weights])
        keep = top(mag, n_kept(mag.size))
        out, pos = {}, 0
        for n in weights:
            out[n] = keep[pos : pos + u[n].size].reshape(u[n].shape)
            pos += u[n].size
        return out
    if sparsifier == "structured":
        out = {}
        for n in weights:
            filters = np.abs(u[n]).reshape(u[n].shape[0], -1)
            # whole output filters, ranked by mean magnitude
            keep_f = top(filters.mean(axis=1), n_kept(filters.shape[0]))
            out[n] = np.broadcast_to(keep_f[:, None], filters.shape).reshape(u[n].shape)
        return out
    return {
        n: top(np.abs(u[n]).reshape(-1), n_kept(u[n].size)).reshape(u[n].shape) for n in weights
    }


def _assert_within_half_step(dec: np.ndarray, ref: np.ndarray, step: float, what: str) -> None:
    """|dec - ref| <= step/2 per entry, plus float32 slack.

    URQ rounds float32(float32(1/step) * w) and the decoder returns float32(step * level): each
    rounding is within 2^-24 relative, i.e. a few float32 ulps of |w|, far below a step.
    """
    if not ref.size:
        return
    err = np.abs(dec.astype(np.float64) - ref.astype(np.float64))
    bound = step / 2 + 4 * np.finfo(np.float32).eps * np.abs(ref.astype(np.float64)) + 1e-30
    worst = int(np.argmax(err - bound))
    assert (err <= bound).all(), (
        f"{what}: error {err.flat[worst]:.3g} > {bound.flat[worst]:.3g} (step {step:.3g})"
    )


@pytest.mark.skipif(not _has_codec(), reason="fedbench.codec encode/decode not available yet")
@pytest.mark.parametrize("mode", ["nnc", "sparse"])
@pytest.mark.parametrize("sparsifier", ["unstructured", "topk", "structured", "topk-global"])
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)  # autouse thread fixture
@given(
    seed=st.integers(0, 2**16),
    sparsity=st.floats(0.5, 0.99),
    qp_density=st.integers(1, 3),
    wq=st.integers(0, 24),
    fq=st.integers(0, 16),
)
@example(seed=0, sparsity=0.5, qp_density=1, wq=24, fq=16)  # coarsest steps, most kept
@example(seed=1, sparsity=0.99, qp_density=3, wq=0, fq=0)  # finest steps, fewest kept
def test_deepcabac_compressor(mode, sparsifier, seed, sparsity, qp_density, wq, fq):
    """Kept weights are the largest ones, each within step/2; fine tensors are never sparsified.

    QPs are drawn on every density's grid, most of them not multiples of 2^d, so a step that
    ignored the fractional part of qp / 2^d would be caught.
    """
    u, tpl = make_update(seed)
    scale = 1 << qp_density
    qp = -10 * scale + wq * scale // 8  # steps from 2^-10 to 2^-7
    nwqp = -20 * scale + fq * scale // 8  # steps from 2^-20 to 2^-18
    c = build_compressor(
        "deepcabac",
        tpl,
        sparsity=sparsity,
        sparsifier=sparsifier,
        qp=qp,
        qp_density=qp_density,
        nonweight_qp=nwqp,
        codec_mode=mode,
        num_threads=1,
    )
    bits = c.encode(u)
    dec = c.decode(bits)
    if sparsity >= 0.9:
        assert len(bits) < n_params(u)  # under one byte per parameter
    step, fine_step = _nnc_step(qp, qp_density), _nnc_step(nwqp, qp_density)
    weights = [n for n, s in tpl.items() if s.kind == "weight"]
    assert weights == ["conv.weight", "fc.weight"]
    keep = _expected_keep(u, weights, sparsity, sparsifier)
    for n, spec in tpl.items():
        assert dec[n].shape == u[n].shape and dec[n].dtype == np.float32
        if spec.kind == "weight":
            k = keep[n]
            # everything outside the kept set is exactly zero ...
            assert not dec[n][~k].any(), f"{n}: non-kept entries decoded non-zero"
            # ... and every kept entry is its weight up to the quantizer's rounding
            _assert_within_half_step(dec[n][k], u[n][k], step, n)
            if sparsifier != "structured" and k.any():
                # kept entries are all above step/2, so dropping one of them cannot pass
                assert np.abs(u[n][k]).min() > step / 2
        else:
            # fine tensors (the factor included) are never sparsified and use the fine QP;
            # most of their values are many fine steps, so zeroing even the smaller half of
            # them (the weights' least sparsity) would show
            _assert_within_half_step(dec[n], u[n], fine_step, n)
            assert np.mean(np.abs(u[n]) > fine_step) >= 0.75


def _fine_step(qp):
    """Quantizer step of `qp` at qp_density 2."""
    return (4 + (qp & 3)) * 2.0 ** ((qp >> 2) - 2)


@pytest.mark.skipif(not _has_codec(), reason="fedbench.codec encode/decode not available yet")
@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_adf_qp_null_or_equal_keeps_the_bitstream(mode):
    u, tpl = make_update(7)
    opts = {"sparsity": 0.9, "qp": -32, "nonweight_qp": -75, "codec_mode": mode}
    before = build_compressor("deepcabac", tpl, **opts).encode(u)
    for adf_qp in (None, -75):
        assert build_compressor("deepcabac", tpl, adf_qp=adf_qp, **opts).encode(u) == before


# sha256 of what the compressor made before fedbench.codec.encode took qp= (the factors in an
# encode call of their own, spliced into the other tensors' container): the bytes must stay.
_ADF_QP_PINNED = {
    "nnc": (465, "e24591c4121d5b25aec10f4dc3346554fcc24d9dcae111b786cfed35ae958659"),
    "sparse": (376, "f120a6a41c57734e39c3bfeff0af4148fc7614721e5df6cb0a168df94a3cdcd1"),
}


@pytest.mark.skipif(not _has_codec(), reason="fedbench.codec encode/decode not available yet")
@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_adf_qp_bitstream_is_pinned(mode):
    import hashlib

    u, tpl = make_update(7)
    opts = {"sparsity": 0.9, "qp": -32, "nonweight_qp": -75, "codec_mode": mode, "adf_qp": -50}
    data = build_compressor("deepcabac", tpl, **opts).encode(u)
    assert (len(data), hashlib.sha256(data).hexdigest()) == _ADF_QP_PINNED[mode]


@pytest.mark.skipif(not _has_codec(), reason="fedbench.codec encode/decode not available yet")
@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_adf_qp_coarser_codes_factors_coarser(mode):
    from fedbench.codec import decode

    u, tpl = make_update(9)
    opts = {"sparsity": 0.9, "qp": -32, "nonweight_qp": -75, "codec_mode": mode}
    fine = build_compressor("deepcabac", tpl, **opts)
    coarse = build_compressor("deepcabac", tpl, adf_qp=-50, **opts)
    b_fine, b_coarse = fine.encode(u), coarse.encode(u)
    assert len(b_coarse) < len(b_fine)
    dec_fine, dec = fine.decode(b_fine), coarse.decode(b_coarse)
    # a single plain codec stream: the generic decoder reads it
    assert set(decode(b_coarse)) == set(tpl)
    err = np.abs(dec["conv.adf_scale"] - u["conv.adf_scale"]).max()
    assert err <= _fine_step(-50) / 2 + 1e-9
    assert err > _fine_step(-75)  # really coarser than the other fine tensors
    for n in tpl:
        assert dec[n].shape == u[n].shape
        if n != "conv.adf_scale":
            np.testing.assert_array_equal(dec[n], dec_fine[n])
