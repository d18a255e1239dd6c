"""Fetching data set sources: official URLs with checksums, or a local mirror folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from fedbench.data.errors import ChecksumError, DataError, SourceNotFoundError
from fedbench.data.registry import DatasetSpec, SourceFile, get_spec

_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike, algo: str = "sha256") -> str:
    """Hex digest of a file's bytes (sha256 or md5), read in 1 MiB chunks."""
    h = hashlib.new(algo)
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def source_digest(path: str | os.PathLike) -> str:
    """sha256 of a source: the file's bytes, or for a folder every file's path and bytes."""
    path = Path(path)
    if not path.is_dir():
        return file_digest(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.rglob("*") if q.is_file()):
        h.update(p.relative_to(path).as_posix().encode() + b"\0")
        h.update(bytes.fromhex(file_digest(p)))
    return h.hexdigest()


def verify(path: str | os.PathLike, source: SourceFile) -> None:
    """Check a file against the source's md5/sha256; raise ChecksumError on a mismatch."""
    path = Path(path)
    if source.is_dir:
        if not path.is_dir():
            raise SourceNotFoundError(f"{path} is not a folder")
        return
    if not path.is_file():
        raise SourceNotFoundError(f"{path} does not exist")
    for algo in ("sha256", "md5"):
        expected = getattr(source, algo)
        if expected is None:
            continue
        actual = file_digest(path, algo)
        if actual != expected:
            raise ChecksumError(
                f"{path}: {algo} is {actual}, expected {expected} for {source.filename} "
                f"({source.note or source.fmt}); the file is damaged or is not that file"
            )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive lock file: parallel workflow jobs sharing a source (voc2012-seg/-cls) wait
    for each other instead of fetching the same file twice."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _link_or_copy(src: Path, dst: Path) -> None:
    """Put src at dst cheaply (hard link, else symbolic link, else copy), via a temporary
    name so that dst never exists half-written."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.part{os.getpid()}")
    linked = False
    if not src.is_dir():
        try:
            os.link(src, tmp)
            linked = True
        except OSError:
            pass
    if not linked:
        try:
            os.symlink(src.resolve(), tmp, target_is_directory=src.is_dir())
        except OSError:
            if src.is_dir():
                shutil.copytree(src, tmp)
            else:
                shutil.copy2(src, tmp)
    if dst.is_dir() and not dst.is_symlink():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def find_source(spec: DatasetSpec, folder: str | os.PathLike) -> tuple[Path, SourceFile] | None:
    """First of the spec's sources present in `folder` (registry order), or None."""
    folder = Path(folder)
    for source in spec.sources:
        p = folder / source.filename
        if (source.is_dir and p.is_dir()) or (not source.is_dir and p.is_file()):
            return p, source
    return None


def _expected_names(spec: DatasetSpec) -> str:
    return ", ".join(s.filename + ("/" if s.is_dir else "") for s in spec.sources)


def download(name: str, root: str | os.PathLike, mirror: str | os.PathLike | None = None) -> Path:
    """Make a verified source of data set `name` available in `root`; return its path.

    Order: a source already in `root` (verified); else, with `mirror`, a source file found
    there by name (verified, then linked or copied into `root`; the network is not used);
    else the official URL with its md5 (torchvision.datasets.utils.download_url).
    """
    spec = get_spec(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / f".{spec.sources[0].filename}.lock"):
        return _download_locked(spec, root, mirror)


def _download_locked(spec: DatasetSpec, root: Path, mirror: str | os.PathLike | None) -> Path:
    """download() once the lock is held."""
    name = spec.name
    found = find_source(spec, root)
    if found is not None:
        path, source = found
        verify(path, source)
        return path

    if mirror is not None:
        mirror = Path(mirror)
        if not mirror.is_dir():
            raise SourceNotFoundError(f"mirror folder {mirror} does not exist")
        found = find_source(spec, mirror)
        if found is None:
            raise SourceNotFoundError(
                f"no source of {name!r} in mirror folder {mirror}: expected one of "
                f"{_expected_names(spec)} in {mirror}"
                + (f"; {spec.how_to_get}" if spec.how_to_get else "")
            )
        path, source = found
        verify(path, source)
        dst = root / source.filename
        _link_or_copy(path, dst)
        return dst

    remote = [s for s in spec.sources if s.url]
    if not remote:
        raise SourceNotFoundError(
            f"{name!r} has no public download; expected one of {_expected_names(spec)} in "
            f"{root} (or pass --mirror DIR holding one): {spec.how_to_get}"
        )
    source = remote[0]
    return _download_url(source, root)


def _download_url(source: SourceFile, root: Path) -> Path:
    """Download one source (official URL, then alternatives) with torchvision's download_url
    and check its md5 (and sha256 where known)."""
    from torchvision.datasets.utils import download_url

    dst = root / source.filename
    part = root / f".{source.filename}.part{os.getpid()}"
    errors = []
    for url in source.urls:
        try:
            download_url(url, str(root), filename=part.name, md5=source.md5)
        except RuntimeError as exc:
            if "corrupted" in str(exc) and part.is_file():
                actual = file_digest(part, "md5")
                part.unlink()
                raise ChecksumError(
                    f"download of {url} has md5 {actual}, expected {source.md5}; the "
                    f"damaged file was removed, try again or use --mirror DIR"
                ) from exc
            errors.append(f"{url}: {exc}")
            continue
        except OSError as exc:  # URLError is an OSError: unreachable host, HTTP 404, ...
            if part.is_file():
                part.unlink()
            errors.append(f"{url}: {exc}")
            continue
        if source.sha256:
            actual = file_digest(part)
            if actual != source.sha256:
                part.unlink()
                raise ChecksumError(
                    f"download of {url} has sha256 {actual}, expected {source.sha256}"
                )
        os.replace(part, dst)
        return dst
    raise DataError(
        f"download of {source.filename} failed ({'; '.join(errors)}); without internet, "
        f"pass --mirror DIR holding {source.filename}"
    )
