"""Data and model hooks of the Flower tests (the apps import them by name: data-fn,
model-fn): synthetic images and the FL tests' TinyNet, so no data set is needed."""

from __future__ import annotations

import numpy as np
from fltools import TinyNet

from fedbench.fl.data import FederatedData, federated_data_from_arrays


def _arrays(n: int, seed: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Two-class grey images; class 1 has a faintly brighter centre (not learnt at once)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 160, (n, size, size, 1)).astype(np.uint8)
    c = size // 4
    x[y == 1, c:-c, c:-c, 0] += 12
    return x, y.astype(np.int64)


def synthetic_data(cfg) -> FederatedData:
    """Synthetic data split over cfg.data.num_clients clients of unequal size."""
    x_tr, y_tr = _arrays(160, 0)
    x_te, y_te = _arrays(200, 1)
    x_va, y_va = _arrays(40, 2)
    n = cfg.data.num_clients
    cuts = np.linspace(0, len(x_tr), n + 1).astype(int)
    cuts[1:-1] += np.arange(1, n) * 3  # unequal sizes: the FedAvg weights matter
    parts = [np.arange(cuts[i], cuts[i + 1]) for i in range(n)]
    return federated_data_from_arrays(
        x_tr, y_tr, x_te, y_te, parts, "classification", 2, x_val=x_va, y_val=y_va
    )


def tiny_model(cfg, data: FederatedData):
    """TinyNet for the data's channels and classes."""
    return TinyNet(data.channels, data.num_classes)
