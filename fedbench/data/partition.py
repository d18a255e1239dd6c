"""Splitting a training set over clients: iid, or non-iid by Dirichlet(alpha) over labels."""

from __future__ import annotations

import numpy as np

from fedbench.data.errors import PartitionError

SCHEMES = ("iid", "dirichlet")


def partition_labels(y: np.ndarray, task: str = "classification") -> np.ndarray:
    """One int label per sample: the label itself, the first positive class (multi-label,
    0 if none), or the most frequent foreground class of a mask (segmentation, 0 if none)."""
    y = np.asarray(y)
    if task == "classification" or y.ndim == 1:
        return y.astype(np.int64).reshape(-1)
    if task == "multilabel":
        pos = y > 0
        return np.where(pos.any(1), pos.argmax(1), 0).astype(np.int64)
    if task == "segmentation":
        flat = y.reshape(len(y), -1).astype(np.int64)
        flat = np.where((flat == 0) | (flat == 255), -1, flat)
        k = int(flat.max(initial=0)) + 1
        counts = np.zeros((len(y), max(k, 1)), dtype=np.int64)
        rows, cols = np.nonzero(flat >= 0)
        np.add.at(counts, (rows, flat[rows, cols]), 1)
        return np.where(counts.any(1), counts.argmax(1), 0).astype(np.int64)
    raise ValueError(f"unknown task {task!r}")


def partition(
    labels: np.ndarray,
    num_clients: int,
    scheme: str = "iid",
    alpha: float = 0.5,
    seed: int = 0,
    min_size: int = 1,
) -> list[np.ndarray]:
    """Split sample indices over clients: disjoint, covering all, each >= min_size, seeded.

    iid: a random permutation cut into near-equal parts. dirichlet: per class, shares
    drawn from Dirichlet(alpha, ..., alpha) over clients; clients left below min_size then
    take random samples from the largest clients. 2-D labels (multi-label) use the first
    positive class, 3-D labels (masks) the dominant foreground class. Returns sorted int64
    index arrays.
    """
    labels = np.asarray(labels)
    if labels.ndim == 2:
        labels = partition_labels(labels, "multilabel")
    elif labels.ndim == 3:
        labels = partition_labels(labels, "segmentation")
    labels = labels.reshape(-1)
    n = len(labels)
    if scheme not in SCHEMES:
        raise PartitionError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    if num_clients < 1:
        raise PartitionError(f"num_clients must be >= 1, got {num_clients}")
    if min_size < 0 or num_clients * min_size > n:
        raise PartitionError(
            f"cannot give {num_clients} clients {min_size} samples each from {n} samples"
        )
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        parts = np.array_split(rng.permutation(n), num_clients)
        return [np.sort(p).astype(np.int64) for p in parts]

    if not alpha > 0:
        raise PartitionError(f"Dirichlet alpha must be > 0, got {alpha}")
    buckets: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        shares = rng.dirichlet(np.full(num_clients, float(alpha)))
        cuts = (np.cumsum(shares)[:-1] * len(idx)).round().astype(np.int64)
        for k, part in enumerate(np.split(idx, cuts)):
            buckets[k].append(part)
    clients = [np.concatenate(b) if b else np.empty(0, np.int64) for b in buckets]
    clients = [rng.permutation(c) for c in clients]
    # top up small clients from the currently largest ones (keeps the skew, avoids a
    # resample loop that may never end for tiny alpha)
    sizes = np.array([len(c) for c in clients])
    for k in np.flatnonzero(sizes < min_size):
        while len(clients[k]) < min_size:
            donor = int(np.argmax([len(c) for c in clients]))
            take = min(min_size - len(clients[k]), len(clients[donor]) - min_size)
            clients[k] = np.concatenate([clients[k], clients[donor][:take]])
            clients[donor] = clients[donor][take:]
    return [np.sort(c).astype(np.int64) for c in clients]
