"""`fedbench data ...` through the real argument parser."""

from __future__ import annotations

import json

from datafix import make_medmnist, md5

from fedbench.cli import main


def test_list(capsys):
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    for name in ("cifar10", "pneumoniamnist", "chestxray", "voc2012-seg", "voc2012-cls"):
        assert name in out


def test_unknown_name(tmp_path, capsys):
    assert main(["data", "download", "imagenet", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "unknown data set 'imagenet'" in err and "cifar10" in err


def test_missing_mirror_file(tmp_path, capsys):
    mirror = tmp_path / "m"
    mirror.mkdir()
    rc = main(
        [
            "data",
            "prepare",
            "pneumoniamnist",
            "--root",
            str(tmp_path / "r"),
            "--out",
            str(tmp_path / "o.npz"),
            "--mirror",
            str(mirror),
        ]
    )
    assert rc == 2
    err = capsys.readouterr().err
    assert "pneumoniamnist.npz" in err and str(mirror) in err


def test_download_prepare_info(tmp_path, capsys, patch_source):
    mirror = tmp_path / "m"
    mirror.mkdir()
    make_medmnist(mirror / "pneumoniamnist.npz")
    patch_source(
        "pneumoniamnist", "pneumoniamnist.npz", md5=md5(mirror / "pneumoniamnist.npz"), sha256=None
    )
    root = tmp_path / "r"
    assert (
        main(["data", "download", "pneumoniamnist", "--root", str(root), "--mirror", str(mirror)])
        == 0
    )
    assert capsys.readouterr().out.strip() == str(root / "pneumoniamnist.npz")
    out = tmp_path / "p.npz"
    assert (
        main(
            [
                "data",
                "prepare",
                "pneumoniamnist",
                "--root",
                str(root),
                "--out",
                str(out),
                "--image-size",
                "20",
            ]
        )
        == 0
    )
    assert "train 12, val 4, test 6" in capsys.readouterr().out
    assert main(["data", "info", str(out)]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert meta["image_size"] == 20 and meta["name"] == "pneumoniamnist"
