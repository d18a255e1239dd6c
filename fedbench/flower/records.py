"""Packing fedbench payloads into Flower records, and the wire size of a message.

A bitstream travels as one `Array` of dtype uint8 (stype "bytes") whose `data` is the
bitstream itself, so `len(array.data)` is exactly what fedbench charges; Flower chunks big
arrays on its own. Float32 models (the unidirectional downlink, snapshots, a charged
initial model) are packed the same way: the tensors' float32 bytes in template order,
4 bytes per parameter, as the ledger charges them. Client state (residual, optimizer
state, the clients' model) is stored with torch.save and read back with weights_only.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects

__all__ = [
    "BYTES_STYPE",
    "array_of",
    "bytes_of",
    "fp32_bytes",
    "fp32_tensors",
    "load_blob",
    "record_of",
    "records_wire_size",
    "save_blob",
    "streams_of",
]

BYTES_STYPE = "bytes"


def array_of(data: bytes) -> Array:
    """A bitstream as a Flower Array (uint8, shape (len,), the bytes as they are)."""
    return Array("uint8", (len(data),), BYTES_STYPE, bytes(data))


def bytes_of(array: Array) -> bytes:
    """The bitstream an Array made by `array_of` carries."""
    if array.stype != BYTES_STYPE or array.dtype != "uint8":
        raise ValueError(f"expected a {BYTES_STYPE!r} uint8 array, got {array.stype}/{array.dtype}")
    return bytes(array.data)


def record_of(streams: Iterable[tuple[str, bytes]]) -> ArrayRecord:
    """An ArrayRecord of named bitstreams (order kept)."""
    return ArrayRecord({name: array_of(data) for name, data in streams})


def streams_of(record: ArrayRecord) -> list[tuple[str, bytes]]:
    """The named bitstreams of an ArrayRecord made by `record_of`, in order."""
    return [(name, bytes_of(arr)) for name, arr in record.items()]


def fp32_bytes(state: Mapping[str, torch.Tensor], names: Iterable[str]) -> bytes:
    """The float32 bytes of the named tensors, concatenated in the given order."""
    parts = [
        state[n].detach().contiguous().cpu().to(torch.float32).numpy().tobytes() for n in names
    ]
    return b"".join(parts)


def fp32_tensors(
    data: bytes, shapes: Mapping[str, tuple[int, ...]], like: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Inverse of fp32_bytes: tensors of the given shapes (dtype/device of `like`)."""
    flat = np.frombuffer(data, dtype=np.float32)
    out, pos = {}, 0
    for n, shape in shapes.items():
        size = int(np.prod(shape, dtype=np.int64))
        arr = flat[pos : pos + size].reshape(shape)
        pos += size
        ref = like[n]
        out[n] = torch.from_numpy(arr.copy()).to(dtype=ref.dtype, device=ref.device)
    if pos != flat.size:
        raise ValueError(f"fp32 payload: {flat.size} values, the tensors need {pos}")
    return out


def save_blob(obj: Any) -> bytes:
    """Tensors and plain data as bytes (torch.save)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def load_blob(data: bytes) -> Any:
    """Inverse of save_blob; weights_only, so loading cannot run code."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def records_wire_size(content: RecordDict) -> int:
    """Serialized size of a message's content: every object Flower pushes for it
    (record dict, records, arrays, array chunks), headers included."""
    return sum(len(obj.deflate()) for obj in get_all_nested_objects(content).values())
