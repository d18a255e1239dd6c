"""The same numbers under NumPy 1 and NumPy 2: ties, float32/float64 promotion, pinned bitstreams.

NumPy 2 changed scalar promotion (NEP 50) and its selection algorithms; every value below was
produced identically by NumPy 1.26 and 2.4, so a test failing under either version means a
result depends on the NumPy version again.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest

from fedbench.fl.aggregation import weighted_mean
from fedbench.fl.compressors import TensorSpec, build_compressor, compress_with_feedback
from fedbench.fl.sparsify import sparsify_structured, sparsify_unstructured, topk_indices


def _tied(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """float32 values with many exact magnitude ties (like a mean of quantized updates)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-6, 7, shape) * np.float32(2.0**-10)).astype(np.float32)


def _stable_topk(flat: np.ndarray, k: int) -> np.ndarray:
    """Reference: the k largest magnitudes, equal magnitudes taken by position."""
    return np.sort(np.argsort(-np.abs(flat.astype(np.float64)), kind="stable")[:k])


@pytest.mark.parametrize("n,k", [(1000, 100), (4608, 461), (37, 5), (64, 63)])
def test_topk_ties_broken_by_position(n: int, k: int) -> None:
    flat = _tied((n,), n).reshape(-1)
    idx = topk_indices(flat, k)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, _stable_topk(flat, k))


def test_topk_all_equal_keeps_the_first() -> None:
    flat = np.full(50, -0.25, np.float32)
    flat[::2] = 0.25
    np.testing.assert_array_equal(topk_indices(flat, 7), np.arange(7))
    out = sparsify_unstructured(flat.reshape(5, 10), 0.9)
    np.testing.assert_array_equal(np.flatnonzero(out), np.arange(5))


@pytest.mark.parametrize(
    "mags,factor,drop",
    [
        # 1.2 * mean = 29.625 exactly: float64 keeps the last filter; float32(1.2) (NumPy 2's
        # weak-scalar rule) put the threshold one ulp above it and dropped it.
        ([24.3125, 20.125, 29.625], 1.2, [True, True, False]),
        # NumPy 1 rounded the float64 threshold to float32 for the comparison: kept filter 0.
        ([2.840909004211426, 7.25, 4.113636493682861], 0.6, [True, False, False]),
    ],
)
def test_structured_factor_threshold_in_float64(
    mags: list[float], factor: float, drop: list[bool]
) -> None:
    u = np.array(mags, np.float32).reshape(-1, 1, 1, 1) * np.ones((1, 2, 1, 1), np.float32)
    out = sparsify_structured(u, 0.0, factor=factor)
    np.testing.assert_array_equal(np.all(out.reshape(len(mags), -1) == 0, axis=1), drop)


def _mean_reference(
    updates: list[dict[str, np.ndarray]], weights: list[float]
) -> dict[str, np.ndarray]:
    """Sum w_k u_k / sum w_k in float64 (Python-float weights), one cast to float32."""
    total = math.fsum(float(w) for w in weights)
    return {
        n: (
            sum(float(w) * u[n].astype(np.float64) for u, w in zip(updates, weights, strict=True))
            / total
        ).astype(np.float32)
        for n in updates[0]
    }


@pytest.mark.parametrize(
    "weights",
    [
        [1, 3, 7],
        [0.1, 0.2, 0.7],
        list(np.array([0.3, 0.3, 0.4], np.float32)),  # sum() is float32 in NumPy 2, f64 in 1
        list(np.array([5, 6, 7], np.int64)),
    ],
)
def test_weighted_mean_is_float64_throughout(weights: list[float]) -> None:
    rng = np.random.default_rng(5)
    ups = [{"w": rng.standard_normal((16, 8)).astype(np.float32)} for _ in range(3)]
    out = weighted_mean(ups, weights)
    assert out["w"].dtype == np.float32
    np.testing.assert_array_equal(out["w"], _mean_reference(ups, weights)["w"])


# ----------------------------------------------------------------------- pinned bitstreams

_TEMPLATE = {
    "conv1.weight": TensorSpec((16, 8, 3, 3), "weight"),
    "conv1.adf_scale": TensorSpec((16, 1, 1, 1), "fine"),
    "bn1.weight": TensorSpec((16,), "fine"),
    "conv2.weight": TensorSpec((32, 16, 3, 3), "weight"),
    "fc.weight": TensorSpec((2, 32), "weight"),
    "fc.bias": TensorSpec((2,), "fine"),
}

# sha256 (first 16 hex digits) of the bitstream and of the residual, the same under
# NumPy 1.26.4 and 2.4.6; inputs have many ties at the top-k threshold.
_PINNED = {
    "deepcabac": (
        "deepcabac",
        {"sparsity": 0.9, "qp": -32, "nonweight_qp": -75},
        "db770c8c05746167",
        "98fff707a37d463a",
    ),
    "deepcabac-dq": (
        "deepcabac",
        {"sparsity": 0.9, "qp": -32, "nonweight_qp": -75, "dq": True, "num_threads": 1},
        "46ec565b253de2bd",
        "62333c3d2bb45d0b",
    ),
    "stc": ("stc", {"sparsity": 0.96}, "c79b2a24158555bd", "9cbe7b55f40436a9"),
    "topk-fp16": ("topk-fp16", {"sparsity": 0.9}, "7bc03dfffa6c1ae6", "555a688bf8d52939"),
}


def _sha(data: bytes) -> str:
    """First 16 hex digits of the sha256."""
    return hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.parametrize("case", sorted(_PINNED))
def test_pinned_bitstream_same_under_numpy_1_and_2(case: str) -> None:
    name, opts, bits_sha, res_sha = _PINNED[case]
    comp = build_compressor(name, _TEMPLATE, **opts)
    update = {n: _tied(s.shape, i) for i, (n, s) in enumerate(_TEMPLATE.items())}
    bits, _, res = compress_with_feedback(comp, update)
    assert all(r.dtype == np.float32 for r in res.values())
    res_bytes = b"".join(np.ascontiguousarray(res[n]).tobytes() for n in _TEMPLATE)
    assert (_sha(bits), _sha(res_bytes)) == (bits_sha, res_sha)
