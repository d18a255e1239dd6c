"""The self-describing byte container of fedbench.codec (format version 1).

Layout (integers are unsigned LEB128 varints unless marked u8/u32)::

    magic  b"FBCC"
    u8     format version (1)
    u8     mode: 0 nnc, 1 sparse
    u8     flags: bit 0 = header block is raw-deflate compressed
    varint header block length as stored; if deflated, varint raw header length
    header block
    payloads, concatenated in header order
    u32    CRC-32 (zlib.crc32, little-endian) of every byte before it

Header block::

    varint number of tensors, then per tensor:
      varint name length, UTF-8 name
      u8 dtype code, u8 ndim, varint per dimension
      u8 kind: 0 quantized float, 1 lossless integer/bool
      u8 coder: 0 empty/all-zero (no payload), 1 NNC CABAC, 2 sparse range coder
      if quantized: zigzag varint qp, u8 qp_density, u8 dq
      coder 1: u8 flags (bit0 param_opt, bit1 row_skip, bit2 dq_flag), u8 scan_order,
               u8 cabac_unary_length, varint number of entry points, varint each,
               varint payload length
      coder 2: varint number of segments, varint elements per segment (if > 1 segment),
               per segment u8 method and varint payload length

Decoding checks the magic, version, every length and count against the bytes present and
against hard limits before allocating anything, and the CRC before decoding any payload.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from fedbench.codec.errors import CorruptStreamError, FormatError, TruncatedStreamError

MAGIC = b"FBCC"
VERSION = 1
MODE_CODES = {"nnc": 0, "sparse": 1}
MODE_NAMES = {v: k for k, v in MODE_CODES.items()}

KIND_QUANTIZED = 0
KIND_LOSSLESS = 1

CODER_EMPTY = 0
CODER_NNC = 1
CODER_SPARSE = 2

FLAG_DEFLATED = 1

DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
DTYPE_CODES = {name: i for i, name in enumerate(DTYPES)}

MAX_NDIM = 32
MAX_NAME_BYTES = 1 << 16
MAX_HEADER_BYTES = 1 << 26
# Smallest cost of one CABAC bin: -log2(1 - 2/510) bits (rLPS >= 2, range <= 510), so one
# payload bit holds at most ~176 coded elements (or skipped rows).
NNC_MIN_BITS_PER_BIN = 0.0056


@dataclass
class TensorEntry:
    """One tensor's header record (and, after parsing, where its payload lies)."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    kind: int
    coder: int
    qp: int = 0
    qp_density: int = 0
    dq: bool = False
    param_opt: bool = False
    row_skip: bool = False
    dq_flag: bool = False
    scan_order: int = 0
    cabac_unary_length: int = 11
    entry_points: list[int] = field(default_factory=list)
    segment_elements: int = 0
    # (method, payload length) per segment; a single (0, length) for NNC.
    segments: list[tuple[int, int]] = field(default_factory=list)
    offset: int = 0  # where the payload starts in the stream (set by parse)

    @property
    def size(self) -> int:
        """Number of elements."""
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def payload_length(self) -> int:
        """Total payload bytes of this tensor."""
        return sum(length for _, length in self.segments)


# ----------------------------------------------------------------------------- writing


def _varint(out: bytearray, v: int) -> None:
    if v < 0:
        raise ValueError("varint of a negative number")
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return


def _zigzag(v: int) -> int:
    return 2 * v if v >= 0 else -2 * v - 1


def _write_entry(out: bytearray, e: TensorEntry) -> None:
    name = e.name.encode("utf-8")
    _varint(out, len(name))
    out += name
    out.append(DTYPE_CODES[e.dtype])
    out.append(len(e.shape))
    for d in e.shape:
        _varint(out, d)
    out.append(e.kind)
    out.append(e.coder)
    if e.kind == KIND_QUANTIZED:
        _varint(out, _zigzag(e.qp))
        out.append(e.qp_density)
        out.append(int(e.dq))
    if e.coder == CODER_NNC:
        out.append(int(e.param_opt) | int(e.row_skip) << 1 | int(e.dq_flag) << 2)
        out.append(e.scan_order)
        out.append(e.cabac_unary_length)
        _varint(out, len(e.entry_points))
        for ep in e.entry_points:
            _varint(out, ep)
        _varint(out, e.payload_length)
    elif e.coder == CODER_SPARSE:
        _varint(out, len(e.segments))
        if len(e.segments) > 1:
            _varint(out, e.segment_elements)
        for method, length in e.segments:
            out.append(method)
            _varint(out, length)


def write(mode: str, entries: list[TensorEntry], payloads: list[bytes]) -> bytes:
    """Assemble a stream from header records and the concatenated payload pieces."""
    raw = bytearray()
    _varint(raw, len(entries))
    for e in entries:
        _write_entry(raw, e)
    packed = zlib.compress(bytes(raw), 9, wbits=-15)
    out = bytearray(MAGIC)
    out.append(VERSION)
    out.append(MODE_CODES[mode])
    if len(packed) + 2 < len(raw):
        out.append(FLAG_DEFLATED)
        _varint(out, len(packed))
        _varint(out, len(raw))
        out += packed
    else:
        out.append(0)
        _varint(out, len(raw))
        out += raw
    for p in payloads:
        out += p
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


# ----------------------------------------------------------------------------- reading


class _Reader:
    """Bounds-checked cursor over a bytes object."""

    def __init__(self, data: bytes, what: str, truncated: type[Exception]) -> None:
        self.data = data
        self.pos = 0
        self.what = what
        self.truncated = truncated

    def _need(self, n: int, item: str) -> None:
        if self.pos + n > len(self.data):
            raise self.truncated(
                f"{self.what} ends inside {item} (needs {n} byte(s) at offset {self.pos}, "
                f"{len(self.data) - self.pos} left)"
            )

    def u8(self, item: str) -> int:
        self._need(1, item)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def take(self, n: int, item: str) -> bytes:
        self._need(n, item)
        v = self.data[self.pos : self.pos + n]
        self.pos += n
        return v

    def varint(self, item: str, limit: int) -> int:
        v = 0
        shift = 0
        while True:
            b = self.u8(item)
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 63:
                raise CorruptStreamError(f"{item}: varint longer than 64 bits")
        if v > limit:
            raise CorruptStreamError(f"{item} is {v}, above the limit {limit}")
        return v


def _read_entry(r: _Reader, index: int, mode: int) -> TensorEntry:
    where = f"tensor #{index}"
    nlen = r.varint(f"{where} name length", MAX_NAME_BYTES)
    try:
        name = r.take(nlen, f"{where} name").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CorruptStreamError(f"{where}: name is not valid UTF-8") from exc
    where = f"tensor {name!r}"
    code = r.u8(f"{where} dtype")
    if code >= len(DTYPES):
        raise CorruptStreamError(f"{where}: unknown dtype code {code}")
    ndim = r.u8(f"{where} ndim")
    if ndim > MAX_NDIM:
        raise CorruptStreamError(f"{where}: {ndim} dimensions (at most {MAX_NDIM})")
    shape = tuple(r.varint(f"{where} dimension", 1 << 48) for _ in range(ndim))
    kind = r.u8(f"{where} kind")
    coder = r.u8(f"{where} coder")
    e = TensorEntry(name=name, dtype=DTYPES[code], shape=shape, kind=kind, coder=coder)
    is_float = e.dtype.startswith("float")
    if kind not in (KIND_QUANTIZED, KIND_LOSSLESS) or (kind == KIND_QUANTIZED) != is_float:
        raise CorruptStreamError(f"{where}: kind {kind} does not fit dtype {e.dtype}")
    if kind == KIND_QUANTIZED:
        z = r.varint(f"{where} qp", 1 << 16)
        e.qp = z // 2 if z % 2 == 0 else -(z + 1) // 2
        e.qp_density = r.u8(f"{where} qp_density")
        if e.qp_density > 7:
            raise CorruptStreamError(f"{where}: qp_density {e.qp_density} (at most 7)")
        dq = r.u8(f"{where} dq")
        if dq > 1:
            raise CorruptStreamError(f"{where}: dq flag {dq}")
        e.dq = bool(dq)
        if not -126 <= (e.qp >> e.qp_density) - e.qp_density <= 126:
            raise CorruptStreamError(f"{where}: qp {e.qp} gives a step outside float32 range")
    if coder == CODER_NNC:
        if mode != MODE_CODES["nnc"]:
            raise CorruptStreamError(f"{where}: NNC payload in a {MODE_NAMES[mode]} stream")
        flags = r.u8(f"{where} coding flags")
        if flags > 7:
            raise CorruptStreamError(f"{where}: unknown coding flags {flags:#x}")
        e.param_opt = bool(flags & 1)
        e.row_skip = bool(flags & 2)
        e.dq_flag = bool(flags & 4)
        e.scan_order = r.u8(f"{where} scan_order")
        e.cabac_unary_length = r.u8(f"{where} cabac_unary_length")
        if e.scan_order > 4 or not 1 <= e.cabac_unary_length <= 32:
            raise CorruptStreamError(
                f"{where}: scan_order {e.scan_order} / cabac_unary_length "
                f"{e.cabac_unary_length} out of range"
            )
        neps = r.varint(f"{where} entry point count", len(r.data))
        e.entry_points = [r.varint(f"{where} entry point", 1 << 62) for _ in range(neps)]
        e.segments = [(0, r.varint(f"{where} payload length", 1 << 48))]
    elif coder == CODER_SPARSE:
        nseg = r.varint(f"{where} segment count", len(r.data))
        if nseg == 0:
            raise CorruptStreamError(f"{where}: sparse tensor without segments")
        if nseg > 1:
            e.segment_elements = r.varint(f"{where} segment size", 1 << 48)
        for _ in range(nseg):
            method = r.u8(f"{where} segment method")
            e.segments.append((method, r.varint(f"{where} segment length", 1 << 48)))
    elif coder != CODER_EMPTY:
        raise CorruptStreamError(f"{where}: unknown coder {coder}")
    return e


def parse(data: bytes, *, max_elements: int) -> list[TensorEntry]:
    """Check a stream's framing, lengths, limits and CRC; returns the header records."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise FormatError(f"decode needs bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise FormatError("empty input: a fedbench codec stream starts with b'FBCC'")
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        if len(data) < len(MAGIC) and MAGIC.startswith(data):
            raise TruncatedStreamError(f"stream of {len(data)} bytes ends inside the magic")
        raise FormatError(f"not a fedbench codec stream: magic {data[:4]!r}, expected {MAGIC!r}")
    r = _Reader(data, "stream", TruncatedStreamError)
    r.pos = len(MAGIC)
    version = r.u8("format version")
    if version != VERSION:
        raise FormatError(
            f"unsupported container format version {version} (this decoder reads {VERSION})"
        )
    mode = r.u8("codec mode")
    if mode not in MODE_NAMES:
        raise FormatError(f"unknown codec mode {mode}")
    flags = r.u8("flags")
    if flags & ~FLAG_DEFLATED:
        raise CorruptStreamError(f"unknown container flags {flags:#x}")
    hlen = r.varint("header length", MAX_HEADER_BYTES)
    if flags & FLAG_DEFLATED:
        rawlen = r.varint("raw header length", MAX_HEADER_BYTES)
        packed = r.take(hlen, "header")
        d = zlib.decompressobj(wbits=-15)
        try:
            raw = d.decompress(packed, rawlen + 1)
        except zlib.error as exc:
            raise CorruptStreamError(f"header does not inflate: {exc}") from exc
        if len(raw) != rawlen or not d.eof or d.unused_data:
            raise CorruptStreamError(f"header inflates to {len(raw)}+ bytes, announced {rawlen}")
    else:
        raw = r.take(hlen, "header")
    h = _Reader(raw, "header", CorruptStreamError)
    # Every record needs at least 5 bytes, which bounds the count before any loop runs.
    count = h.varint("tensor count", len(raw) // 5)
    entries = [_read_entry(h, i, mode) for i in range(count)]
    if h.pos != len(raw):
        raise CorruptStreamError(f"header has {len(raw) - h.pos} unread byte(s) at its end")
    names = set()
    for e in entries:
        if e.name in names:
            raise CorruptStreamError(f"tensor name {e.name!r} appears twice")
        names.add(e.name)
    offset = r.pos
    for e in entries:
        e.offset = offset
        offset += e.payload_length
    expected = offset + 4
    if len(data) < expected:
        raise TruncatedStreamError(
            f"stream is {len(data)} bytes but its header announces {expected}: truncated"
        )
    if len(data) > expected:
        raise CorruptStreamError(
            f"{len(data) - expected} byte(s) of trailing garbage after the {expected}-byte stream"
        )
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise CorruptStreamError("CRC-32 mismatch: the stream is damaged")
    _check_sizes(entries, max_elements)
    return entries


def _check_sizes(entries: list[TensorEntry], max_elements: int) -> None:
    """Reject element counts that the payloads cannot hold or that exceed the hard cap."""
    total = 0
    for e in entries:
        n = e.size
        total += n
        if total > max_elements:
            raise CorruptStreamError(
                f"tensor {e.name!r}: shape {e.shape} brings the stream to {total} elements, "
                f"above max_elements={max_elements} (raise it if the stream is genuine)"
            )
        bits = 8 * e.payload_length + 64
        if e.coder == CODER_EMPTY:
            if e.segments:
                raise CorruptStreamError(f"tensor {e.name!r}: empty coder with a payload")
        elif e.coder == CODER_NNC:
            if n == 0:
                raise CorruptStreamError(f"tensor {e.name!r}: NNC payload for zero elements")
            cap = int(bits / NNC_MIN_BITS_PER_BIN)
            rows = e.shape[0] if len(e.shape) >= 2 else n
            width = n // rows if rows else 0
            # A skipped row costs one bin whatever its width; otherwise every element one.
            limit = cap * width if (e.row_skip and len(e.shape) >= 2) else cap
            if n > limit:
                raise CorruptStreamError(
                    f"tensor {e.name!r}: shape {e.shape} ({n} elements) cannot be coded in "
                    f"{e.payload_length} payload bytes"
                )
        else:
            _check_segments(e, n)


def _check_segments(e: TensorEntry, n: int) -> None:
    from fedbench.codec import sparse

    nseg = len(e.segments)
    if n == 0:
        raise CorruptStreamError(f"tensor {e.name!r}: sparse payload for zero elements")
    if nseg > 1:
        s = e.segment_elements
        if s == 0 or (nseg - 1) * s >= n or nseg * s < n:
            raise CorruptStreamError(
                f"tensor {e.name!r}: {nseg} segments of {s} elements do not make {n} elements"
            )
    seg = e.segment_elements if nseg > 1 else n
    for i, (method, length) in enumerate(e.segments):
        count = min(seg, n - i * seg)
        if method == sparse.METHOD_DENSE:
            if count > (8 * length + 64) / sparse.DENSE_MIN_BITS_PER_ELEMENT:
                raise CorruptStreamError(
                    f"tensor {e.name!r}: segment {i} ({count} elements) cannot be coded in "
                    f"{length} bytes"
                )
        elif method != sparse.METHOD_RUNS:
            raise CorruptStreamError(f"tensor {e.name!r}: unknown sparse method {method}")


def segment_bounds(e: TensorEntry) -> list[tuple[int, int]]:
    """(start, stop) element ranges of a sparse tensor's segments."""
    n = e.size
    seg = e.segment_elements if len(e.segments) > 1 else n
    return [(i * seg, min(n, (i + 1) * seg)) for i in range(len(e.segments))]


def empty_levels(e: TensorEntry) -> np.ndarray:
    """A zeroed flat int32 level array for an entry (after its size was checked)."""
    return np.zeros(e.size, dtype=np.int32)
