"""Readers: one function per source format, turning a source into uint8 NHWC arrays."""

from __future__ import annotations

import io
import pickle
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fedbench.data.archive import Archive
from fedbench.data.errors import SourceFormatError
from fedbench.data.registry import DatasetSpec

Arrays = dict[str, np.ndarray]
Reader = Callable[[DatasetSpec, Path, int], Arrays]
READERS: dict[str, Reader] = {}


def reader(fmt: str) -> Callable[[Reader], Reader]:
    """Register a reader function for a source format name."""

    def deco(fn: Reader) -> Reader:
        READERS[fmt] = fn
        return fn

    return deco


def _pil():
    from PIL import Image

    return Image


def decode_image(
    data: bytes, mode: str, size: int | None, crop: bool = False, resample: str = "bilinear"
) -> np.ndarray:
    """Decode image bytes to uint8 HWC (mode 'L', 'RGB' or 'P'), optionally to size x size.

    crop=True centre-crops to a square before resizing (no distortion); crop=False
    stretches. JPEGs are decoded at a reduced DCT scale when much larger than `size`.
    """
    Image = _pil()
    with Image.open(io.BytesIO(data)) as im:
        if size is not None and im.format == "JPEG" and mode != "P":
            im.draft(mode, (size, size))  # DCT scaling: much faster for big X-rays
        im = im if mode == "P" else im.convert(mode)
        if size is not None and im.size != (size, size):
            if crop:
                w, h = im.size
                s = min(w, h)
                left, top = (w - s) // 2, (h - s) // 2
                im = im.crop((left, top, left + s, top + s))
            filt = Image.Resampling.NEAREST if resample == "nearest" else Image.Resampling.BILINEAR
            im = im.resize((size, size), filt)
        arr = np.asarray(im, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def resize_batch(x: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    """Resize uint8 N,H,W[,C] images to size x size with PIL (identity when equal)."""
    if x.shape[1] == size and x.shape[2] == size:
        return x
    Image = _pil()
    filt = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    squeeze = x.ndim == 4 and x.shape[3] == 1
    src = x[..., 0] if squeeze else x
    out = np.stack([np.asarray(Image.fromarray(im).resize((size, size), filt)) for im in src])
    return out[..., None] if squeeze else out


@reader("cifar-python")
def read_cifar_python(spec: DatasetSpec, path: Path, image_size: int) -> Arrays:
    """The official cifar-10-python.tar.gz: pickled batches read straight from the archive."""
    wanted = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch"}
    batches: dict[str, dict] = {}
    with Archive(path) as ar:
        for name, data in ar.iter_files(lambda n: n.rsplit("/", 1)[-1] in wanted):
            batches[name.rsplit("/", 1)[-1]] = pickle.loads(data, encoding="bytes")
    missing = wanted - set(batches)
    if missing:
        raise SourceFormatError(f"{path}: missing CIFAR batches {sorted(missing)}")

    def stack(keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        x = np.concatenate([np.asarray(batches[k][b"data"], np.uint8) for k in keys])
        y = np.concatenate([np.asarray(batches[k][b"labels"], np.int64) for k in keys])
        x = x.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        return resize_batch(np.ascontiguousarray(x), image_size), y

    x_train, y_train = stack([f"data_batch_{i}" for i in range(1, 6)])
    x_test, y_test = stack(["test_batch"])
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}


_IMAGEFOLDER = re.compile(
    r"(?:^|/)(train|test|val)/([^/]+)/([^/]+)\.(jpe?g|png|bmp)$", re.IGNORECASE
)


def _sort_key(stem: str) -> tuple[int, int | str]:
    return (0, int(stem)) if stem.isdigit() else (1, stem)


@reader("imagefolder-targz")
def read_imagefolder(spec: DatasetSpec, path: Path, image_size: int) -> Arrays:
    """An ImageFolder archive `{train,test}/<class>/<file>`; class ids follow spec.class_names.

    Images are read directly from the (compressed) archive in one pass; within a class
    they are ordered by file number, classes in id order.
    """
    index = {c: i for i, c in enumerate(spec.class_names)}
    items: dict[str, list[tuple[int, tuple, bytes]]] = {"train": [], "test": [], "val": []}
    mode = "L" if spec.channels == 1 else "RGB"
    with Archive(path) as ar:
        for name, data in ar.iter_files(lambda n: _IMAGEFOLDER.search(n) is not None):
            split, cls, stem, _ = _IMAGEFOLDER.search(name).groups()
            if cls not in index:
                raise SourceFormatError(
                    f"{path}: class folder {cls!r} ({name}) is not one of {list(spec.class_names)}"
                )
            items[split.lower()].append((index[cls], _sort_key(stem), data))
    if not items["train"] or not items["test"]:
        raise SourceFormatError(f"{path}: expected train/<class>/*.jpg and test/<class>/*.jpg")
    out: Arrays = {}
    for split, lst in items.items():
        if not lst:
            continue
        lst.sort(key=lambda t: (t[0], t[1]))
        out[f"x_{split}"] = np.stack([decode_image(d, mode, image_size) for _, _, d in lst])
        out[f"y_{split}"] = np.array([c for c, _, _ in lst], dtype=np.int64)
    return out


@reader("medmnist-npz")
def read_medmnist(spec: DatasetSpec, path: Path, image_size: int) -> Arrays:
    """A MedMNIST .npz (train/val/test_images, *_labels), single-label tasks."""
    out: Arrays = {}
    with np.load(path, allow_pickle=False) as z:
        for split in ("train", "val", "test"):
            if f"{split}_images" not in z:
                if split == "val":
                    continue
                raise SourceFormatError(f"{path}: no {split}_images array (keys: {z.files})")
            x = np.asarray(z[f"{split}_images"], dtype=np.uint8)
            if x.ndim == 3:
                x = x[..., None]
            y = np.asarray(z[f"{split}_labels"]).reshape(len(x), -1)
            if y.shape[1] != 1:
                raise SourceFormatError(f"{path}: multi-label MedMNIST is not supported here")
            out[f"x_{split}"] = resize_batch(x, image_size)
            out[f"y_{split}"] = y[:, 0].astype(np.int64)
    return out


_KERMANY = re.compile(
    r"^(.*?)(train|test|val)/(NORMAL|PNEUMONIA)/[^/]+\.(jpe?g|png)$", re.IGNORECASE
)


@reader("kermany")
def read_kermany(spec: DatasetSpec, path: Path, image_size: int) -> Arrays:
    """Kermany chest X-rays, `chest_xray/{train,test[,val]}/{NORMAL,PNEUMONIA}`, folder/zip/tar.

    Archives that hold the tree twice (the Kaggle zip) are read once, from the shallowest
    copy that has both train and test. Images become grey, centre-cropped and resized.
    """
    index = {c.upper(): i for i, c in enumerate(spec.class_names)}
    with Archive(path) as ar:
        names = [n for n in ar.names() if _KERMANY.match(n)] if ar.kind != "tar" else None
        if names is None:  # compressed tars: one pass, pick the prefix afterwards
            blobs = dict(ar.iter_files(lambda n: _KERMANY.match(n) is not None))
            names = list(blobs)
        else:
            blobs = None
        prefixes: dict[str, set[str]] = {}
        for n in names:
            pre, split = _KERMANY.match(n).group(1, 2)
            prefixes.setdefault(pre, set()).add(split.lower())
        good = sorted((p for p, s in prefixes.items() if {"train", "test"} <= s), key=len)
        if not good:
            raise SourceFormatError(
                f"{path}: no chest_xray/{{train,test}}/{{NORMAL,PNEUMONIA}}/*.jpeg images found"
            )
        prefix = good[0]
        out: Arrays = {}
        for split in ("train", "val", "test"):
            sel = []
            for n in names:
                pre, sp, cls = _KERMANY.match(n).group(1, 2, 3)
                if pre == prefix and sp.lower() == split:
                    sel.append((index[cls.upper()], n))
            if not sel:
                continue
            sel.sort()
            xs = [
                decode_image(
                    blobs[n] if blobs is not None else ar.read(n), "L", image_size, crop=True
                )
                for _, n in sel
            ]
            out[f"x_{split}"] = np.stack(xs)
            out[f"y_{split}"] = np.array([c for c, _ in sel], dtype=np.int64)
    return out


def _voc_base(names: list[str], path: Path) -> str:
    for n in names:
        m = re.match(r"^(.*?VOC2012/)ImageSets/", n)
        if m:
            return m.group(1)
    raise SourceFormatError(
        f"{path}: no VOC2012/ImageSets/ found (expected the "
        f"VOCdevkit/VOC2012 layout of VOCtrainval_11-May-2012.tar)"
    )


def _ids(ar: Archive, base: str, sub: str, split: str) -> list[str]:
    text = ar.read(f"{base}ImageSets/{sub}/{split}.txt").decode()
    return [ln.split()[0] for ln in text.splitlines() if ln.strip()]


def voc_labels_from_xml(data: bytes, class_names: tuple[str, ...]) -> np.ndarray:
    """20-dim 0/1 vector of the classes annotated in one VOC Annotations/*.xml file."""
    index = {c: i for i, c in enumerate(class_names)}
    y = np.zeros(len(class_names), dtype=np.uint8)
    for obj in ET.fromstring(data).iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in index:
            raise SourceFormatError(f"unknown VOC class {name!r} in annotation")
        y[index[name]] = 1
    return y


@reader("voc")
def read_voc(spec: DatasetSpec, path: Path, image_size: int) -> Arrays:
    """Pascal VOC 2012 (tar or extracted VOCdevkit): segmentation masks or multi-label tags.

    Segmentation: ImageSets/Segmentation train (train) and val (test), PNG palette masks
    whose indices are the labels (255 = ignore), resized with nearest neighbour.
    Multi-label: ImageSets/Main train/val, labels from Annotations/*.xml.
    """
    out: Arrays = {}
    with Archive(path) as ar:
        base = _voc_base(ar.names(), path)
        for split, dst in (("train", "train"), ("val", "test")):
            if spec.task == "segmentation":
                ids = _ids(ar, base, "Segmentation", split)
                out[f"x_{dst}"] = np.stack(
                    [
                        decode_image(ar.read(f"{base}JPEGImages/{i}.jpg"), "RGB", image_size)
                        for i in ids
                    ]
                )
                masks = [
                    decode_image(
                        ar.read(f"{base}SegmentationClass/{i}.png"),
                        "P",
                        image_size,
                        resample="nearest",
                    )[..., 0]
                    for i in ids
                ]
                y = np.stack(masks)
                bad = (y > spec.num_classes - 1) & (y != 255)
                if bad.any():
                    raise SourceFormatError(
                        f"{path}: mask values outside 0..{spec.num_classes - 1} and 255"
                    )
                out[f"y_{dst}"] = y
            else:
                ids = _ids(ar, base, "Main", split)
                out[f"x_{dst}"] = np.stack(
                    [
                        decode_image(ar.read(f"{base}JPEGImages/{i}.jpg"), "RGB", image_size)
                        for i in ids
                    ]
                )
                out[f"y_{dst}"] = np.stack(
                    [
                        voc_labels_from_xml(ar.read(f"{base}Annotations/{i}.xml"), spec.class_names)
                        for i in ids
                    ]
                )
    return out
