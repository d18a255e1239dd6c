"""Partitions: disjoint, covering, non-empty, seeded; Dirichlet skew follows alpha."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedbench.data import PartitionError, partition, partition_labels


def _check(parts, n, min_size):
    allidx = np.concatenate(parts)
    assert len(allidx) == n and len(np.unique(allidx)) == n  # disjoint and covering
    assert allidx.min() >= 0 and allidx.max() < n
    assert all(len(p) >= min_size for p in parts)
    assert all(p.dtype == np.int64 and np.all(np.diff(p) > 0) for p in parts)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 400),
    k=st.integers(1, 30),
    classes=st.integers(1, 12),
    alpha=st.floats(0.01, 100),
    seed=st.integers(0, 2**31),
    scheme=st.sampled_from(["iid", "dirichlet"]),
    min_size=st.integers(0, 5),
)
def test_partition_properties(n, k, classes, alpha, seed, scheme, min_size):
    if k * max(min_size, 0) > n:
        min_size = n // k
    labels = np.random.default_rng(seed).integers(0, classes, n)
    parts = partition(labels, k, scheme, alpha=alpha, seed=seed, min_size=min_size)
    assert len(parts) == k
    _check(parts, n, min_size)
    again = partition(labels, k, scheme, alpha=alpha, seed=seed, min_size=min_size)
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))


def test_iid_sizes_balanced():
    parts = partition(np.zeros(103), 10, "iid", seed=3)
    assert sorted(len(p) for p in parts) == [10] * 7 + [11] * 3


def test_dirichlet_skew_depends_on_alpha():
    labels = np.repeat(np.arange(10), 500)

    def mean_classes(alpha):
        parts = partition(labels, 10, "dirichlet", alpha=alpha, seed=0)
        # share of each client's most common class
        return np.mean([np.bincount(labels[p]).max() / len(p) for p in parts])

    assert mean_classes(0.05) > 0.6
    assert mean_classes(100.0) < 0.2


def test_seed_changes_split():
    labels = np.repeat(np.arange(5), 40)
    a = partition(labels, 4, "dirichlet", seed=0)
    b = partition(labels, 4, "dirichlet", seed=1)
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_multilabel_uses_first_positive():
    y = np.array([[0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(partition_labels(y, "multilabel"), [1, 0, 0, 2])
    parts = partition(y, 2, "dirichlet", seed=0)
    _check(parts, 4, 1)


def test_segmentation_dominant_class():
    m = np.zeros((3, 4, 4), np.uint8)
    m[0, :2] = 5
    m[0, 3, :] = 7
    m[1] = 255
    m[2, 0, 0] = 3
    np.testing.assert_array_equal(partition_labels(m, "segmentation"), [5, 0, 3])
    _check(partition(m, 2, "dirichlet", seed=1), 3, 1)


def test_errors():
    with pytest.raises(PartitionError, match="cannot give"):
        partition(np.zeros(3), 4)
    with pytest.raises(PartitionError, match="scheme"):
        partition(np.zeros(3), 1, "shards")
    with pytest.raises(PartitionError, match="alpha"):
        partition(np.zeros(3), 1, "dirichlet", alpha=0)
