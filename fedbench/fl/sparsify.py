"""Sparsifiers of updates: unstructured / top-k per tensor, global top-k, structured."""

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
    # Which of several equal magnitudes np.argpartition returns depends on its selection
    # algorithm (NumPy 2 changed it), and ties are common (a mean of quantized updates), so
    # only the k-th largest magnitude (a value, the same under any algorithm) comes from a
    # partition; ties at it are then broken by position. O(n); exactly k entries are kept.
    mag = np.abs(flat)
    thr = np.partition(mag, n - k)[n - k]
    keep = mag > thr
    ties = np.flatnonzero(mag == thr)[: k - int(np.count_nonzero(keep))]
    keep[ties] = True
    return np.flatnonzero(keep).astype(np.int64)


def sparsify_unstructured(u: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the smallest-magnitude entries of `u` so that a fraction `sparsity` is zero."""
    flat = u.reshape(-1)
    keep = topk_indices(flat, keep_count(flat.size, sparsity))
    out = np.zeros_like(flat)
    out[keep] = flat[keep]
    return out.reshape(u.shape)


def sparsify_structured(u: np.ndarray, sparsity: float, factor: float | None = None) -> np.ndarray:
    """Zero whole output filters with weak mean |u|.

    With `factor`, filters whose mean |u| is below factor * (mean over filters) are zeroed;
    without, the round(sparsity * C_out) weakest filters are.
    """
    filters = u.reshape(u.shape[0], -1)
    # float64 throughout: NumPy 1 evaluates factor * <float32 mean> in float64 and compares in
    # float32, NumPy 2 (NEP 50) does both in float32, so a filter at the threshold flipped.
    mag = np.abs(filters).astype(np.float64).mean(axis=1)
    if factor is not None:
        drop = mag < float(factor) * float(mag.mean())
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
