"""Sparsifiers of differential updates: unstructured / top-k per tensor, global top-k, structured."""

from __future__ import annotations

import numpy as np

__all__ = [
    "SPARSIFIERS",
    "keep_count",
    "sparsify",
    "sparsify_structured",
    "sparsify_topk_global",
    "sparsify_unstructured",
    "topk_indices",
]


def keep_count(n: int, sparsity: float) -> int:
    """Number of entries kept so that exactly round(sparsity * n) of n are zeroed."""
    return int(n - round(sparsity * n))


def topk_indices(flat: np.ndarray, k: int) -> np.ndarray:
    """Sorted flat indices of the k largest |flat| entries (ties broken by position)."""
    n = flat.size
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    # argpartition is O(n) and deterministic for a given numpy; exactly k entries are kept.
    idx = np.argpartition(-np.abs(flat), k - 1)[:k]
    return np.sort(idx).astype(np.int64)


def sparsify_unstructured(u: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the smallest-magnitude entries of `u` so that a fraction `sparsity` is zero."""
    flat = u.reshape(-1)
    keep = topk_indices(flat, keep_count(flat.size, sparsity))
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(u.shape)


def sparsify_structured(
    u: np.ndarray, sparsity: float, factor: float | None = None
) -> np.ndarray:
    """Zero whole output filters with weak mean |u|.

    With `factor`, filters whose mean |u| is below factor * (mean over filters) are zeroed;
    without, the round(sparsity * C_out) weakest filters are.
    """
    filters = u.reshape(u.shape[0], -1)
    mag = np.abs(filters).mean(axis=1)
    if factor is not None:
        drop = mag < factor * mag.mean()
    else:
        n_drop = round(sparsity * filters.shape[0])
        drop = np.zeros(filters.shape[0], dtype=bool)
        drop[np.argsort(mag, kind="stable")[:n_drop]] = True
    out = filters.copy()
    out[drop] = 0
    return out.reshape(u.shape)


def sparsify_topk_global(tensors: dict[str, np.ndarray], sparsity: float) -> dict[str, np.ndarray]:
    """Keep the largest magnitudes over all given tensors together (one global threshold)."""
    if not tensors:
        return {}
    names = list(tensors)
    flat = np.concatenate([tensors[n].reshape(-1) for n in names])
    keep = topk_indices(flat, keep_count(flat.size, sparsity))
    mask = np.zeros(flat.size, dtype=bool)
    mask[keep] = True
    out, pos = {}, 0
    for n in names:
        t = tensors[n]
        m = mask[pos : pos + t.size].reshape(t.shape)
        out[n] = np.where(m, t, 0).astype(t.dtype)
        pos += t.size
    return out


SPARSIFIERS = ("unstructured", "structured", "topk", "topk-global")


def sparsify(
    tensors: dict[str, np.ndarray],
    sparsity: float,
    method: str = "unstructured",
    structured_factor: float | None = None,
) -> dict[str, np.ndarray]:
    """Sparsify every tensor of `tensors` (callers pass only weight tensors) with `method`."""
    if method not in SPARSIFIERS:
        raise ValueError(f"unknown sparsifier {method!r}; allowed: {', '.join(SPARSIFIERS)}")
    if sparsity <= 0 and not (method == "structured" and structured_factor is not None):
        return dict(tensors)
    if method == "topk-global":
        return sparsify_topk_global(tensors, sparsity)
    if method == "structured":
        return {n: sparsify_structured(t, sparsity, structured_factor) for n, t in tensors.items()}
    return {n: sparsify_unstructured(t, sparsity) for n, t in tensors.items()}
