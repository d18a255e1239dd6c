"""prepare() on every source format -> load_prepared(): shapes, labels, order, meta."""

from __future__ import annotations

import os

import numpy as np
import pytest
from datafix import (
    KERMANY,
    VOC_MAIN,
    VOC_OBJECTS,
    VOC_SEG,
    folder_value,
    make_cifar_python,
    make_imagefolder,
    make_kermany_dir,
    make_kermany_targz,
    make_kermany_zip,
    make_medmnist,
    make_voc_dir,
    make_voc_tar,
    md5,
    sha256,
    voc_mask,
)

from fedbench.data import (
    PreparedFormatError,
    SourceFormatError,
    load_prepared,
    prepare,
    read_meta,
)
from fedbench.data.readers import decode_image
from fedbench.data.registry import CIFAR10_CLASSES, VOC_CLASSES


def test_cifar_python(tmp_path, patch_source):
    root = tmp_path / "root"
    root.mkdir()
    batches = make_cifar_python(root / "cifar-10-python.tar.gz", per_batch=6)
    patch_source("cifar10", "cifar-10-python.tar.gz", md5=md5(root / "cifar-10-python.tar.gz"))
    out = prepare("cifar10", root, tmp_path / "c.npz")
    p = load_prepared(out)
    assert p.x_train.shape == (30, 32, 32, 3) and p.x_test.shape == (6, 32, 32, 3)
    assert p.x_train.dtype == np.uint8 and p.y_train.dtype == np.int64
    x1, y1 = batches["data_batch_1"]
    # official layout: 3072 = R plane, G plane, B plane, each row-major 32x32
    np.testing.assert_array_equal(p.x_train[:6], x1.reshape(6, 3, 32, 32).transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(p.y_train[:6], y1)
    np.testing.assert_array_equal(p.y_test, batches["test_batch"][1])
    assert p.meta["task"] == "classification" and p.num_classes == 10 and p.channels == 3
    assert p.meta["class_names"] == list(CIFAR10_CLASSES)
    assert p.meta["source_sha256"] == sha256(root / "cifar-10-python.tar.gz")
    assert p.meta["counts"] == {"train": 30, "test": 6}
    mean = p.x_train.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(p.mean, mean, rtol=1e-6)


def test_prepare_is_idempotent_and_tracks_source(tmp_path, patch_source):
    root = tmp_path / "root"
    root.mkdir()
    make_cifar_python(root / "cifar-10-python.tar.gz")
    patch_source("cifar10", "cifar-10-python.tar.gz", md5=None)
    out = prepare("cifar10", root, tmp_path / "c.npz")
    stamp = os.stat(out).st_mtime_ns
    assert prepare("cifar10", root, out) == out
    assert os.stat(out).st_mtime_ns == stamp  # untouched
    prepare("cifar10", root, out, image_size=16)  # new size: rebuilt
    assert load_prepared(out).x_train.shape[1:] == (16, 16, 3)
    assert read_meta(out)["image_size"] == 16


def test_imagefolder_targz(tmp_path, patch_source):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_imagefolder(mirror / "cifar10-jpeg.tar.gz", n_train=3, n_test=2)
    patch_source("cifar10", "cifar10-jpeg.tar.gz", sha256=sha256(mirror / "cifar10-jpeg.tar.gz"))
    out = prepare("cifar10", tmp_path / "root", tmp_path / "c.npz", mirror=mirror)
    p = load_prepared(out)
    assert p.x_train.shape == (9, 32, 32, 3) and p.x_test.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(p.y_train, [0, 0, 0, 1, 1, 1, 2, 2, 2])
    expect = [folder_value("train", c, n) for c in range(3) for n in range(3)]
    np.testing.assert_allclose(p.x_train.reshape(9, -1).mean(1), expect, atol=2)
    assert p.meta["source"] == "cifar10-jpeg.tar.gz"


def test_imagefolder_unknown_class(tmp_path, patch_source):
    root = tmp_path / "root"
    root.mkdir()
    make_imagefolder(root / "cifar10-jpeg.tar.gz", classes=("airplane", "unicorn"))
    patch_source("cifar10", "cifar10-jpeg.tar.gz", sha256=None)
    with pytest.raises(SourceFormatError, match="unicorn"):
        prepare("cifar10", root, tmp_path / "c.npz")


def test_medmnist(tmp_path, patch_source):
    root = tmp_path / "root"
    root.mkdir()
    arrays = make_medmnist(root / "pneumoniamnist.npz")
    patch_source("pneumoniamnist", "pneumoniamnist.npz", md5=None, sha256=None)
    p = load_prepared(prepare("pneumoniamnist", root, tmp_path / "p.npz"))
    assert p.x_train.shape == (12, 28, 28, 1) and p.x_val.shape == (4, 28, 28, 1)
    assert p.x_test.shape == (6, 28, 28, 1)
    np.testing.assert_array_equal(p.x_train[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(p.y_test, arrays["test_labels"][:, 0])
    assert p.channels == 1 and p.num_classes == 2
    p32 = load_prepared(prepare("pneumoniamnist", root, tmp_path / "p32.npz", image_size=32))
    assert p32.x_train.shape == (12, 32, 32, 1)


def _check_kermany(p, size):
    n = {s: sum(KERMANY[s].values()) for s in KERMANY}
    assert p.x_train.shape == (n["train"], size, size, 1)
    assert p.x_test.shape == (n["test"], size, size, 1)
    assert p.x_val.shape == (n["val"], size, size, 1)
    np.testing.assert_array_equal(p.y_train, [0] * 2 + [1] * 3)
    np.testing.assert_array_equal(p.y_test, [0, 1, 1])
    # centre crop removes the dark side borders: the whole image is the bright square
    lv = np.where(p.y_train == 1, 200, 120)
    flat = p.x_train.reshape(len(lv), -1).astype(float)
    np.testing.assert_allclose(np.median(flat, 1), lv, atol=8)
    assert flat.min() > 60  # a stretched (uncropped) image would show the dark border (10)
    assert p.meta["task"] == "classification" and p.meta["class_names"] == ["NORMAL", "PNEUMONIA"]


@pytest.mark.parametrize("form", ["dir", "zip", "targz"])
def test_kermany(tmp_path, form, patch_source):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    if form == "dir":
        make_kermany_dir(mirror)
    elif form == "zip":
        make_kermany_zip(mirror / "ChestXRay2017.zip")
    else:
        make_kermany_targz(mirror / "chest_xray.tar.gz")
    p = load_prepared(
        prepare("chestxray", tmp_path / "root", tmp_path / "k.npz", mirror=mirror, image_size=16)
    )
    _check_kermany(p, 16)


def test_channels_option(tmp_path):
    mirror = tmp_path / "mirror"
    make_kermany_dir(mirror)
    out = tmp_path / "k.npz"
    grey = load_prepared(prepare("chestxray", tmp_path / "root", out, mirror=mirror, image_size=8))
    rgb = load_prepared(prepare("chestxray", tmp_path / "root", out, image_size=8, channels=3))
    assert rgb.x_train.shape == (5, 8, 8, 3) and rgb.channels == 3 and len(rgb.mean) == 3
    np.testing.assert_array_equal(rgb.x_train[..., 2], grey.x_train[..., 0])
    with pytest.raises(ValueError, match="channels"):
        prepare("chestxray", tmp_path / "root", out, channels=2)


def test_voc_segmentation(tmp_path, patch_source):
    root = tmp_path / "root"
    root.mkdir()
    make_voc_tar(root / "VOCtrainval_11-May-2012.tar")
    patch_source(
        "voc2012-seg", "VOCtrainval_11-May-2012.tar", md5=md5(root / "VOCtrainval_11-May-2012.tar")
    )
    p = load_prepared(prepare("voc2012-seg", root, tmp_path / "s.npz", image_size=60))
    assert p.task == "segmentation" and p.num_classes == 21
    assert p.x_train.shape == (2, 60, 60, 3) and p.y_train.shape == (2, 60, 60)
    assert p.x_test.shape == (1, 60, 60, 3) and p.y_train.dtype == np.uint8
    assert p.meta["ignore_index"] == 255
    # nearest resize of 40x60 -> 60x60 keeps the mask values: left class, 255 seam, right 0
    for i, image_id in enumerate(VOC_SEG["train"]):
        want = voc_mask(image_id)
        assert set(np.unique(p.y_train[i])) == set(np.unique(want))
        np.testing.assert_array_equal(p.y_train[i][:, 0], want[0, 0])
        np.testing.assert_array_equal(p.y_train[i][:, -1], 0)
    assert p.y_train[0][0, 0] == VOC_CLASSES.index("aeroplane") + 1
    assert p.y_train[1][0, 0] == VOC_CLASSES.index("tvmonitor") + 1


def test_voc_multilabel_from_annotations(tmp_path, patch_source):
    root = tmp_path / "root"
    root.mkdir()
    make_voc_tar(root / "VOCtrainval_11-May-2012.tar")
    patch_source("voc2012-cls", "VOCtrainval_11-May-2012.tar", md5=None)
    p = load_prepared(prepare("voc2012-cls", root, tmp_path / "m.npz", image_size=24))
    assert p.task == "multilabel" and p.num_classes == 20
    assert p.x_train.shape == (2, 24, 24, 3) and p.y_train.shape == (2, 20)
    for split, y in (("train", p.y_train), ("val", p.y_test)):
        for row, image_id in zip(y, VOC_MAIN[split], strict=True):
            want = {VOC_CLASSES.index(n) for n, _ in VOC_OBJECTS[image_id]}
            assert set(np.flatnonzero(row)) == want


def test_voc_extracted_folder(tmp_path):
    root = tmp_path / "root"
    make_voc_dir(root)
    p = load_prepared(prepare("voc2012-seg", root, tmp_path / "s.npz", image_size=32))
    assert p.x_train.shape == (2, 32, 32, 3) and p.meta["source"] == "VOCdevkit"


def test_load_prepared_rejects_other_files(tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(PreparedFormatError):
        load_prepared(bad)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(PreparedFormatError):
        read_meta(tmp_path / "junk.npz")


def test_decode_image_crop_and_modes():
    from datafix import jpeg_bytes

    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, 10:30] = 255
    out = decode_image(jpeg_bytes(arr), "L", 10, crop=True)
    assert out.shape == (10, 10, 1) and out.min() > 230
    out = decode_image(jpeg_bytes(arr), "RGB", 10, crop=False)
    assert out.shape == (10, 10, 3) and out[:, 0].max() < 30


def test_voc_agrees_with_torchvision_loaders(tmp_path):
    """Our VOC reader and torchvision's VOCSegmentation/VOCDetection read the same tree."""
    from PIL import Image
    from torchvision.datasets import VOCDetection, VOCSegmentation

    root = tmp_path / "root"
    make_voc_dir(root)
    size = 30
    seg = load_prepared(prepare("voc2012-seg", root, tmp_path / "s.npz", image_size=size))
    tv_seg = VOCSegmentation(str(root), year="2012", image_set="val", download=False)
    for i in range(len(tv_seg)):
        img, target = tv_seg[i]
        want = np.asarray(target.resize((size, size), Image.Resampling.NEAREST))
        np.testing.assert_array_equal(seg.y_test[i], want)
        want_img = np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))
        assert np.abs(seg.x_test[i].astype(int) - want_img).mean() < 4  # JPEG draft decode
    cls = load_prepared(prepare("voc2012-cls", root, tmp_path / "m.npz", image_size=size))
    tv_det = VOCDetection(str(root), year="2012", image_set="train", download=False)
    for i in range(len(tv_det)):
        objs = tv_det[i][1]["annotation"]["object"]
        want = {VOC_CLASSES.index(o["name"]) for o in objs}
        assert set(np.flatnonzero(cls.y_train[i])) == want
