"""Compare two methods at equal transmitted bytes, paired by seed (issue 10, point 5).

Each method's seed gives a curve of final accuracy against total bytes across the sweep
points (one point per operating point of that seed). Both methods' curves are interpolated
linearly in log bytes at the same byte count, the differences A - B are paired by seed, and
their mean comes with a two-sided 95 % Student-t interval over the seeds.

The converse question (claim (3) of the paper: do the factors permit extra sparsity?) is
`paired_bytes_to_reach`: at a fixed target accuracy, the bytes each method's curve needs to
reach it, as a ratio A / B paired by seed (t-interval on the log ratio).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "bytes_to_reach",
    "interpolate_at_bytes",
    "matched_bytes",
    "paired_bytes_to_reach",
    "paired_difference",
    "paired_equal_bytes",
]

Curve = Sequence[tuple[float, float]]  # (total bytes, accuracy) per sweep point


def _sorted(curve: Curve) -> tuple[np.ndarray, np.ndarray]:
    """log bytes (increasing) and accuracies; points of equal bytes are averaged."""
    pts = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
    if not len(pts) or np.any(pts[:, 0] <= 0):
        raise ValueError("a curve needs at least one point, with positive byte counts")
    x = np.log(pts[:, 0])
    ux, inv = np.unique(x, return_inverse=True)
    y = np.bincount(inv, weights=pts[:, 1]) / np.bincount(inv)
    return ux, y


def _t_half_width(values: np.ndarray, confidence: float) -> float:
    """Half width of the two-sided Student-t interval of the mean (NaN for fewer than 2)."""
    n = len(values)
    if n < 2:
        return float("nan")
    from scipy.stats import t

    return float(t.ppf(0.5 + confidence / 2, n - 1)) * float(values.std(ddof=1)) / math.sqrt(n)


def paired_difference(
    a: Mapping[int, float], b: Mapping[int, float], confidence: float = 0.95
) -> dict[str, Any]:
    """a[s] - b[s] over the seeds both have (NaN values left out): mean, sd, the t-interval
    lo/hi (sd and interval NaN for n < 2), n and the per-seed differences."""
    diffs = {s: a[s] - b[s] for s in sorted(set(a) & set(b))}
    diffs = {s: d for s, d in diffs.items() if not math.isnan(d)}
    vals = np.array(list(diffs.values()), dtype=np.float64)
    n = len(vals)
    mean = float(vals.mean()) if n else float("nan")
    half = _t_half_width(vals, confidence)
    return {
        "mean": mean,
        "sd": float(vals.std(ddof=1)) if n > 1 else float("nan"),
        "lo": mean - half,
        "hi": mean + half,
        "n": n,
        "diffs": diffs,
    }


def interpolate_at_bytes(curve: Curve, nbytes: float) -> float:
    """Accuracy of a curve at `nbytes`, linear in log bytes; NaN outside its byte range."""
    x, y = _sorted(curve)
    t = math.log(nbytes)
    if t < x[0] - 1e-12 or t > x[-1] + 1e-12:
        return float("nan")
    return float(np.interp(t, x, y))


def matched_bytes(curves: Sequence[Curve]) -> float:
    """The geometric middle of the byte range every curve covers (error if they share none)."""
    lo = max(_sorted(c)[0][0] for c in curves)
    hi = min(_sorted(c)[0][-1] for c in curves)
    if lo > hi + 1e-12:
        raise ValueError("the curves share no byte range: no matched-bytes comparison")
    return float(math.exp((lo + hi) / 2))


def _matched_bytes_per_seed(
    a: Mapping[int, Curve], b: Mapping[int, Curve], seeds: Sequence[int]
) -> dict[int, float]:
    """Per seed, `matched_bytes` of that seed's two curves; seeds whose curves do not meet
    are left out (error if none meet)."""
    at = {}
    for s in seeds:
        with contextlib.suppress(ValueError):
            at[s] = matched_bytes([a[s], b[s]])
    if not at:
        raise ValueError("the curves share no byte range: no matched-bytes comparison")
    return at


def paired_equal_bytes(
    a: Mapping[int, Curve],
    b: Mapping[int, Curve],
    nbytes: float | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Mean accuracy difference A - B at matched total bytes, paired by seed.

    `a`, `b`: seed -> [(total bytes, accuracy), ...] over the sweep points. `nbytes`: where
    to compare (None = `matched_bytes` of all the paired seeds' curves; where those share
    no range, each seed's two curves are matched on their own). Returns mean, sd, n (paired
    seeds), the t-interval lo/hi (NaN for n < 2), the bytes (their geometric mean when
    matched per seed), `per_seed_bytes` (seed -> bytes, or None for one common value) and
    the per-seed differences.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed has runs of both methods")
    at: dict[int, float] | None = None
    if nbytes is None:
        try:
            nbytes = matched_bytes([a[s] for s in seeds] + [b[s] for s in seeds])
        except ValueError:
            # A one-point curve (a single operating point of a method) has bytes that vary
            # a little by seed, so no range is common to every seed; a seed's own pair of
            # curves can still be compared at bytes both cover.
            at = _matched_bytes_per_seed(a, b, seeds)
            nbytes = float(np.exp(np.mean(np.log(list(at.values())))))
    where = at if at is not None else dict.fromkeys(seeds, nbytes)
    res = paired_difference(
        {s: interpolate_at_bytes(a[s], n) for s, n in where.items()},
        {s: interpolate_at_bytes(b[s], n) for s, n in where.items()},
        confidence,
    )
    return {**res, "confidence": confidence, "bytes": float(nbytes), "per_seed_bytes": at}


def bytes_to_reach(curve: Curve, target: float) -> float:
    """Fewest total bytes at which a curve (linear in log bytes) reaches `target` accuracy.

    NaN if no point reaches it; the curve's smallest bytes if its first point already does
    (then an upper bound: the sweep has no cheaper point).
    """
    x, y = _sorted(curve)
    if y[0] >= target:
        return float(math.exp(x[0]))
    for i in range(1, len(x)):
        if y[i] >= target:
            t = x[i - 1] + (target - y[i - 1]) / (y[i] - y[i - 1]) * (x[i] - x[i - 1])
            return float(math.exp(t))
    return float("nan")


def paired_bytes_to_reach(
    a: Mapping[int, Curve],
    b: Mapping[int, Curve],
    target: float | None = None,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Bytes A and B need to reach `target` accuracy, as a ratio A / B paired by seed.

    `target`: None = the highest accuracy every paired seed's curve of both methods reaches
    (the smallest of their maxima). Returns the target, the geometric-mean ratio with its
    t-interval (on log ratios; NaN for n < 2), n, the mean bytes of each method and the
    per-seed ratios.
    """
    seeds = sorted(set(a) & set(b))
    if not seeds:
        raise ValueError("no seed has runs of both methods")
    if target is None:
        target = min(float(_sorted(c[s])[1].max()) for c in (a, b) for s in seeds)
    need = {s: (bytes_to_reach(a[s], target), bytes_to_reach(b[s], target)) for s in seeds}
    ratios = {s: na / nb for s, (na, nb) in need.items() if not (math.isnan(na) or math.isnan(nb))}
    n = len(ratios)
    logs = np.log(np.array(list(ratios.values()), dtype=np.float64))
    center = float(logs.mean()) if n else float("nan")  # the log of the geometric mean
    half = _t_half_width(logs, confidence)
    mean, lo, hi = math.exp(center), math.exp(center - half), math.exp(center + half)
    return {
        "target": float(target),
        "ratio": mean,
        "lo": lo,
        "hi": hi,
        "n": n,
        "confidence": confidence,
        "bytes_a": float(np.mean([need[s][0] for s in ratios])) if n else float("nan"),
        "bytes_b": float(np.mean([need[s][1] for s in ratios])) if n else float("nan"),
        "ratios": ratios,
    }
