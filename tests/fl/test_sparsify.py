"""Every sparsifier hits its target sparsity."""

import numpy as np
import pytest

from fedbench.fl.sparsify import (
    keep_count,
    sparsify,
    sparsify_structured,
    sparsify_topk_global,
    sparsify_unstructured,
)


@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("shape", [(64, 32, 3, 3), (10, 7), (5, 3, 1, 1)])
def test_unstructured_hits_target(sparsity, shape):
    u = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    s = sparsify_unstructured(u, sparsity)
    n = u.size
    assert np.count_nonzero(s) == keep_count(n, sparsity)
    kept = np.abs(u[s != 0])
    dropped = np.abs(u[s == 0])
    if kept.size and dropped.size:
        assert kept.min() >= dropped.max()  # the largest magnitudes survive
    np.testing.assert_array_equal(s[s != 0], u[s != 0])


def test_topk_global_hits_target_over_all_tensors():
    rng = np.random.default_rng(1)
    ts = {
        "a": rng.normal(size=(20, 10)).astype(np.float32),
        "b": 5 * rng.normal(size=(8, 4, 3, 3)).astype(np.float32),
    }
    out = sparsify_topk_global(ts, 0.9)
    total = sum(t.size for t in ts.values())
    assert sum(np.count_nonzero(t) for t in out.values()) == keep_count(total, 0.9)
    # the larger-scale tensor keeps more entries than the per-tensor share
    assert np.count_nonzero(out["b"]) > keep_count(ts["b"].size, 0.9)


@pytest.mark.parametrize("sparsity", [0.25, 0.5, 0.75])
def test_structured_zeroes_whole_filters_to_target(sparsity):
    u = np.random.default_rng(2).normal(size=(16, 8, 3, 3)).astype(np.float32)
    s = sparsify_structured(u, sparsity)
    zero_filters = np.all(s.reshape(16, -1) == 0, axis=1)
    assert zero_filters.sum() == round(sparsity * 16)
    assert np.mean(s == 0) == pytest.approx(sparsity, abs=1e-9)
    # kept filters are untouched
    np.testing.assert_array_equal(s[~zero_filters], u[~zero_filters])


def test_structured_factor_rule():
    u = np.ones((4, 2, 1, 1), np.float32)
    u[0] *= 0.1
    u[1] *= 0.5
    s = sparsify_structured(u, 0.0, factor=0.8)  # mean filter magnitude 0.65 -> thr 0.52
    assert np.all(s[0] == 0) and np.all(s[1] == 0) and np.all(s[2:] == 1)


def test_sparsify_dispatch_and_errors():
    u = {"w": np.arange(1, 101, dtype=np.float32).reshape(10, 10)}
    for m in ("unstructured", "topk", "topk-global"):
        assert np.count_nonzero(sparsify(u, 0.7, m)["w"]) == 30
    with pytest.raises(ValueError, match="sparsifier"):
        sparsify(u, 0.5, "nope")
