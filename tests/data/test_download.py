"""download(): official URL path (served from localhost), mirror folder, checksums, errors."""

from __future__ import annotations

import pytest
from datafix import make_cifar_python, make_kermany_dir, make_medmnist, md5, sha256

from fedbench.data import (
    ChecksumError,
    DataError,
    SourceNotFoundError,
    UnknownDatasetError,
    download,
    get_spec,
)


def test_registry_entries():
    assert get_spec("cifar10").sources[0].md5 == "c58f30108f718f92721af3b95e74349a"
    assert get_spec("pneumoniamnist").sources[0].md5 == "28209eda62fecd6e6a2d98b1501bb15f"
    assert get_spec("voc2012-seg").sources[0].md5 == "6cd6e144f989b92b3379bac3b3de84fd"
    assert get_spec("voc2012-seg").num_classes == 21
    assert get_spec("voc2012-cls").task == "multilabel"


def test_unknown_name_lists_known():
    with pytest.raises(UnknownDatasetError, match="cifar10.*pneumoniamnist"):
        download("mnist", "/nonexistent")


def test_official_url_download_with_md5(tmp_path, http_dir, patch_source):
    base, served = http_dir
    make_cifar_python(served / "cifar-10-python.tar.gz")
    patch_source(
        "cifar10",
        "cifar-10-python.tar.gz",
        url=f"{base}/cifar-10-python.tar.gz",
        md5=md5(served / "cifar-10-python.tar.gz"),
    )
    got = download("cifar10", tmp_path / "root")
    assert got == tmp_path / "root" / "cifar-10-python.tar.gz"
    assert got.read_bytes() == (served / "cifar-10-python.tar.gz").read_bytes()
    # second call: already there, verified, no network
    (served / "cifar-10-python.tar.gz").unlink()
    assert download("cifar10", tmp_path / "root") == got


def test_url_with_query_saved_under_registry_name(tmp_path, http_dir, patch_source):
    base, served = http_dir
    make_medmnist(served / "pneumoniamnist.npz")
    patch_source(
        "pneumoniamnist",
        "pneumoniamnist.npz",
        url=f"{base}/pneumoniamnist.npz?download=1",
        md5=md5(served / "pneumoniamnist.npz"),
        sha256=None,
    )
    got = download("pneumoniamnist", tmp_path / "root")
    assert got.name == "pneumoniamnist.npz" and got.is_file()


def test_wrong_md5_download_fails_clearly_and_removes_file(tmp_path, http_dir, patch_source):
    base, served = http_dir
    make_cifar_python(served / "cifar-10-python.tar.gz")
    patch_source(
        "cifar10", "cifar-10-python.tar.gz", url=f"{base}/cifar-10-python.tar.gz", md5="0" * 32
    )
    with pytest.raises(ChecksumError, match="expected 0000"):
        download("cifar10", tmp_path / "root")
    assert not (tmp_path / "root" / "cifar-10-python.tar.gz").exists()
    assert [p.name for p in (tmp_path / "root").iterdir()] == [".cifar-10-python.tar.gz.lock"]


def test_concurrent_downloads_of_a_shared_source(tmp_path, http_dir, patch_source):
    from concurrent.futures import ThreadPoolExecutor

    from datafix import make_voc_tar

    base, served = http_dir
    make_voc_tar(served / "VOCtrainval_11-May-2012.tar")
    digest = md5(served / "VOCtrainval_11-May-2012.tar")
    for name in ("voc2012-seg", "voc2012-cls"):
        patch_source(
            name,
            "VOCtrainval_11-May-2012.tar",
            url=f"{base}/VOCtrainval_11-May-2012.tar",
            alt_urls=(),
            md5=digest,
        )
    with ThreadPoolExecutor(4) as ex:
        paths = list(
            ex.map(lambda n: download(n, tmp_path / "root"), ["voc2012-seg", "voc2012-cls"] * 2)
        )
    assert len(set(paths)) == 1 and md5(paths[0]) == digest


def test_unreachable_url_says_use_mirror(tmp_path, http_dir, patch_source):
    base, _ = http_dir
    patch_source("cifar10", "cifar-10-python.tar.gz", url=f"{base}/missing.tar.gz")
    with pytest.raises(DataError, match="--mirror"):
        download("cifar10", tmp_path / "root")


def test_mirror_official_file_md5(tmp_path, patch_source):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_cifar_python(mirror / "cifar-10-python.tar.gz")
    patch_source(
        "cifar10",
        "cifar-10-python.tar.gz",
        md5=md5(mirror / "cifar-10-python.tar.gz"),
        url="http://unreachable.invalid/x",
    )
    got = download("cifar10", tmp_path / "root", mirror=mirror)
    assert got.read_bytes() == (mirror / "cifar-10-python.tar.gz").read_bytes()


def test_mirror_offline_copy_sha256(tmp_path, patch_source):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "cifar10-jpeg.tar.gz").write_bytes(b"not really a tar")
    patch_source("cifar10", "cifar10-jpeg.tar.gz", sha256=sha256(mirror / "cifar10-jpeg.tar.gz"))
    got = download("cifar10", tmp_path / "root", mirror=mirror)
    assert got.name == "cifar10-jpeg.tar.gz"
    # the real registry sha256 rejects this file
    with pytest.raises(ChecksumError, match="sha256"):
        patch_source(
            "cifar10",
            "cifar10-jpeg.tar.gz",
            sha256="097287809041e0a666355dfce11470ba1b3f2631fe910d8793c716253f10b297",
        )
        download("cifar10", tmp_path / "root2", mirror=mirror)


def test_mirror_wrong_md5(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    make_medmnist(mirror / "pneumoniamnist.npz")  # not the official bytes
    with pytest.raises(ChecksumError, match="pneumoniamnist.npz"):
        download("pneumoniamnist", tmp_path / "root", mirror=mirror)
    assert not (tmp_path / "root" / "pneumoniamnist.npz").exists()


def test_mirror_missing_file_says_what_where(tmp_path):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with pytest.raises(SourceNotFoundError) as exc:
        download("cifar10", tmp_path / "root", mirror=mirror)
    msg = str(exc.value)
    assert "cifar-10-python.tar.gz" in msg and "cifar10-jpeg.tar.gz" in msg and str(mirror) in msg


def test_mirror_folder_missing(tmp_path):
    with pytest.raises(SourceNotFoundError, match="does not exist"):
        download("cifar10", tmp_path / "root", mirror=tmp_path / "nope")


def test_user_provided_chestxray(tmp_path):
    with pytest.raises(SourceNotFoundError, match="mendeley"):
        download("chestxray", tmp_path / "root")
    mirror = tmp_path / "mirror"
    make_kermany_dir(mirror)
    got = download("chestxray", tmp_path / "root", mirror=mirror)
    assert got.is_dir() and (got / "train" / "NORMAL").is_dir()


def test_alternative_url_used_when_first_fails(tmp_path, http_dir, patch_source):
    base, served = http_dir
    make_cifar_python(served / "cifar-10-python.tar.gz")
    patch_source(
        "cifar10",
        "cifar-10-python.tar.gz",
        url=f"{base}/gone.tar.gz",
        alt_urls=(f"{base}/cifar-10-python.tar.gz",),
        md5=md5(served / "cifar-10-python.tar.gz"),
    )
    assert download("cifar10", tmp_path / "root").is_file()


def test_voc_constants_match_torchvision():
    from torchvision.datasets.voc import DATASET_YEAR_DICT

    src = get_spec("voc2012-seg").sources[0]
    tv = DATASET_YEAR_DICT["2012"]
    assert (src.url, src.md5, src.filename) == (tv["url"], tv["md5"], tv["filename"])
    assert get_spec("voc2012-cls").sources == get_spec("voc2012-seg").sources
