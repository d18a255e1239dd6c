"""Bad input: every damaged or hostile stream and every uncodable tensor ends in a CodecError."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

import numpy as np
import pytest

from fedbench.codec import (
    CodecConfig,
    CodecError,
    CorruptStreamError,
    FormatError,
    InvalidTensorError,
    SettingsError,
    TruncatedStreamError,
    container,
    decode,
    encode,
)
from fedbench.codec.container import TensorEntry


def _stream(mode: str) -> bytes:
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.01, (12, 20)).astype(np.float32)
    w[rng.random(w.shape) < 0.8] = 0
    return encode(
        {"w": w, "b": rng.normal(0, 0.1, 5).astype(np.float32), "n": np.arange(4)},
        CodecConfig(mode=mode),
    )


def _recrc(body: bytes) -> bytes:
    """A stream body with a fresh, valid CRC: damage that the checksum cannot catch."""
    return body + struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_every_truncation_is_rejected(mode: str) -> None:
    data = _stream(mode)
    for n in range(len(data)):
        with pytest.raises(CodecError):
            decode(data[:n])


def test_truncation_says_truncated() -> None:
    data = _stream("sparse")
    with pytest.raises(TruncatedStreamError, match="truncated"):
        decode(data[:-10])


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_every_single_bit_flip_is_rejected(mode: str) -> None:
    data = bytearray(_stream(mode))
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(CodecError):
                decode(bytes(bad))


def test_wrong_magic_and_version() -> None:
    data = _stream("sparse")
    with pytest.raises(FormatError, match="magic"):
        decode(b"PK\x03\x04" + data[4:])
    with pytest.raises(FormatError, match="version"):
        decode(_recrc(data[:4] + b"\x07" + data[5:-4]))
    with pytest.raises(FormatError, match="mode"):
        decode(_recrc(data[:5] + b"\x09" + data[6:-4]))
    with pytest.raises(FormatError):
        decode(b"")
    with pytest.raises(FormatError):
        decode("not bytes")  # type: ignore[arg-type]


def test_trailing_garbage() -> None:
    data = _stream("nnc")
    with pytest.raises(CorruptStreamError, match="trailing"):
        decode(data + b"\x00")
    with pytest.raises(CorruptStreamError, match="trailing"):
        decode(data + data)


def _entry(**kw: object) -> TensorEntry:
    base: dict[str, object] = {
        "name": "x",
        "dtype": "float32",
        "shape": (10, 10),
        "kind": container.KIND_QUANTIZED,
        "coder": container.CODER_SPARSE,
        "qp": -32,
        "qp_density": 2,
        "segments": [(1, 3)],
    }
    base.update(kw)
    return TensorEntry(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("entry", "payload", "match"),
    [
        # 10^12 elements: above the hard cap, refused before any allocation.
        (_entry(shape=(10**6, 10**6)), b"abc", "max_elements"),
        # 10^8 elements cannot fit in 3 bytes of per-element coding.
        (_entry(shape=(10**4, 10**4), segments=[(2, 3)]), b"abc", "cannot be coded"),
        (
            _entry(shape=(10**4, 10**4), coder=container.CODER_NNC, segments=[(0, 3)]),
            b"abc",
            "cannot be coded",
        ),
        (_entry(segments=[(7, 3)]), b"abc", "unknown sparse method"),
        (
            _entry(shape=(10, 10), segments=[(1, 1), (1, 2)], segment_elements=30),
            b"abc",
            "segments",
        ),
        (_entry(coder=container.CODER_EMPTY, segments=[(1, 3)]), b"abc", None),
    ],
)
def test_crafted_headers_with_valid_crc(
    entry: TensorEntry, payload: bytes, match: str | None
) -> None:
    data = container.write(
        "nnc" if entry.coder == container.CODER_NNC else "sparse", [entry], [payload]
    )
    tracemalloc.start()
    try:
        with pytest.raises(CodecError, match=match):
            decode(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20


def test_duplicate_names_and_bad_records() -> None:
    two = container.write("sparse", [_entry(), _entry()], [b"abc", b"abc"])
    with pytest.raises(CorruptStreamError, match="twice"):
        decode(two)
    # An integer dtype marked as quantized.
    kind_mismatch = container.write("sparse", [_entry(dtype="int32")], [b"abc"])
    with pytest.raises(CorruptStreamError, match="kind"):
        decode(kind_mismatch)
    nnc_in_sparse = container.write(
        "sparse", [_entry(coder=container.CODER_NNC, segments=[(0, 3)])], [b"abc"]
    )
    with pytest.raises(CorruptStreamError, match="NNC payload"):
        decode(nnc_in_sparse)


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_damaged_payload_with_valid_crc(mode: str) -> None:
    data = _stream(mode)
    entries = container.parse(data, max_elements=1 << 20)
    e = entries[0]
    rng = np.random.default_rng(1)
    for _ in range(40):
        bad = bytearray(data[:-4])
        lo, hi = e.offset, e.offset + e.payload_length
        for i in rng.integers(lo, hi, 3):
            bad[i] = int(rng.integers(0, 256))
        try:
            out = decode(_recrc(bytes(bad)))
        except CodecError:
            continue
        # Undetectable without the CRC: it must still decode to the announced shapes.
        assert out["w"].shape == (12, 20)


def test_lossless_values_out_of_dtype_range() -> None:
    # A valid stream whose bool tensor decodes to a 2 (crafted through a sparse payload).
    from fedbench.codec import sparse

    method, payload = sparse.choose_and_encode(np.array([0, 2, 0, 1], np.int32))
    e = _entry(
        dtype="bool", kind=container.KIND_LOSSLESS, shape=(4,), segments=[(method, len(payload))]
    )
    with pytest.raises(CorruptStreamError, match="fit bool"):
        decode(container.write("sparse", [e], [payload]))


@pytest.mark.parametrize(
    ("tensors", "match"),
    [
        ({"w": np.array([1.0, np.nan], np.float32)}, "NaN"),
        ({"w": np.array([[np.inf]], np.float64)}, "Inf"),
        ({"w": np.array([1e300], np.float64)}, "float32"),
        ({"w": np.array(["a", "b"])}, "dtype"),
        ({"w": np.array([object()], dtype=object)}, "dtype"),
        ({"w": np.array([1 + 2j])}, "dtype"),
        ({3: np.zeros(3)}, "names must be strings"),
        ({"i": np.array([2**40], np.int64)}, "int32 range"),
        ({"u": np.array([2**32], np.uint64)}, "int32 range"),
        ({"w": [[1.0, 2.0], [3.0]]}, "array"),
    ],
)
@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_encode_rejects_bad_tensors(tensors: dict, match: str, mode: str) -> None:
    with pytest.raises(InvalidTensorError, match=match):
        encode(tensors, CodecConfig(mode=mode))


def test_encode_rejects_non_mapping_and_bad_config() -> None:
    with pytest.raises(InvalidTensorError):
        encode([np.zeros(3)])  # type: ignore[arg-type]
    with pytest.raises(SettingsError, match="CodecConfig"):
        encode({"a": np.zeros(3)}, {"mode": "nnc"})  # type: ignore[arg-type]
    with pytest.raises(InvalidTensorError, match="unknown tensors"):
        encode({"a": np.zeros((2, 2), np.float32)}, importance={"b": np.ones((2, 2))})


@pytest.mark.parametrize("cut", [1100, 1500, 2500])
def test_truncated_stream_in_a_long_zero_run_is_reported(cut: int) -> None:
    # Past the end the decoder reads zeros, which decode as a very long run of zeros: the
    # fast zero-run path must stop at the stream's end (plus slack) and report truncation.
    from fedbench.codec.cabac import decode_levels, encode_levels

    rng = np.random.default_rng(7)
    lv = np.zeros(1 << 21, np.int32)
    lv[:3000] = rng.integers(-100, 100, 3000)
    lv[-1] = 3
    data = encode_levels(lv)
    assert len(data) > 2500
    with pytest.raises((TruncatedStreamError, CorruptStreamError)):
        decode_levels(data[:cut], lv.shape)
    np.testing.assert_array_equal(decode_levels(data, lv.shape), lv)
