"""The sparse coding mode: exact round trips, robustness, and its size against H0 and NNC."""

from __future__ import annotations

import numpy as np
import pytest

from fedbench.codec import (
    CodecConfig,
    CorruptStreamError,
    encode,
    quantize,
    sparse,
)
from fedbench.codec.entropy import per_tensor_entropy_bytes, zeroth_order_entropy_bytes

_I32 = np.iinfo(np.int32)


def _cases() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    sparse99 = np.where(rng.random(20000) < 0.01, rng.integers(-3, 4, 20000), 0)
    return [
        np.zeros(1, np.int32),
        np.array([5], np.int32),
        np.zeros(1000, np.int32),
        np.r_[np.zeros(999), 1].astype(np.int32),
        np.r_[-1, np.zeros(999)].astype(np.int32),
        np.array([_I32.min, _I32.max, 0, 1, -1, _I32.min + 1, 0, 0, 15, 16, -17], np.int32),
        rng.integers(-3000, 3000, 5000).astype(np.int32),
        np.round(rng.normal(0, 5, 10000)).astype(np.int32),
        sparse99.astype(np.int32),
        (-1) ** np.arange(777, dtype=np.int32),
    ]


@pytest.mark.parametrize("method", [sparse.METHOD_RUNS, sparse.METHOD_DENSE])
@pytest.mark.parametrize("case", range(len(_cases())))
def test_both_methods_roundtrip(method: int, case: int) -> None:
    lv = _cases()[case]
    data = sparse.encode(lv, method)
    assert np.array_equal(sparse.decode(data, method, lv.size), lv)


def test_choice_takes_the_smaller_method() -> None:
    for lv in _cases():
        method, data = sparse.choose_and_encode(lv)
        assert np.array_equal(sparse.decode(data, method, lv.size), lv)
        for other in (sparse.METHOD_RUNS, sparse.METHOD_DENSE):
            frac = np.count_nonzero(lv) / lv.size
            tried = (other == sparse.METHOD_RUNS and frac < sparse.RUNS_TRY) or (
                other == sparse.METHOD_DENSE and frac >= sparse.DENSE_TRY
            )
            if tried:
                assert len(data) <= len(sparse.encode(lv, other))


def test_all_zero_payload_is_tiny() -> None:
    assert len(sparse.encode(np.zeros(10**6, np.int32), sparse.METHOD_RUNS)) <= 2


def test_random_payloads_never_crash() -> None:
    rng = np.random.default_rng(3)
    for i in range(300):
        data = rng.integers(0, 256, int(rng.integers(0, 40)), dtype=np.uint8).tobytes()
        method = sparse.METHOD_RUNS if i % 2 else sparse.METHOD_DENSE
        try:
            out = sparse.decode(data, method, 500)
        except CorruptStreamError:
            continue
        assert out.shape == (500,)


def test_truncated_payloads_are_detected_or_harmless() -> None:
    lv = np.round(np.random.default_rng(4).normal(0, 3, 4000)).astype(np.int32)
    data = sparse.encode(lv, sparse.METHOD_DENSE)
    with pytest.raises(CorruptStreamError, match="past the end"):
        sparse.decode(data[: len(data) // 2], sparse.METHOD_DENSE, lv.size)


def test_unknown_method() -> None:
    with pytest.raises(CorruptStreamError):
        sparse.decode(b"\x00", 9, 3)


def _update(shapes: list[tuple[int, ...]], seed: int) -> dict[str, np.ndarray]:
    """The 99 % workload: std 1e-3 Gaussian update with 99 % of entries zeroed."""
    rng = np.random.default_rng(seed)
    out = {}
    for i, s in enumerate(shapes):
        w = rng.normal(0, 1e-3, s).astype(np.float32)
        w[rng.random(s) < 0.99] = 0
        out[f"layer{i}.weight"] = w
    return out


# A quarter of ResNet-18's largest layers: enough non-zero levels (~2,000) for the bound to
# be about the coder, not about its few bytes of framing.
_SHAPES = [(512, 512, 3, 3), (512, 256, 3, 3), (256, 256, 3, 3), (1000, 512), (256, 128, 1, 1)]


def test_sparse_update_within_ten_percent_of_h0() -> None:
    x = _update(_SHAPES, seed=0)
    levels = [quantize(w, -32) for w in x.values()]
    h0 = zeroth_order_entropy_bytes(levels)
    assert per_tensor_entropy_bytes(levels) <= h0 + 1e-6
    size = len(encode(x, CodecConfig(mode="sparse", qp=-32)))
    assert size <= 1.10 * h0, (size, h0)
    # And far below the NNC coder, whose estimator cannot represent such small probabilities.
    assert size < 0.7 * len(encode(x, CodecConfig(mode="nnc", qp=-32)))


def test_dense_tensors_within_one_percent_of_nnc() -> None:
    rng = np.random.default_rng(1)
    x = {
        "conv.weight": rng.normal(0, 0.02, (128, 128, 3, 3)).astype(np.float32),
        "fc.weight": rng.normal(0, 0.02, (100, 512)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.02, 128).astype(np.float32),
    }
    sparse_size = len(encode(x, CodecConfig(mode="sparse")))
    nnc_size = len(encode(x, CodecConfig(mode="nnc")))
    assert sparse_size <= 1.01 * nnc_size, (sparse_size, nnc_size)


def test_zeroth_order_entropy_pools_levels() -> None:
    a = np.array([0, 0, 1, 1])
    b = np.array([2, 2, 2, 2])
    assert zeroth_order_entropy_bytes([a]) == pytest.approx(0.5)
    # pooled: 8 symbols with probabilities 1/4, 1/4, 1/2 -> 1.5 bits each
    assert zeroth_order_entropy_bytes([a, b]) == pytest.approx(1.5)
    assert per_tensor_entropy_bytes([a, b]) == pytest.approx(0.5)
    assert zeroth_order_entropy_bytes([]) == 0.0
