"""QSGD (Alistarh et al., NeurIPS 2017): stochastic s-level quantization, Elias-gamma coded.

Each tensor u is sent as its norm ||u||_2 and, per entry, a level l_i in {0..s} drawn by
stochastic rounding of s|u_i|/||u||_2 (unbiased: E[l_i] = s|u_i|/||u||_2), decoded as
sign(u_i) ||u||_2 l_i / s. Nonzero entries are coded as Elias-gamma gaps of their positions,
Elias-gamma levels and a sign bit. The rounding is seeded from the run seed, the round and the
client (`UpdateCompressor.set_context`), so runs are reproducible and encoding is deterministic.

Option: method.levels (int >= 1, 16), the number s of quantization levels.
Stream per tensor (template order): float32 norm, uint32 nonzero count, uint32 byte length,
the bit-packed codes.
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

_HEAD = struct.Struct("<fII")


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
    """QSGD with s = options['levels'] levels per tensor."""

    name = "qsgd"

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        self._check(update)
        s = int(self.options["levels"])
        parts = []
        for index, (n, spec) in enumerate(self.template.items()):
            u = np.asarray(update[n], dtype=np.float32).ravel()
            norm = np.float32(np.linalg.norm(u.astype(np.float64)))
            if not norm > 0:
                parts.append(_HEAD.pack(0.0, 0, 0))
                continue
            rng = np.random.default_rng(derive_seed(0x95CD, *self.context, index))
            scaled = np.abs(u.astype(np.float64)) / float(norm) * s
            low = np.floor(scaled)
            lv = (low + (rng.random(spec.size) < (scaled - low))).astype(np.int64)
            lv = np.minimum(lv, s) * np.where(u < 0, -1, 1)
            count = int(np.count_nonzero(lv))
            buf = np.zeros(count * 16 + 16, dtype=np.uint8)  # gaps < 2^32, levels <= s
            nbits = _encode_kernel(lv, buf)
            body = buf[: (nbits + 7) // 8].tobytes()
            parts.append(_HEAD.pack(float(norm), count, len(body)) + body)
        return b"".join(parts)

    def _spans(self, data: bytes) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        s = int(self.options["levels"])
        out, sizes, pos = {}, {}, 0
        for n, spec in self.template.items():
            if pos + _HEAD.size > len(data):
                raise CompressorError(f"qsgd: stream ends inside the header of {n}")
            norm, count, nbytes = _HEAD.unpack_from(data, pos)
            body = np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=pos + _HEAD.size)
            lv = np.zeros(spec.size, dtype=np.int64)
            if count:
                _decode_kernel(np.concatenate([body, np.zeros(8, np.uint8)]), count, lv)
            out[n] = (
                (lv * (np.float32(norm) / np.float32(s))).astype(np.float32).reshape(spec.shape)
            )
            sizes[n] = _HEAD.size + nbytes
            pos += _HEAD.size + nbytes
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

    def build_compressor(self, template: dict[str, TensorSpec], downlink: bool) -> UpdateCompressor:
        return QsgdCompressor(template, levels=self.options.levels)

    def error_bound(self, update: dict[str, np.ndarray], name: str) -> float:
        u = np.asarray(update[name], dtype=np.float64)
        return float(np.linalg.norm(u)) / self.options.levels * (1 + 1e-5) + 1e-7
