"""QSGD (Alistarh et al., NeurIPS 2017): stochastic s-level quantization, Elias-gamma coded.

Each tensor u is cut into buckets of `bucket_size` consecutive entries (the paper's
experiments use 512; null = the whole tensor is one bucket). A bucket b is sent as its norm
||u_b||_2 and, per entry, a level l_i in {0..s} drawn by stochastic rounding of
s|u_i|/||u_b||_2 (unbiased: E[l_i] = s|u_i|/||u_b||_2), decoded as sign(u_i) ||u_b||_2 l_i / s.
The variance of a bucket grows with its length (up to min(d/s^2, sqrt(d)/s) ||u_b||^2), so
whole-tensor norms on 36,864-entry convolutions at 2 levels make training diverge; buckets
bound it. Nonzero entries are coded as Elias-gamma gaps of their positions, Elias-gamma levels
and a sign bit. The rounding is seeded from the run seed, the round and the client
(`UpdateCompressor.set_context`), so runs are reproducible and encoding is deterministic.

Options: method.levels (int >= 1, 16), the number s of quantization levels;
method.bucket_size (int >= 1 or null, 512).
Stream per tensor (template order): uint32 nonzero count, uint32 byte length, one float32
norm per bucket, the bit-packed codes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
from numba import njit

from fedbench.fl.aggregation import derive_seed
from fedbench.fl.compressors import OVERHEAD, CompressorError, TensorSpec, UpdateCompressor
from fedbench.fl.config import ConfigError, RunConfig
from fedbench.fl.methods import register_method
from fedbench.fl.methods.base import Method

_HEAD = struct.Struct("<II")


@njit(cache=True)
def _put(out: np.ndarray, pos: int, value: int, nbits: int) -> int:
    for j in range(nbits - 1, -1, -1):
        if (value >> j) & 1:
            out[pos >> 3] |= np.uint8(0x80 >> (pos & 7))
        pos += 1
    return pos


@njit(cache=True)
def _gamma(out: np.ndarray, pos: int, n: int) -> int:
    width = 0
    while (n >> (width + 1)) > 0:
        width += 1
    pos += width  # `width` zero bits (out starts zeroed)
    return _put(out, pos, n, width + 1)


@njit(cache=True)
def _encode_kernel(levels: np.ndarray, out: np.ndarray) -> int:
    pos = 0
    last = -1
    for i in range(levels.size):
        lv = levels[i]
        if lv != 0:
            pos = _gamma(out, pos, i - last)
            pos = _gamma(out, pos, abs(lv))
            pos = _put(out, pos, 1 if lv < 0 else 0, 1)
            last = i
    return pos


@njit(cache=True)
def _bit(data: np.ndarray, pos: int) -> int:
    return (data[pos >> 3] >> (7 - (pos & 7))) & 1


@njit(cache=True)
def _read_gamma(data: np.ndarray, pos: int) -> tuple[int, int]:
    width = 0
    while _bit(data, pos) == 0:
        width += 1
        pos += 1
    n = 0
    for _ in range(width + 1):
        n = (n << 1) | _bit(data, pos)
        pos += 1
    return n, pos


@njit(cache=True)
def _decode_kernel(data: np.ndarray, count: int, out: np.ndarray) -> None:
    pos = 0
    last = -1
    for _ in range(count):
        gap, pos = _read_gamma(data, pos)
        lv, pos = _read_gamma(data, pos)
        neg = _bit(data, pos)
        pos += 1
        last += gap
        out[last] = -lv if neg else lv


class QsgdCompressor(UpdateCompressor):
    """QSGD with s = options['levels'] levels, one norm per options['bucket_size'] entries."""

    name = "qsgd"

    def _bucket(self, size: int) -> int:
        b = self.options.get("bucket_size")
        return size if b is None else max(1, min(int(b), size))

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        self._check(update)
        s = int(self.options["levels"])
        parts = []
        for index, n in enumerate(self.template):
            u = np.asarray(update[n], dtype=np.float64).ravel()
            b = self._bucket(u.size)
            nb = -(-u.size // b)
            padded = np.zeros(nb * b, dtype=np.float64)
            padded[: u.size] = u
            norms = np.linalg.norm(padded.reshape(nb, b), axis=1).astype(np.float32)
            per = np.repeat(norms.astype(np.float64), b)[: u.size]
            rng = np.random.default_rng(derive_seed(0x95CD, *self.context, index))
            scaled = np.divide(np.abs(u) * s, per, out=np.zeros_like(u), where=per > 0)
            low = np.floor(scaled)
            lv = (low + (rng.random(u.size) < (scaled - low))).astype(np.int64)
            lv = np.minimum(lv, s) * np.where(u < 0, -1, 1)
            count = int(np.count_nonzero(lv))
            buf = np.zeros(count * 16 + 16, dtype=np.uint8)  # gaps < 2^32, levels <= s
            nbits = _encode_kernel(lv, buf)
            body = buf[: (nbits + 7) // 8].tobytes()
            parts.append(_HEAD.pack(count, len(body)) + norms.astype("<f4").tobytes() + body)
        return b"".join(parts)

    def _spans(self, data: bytes) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        s = int(self.options["levels"])
        out, sizes, pos = {}, {}, 0
        for n, spec in self.template.items():
            b = self._bucket(spec.size)
            nb = -(-spec.size // b)
            head = _HEAD.size + 4 * nb
            if pos + head > len(data):
                raise CompressorError(f"qsgd: stream ends inside the header of {n}")
            count, nbytes = _HEAD.unpack_from(data, pos)
            norms = np.frombuffer(data, dtype="<f4", count=nb, offset=pos + _HEAD.size)
            if pos + head + nbytes > len(data):
                raise CompressorError(f"qsgd: stream ends inside the codes of {n}")
            body = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=pos + head)
            lv = np.zeros(spec.size, dtype=np.int64)
            if count:
                _decode_kernel(np.concatenate([body, np.zeros(8, np.uint8)]), count, lv)
            step = np.repeat(norms.astype(np.float32) / np.float32(s), b)[: spec.size]
            out[n] = (lv * step).astype(np.float32).reshape(spec.shape)
            sizes[n] = head + nbytes
            pos += head + nbytes
        if pos != len(data):
            raise CompressorError(f"qsgd: {len(data) - pos} bytes after the last tensor")
        return out, sizes

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        return self._spans(data)[0]

    def tensor_bytes(self, data: bytes) -> dict[str, int]:
        return {**self._spans(data)[1], OVERHEAD: 0}


@dataclass
class QsgdOptions:
    """Options of qsgd."""

    levels: int = 16
    # the paper's experiments: buckets of 512 entries; null: one bucket per tensor
    bucket_size: int | None = 512


@register_method
class Qsgd(Method):
    name = "qsgd"
    description = "QSGD (Alistarh et al. 2017): stochastic s-level quantization, Elias-gamma codes"
    display = "QSGD"
    color = 4
    marker = "X"
    order = 50
    Options = QsgdOptions

    @classmethod
    def validate(cls, cfg: RunConfig) -> None:
        levels = cfg.method.options.levels
        if not 1 <= levels <= 2**20:
            raise ConfigError(f"method.levels: invalid value {levels!r}; must be in 1..2^20")
        bucket = cfg.method.options.bucket_size
        if bucket is not None and not (isinstance(bucket, int) and bucket >= 1):
            raise ConfigError(
                f"method.bucket_size: invalid value {bucket!r}; must be an integer >= 1 or null"
            )

    def build_compressor(self, template: dict[str, TensorSpec], downlink: bool) -> UpdateCompressor:
        return QsgdCompressor(
            template, levels=self.options.levels, bucket_size=self.options.bucket_size
        )

    def error_bound(self, update: dict[str, np.ndarray], name: str) -> float:
        u = np.asarray(update[name], dtype=np.float64)
        return float(np.linalg.norm(u)) / self.options.levels * (1 + 1e-5) + 1e-7
