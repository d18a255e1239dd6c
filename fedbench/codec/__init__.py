"""DeepCABAC (MPEG NNC, ISO/IEC 15938-17) codec: numpy arrays and bytes in and out, no torch."""

# Before any kernel module loads: drop numba cache entries compiled from since-edited sources
# (numba only watches the defining file; see _jitcache.py).
from fedbench.codec._jitcache import invalidate_stale as _invalidate_stale

_invalidate_stale()

from fedbench.codec.api import decode, encode
from fedbench.codec.cabac import decode_levels, encode_levels
from fedbench.codec.config import CodecConfig
from fedbench.codec.entropy import zeroth_order_entropy_bytes
from fedbench.codec.errors import (
    CodecError,
    CorruptStreamError,
    FormatError,
    InvalidTensorError,
    SettingsError,
    TruncatedStreamError,
)
from fedbench.codec.quant import dequantize, quantize, step_size

__all__ = [
    "CodecConfig",
    "CodecError",
    "CorruptStreamError",
    "FormatError",
    "InvalidTensorError",
    "SettingsError",
    "TruncatedStreamError",
    "decode",
    "decode_levels",
    "dequantize",
    "encode",
    "encode_levels",
    "quantize",
    "step_size",
    "zeroth_order_entropy_bytes",
]
