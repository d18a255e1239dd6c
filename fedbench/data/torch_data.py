"""Fast torch-side access to prepared data: uint8 tensors kept on the device, normalised
and augmented per batch with tensor ops (no PIL per step)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from fedbench.data.prepared import PreparedData


class TensorImageDataset(torch.utils.data.Dataset):
    """Images of one split as a uint8 NCHW tensor (on `device`), served normalised.

    `batches()` is the fast path (whole batches, augmentation on tensors); `__getitem__`
    makes it usable with a torch DataLoader too. Targets: classification int64 [N],
    multilabel float32 [N, C] (for BCE), segmentation int64 [N, H, W] (255 = ignore).
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        task: str,
        num_classes: int,
        mean: Sequence[float],
        std: Sequence[float],
        augment: bool = False,
        device: torch.device | str | None = None,
        channels: int | None = None,
        pad: int | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else torch.device("cpu")
        xt = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous()
        mean_t = torch.tensor(list(mean), dtype=torch.float32)
        std_t = torch.tensor(list(std), dtype=torch.float32)
        if channels is not None and channels != xt.shape[1]:
            if xt.shape[1] != 1:
                raise ValueError(
                    f"can only expand grey images to {channels} channels, have {xt.shape[1]}"
                )
            # grey -> RGB by repetition, so that 3-channel (pretrained) stems can be used
            xt = xt.expand(-1, channels, -1, -1).contiguous()
            mean_t, std_t = mean_t.expand(channels).clone(), std_t.expand(channels).clone()
        self.x = xt.to(device)
        if task == "classification":
            self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
        elif task == "multilabel":
            self.y = torch.from_numpy(np.asarray(y, dtype=np.float32)).to(device)
        elif task == "segmentation":
            self.y = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(device)
        else:
            raise ValueError(f"unknown task {task!r}")
        self.task, self.num_classes, self.augment, self.device = task, num_classes, augment, device
        # fold 1/255 into the scale: x_norm = x * scale + shift
        self._scale = (1.0 / (255.0 * std_t)).view(1, -1, 1, 1).to(device)
        self._shift = (-mean_t / std_t).view(1, -1, 1, 1).to(device)
        self.pad = pad if pad is not None else max(1, self.x.shape[-1] // 8)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def targets(self) -> torch.Tensor:
        """All targets of this dataset (on its device)."""
        return self.y

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.get_batch(torch.tensor([int(i)], device=self.device))
        return x[0], y[0]

    def get_batch(
        self, idx: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images and targets of positions `idx` (augmented if enabled)."""
        idx = idx.to(self.device)
        x, y = self.x[idx], self.y[idx]
        if self.augment:
            x, y = self._augment(x, y, generator)
        return x.float() * self._scale + self._shift, y

    def batches(
        self,
        batch_size: int,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Iterate once over the data in batches; `generator` (CPU) seeds order and augment."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for s in range(0, stop, batch_size):
            yield self.get_batch(order[s : s + batch_size], generator)

    def subset(self, indices: Any) -> TensorImageDataset:
        """A dataset of some positions of this one (e.g. one client), copied on the device."""
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64), device=self.device)
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.x, new.y = self.x[idx], self.y[idx]
        return new

    def _augment(
        self, x: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crop after zero padding (masks padded with 255) and horizontal flip."""
        n, _, h, w = x.shape
        p = self.pad
        oy = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(self.device)
        ox = torch.randint(0, 2 * p + 1, (n,), generator=generator).to(self.device)
        flip = (torch.rand(n, generator=generator) < 0.5).to(self.device)
        rows = oy[:, None] + torch.arange(h, device=self.device)[None, :]  # [n, h]
        cols = ox[:, None] + torch.arange(w, device=self.device)[None, :]  # [n, w]
        cols = torch.where(flip[:, None], cols.flip(1), cols)
        xp = torch.nn.functional.pad(x, (p, p, p, p))
        bi = torch.arange(n, device=self.device)
        x = xp[
            bi[:, None, None, None],
            torch.arange(x.shape[1], device=self.device)[None, :, None, None],
            rows[:, None, :, None],
            cols[:, None, None, :],
        ]
        if self.task == "segmentation":
            yp = torch.nn.functional.pad(y, (p, p, p, p), value=255)
            y = yp[bi[:, None, None], rows[:, :, None], cols[:, None, :]]
        return x, y


def make_tensor_dataset(
    prepared: PreparedData,
    split: str,
    indices: Any = None,
    augment: bool = False,
    device: torch.device | str | None = None,
    channels: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> TensorImageDataset:
    """A TensorImageDataset of `split` ('train'|'val'|'test'), optionally a subset `indices`
    (e.g. one client's partition); normalised with the meta's per-channel mean/std unless
    `mean`/`std` are given (e.g. ImageNet's); `channels=3` repeats grey images to RGB."""
    x, y = prepared.split(split)
    if indices is not None:
        idx = np.asarray(indices, dtype=np.int64)
        x, y = x[idx], y[idx]
    return TensorImageDataset(
        x,
        y,
        prepared.task,
        prepared.num_classes,
        prepared.mean if mean is None else mean,
        prepared.std if std is None else std,
        augment=augment,
        device=device,
        channels=channels,
    )
