"""DeepCABAC (MPEG NNC, ISO/IEC 15938-17) codec: numpy arrays and bytes in and out, no torch."""

from fedbench.codec.errors import (
    CodecError,
    CorruptStreamError,
    FormatError,
    InvalidTensorError,
    SettingsError,
    TruncatedStreamError,
)

__all__ = [
    "CodecError",
    "CorruptStreamError",
    "FormatError",
    "InvalidTensorError",
    "SettingsError",
    "TruncatedStreamError",
]
