"""Builders of tiny data set fixtures in the real on-disk formats (used by tests/data)."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from fedbench.data.registry import CIFAR10_CLASSES, VOC_CLASSES


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def jpeg_bytes(arr: np.ndarray, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


# ---- CIFAR-10 python pickles --------------------------------------------------------------


def cifar_arrays(n: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 3072), dtype=np.uint8), rng.integers(0, 10, n).tolist()


def make_cifar_python(path: Path, per_batch: int = 6) -> dict[str, tuple]:
    """cifar-10-python.tar.gz with cifar-10-batches-py/{data_batch_1..5,test_batch,...}."""
    batches = {}
    with tarfile.open(path, "w:gz") as tf:
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for i, name in enumerate(names):
            x, y = cifar_arrays(per_batch, i)
            d = {
                b"batch_label": name.encode(),
                b"labels": y,
                b"data": x,
                b"filenames": [f"{j}.png".encode() for j in range(per_batch)],
            }
            add_bytes(tf, f"cifar-10-batches-py/{name}", pickle.dumps(d, protocol=2))
            batches[name] = (x, y)
        meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES]}
        add_bytes(tf, "cifar-10-batches-py/batches.meta", pickle.dumps(meta, protocol=2))
        add_bytes(tf, "cifar-10-batches-py/readme.html", b"<html></html>")
    return batches


# ---- ImageFolder tar.gz (offline CIFAR-10 JPEG copy) ---------------------------------------


def folder_value(split: str, cls: int, num: int) -> int:
    """Grey level that identifies one fixture image (flat images survive JPEG exactly)."""
    return (40 if split == "train" else 140) + 10 * cls + 3 * num


def make_imagefolder(
    path: Path,
    n_train: int = 3,
    n_test: int = 2,
    classes: tuple[str, ...] = CIFAR10_CLASSES[:3],
    size: int = 32,
) -> None:
    """train/<class>/NNNN.jpg, test/<class>/NNNN.jpg; written in a shuffled order."""
    entries = []
    for split, n in (("train", n_train), ("test", n_test)):
        for ci, cls in enumerate(classes):
            for num in range(n):
                entries.append((split, ci, cls, num))
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as tf:
        for k in rng.permutation(len(entries)):
            split, ci, cls, num = entries[k]
            arr = np.full((size, size, 3), folder_value(split, ci, num), np.uint8)
            add_bytes(tf, f"./{split}/{cls}/{num:04d}.jpg", jpeg_bytes(arr))


# ---- MedMNIST npz -------------------------------------------------------------------------


def make_medmnist(path: Path, sizes: dict[str, int] | None = None, side: int = 28) -> dict:
    sizes = sizes or {"train": 12, "val": 4, "test": 6}
    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in sizes.items():
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
        arrays[f"{split}_labels"] = rng.integers(0, 2, (n, 1)).astype(np.uint8)
    np.savez_compressed(path, **arrays)
    return arrays


# ---- Kermany chest X-ray ------------------------------------------------------------------

KERMANY = {
    "train": {"NORMAL": 2, "PNEUMONIA": 3},
    "test": {"NORMAL": 1, "PNEUMONIA": 2},
    "val": {"NORMAL": 1, "PNEUMONIA": 1},
}


def kermany_files(prefix: str = "chest_xray/") -> dict[str, bytes]:
    """Non-square grey-ish RGB JPEGs: a bright centre square on a dark border."""
    files = {}
    for split, per in KERMANY.items():
        for cls, n in per.items():
            for i in range(n):
                h, w = 60 + 4 * i, 90
                arr = np.full((h, w, 3), 10, np.uint8)
                s = min(h, w)
                top, left = (h - s) // 2, (w - s) // 2
                arr[top : top + s, left : left + s] = 200 if cls == "PNEUMONIA" else 120
                files[f"{prefix}{split}/{cls}/person{i}_{cls.lower()}.jpeg"] = jpeg_bytes(arr)
    return files


def make_kermany_dir(root: Path) -> Path:
    for name, data in kermany_files().items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root / "chest_xray"


def make_kermany_zip(path: Path) -> None:
    """Like the Kaggle zip: the tree twice (nested copy) plus __MACOSX junk."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in kermany_files("chest_xray/").items():
            zf.writestr(name, data)
        for name, data in kermany_files("chest_xray/chest_xray/").items():
            zf.writestr(name, data)
        zf.writestr("__MACOSX/chest_xray/train/NORMAL/._person0_normal.jpeg", b"junk")


def make_kermany_targz(path: Path) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in kermany_files("ChestXRay2017/chest_xray/").items():
            add_bytes(tf, name, data)


# ---- Pascal VOC 2012 ----------------------------------------------------------------------


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved), 256 entries."""
    pal = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        pal += [r, g, b]
    return pal


VOC_SEG = {"train": ["2007_000032", "2007_000039"], "val": ["2007_000033"]}
VOC_MAIN = {"train": ["2008_000002", "2007_000032"], "val": ["2008_000003", "2007_000033"]}
VOC_OBJECTS = {
    "2007_000032": [("aeroplane", 0), ("person", 1)],
    "2007_000033": [("aeroplane", 0)],
    "2007_000039": [("tvmonitor", 0)],
    "2008_000002": [("dog", 0), ("dog", 0)],
    "2008_000003": [("bicycle", 1), ("person", 0)],
}


def voc_mask(image_id: str, h: int = 40, w: int = 60) -> np.ndarray:
    """Class index of the first object on the left half, 0 on the right, 255 border."""
    cls = VOC_CLASSES.index(VOC_OBJECTS[image_id][0][0]) + 1
    m = np.zeros((h, w), np.uint8)
    m[:, : w // 2] = cls
    m[:, w // 2 - 1 : w // 2 + 1] = 255
    return m


def voc_xml(image_id: str) -> bytes:
    objs = "".join(
        f"<object><name>{n}</name><pose>Unspecified</pose><truncated>0</truncated>"
        f"<difficult>{d}</difficult><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>20</xmax>"
        f"<ymax>20</ymax></bndbox></object>"
        for n, d in VOC_OBJECTS[image_id]
    )
    return (
        f"<annotation><folder>VOC2012</folder><filename>{image_id}.jpg</filename>"
        f"<size><width>60</width><height>40</height><depth>3</depth></size>"
        f"<segmented>0</segmented>{objs}</annotation>"
    ).encode()


def voc_files() -> dict[str, bytes]:
    base = "VOCdevkit/VOC2012/"
    files = {}
    ids = sorted(set(VOC_OBJECTS))
    for i in ids:
        arr = np.zeros((40, 60, 3), np.uint8)
        arr[:, :30] = 200
        files[f"{base}JPEGImages/{i}.jpg"] = jpeg_bytes(arr)
        files[f"{base}Annotations/{i}.xml"] = voc_xml(i)
    for i in sorted(set(VOC_SEG["train"] + VOC_SEG["val"])):
        im = Image.fromarray(voc_mask(i), mode="P")
        im.putpalette(voc_palette())
        files[f"{base}SegmentationClass/{i}.png"] = png_bytes(im)
    for split, lst in VOC_SEG.items():
        files[f"{base}ImageSets/Segmentation/{split}.txt"] = ("\n".join(lst) + "\n").encode()
    for split, lst in VOC_MAIN.items():
        files[f"{base}ImageSets/Main/{split}.txt"] = ("\n".join(lst) + "\n").encode()
        # per-class lists exist in the real archive too
        files[f"{base}ImageSets/Main/dog_{split}.txt"] = b"2008_000002  1\n"
    return files


def make_voc_tar(path: Path) -> None:
    with tarfile.open(path, "w") as tf:
        for name, data in voc_files().items():
            add_bytes(tf, name, data)


def make_voc_dir(root: Path) -> Path:
    for name, data in voc_files().items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root / "VOCdevkit"
