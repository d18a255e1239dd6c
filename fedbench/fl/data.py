"""Data of a federated run: FederatedData (device tensors, client split), loading and splitting."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedbench.fl.aggregation import derive_seed

__all__ = [
    "FederatedData",
    "federated_data_from_arrays",
    "load_federated_data",
    "split_validation",
]


@dataclass
class FederatedData:
    """Train/validation/test tensors (uint8 NCHW images on the run's device), client split.

    The validation split is held out of the training samples (never trained on); it may be
    empty (no selection of rounds is then possible).
    """

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    task: str
    num_classes: int
    client_indices: list[np.ndarray]
    meta: dict[str, Any] = field(default_factory=dict)
    x_val: torch.Tensor | None = None
    y_val: torch.Tensor | None = None

    @property
    def has_val(self) -> bool:
        """True when a non-empty validation split exists."""
        return self.x_val is not None and len(self.x_val) > 0

    def majority_acc(self) -> float | None:
        """Test accuracy of always predicting the most frequent test class (None: not
        single-label classification)."""
        if self.task != "classification" or len(self.y_test) == 0:
            return None
        counts = torch.bincount(self.y_test.reshape(-1).cpu(), minlength=self.num_classes)
        return float(counts.max()) / float(counts.sum())

    @property
    def channels(self) -> int:
        """Image channels."""
        return int(self.x_train.shape[1])

    def client_sizes(self) -> list[int]:
        """Number of local training samples per client."""
        return [len(i) for i in self.client_indices]


def _labels_tensor(y: np.ndarray, task: str) -> torch.Tensor:
    """Labels as the loss expects them: int64 classes, float multi-hot, int64 masks."""
    if task == "multilabel":
        return torch.from_numpy(np.asarray(y, dtype=np.float32))
    if task == "segmentation":
        return torch.from_numpy(np.asarray(y, dtype=np.int64))
    return torch.from_numpy(np.asarray(y, dtype=np.int64).reshape(-1))


def federated_data_from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    client_indices: list[np.ndarray],
    task: str,
    num_classes: int,
    mean: list[float] | None = None,
    std: list[float] | None = None,
    device: str | torch.device = "cpu",
    meta: dict[str, Any] | None = None,
    x_val: np.ndarray | None = None,
    y_val: np.ndarray | None = None,
) -> FederatedData:
    """Wrap uint8 NHWC numpy arrays (and a split) as FederatedData on `device`."""
    c = x_train.shape[-1]
    mean = mean if mean is not None else [0.5] * c
    std = std if std is not None else [0.25] * c

    def imgs(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous().to(device)

    return FederatedData(
        x_train=imgs(x_train),
        y_train=_labels_tensor(y_train, task).to(device),
        x_test=imgs(x_test),
        y_test=_labels_tensor(y_test, task).to(device),
        mean=torch.tensor(mean, dtype=torch.float32, device=device).view(1, c, 1, 1),
        std=torch.tensor(std, dtype=torch.float32, device=device).view(1, c, 1, 1),
        task=task,
        num_classes=num_classes,
        client_indices=[np.asarray(i, dtype=np.int64) for i in client_indices],
        meta=dict(meta or {}),
        x_val=imgs(x_val) if x_val is not None else None,
        y_val=_labels_tensor(y_val, task).to(device) if y_val is not None else None,
    )


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (train positions, validation positions) of n samples; both sorted."""
    n_val = round(fraction * n)
    if n_val == 0:
        return np.arange(n), np.arange(0)
    rng = np.random.default_rng(derive_seed(seed, 0x7A7))
    val = np.sort(rng.choice(n, n_val, replace=False))
    keep = np.ones(n, dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def load_federated_data(cfg: Any, device: str | torch.device) -> FederatedData:
    """Prepare (cached) and load the configured data set, subset it and split it over clients."""
    from fedbench.data import load_prepared, partition, partition_labels, prepare

    d = cfg.data
    root = Path(d.root)
    suffix = f"-{d.image_size}" if d.image_size else ""
    path = prepare(
        d.name,
        root,
        root / "prepared" / f"{d.name}{suffix}.npz",
        mirror=d.mirror,
        image_size=d.image_size,
    )
    pd = load_prepared(path)
    x_tr, y_tr, x_te, y_te = pd.x_train, pd.y_train, pd.x_test, pd.y_test
    if d.max_train_samples is not None and d.max_train_samples < len(x_tr):
        rng = np.random.default_rng(derive_seed(cfg.seed, 0x7A1))
        sel = np.sort(rng.choice(len(x_tr), d.max_train_samples, replace=False))
        x_tr, y_tr = x_tr[sel], y_tr[sel]
    if d.max_test_samples is not None and d.max_test_samples < len(x_te):
        rng = np.random.default_rng(derive_seed(cfg.seed, 0x7E5))
        sel = np.sort(rng.choice(len(x_te), d.max_test_samples, replace=False))
        x_te, y_te = x_te[sel], y_te[sel]
    # The validation split comes out of the training samples, before the client split.
    tr, va = split_validation(len(x_tr), d.val_fraction, cfg.seed)
    x_va, y_va = x_tr[va], y_tr[va]
    x_tr, y_tr = x_tr[tr], y_tr[tr]
    labels = partition_labels(y_tr, pd.task)
    parts = partition(
        labels,
        d.num_clients,
        scheme=d.partition,
        alpha=d.alpha,
        seed=derive_seed(cfg.seed, 0xD1),
        min_size=d.min_size,
    )
    return federated_data_from_arrays(
        x_tr,
        y_tr,
        x_te,
        y_te,
        parts,
        pd.task,
        pd.num_classes,
        pd.mean,
        pd.std,
        device,
        meta=dict(pd.meta),
        x_val=x_va,
        y_val=y_va,
    )
