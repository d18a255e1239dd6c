"""make_tensor_dataset: normalisation, subsets, batches, tensor augmentation correctness."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fedbench.data import PreparedData, make_tensor_dataset


def _prepared(task="classification", n=8, size=8, channels=3):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, channels), dtype=np.uint8)
    if task == "classification":
        y = rng.integers(0, 3, n)
    elif task == "multilabel":
        y = (rng.random((n, 3)) < 0.5).astype(np.uint8)
    else:
        y = rng.integers(0, 3, (n, size, size)).astype(np.uint8)
    mean = (x.reshape(-1, channels).mean(0) / 255).tolist()
    std = (x.reshape(-1, channels).std(0) / 255).tolist()
    meta = {
        "task": task,
        "num_classes": 3,
        "channels": channels,
        "image_size": size,
        "mean": mean,
        "std": std,
        "name": "toy",
    }
    return PreparedData(x, y, x[:2], y[:2], meta)


def test_normalised_and_subset():
    p = _prepared()
    ds = make_tensor_dataset(p, "train")
    x, y = next(ds.batches(8))
    assert x.shape == (8, 3, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert torch.allclose(x.mean((0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(x.std((0, 2, 3), unbiased=False), torch.ones(3), atol=1e-3)
    sub = make_tensor_dataset(p, "train", indices=[5, 1])
    assert len(sub) == 2
    xs, ys = sub[1]
    want = (
        torch.from_numpy(p.x_train[1]).permute(2, 0, 1).float() / 255
        - torch.tensor(p.mean)[:, None, None]
    ) / torch.tensor(p.std)[:, None, None]
    assert torch.allclose(xs, want, atol=1e-5) and int(ys) == p.y_train[1]


def test_subset_on_device_and_mean_override():
    p = _prepared(n=10)
    full = make_tensor_dataset(p, "train")
    sub = full.subset([3, 7])
    assert len(sub) == 2 and len(full) == 10
    assert torch.equal(sub[1][0], full[7][0]) and int(sub[0][1]) == p.y_train[3]
    half = make_tensor_dataset(p, "train", mean=[0.5] * 3, std=[0.5] * 3)
    x, _ = half[0]
    want = torch.from_numpy(p.x_train[0]).permute(2, 0, 1).float() / 255 * 2 - 1
    assert torch.allclose(x, want, atol=1e-5)


def test_batches_cover_once_and_seeded():
    ds = make_tensor_dataset(_prepared(n=10), "train")
    g = torch.Generator().manual_seed(0)
    ys = torch.cat([y for _, y in ds.batches(3, shuffle=True, generator=g)])
    assert len(ys) == 10
    assert sum(1 for _ in ds.batches(3, drop_last=True)) == 3
    a = [x for x, _ in ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(1))]
    b = [x for x, _ in ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(1))]
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_targets_by_task():
    assert make_tensor_dataset(_prepared("multilabel"), "train").y.dtype == torch.float32
    seg = make_tensor_dataset(_prepared("segmentation"), "test")
    assert seg.y.dtype == torch.int64 and seg.y.shape == (2, 8, 8)


def test_grey_to_three_channels():
    p = _prepared(channels=1)
    ds = make_tensor_dataset(p, "train", channels=3)
    x, _ = next(ds.batches(2))
    assert x.shape == (2, 3, 8, 8) and torch.equal(x[:, 0], x[:, 2])


def _unnormalise(ds, x):
    return torch.round((x - ds._shift) / ds._scale).to(torch.int64)


def test_augment_is_crop_and_flip_of_original():
    p = _prepared(n=16, size=8)
    ds = make_tensor_dataset(p, "train", augment=True)
    pad = ds.pad
    x, _ = ds.get_batch(torch.arange(16), torch.Generator().manual_seed(0))
    raw = _unnormalise(ds, x)
    orig = torch.nn.functional.pad(
        torch.from_numpy(p.x_train).permute(0, 3, 1, 2).long(), (pad,) * 4
    )
    seen_flip = seen_shift = False
    for i in range(16):
        found = False
        for oy in range(2 * pad + 1):
            for ox in range(2 * pad + 1):
                win = orig[i, :, oy : oy + 8, ox : ox + 8]
                for flip in (False, True):
                    if torch.equal(raw[i], win.flip(-1) if flip else win):
                        found = True
                        seen_flip |= flip
                        seen_shift |= (oy, ox) != (pad, pad)
        assert found, f"sample {i} is no crop/flip of its source"
    assert seen_flip and seen_shift


def test_augment_segmentation_keeps_image_and_mask_aligned():
    p = _prepared("segmentation", n=12, size=8)
    # encode the mask in channel 0 so alignment can be checked after augmentation
    p.x_train[..., 0] = p.y_train * 50 + 10
    ds = make_tensor_dataset(p, "train", augment=True)
    x, y = ds.get_batch(torch.arange(12), torch.Generator().manual_seed(3))
    raw0 = _unnormalise(ds, x)[:, 0]
    inside = y != 255
    assert (~inside).any()  # padding reached the crops
    assert torch.equal(raw0[inside], y[inside] * 50 + 10)
    assert torch.all(raw0[~inside] == 0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_on_cuda():
    ds = make_tensor_dataset(_prepared(), "train", augment=True, device="cuda")
    x, y = next(ds.batches(4, shuffle=True, generator=torch.Generator().manual_seed(0)))
    assert x.is_cuda and y.is_cuda
