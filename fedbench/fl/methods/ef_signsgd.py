"""Error-feedback signSGD (Karimireddy et al., ICML 2019): sign(u) scaled by ||u||_1 / d.

Each tensor u (d entries) is sent as the float32 scale ||u||_1 / d and one sign bit per entry
(packed, 1 = negative), decoded as scale * sign(u). What the signs miss, u - decoded, is the
residual the loop's error feedback (fedbench.fl.compressors.compress_with_feedback) adds to the
next update. No options.
"""

from __future__ import annotations

import struct

import numpy as np

from fedbench.fl.compressors import OVERHEAD, CompressorError, TensorSpec, UpdateCompressor
from fedbench.fl.methods import register_method
from fedbench.fl.methods.base import Method

_SCALE = struct.Struct("<f")


class EfSignSgdCompressor(UpdateCompressor):
    """Scaled sign of each tensor: 4 bytes + ceil(d / 8) bytes per tensor."""

    name = "ef-signsgd"

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        self._check(update)
        parts = []
        for n in self.template:
            u = np.asarray(update[n], dtype=np.float32).ravel()
            scale = float(np.abs(u.astype(np.float64)).mean()) if u.size else 0.0
            parts.append(_SCALE.pack(scale) + np.packbits(u < 0).tobytes())
        return b"".join(parts)

    def _sizes(self) -> dict[str, int]:
        return {n: _SCALE.size + (s.size + 7) // 8 for n, s in self.template.items()}

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        sizes = self._sizes()
        if sum(sizes.values()) != len(data):
            raise CompressorError(f"ef-signsgd: {len(data)} bytes, expected {sum(sizes.values())}")
        out, pos = {}, 0
        for n, spec in self.template.items():
            (scale,) = _SCALE.unpack_from(data, pos)
            bits = np.frombuffer(data, np.uint8, sizes[n] - _SCALE.size, pos + _SCALE.size)
            neg = np.unpackbits(bits)[: spec.size].astype(np.float32)
            out[n] = (np.float32(scale) * (1 - 2 * neg)).reshape(spec.shape)
            pos += sizes[n]
        return out

    def tensor_bytes(self, data: bytes) -> dict[str, int]:
        return {**self._sizes(), OVERHEAD: 0}


@register_method
class EfSignSgd(Method):
    name = "ef-signsgd"
    description = "error-feedback signSGD (Karimireddy et al. 2019): sign(u) * ||u||_1 / d"
    display = "EF-signSGD"
    color = 1
    marker = "P"
    order = 60

    def build_compressor(self, template: dict[str, TensorSpec], downlink: bool) -> UpdateCompressor:
        return EfSignSgdCompressor(template)

    def error_bound(self, update: dict[str, np.ndarray], name: str) -> np.ndarray:
        # per entry: |u_i - s sign(u_i)| = ||u_i| - s| with s = ||u||_1 / d
        u = np.abs(np.asarray(update[name], dtype=np.float64))
        return np.abs(u - u.mean()) * (1 + 1e-5) + 1e-7
