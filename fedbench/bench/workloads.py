"""Seeded benchmark workloads: dicts of tensor name -> float32 array.

A    Gaussian weights (std 0.02) with ResNet-18's convolution and fc weight shapes (11.68M).
B90  sparse update of the same shapes, std 1e-3, 90 % of the entries zeroed.
B99  the same with 99 % zeroed.
C    the parameters of a small ResNet-20-like network trained on a few CIFAR-10 batches,
     kept as an npz fixture under cache/bench/ and regenerated (with torch) when missing.

Every workload takes a ``scale`` in (0, 1]: each tensor keeps its first ``ceil(scale * rows)``
rows (dimension 0), so a scaled workload has every tensor of the full one and roughly
``scale`` of its parameters. The random workloads draw each tensor from its own seeded
stream, so a scaled workload is exactly a slice of the full one.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

__all__ = [
    "RESNET18_NUM_PARAMS",
    "RESNET18_WEIGHT_SHAPES",
    "WORKLOAD_NAMES",
    "WorkloadError",
    "default_c_cache_path",
    "gaussian_weights",
    "load_workload",
    "make_workload_c",
    "num_params",
    "scale_tensors",
    "sparse_update",
    "workload_c",
]


class WorkloadError(ValueError):
    """A workload name, scale or fixture is invalid."""


def _resnet18_shapes() -> list[tuple[str, tuple[int, ...]]]:
    """Return torchvision ResNet-18's conv and fc weight shapes in state_dict order."""
    shapes: list[tuple[str, tuple[int, ...]]] = [("conv1.weight", (64, 3, 7, 7))]
    in_ch = 64
    for stage, out_ch in enumerate((64, 128, 256, 512), start=1):
        for block in range(2):
            stride_block = block == 0 and stage > 1
            prefix = f"layer{stage}.{block}"
            shapes.append((f"{prefix}.conv1.weight", (out_ch, in_ch, 3, 3)))
            shapes.append((f"{prefix}.conv2.weight", (out_ch, out_ch, 3, 3)))
            if stride_block:
                shapes.append((f"{prefix}.downsample.0.weight", (out_ch, in_ch, 1, 1)))
            in_ch = out_ch
    shapes.append(("fc.weight", (1000, 512)))
    return shapes


# Hardcoded (via the generator above) so the benchmark never imports torch/torchvision;
# tests/bench checks it against torchvision.models.resnet18() where torchvision exists.
RESNET18_WEIGHT_SHAPES: tuple[tuple[str, tuple[int, ...]], ...] = tuple(_resnet18_shapes())
RESNET18_NUM_PARAMS: int = sum(math.prod(s) for _, s in RESNET18_WEIGHT_SHAPES)  # 11,678,912

WORKLOAD_NAMES: tuple[str, ...] = ("A", "B90", "B99", "C")

_DEFAULT_SEED = 20240501


def num_params(tensors: dict[str, np.ndarray]) -> int:
    """Total number of elements over all tensors of a workload."""
    return int(sum(t.size for t in tensors.values()))


def _check_scale(scale: float) -> float:
    scale = float(scale)
    if not (0.0 < scale <= 1.0) or math.isnan(scale):
        raise WorkloadError(f"scale must be in (0, 1], got {scale}")
    return scale


def _scaled_rows(rows: int, scale: float) -> int:
    return max(1, min(rows, math.ceil(rows * scale - 1e-9)))


def scale_tensors(tensors: dict[str, np.ndarray], scale: float) -> dict[str, np.ndarray]:
    """Keep the first ceil(scale * rows) rows of every tensor (all tensors kept)."""
    scale = _check_scale(scale)
    if scale == 1.0:
        return dict(tensors)
    out: dict[str, np.ndarray] = {}
    for name, t in tensors.items():
        if t.ndim == 0:
            out[name] = t
        else:
            out[name] = np.ascontiguousarray(t[: _scaled_rows(t.shape[0], scale)])
    return out


def _tensor_seed(seed: int, index: int, stream: int) -> np.random.Generator:
    # One independent stream per (tensor, purpose): slicing the first rows of a tensor is then
    # a prefix of its stream, which keeps scaled workloads exact slices of the full ones.
    return np.random.default_rng(np.random.SeedSequence([seed, index, stream]))


def gaussian_weights(
    *, std: float = 0.02, scale: float = 1.0, seed: int = _DEFAULT_SEED
) -> dict[str, np.ndarray]:
    """Workload A: N(0, std^2) float32 tensors with ResNet-18's conv and fc weight shapes."""
    scale = _check_scale(scale)
    out: dict[str, np.ndarray] = {}
    for i, (name, shape) in enumerate(RESNET18_WEIGHT_SHAPES):
        shape = (_scaled_rows(shape[0], scale),) + shape[1:]
        rng = _tensor_seed(seed, i, 0)
        w = rng.standard_normal(math.prod(shape), dtype=np.float32)
        w *= np.float32(std)
        out[name] = w.reshape(shape)
    return out


def sparse_update(
    zero_fraction: float,
    *,
    std: float = 1e-3,
    scale: float = 1.0,
    seed: int = _DEFAULT_SEED + 1,
) -> dict[str, np.ndarray]:
    """Workload B: N(0, std^2) update with each entry zeroed with probability zero_fraction."""
    if not (0.0 <= zero_fraction < 1.0):
        raise WorkloadError(f"zero_fraction must be in [0, 1), got {zero_fraction}")
    scale = _check_scale(scale)
    out: dict[str, np.ndarray] = {}
    keep = np.float32(1.0 - zero_fraction)
    for i, (name, shape) in enumerate(RESNET18_WEIGHT_SHAPES):
        shape = (_scaled_rows(shape[0], scale),) + shape[1:]
        n = math.prod(shape)
        w = _tensor_seed(seed, i, 0).standard_normal(n, dtype=np.float32)
        w *= np.float32(std)
        mask = _tensor_seed(seed, i, 1).random(n, dtype=np.float32) >= keep
        w[mask] = 0.0
        out[name] = w.reshape(shape)
    return out


# --------------------------------------------------------------------------- workload C

# The two sizes of the C fixture: "full" for the real benchmark, "small" for CI.
C_SIZES: dict[str, dict[str, int]] = {
    "full": {"images_per_class": 300, "epochs": 4, "batch_size": 64},
    "small": {"images_per_class": 10, "epochs": 1, "batch_size": 50},
}

_CIFAR_TAR_CANDIDATES = (
    "FEDBENCH_CIFAR10_TAR",  # env var first
    "/work/shared/data/cifar10-jpeg.tar.gz",
)


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def default_c_cache_path(size: str = "full") -> Path:
    """Default fixture path of workload C: cache/bench/workload_c[_small].npz in the repo."""
    if size not in C_SIZES:
        raise WorkloadError(f"unknown workload C size {size!r}; use one of {sorted(C_SIZES)}")
    suffix = "" if size == "full" else f"_{size}"
    return _repo_root() / "cache" / "bench" / f"workload_c{suffix}.npz"


def _find_cifar_tar(path: str | os.PathLike | None) -> Path:
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise WorkloadError(f"CIFAR-10 archive {p} does not exist")
        return p
    env = os.environ.get(_CIFAR_TAR_CANDIDATES[0])
    for cand in ([env] if env else []) + list(_CIFAR_TAR_CANDIDATES[1:]):
        if Path(cand).is_file():
            return Path(cand)
    raise WorkloadError(
        "no CIFAR-10 JPEG archive found for workload C; pass cifar_tar=... or set "
        "FEDBENCH_CIFAR10_TAR to an ImageFolder-layout .tar.gz (train/<class>/NNNN.jpg)"
    )


def _read_cifar_subset(tar_path: Path, images_per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Read the first images_per_class training JPEGs of each class straight from the tar."""
    from PIL import Image

    per_class: dict[str, list[np.ndarray]] = {}
    done_classes = 0
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            parts = member.name.strip("./").split("/")
            if not member.isfile() or len(parts) != 3 or parts[0] != "train":
                continue
            imgs = per_class.setdefault(parts[1], [])
            if len(imgs) >= images_per_class:
                continue
            f = tar.extractfile(member)
            assert f is not None
            with Image.open(io.BytesIO(f.read())) as im:
                imgs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            if len(imgs) == images_per_class:
                done_classes += 1
                # The archive lists classes one after another: stop once all ten are full.
                if done_classes == 10:
                    break
    classes = sorted(per_class)
    if len(classes) != 10 or any(len(per_class[c]) < images_per_class for c in classes):
        raise WorkloadError(f"{tar_path} does not hold {images_per_class} train images per class")
    x = np.stack([im for c in classes for im in per_class[c]])
    y = np.repeat(np.arange(10, dtype=np.int64), images_per_class)
    return x, y


def _build_resnet20(torch_nn):
    nn = torch_nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.shortcut = None
            if stride != 1 or cin != cout:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            out = self.bn1(self.conv1(x)).relu()
            out = self.bn2(self.conv2(out))
            sc = x if self.shortcut is None else self.shortcut(x)
            return (out + sc).relu()

    class ResNet20(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(16)
            layers = []
            cin = 16
            for cout, stride in ((16, 1), (32, 2), (64, 2)):
                for b in range(3):
                    layers.append(Block(cin, cout, stride if b == 0 else 1))
                    cin = cout
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            x = self.bn1(self.conv1(x)).relu()
            x = self.layers(x)
            return self.fc(x.mean(dim=(2, 3)))

    return ResNet20()


def make_workload_c(
    path: str | os.PathLike | None = None,
    *,
    size: str = "full",
    cifar_tar: str | os.PathLike | None = None,
    seed: int = 0,
    log: Callable[[str], None] | None = None,
) -> Path:
    """Train a ResNet-20-like net on a few CIFAR-10 batches and save its parameters as npz."""
    if size not in C_SIZES:
        raise WorkloadError(f"unknown workload C size {size!r}; use one of {sorted(C_SIZES)}")
    import torch  # lazy: only the fixture generation needs torch

    cfg = C_SIZES[size]
    out_path = Path(path) if path is not None else default_c_cache_path(size)
    t0 = time.perf_counter()
    x, y = _read_cifar_subset(_find_cifar_tar(cifar_tar), cfg["images_per_class"])
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).float().div_(255.0)
    mean = xt.mean(dim=(0, 2, 3), keepdim=True)
    std = xt.std(dim=(0, 2, 3), keepdim=True)
    xt = (xt - mean) / std
    yt = torch.from_numpy(y)

    torch.manual_seed(seed)
    model = _build_resnet20(torch.nn)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    steps = 0
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(len(yt), generator=gen)
        for i in range(0, len(yt), cfg["batch_size"]):
            idx = perm[i : i + cfg["batch_size"]]
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
    params = {
        name: p.detach().cpu().numpy().astype(np.float32, copy=True)
        for name, p in model.named_parameters()
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, **params)
    os.replace(tmp, out_path)
    if log is not None:
        log(
            f"workload C ({size}): {len(yt)} images, {steps} SGD steps, final loss "
            f"{loss.item():.3f}, {num_params(params)} params -> {out_path} "
            f"in {time.perf_counter() - t0:.1f} s"
        )
    return out_path


def workload_c(
    path: str | os.PathLike | None = None,
    *,
    size: str = "full",
    scale: float = 1.0,
    regenerate: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Workload C: load the trained small model's parameters, generating the npz if missing."""
    p = Path(path) if path is not None else default_c_cache_path(size)
    if not p.is_file():
        if not regenerate:
            raise WorkloadError(f"workload C fixture {p} is missing; run make_workload_c()")
        make_workload_c(p, size=size, log=log)
    with np.load(p) as z:
        tensors = {k: np.ascontiguousarray(z[k], dtype=np.float32) for k in z.files}
    if not tensors:
        raise WorkloadError(f"workload C fixture {p} holds no tensors")
    return scale_tensors(tensors, scale)


def load_workload(
    name: str,
    *,
    scale: float = 1.0,
    c_path: str | os.PathLike | None = None,
    c_size: str = "full",
    log: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Return the named workload (A, B90, B99, C) at the given scale."""
    if name == "A":
        return gaussian_weights(scale=scale)
    if name == "B90":
        return sparse_update(0.90, scale=scale)
    if name == "B99":
        return sparse_update(0.99, scale=scale)
    if name == "C":
        return workload_c(c_path, size=c_size, scale=scale, log=log)
    raise WorkloadError(f"unknown workload {name!r}; use one of {', '.join(WORKLOAD_NAMES)}")


def main(argv: list[str] | None = None) -> int:
    """`python -m fedbench.bench.workloads`: (re)generate the workload C fixture."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--scale", choices=sorted(C_SIZES), default="full", dest="size")
    parser.add_argument("--out", default=None, help="npz path (default cache/bench/...)")
    parser.add_argument("--cifar-tar", default=None, help="CIFAR-10 JPEG ImageFolder .tar.gz")
    parser.add_argument("--force", action="store_true", help="regenerate even if present")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out else default_c_cache_path(args.size)
    if out.is_file() and not args.force:
        print(f"{out} exists (use --force to regenerate)")
        return 0
    make_workload_c(out, size=args.size, cifar_tar=args.cifar_tar, log=print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
