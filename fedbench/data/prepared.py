"""The prepared cache: one .npz per data set (uint8 NHWC images, labels, JSON meta)."""

from __future__ import annotations

import json
import os
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.data.download import download, source_digest
from fedbench.data.errors import PreparedFormatError
from fedbench.data.registry import DatasetSpec, get_spec

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


@dataclass
class PreparedData:
    """A prepared data set in memory: uint8 NHWC images, labels and the meta dict.

    Labels: classification int64 [N]; multilabel uint8 [N, C] (0/1); segmentation uint8
    [N, H, W] with 255 = ignore. x_val / y_val exist only where the source has a val split.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    meta: dict[str, Any]
    x_val: np.ndarray | None = None
    y_val: np.ndarray | None = None

    @property
    def task(self) -> str:
        """'classification', 'multilabel' or 'segmentation'."""
        return self.meta["task"]

    @property
    def num_classes(self) -> int:
        """Number of classes (segmentation: including background)."""
        return int(self.meta["num_classes"])

    @property
    def channels(self) -> int:
        """Image channels as stored (1 grey, 3 RGB)."""
        return int(self.meta["channels"])

    @property
    def image_size(self) -> int:
        """Side length of the square images."""
        return int(self.meta["image_size"])

    @property
    def mean(self) -> list[float]:
        """Per-channel mean of the train images on the [0, 1] scale."""
        return list(self.meta["mean"])

    @property
    def std(self) -> list[float]:
        """Per-channel standard deviation of the train images on the [0, 1] scale."""
        return list(self.meta["std"])

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of split 'train', 'val' or 'test'."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        x, y = getattr(self, f"x_{name}"), getattr(self, f"y_{name}")
        if x is None:
            raise PreparedFormatError(f"{self.meta.get('name')}: no {name!r} split")
        return x, y

    def partition_labels(self, split: str = "train") -> np.ndarray:
        """One int label per sample of `split`, for label-based (Dirichlet) partitions."""
        from fedbench.data.partition import partition_labels

        return partition_labels(self.split(split)[1], self.task)


def channel_stats(x: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 NHWC images on the [0, 1] scale (chunked)."""
    c = x.shape[-1]
    s = np.zeros(c)
    s2 = np.zeros(c)
    n = 0
    for i in range(0, len(x), chunk):
        b = x[i : i + chunk].reshape(-1, c).astype(np.float64)
        s += b.sum(0)
        s2 += (b * b).sum(0)
        n += b.shape[0]
    mean = s / max(n, 1)
    var = np.maximum(s2 / max(n, 1) - mean * mean, 0.0)
    std = np.maximum(np.sqrt(var), 1e-3 * 255)
    return (mean / 255).tolist(), (std / 255).tolist()


def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """Only the meta dict of a prepared file (cheap: the image arrays are not read)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise PreparedFormatError(f"{path} is not a prepared fedbench data file: {exc}") from exc


def load_prepared(path: str | os.PathLike) -> PreparedData:
    """Read a prepared .npz file written by `prepare` into a PreparedData."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta.get("format_version") != FORMAT_VERSION:
                raise PreparedFormatError(
                    f"{path}: format version {meta.get('format_version')} (expected "
                    f"{FORMAT_VERSION}); run `fedbench data prepare` again"
                )
            arrays = {k: z[k] for k in z.files if k != "meta"}
    except (KeyError, OSError, zipfile.BadZipFile) as exc:
        raise PreparedFormatError(f"{path} is not a prepared fedbench data file: {exc}") from exc
    for k in ("x_train", "y_train", "x_test", "y_test"):
        if k not in arrays:
            raise PreparedFormatError(f"{path}: missing array {k!r}")
    return PreparedData(meta=meta, **arrays)


def _wanted_meta(
    spec: DatasetSpec, source_sha: str, image_size: int, channels: int
) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "source_sha256": source_sha,
        "image_size": image_size,
        "channels": channels,
    }


def convert_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """uint8 NHWC images to 1 (ITU-R 601 luma) or 3 (grey repeated) channels."""
    if x.shape[-1] == channels:
        return x
    if channels == 3 and x.shape[-1] == 1:
        return np.repeat(x, 3, axis=-1)
    if channels == 1 and x.shape[-1] == 3:
        # Element-wise, not a matmul: NumPy 2's float32 matmul sums in another order, so
        # rint() flipped some pixels between NumPy 1 and 2; this order is NumPy 1's result.
        w = np.array([0.299, 0.587, 0.114], np.float32)
        xf = x.astype(np.float32)
        luma = (xf[..., 0] * w[0] + xf[..., 1] * w[1]) + xf[..., 2] * w[2]
        return np.clip(np.rint(luma), 0, 255).astype(np.uint8)[..., None]
    raise ValueError(f"cannot convert {x.shape[-1]} channels to {channels}")


def prepare(
    name: str,
    root: str | os.PathLike,
    out: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    image_size: int | None = None,
    channels: int | None = None,
    force: bool = False,
) -> Path:
    """Turn data set `name`'s source into one prepared .npz at `out`; return `out`.

    The source is found in `root`, else fetched by `download(name, root, mirror)`.
    Idempotent: if `out` exists with the same source sha256, image size and format
    version, nothing is done (unless force=True). image_size / channels default to the
    registry's (channels=3 stores grey images as RGB, channels=1 RGB as grey).
    """
    from fedbench.data.readers import READERS

    spec = get_spec(name)
    size = int(image_size or spec.image_size)
    if size < 1:
        raise ValueError(f"image_size must be positive, got {size}")
    chans = int(channels or spec.channels)
    if chans not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {chans}")
    out = Path(out)
    src = download(name, root, mirror)
    source = next(s for s in spec.sources if s.filename == src.name)
    sha = source_digest(src)
    wanted = _wanted_meta(spec, sha, size, chans)
    if out.is_file() and not force:
        try:
            meta = read_meta(out)
        except PreparedFormatError:
            meta = {}
        if all(meta.get(k) == v for k, v in wanted.items()):
            return out

    t0 = time.perf_counter()
    arrays = READERS[source.fmt](spec, src, size)
    for key in [k for k in arrays if k.startswith("x_")]:
        arrays[key] = convert_channels(arrays[key], chans)
    mean, std = channel_stats(arrays["x_train"])
    meta = {
        **wanted,
        "task": spec.task,
        "num_classes": spec.num_classes,
        "class_names": list(spec.class_names),
        "mean": mean,
        "std": std,
        "source": src.name,
        "source_format": source.fmt,
        "source_note": source.note,
        "ignore_index": 255 if spec.task == "segmentation" else None,
        "counts": {s: len(arrays[f"x_{s}"]) for s in SPLITS if f"x_{s}" in arrays},
        "prepare_seconds": round(time.perf_counter() - t0, 3),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            # uncompressed: loading is a plain read; the images barely compress anyway
            np.savez(fh, meta=np.array(json.dumps(meta)), **arrays)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return out
