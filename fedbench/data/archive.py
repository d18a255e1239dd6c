"""Uniform read access to a folder, a zip, a tar or a tar.gz without extracting it."""

from __future__ import annotations

import os
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Self

from fedbench.data.errors import SourceFormatError


def _skip(name: str) -> bool:
    """Ignore macOS resource forks and hidden files that zips often carry."""
    parts = name.split("/")
    return "__MACOSX" in parts or any(p.startswith(".") for p in parts if p)


class Archive:
    """A folder, .zip, .tar or compressed tar seen as a set of relative posix file names."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.kind = "dir"
        elif zipfile.is_zipfile(self.path):
            self.kind = "zip"
        elif tarfile.is_tarfile(self.path):
            self.kind = "tar"
        else:
            raise SourceFormatError(f"{self.path} is neither a folder, a zip nor a tar archive")
        self._tar: tarfile.TarFile | None = None
        self._zip: zipfile.ZipFile | None = None
        self._members: dict[str, tarfile.TarInfo] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release open file handles."""
        if self._tar is not None:
            self._tar.close()
            self._tar = None
        if self._zip is not None:
            self._zip.close()
            self._zip = None

    def names(self) -> list[str]:
        """All regular files, as posix paths relative to the archive root."""
        if self.kind == "dir":
            return sorted(
                p.relative_to(self.path).as_posix()
                for p in self.path.rglob("*")
                if p.is_file() and not _skip(p.relative_to(self.path).as_posix())
            )
        if self.kind == "zip":
            return [n for n in self._zipfile().namelist() if not n.endswith("/") and not _skip(n)]
        return list(self._tar_members())

    def read(self, name: str) -> bytes:
        """The bytes of one file (random access; slow for compressed tars, use iter_files)."""
        try:
            if self.kind == "dir":
                return (self.path / name).read_bytes()
            if self.kind == "zip":
                return self._zipfile().read(name)
            fh = self._tarfile().extractfile(self._tar_members()[name])
        except (KeyError, FileNotFoundError):
            raise SourceFormatError(f"{self.path} has no file {name}") from None
        if fh is None:
            raise SourceFormatError(f"{self.path}: {name} is not a regular file")
        return fh.read()

    def iter_files(self, keep: Callable[[str], bool]) -> Iterator[tuple[str, bytes]]:
        """Yield (name, bytes) of the files whose name passes `keep`, in one sequential pass."""
        if self.kind != "tar":
            for n in self.names():
                if keep(n):
                    yield n, self.read(n)
            return
        # streaming mode reads a tar.gz once from start to end, no seeking
        with tarfile.open(self.path, "r|*") as tf:
            for m in tf:
                name = _norm(m.name)
                if m.isfile() and not _skip(name) and keep(name):
                    fh = tf.extractfile(m)
                    if fh is not None:
                        yield name, fh.read()

    def _zipfile(self) -> zipfile.ZipFile:
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return self._zip

    def _tarfile(self) -> tarfile.TarFile:
        if self._tar is None:
            self._tar = tarfile.open(self.path, "r:*")  # noqa: SIM115 - kept open, closed in close()
        return self._tar

    def _tar_members(self) -> dict[str, tarfile.TarInfo]:
        if self._members is None:
            self._members = {
                _norm(m.name): m
                for m in self._tarfile().getmembers()
                if m.isfile() and not _skip(_norm(m.name))
            }
        return self._members


def _norm(name: str) -> str:
    """Tar member names may start with './'."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")
