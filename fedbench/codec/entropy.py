"""Zeroth-order entropy of integer levels: the bound the sparse coding mode is measured against."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def _counts(levels_list: Iterable[np.ndarray]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for levels in levels_list:
        vals, cnt = np.unique(np.asarray(levels).reshape(-1), return_counts=True)
        for v, c in zip(vals.tolist(), cnt.tolist(), strict=True):
            counts[v] = counts.get(v, 0) + c
    return counts


def _entropy_bits(counts: Iterable[int]) -> float:
    c = np.asarray(list(counts), dtype=np.float64)
    n = c.sum()
    if n == 0:
        return 0.0
    return float(-(c * np.log2(c / n)).sum())


def zeroth_order_entropy_bytes(levels_list: Iterable[np.ndarray]) -> float:
    """N * H(empirical level distribution) in bytes, with all arrays' levels pooled."""
    return _entropy_bits(_counts(levels_list).values()) / 8.0


def per_tensor_entropy_bytes(levels_list: Iterable[np.ndarray]) -> float:
    """Sum over arrays of each array's own zeroth-order entropy, in bytes (never above pooled)."""
    return sum(_entropy_bits(_counts([lv]).values()) / 8.0 for lv in levels_list)
