"""Exception classes of the data registry: every bad input ends in a DataError subclass."""

from __future__ import annotations


class DataError(ValueError):
    """Base class of every error the data registry raises on bad input or bad files."""


class UnknownDatasetError(DataError, KeyError):
    """A data set name that is not in the registry."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ChecksumError(DataError):
    """A file's md5 or sha256 differs from the one the registry expects."""


class SourceNotFoundError(DataError, FileNotFoundError):
    """No usable source (download, mirror file, user-provided folder/archive) was found."""


class SourceFormatError(DataError):
    """A source file exists but does not have the expected on-disk layout."""


class PreparedFormatError(DataError):
    """A prepared .npz cache is missing keys or has an unknown format version."""


class PartitionError(DataError):
    """Partition settings cannot be met (e.g. more clients than samples)."""
