"""Update compressors: one small interface (dict of arrays <-> bytes) and a registry by name.

Both ends of a link know the model architecture, so every compressor is built from the same
ordered template (`TensorSpec` per transmitted tensor: shape and kind). Kinds:

- "weight": a weight tensor with ndim >= 2; sparsified (sparse methods) and coded at `qp`.
- "fine":   a non-weight tensor (bias, BatchNorm parameter or statistic) or an ADF factor;
            coded at the fine `nonweight_qp` or its class's QP (DeepCABAC) or as float16
            (STC, top-k).

Within "fine", DeepCABAC codes each tensor class (`tensor_class`: bn_affine, bn_stats, bias,
adf, other; the classes of fedbench.fl.ledger) at its own QP, and can sparsify the non-weight
classes; every class is under the same error feedback (compress_with_feedback), except that
running statistics left out of a message carry no residual (`unsent_state`).

Compressors:

- fp32:       raw little-endian float32 of every tensor in template order, no header; exactly
              4 bytes per parameter (the uncompressed FedAvg reference).
- deepcabac:  sparsify weight tensors, then `fedbench.codec.encode` (QP, DQ, nnc/sparse mode).
              Fine tensors are flattened to 1-D so the codec codes them at `nonweight_qp`
              (ADF factors have shape [C_out, 1, 1, 1] and would otherwise be coded as weights).
              Options bn_affine_qp, bn_stats_qp, bias_qp, adf_qp (None = nonweight_qp): the
              QP of that class's tensors (per-tensor QPs of one codec call: one container,
              one header, one CRC). nonweight_sparsity: zero that fraction of the smallest
              entries of each bn_affine / bn_stats / bias / other tensor. exact_sparsity:
              the sparsity knob is the measured sparsity (see `fit_qp`): a weight tensor
              whose smallest kept entry would quantize to zero at `qp` is coded at the
              coarsest finer QP that keeps it (the QP is stored per tensor in the stream).
              bn_stats_every = k: BatchNorm running statistics are sent in rounds k, 2k, ...
              (the round from set_context), as zeros in between. Held or sparsified-away
              statistics carry no residual (unsent_state): the next delta re-measures them.
- stc:        sparse ternary compression (Sattler et al. 2020): top-k per weight tensor (or
              over all weight tensors with sparsifier=topk-global; other sparsifier values
              mean per tensor), kept
              entries -> +-mu (mean magnitude of the kept entries), positions as Rice/Golomb
              coded gaps with the optimal parameter b* = 1 + floor(log2(log(phi - 1) /
              log(1 - p))), signs as packed bits.
- topk-fp16:  top-k per weight tensor, positions Golomb-coded as in stc, values float16.
"""

from __future__ import annotations

import math
import struct
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from numba import njit

from fedbench.fl.sparsify import (
    keep_count,
    sparsify,
    sparsify_topk_global,
    sparsify_unstructured,
    topk_indices,
)

__all__ = [
    "COMPRESSORS",
    "OVERHEAD",
    "CompressorError",
    "DeepCabacCompressor",
    "Fp32Compressor",
    "StcCompressor",
    "TensorSpec",
    "TopkFp16Compressor",
    "UpdateCompressor",
    "NONWEIGHT_CLASSES",
    "build_compressor",
    "compress_with_feedback",
    "fit_qp",
    "golomb_decode",
    "golomb_encode",
    "optimal_golomb_parameter",
    "register_compressor",
    "tensor_class",
]


# Key of `tensor_bytes` for bytes that belong to no single tensor (headers, lengths, CRC).
OVERHEAD = "(overhead)"


class CompressorError(ValueError):
    """A compressor got an update or bitstream that does not match its template."""


@dataclass(frozen=True)
class TensorSpec:
    """Shape, kind ("weight" or "fine") and optionally the tensor class of one tensor.

    `cls` (a fedbench.fl.ledger class; "" = inferred from the names by `tensor_class`).
    """

    shape: tuple[int, ...]
    kind: str
    cls: str = ""

    @property
    def size(self) -> int:
        """Number of elements."""
        return int(np.prod(self.shape, dtype=np.int64))


Template = dict[str, TensorSpec]

# Tensor classes other than weights and ADF factors (nonweight_sparsity applies to them).
NONWEIGHT_CLASSES = ("bn_affine", "bn_stats", "bias", "other")


def tensor_class(name: str, template: Template) -> str:
    """Class of a template tensor: its `cls`, else inferred from the state_dict names.

    weight (kind weight), adf (`*.adf_scale`), bn_stats (`*.running_mean/var`), bn_affine
    (`p.weight` 1-D or `p.bias` beside a 1-D `p.weight` or running statistics: a norm
    layer's affine), bias, other. The model-based fedbench.fl.ledger.tensor_classes agrees on
    every BatchNorm network; a template built from the model may set `cls` explicitly.
    """
    spec = template[name]
    if spec.cls:
        return spec.cls
    prefix, _, leaf = name.rpartition(".")
    if leaf == "adf_scale":
        return "adf"
    if spec.kind == "weight":
        return "weight"
    if leaf in ("running_mean", "running_var"):
        return "bn_stats"
    sib = template.get(f"{prefix}.weight")
    norm = (
        f"{prefix}.running_mean" in template
        or f"{prefix}.running_var" in template
        or (sib is not None and len(sib.shape) == 1)
    )
    if leaf in ("weight", "bias") and norm:
        return "bn_affine"
    return "bias" if leaf == "bias" else "other"


class UpdateCompressor(ABC):
    """Encode a dict of float arrays (a model update) to bytes and back."""

    name: ClassVar[str] = ""

    def __init__(self, template: Template, **options: Any) -> None:
        self.template = dict(template)
        self.options = options
        self.context: tuple[int, ...] = ()

    def set_context(self, *keys: int) -> None:
        """Integers (run seed, round, client) that a stochastic compressor seeds its next
        encodes from, so that runs are reproducible; deterministic compressors ignore them."""
        self.context = tuple(int(k) for k in keys)

    @abstractmethod
    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        """Compress `update` (keys and shapes as in the template) into a bitstream."""

    @abstractmethod
    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        """Reconstruct the update (float32 arrays) from a bitstream."""

    def unsent_state(self, update: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Running-statistic entries `encode(update)` leaves out (flat boolean masks).

        A running statistic is a state the client measures, not an increment: the next
        round's delta (measured minus received) already contains what was not sent, so error
        feedback must not carry it as well, or it arrives twice (k times after k held
        rounds). Only its quantization error is a residual. Default: every entry is sent.
        """
        return {}

    def tensor_bytes(self, data: bytes) -> dict[str, int]:
        """Bytes of `data` per tensor, with OVERHEAD for the rest; adds up to len(data).

        Compressors that cannot attribute their bytes charge all of them as overhead.
        """
        return {OVERHEAD: len(data)}

    def _check(self, update: dict[str, np.ndarray]) -> None:
        """Raise CompressorError unless `update` matches the template exactly."""
        if set(update) != set(self.template):
            missing = sorted(set(self.template) - set(update))[:3]
            extra = sorted(set(update) - set(self.template))[:3]
            raise CompressorError(
                f"{self.name}: update keys differ from the template (missing {missing}, "
                f"unexpected {extra})"
            )
        for n, spec in self.template.items():
            if tuple(update[n].shape) != spec.shape:
                raise CompressorError(
                    f"{self.name}: tensor {n!r} has shape {tuple(update[n].shape)}, "
                    f"expected {spec.shape}"
                )


COMPRESSORS: dict[str, type[UpdateCompressor]] = {}


def register_compressor(
    name: str,
) -> Callable[[type[UpdateCompressor]], type[UpdateCompressor]]:
    """Class decorator adding a compressor to the registry under `name`."""

    def deco(cls: type[UpdateCompressor]) -> type[UpdateCompressor]:
        cls.name = name
        COMPRESSORS[name] = cls
        return cls

    return deco


def build_compressor(name: str, template: Template, **options: Any) -> UpdateCompressor:
    """Instantiate the registered compressor `name` for `template`."""
    if name not in COMPRESSORS:
        raise CompressorError(f"unknown compressor {name!r}; allowed: {', '.join(COMPRESSORS)}")
    return COMPRESSORS[name](template, **options)


def compress_with_feedback(
    comp: UpdateCompressor, update: dict[str, np.ndarray]
) -> tuple[bytes, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Error accumulation: (bits, decoded, residual) with residual = update - decoded.

    `update` already includes the previous residual (u = dW + r); the new residual is what
    the bitstream failed to carry and is added to the next update.
    """
    bits = comp.encode(update)
    dec = comp.decode(bits)
    residual = {n: (np.asarray(update[n], dtype=np.float32) - dec[n]) for n in update}
    for n, mask in comp.unsent_state(update).items():
        residual[n].reshape(-1)[mask] = 0.0
    return bits, dec, residual


def fit_qp(values: np.ndarray, qp: int, qp_density: int) -> int:
    """The coarsest QP <= `qp` at which every nonzero entry of `values` keeps a nonzero level.

    Uniform reconstruction quantization (the codec without dq or RDOQ) zeroes |w| < step/2,
    so sparsifying to a target and then quantizing at a coarse QP zeroes more than the target
    (QP -32 alone zeroes about 97 % of a ResNet-20 update). Coding the tensor at this QP
    instead makes the measured sparsity the sparsifier's: the sparsity knob means sparsity,
    and the step is as coarse as that allows. `qp` itself when it already keeps every entry.
    """
    from fedbench.codec.errors import SettingsError
    from fedbench.codec.quant import quantize_uniform

    nz = np.abs(values[values != 0])
    if not nz.size:
        return int(qp)
    smallest = np.array([nz.min()], dtype=np.float32)

    def keeps(q: int) -> bool:
        return bool(quantize_uniform(smallest, q, qp_density)[0] != 0)

    if keeps(qp):
        return int(qp)
    # step(q) ~ 2^(q / 2^d) and a level is nonzero from |w| >= step / 2: start just above the
    # answer and walk down (float32 rounding of the step decides the last QP).
    q = min(int(qp) - 1, math.floor((1 << qp_density) * math.log2(2.0 * float(smallest[0]))) + 1)
    try:
        while not keeps(q):
            q -= 1
    except SettingsError:
        return q + 1  # finer steps leave float32: the finest valid QP
    return q


# ----------------------------------------------------------------------------------- fp32


@register_compressor("fp32")
class Fp32Compressor(UpdateCompressor):
    """Raw float32, template order, no header: exactly 4 bytes per parameter."""

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        """Concatenate every tensor as little-endian float32."""
        self._check(update)
        parts = [np.ascontiguousarray(update[n], dtype="<f4").tobytes() for n in self.template]
        return b"".join(parts)

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        """Split the raw float32 buffer back into tensors."""
        total = sum(s.size for s in self.template.values())
        if len(data) != 4 * total:
            raise CompressorError(f"fp32: expected {4 * total} bytes, got {len(data)}")
        flat = np.frombuffer(data, dtype="<f4")
        out, pos = {}, 0
        for n, spec in self.template.items():
            out[n] = flat[pos : pos + spec.size].astype(np.float32).reshape(spec.shape)
            pos += spec.size
        return out

    def tensor_bytes(self, data: bytes) -> dict[str, int]:
        """4 bytes per element of each tensor, no overhead."""
        return {**{n: 4 * s.size for n, s in self.template.items()}, OVERHEAD: 0}


# ------------------------------------------------------------------------------ deepcabac


@register_compressor("deepcabac")
class DeepCabacCompressor(UpdateCompressor):
    """Sparsify weight tensors, then DeepCABAC (fedbench.codec) at the configured QPs.

    Options: sparsity, sparsifier, structured_factor, qp, qp_density, nonweight_qp,
    bn_affine_qp / bn_stats_qp / bias_qp / adf_qp (QP of that tensor class; None =
    nonweight_qp), nonweight_sparsity, exact_sparsity, dq, param_opt, codec_mode, num_threads
    (codec worker threads; the bytes do not depend on it).
    """

    def _codec_config(self) -> Any:
        """The fedbench.codec configuration for these options."""
        from fedbench.codec import CodecConfig

        o = self.options
        return CodecConfig(
            mode=o.get("codec_mode", "nnc"),
            qp=int(o.get("qp", -32)),
            qp_density=int(o.get("qp_density", 2)),
            nonweight_qp=int(o.get("nonweight_qp", -75)),
            dq=bool(o.get("dq", False)),
            param_opt=bool(o.get("param_opt", False)),
            num_threads=o.get("num_threads"),
        )

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        """Sparsify weights (and non-weights if asked), flatten fine tensors, DeepCABAC-encode
        the whole dict with each tensor class at its QP."""
        from fedbench.codec import encode

        self._check(update)
        o = self.options
        cfg = self._codec_config()
        weights = {
            n: np.asarray(update[n], dtype=np.float32)
            for n, s in self.template.items()
            if s.kind == "weight"
        }
        sparsifier = o.get("sparsifier", "unstructured")
        weights = sparsify(
            weights, float(o.get("sparsity", 0.0)), sparsifier, o.get("structured_factor")
        )
        # Structured sparsity counts filters, not entries: no per-entry target to keep.
        exact = bool(o.get("exact_sparsity", False)) and sparsifier != "structured"
        class_qp = {c: o.get(f"{c}_qp") for c in ("bn_affine", "bn_stats", "bias", "adf")}
        nw_sparsity = float(o.get("nonweight_sparsity", 0.0))
        hold_stats = self._hold_stats()
        tensors: dict[str, np.ndarray] = {}
        qps: dict[str, int] = {}
        for n, spec in self.template.items():
            if spec.kind == "weight":
                tensors[n] = np.ascontiguousarray(weights[n], dtype=np.float32)
                if exact:
                    q = fit_qp(tensors[n], cfg.qp, cfg.qp_density)
                    if q != cfg.qp:
                        qps[n] = q
                continue
            cls = tensor_class(n, self.template)
            # 1-D so the codec applies the fine non-weight QP.
            flat = np.ascontiguousarray(update[n], dtype=np.float32).reshape(-1)
            if hold_stats and cls == "bn_stats":
                flat = np.zeros_like(flat)
            elif nw_sparsity > 0 and cls in NONWEIGHT_CLASSES:
                flat = sparsify_unstructured(flat, nw_sparsity)
            tensors[n] = flat
            q = class_qp.get(cls)
            if q is not None and int(q) != cfg.nonweight_qp:
                qps[n] = int(q)
        # No per-tensor QPs: the call (and the stream) of the configuration without them.
        return encode(tensors, cfg, qp=qps) if qps else encode(tensors, cfg)

    def _hold_stats(self) -> bool:
        """bn_stats_every = k: the statistics travel in rounds k, 2k, ... only, as zeros in
        between (context: seed, round, ...)."""
        every = int(self.options.get("bn_stats_every", 1))
        return every > 1 and len(self.context) > 1 and self.context[1] % every != 0

    def unsent_state(self, update: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Held (bn_stats_every) or sparsified-away (nonweight_sparsity) statistic entries."""
        nw_sparsity = float(self.options.get("nonweight_sparsity", 0.0))
        hold = self._hold_stats()
        if not hold and nw_sparsity <= 0:
            return {}
        out = {}
        for n in self.template:
            if tensor_class(n, self.template) != "bn_stats":
                continue
            flat = np.asarray(update[n], dtype=np.float32).reshape(-1)
            if hold:
                out[n] = np.ones(flat.shape, dtype=bool)
            else:
                out[n] = sparsify_unstructured(flat, nw_sparsity) == 0
        return out

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        """DeepCABAC-decode and restore template shapes."""
        from fedbench.codec import decode

        dec = decode(data)
        out = {}
        for n, spec in self.template.items():
            if n not in dec:
                raise CompressorError(f"deepcabac: tensor {n!r} missing from the bitstream")
            out[n] = np.asarray(dec[n], dtype=np.float32).reshape(spec.shape)
        return out

    def tensor_bytes(self, data: bytes) -> dict[str, int]:
        """Each tensor's CABAC payload; the container header and CRC are overhead."""
        from fedbench.codec import container
        from fedbench.codec.api import DEFAULT_MAX_ELEMENTS

        out = {
            e.name: e.payload_length
            for e in container.parse(data, max_elements=DEFAULT_MAX_ELEMENTS)
        }
        out[OVERHEAD] = len(data) - sum(out.values())
        return out


# ------------------------------------------------------------------------ Golomb coding


def optimal_golomb_parameter(density: float) -> int:
    """Sattler et al.'s optimal Rice parameter b* for gaps of a Bernoulli(density) mask."""
    if density >= 1.0 or density <= 0.0:
        return 0
    phi = (math.sqrt(5.0) + 1.0) / 2.0
    ratio = math.log(phi - 1.0) / math.log(1.0 - density)
    return max(0, 1 + math.floor(math.log2(ratio)))


@njit(cache=True, nogil=True)
def _rice_encode_kernel(gaps: np.ndarray, b: int, out: np.ndarray) -> int:
    """Write Rice codes (unary quotient of ones, a zero, b remainder bits) MSB-first."""
    pos = 0
    for i in range(gaps.size):
        g = gaps[i]
        q = g >> b
        for _ in range(q):
            out[pos >> 3] |= np.uint8(0x80 >> (pos & 7))
            pos += 1
        pos += 1
        for j in range(b - 1, -1, -1):
            if (g >> j) & 1:
                out[pos >> 3] |= np.uint8(0x80 >> (pos & 7))
            pos += 1
    return pos


@njit(cache=True, nogil=True)
def _rice_decode_kernel(data: np.ndarray, count: int, b: int, out: np.ndarray) -> int:
    """Read `count` Rice codes into `out`; returns bits consumed (-1 when data runs out)."""
    pos = 0
    nbits = data.size * 8
    for i in range(count):
        q = 0
        while True:
            if pos >= nbits:
                return -1
            bit = (data[pos >> 3] >> (7 - (pos & 7))) & 1
            pos += 1
            if bit == 0:
                break
            q += 1
        r = 0
        for _ in range(b):
            if pos >= nbits:
                return -1
            r = (r << 1) | ((data[pos >> 3] >> (7 - (pos & 7))) & 1)
            pos += 1
        out[i] = (q << b) | r
    return pos


def golomb_encode(positions: np.ndarray, b: int) -> bytes:
    """Rice-code the gaps between sorted distinct positions (first gap from -1)."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return b""
    gaps = np.diff(positions, prepend=-1) - 1
    nbits = int((gaps >> b).sum()) + positions.size * (1 + b)
    out = np.zeros((nbits + 7) // 8, dtype=np.uint8)
    _rice_encode_kernel(gaps, b, out)
    return out.tobytes()


def golomb_decode(data: bytes, count: int, b: int) -> np.ndarray:
    """Inverse of golomb_encode: `count` sorted positions."""
    gaps = np.zeros(count, dtype=np.int64)
    if count == 0:
        return gaps
    used = _rice_decode_kernel(np.frombuffer(data, dtype=np.uint8), count, b, gaps)
    if used < 0:
        raise CompressorError("golomb: bitstream ended before all positions were read")
    return np.cumsum(gaps + 1) - 1


# ------------------------------------------------------------------- STC / top-k fp16


class _SparseCompressor(UpdateCompressor):
    """Shared layout of stc and topk-fp16: per weight tensor, k + coded positions + values.

    Per weight tensor: uint32 k, then if k > 0: uint8 b, uint32 position byte count, Golomb
    positions, then the values (method specific). Per fine tensor: float16 values.
    """

    def _values_encode(self, vals: np.ndarray) -> bytes:
        raise NotImplementedError

    def _values_decode(self, data: bytes, pos: int, k: int) -> tuple[np.ndarray, int]:
        raise NotImplementedError

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        """Top-k positions Golomb-coded plus method-specific values; fine tensors float16."""
        self._check(update)
        sparsity = float(self.options.get("sparsity", 0.0))
        global_topk = self.options.get("sparsifier") == "topk-global"
        if global_topk:
            kept = sparsify_topk_global(
                {
                    n: np.asarray(update[n], dtype=np.float32)
                    for n, s in self.template.items()
                    if s.kind == "weight"
                },
                sparsity,
            )
        parts: list[bytes] = []
        for n, spec in self.template.items():
            flat = np.asarray(update[n], dtype=np.float32).reshape(-1)
            if spec.kind != "weight":
                parts.append(flat.astype("<f2").tobytes())
                continue
            if global_topk:
                idx = np.flatnonzero(kept[n].reshape(-1)).astype(np.int64)
            else:
                idx = topk_indices(flat, keep_count(flat.size, sparsity))
            idx = idx[flat[idx] != 0]  # exact zeros need no position
            k = idx.size
            parts.append(struct.pack("<I", k))
            if k == 0:
                continue
            b = optimal_golomb_parameter(k / flat.size)
            pos_bytes = golomb_encode(idx, b)
            parts.append(struct.pack("<BI", b, len(pos_bytes)))
            parts.append(pos_bytes)
            parts.append(self._values_encode(flat[idx]))
        return b"".join(parts)

    def decode(self, data: bytes) -> dict[str, np.ndarray]:
        """Inverse of encode."""
        return self._decode_spans(data)[0]

    def tensor_bytes(self, data: bytes) -> dict[str, int]:
        """Each tensor's k, Golomb positions and values (the whole layout is per tensor)."""
        return {**self._decode_spans(data)[1], OVERHEAD: 0}

    def _decode_spans(self, data: bytes) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """Decoded tensors and the number of bytes each took in `data`."""
        out: dict[str, np.ndarray] = {}
        spans: dict[str, int] = {}
        pos = 0
        try:
            for n, spec in self.template.items():
                start = pos
                if spec.kind != "weight":
                    nb = 2 * spec.size
                    if pos + nb > len(data):
                        raise CompressorError(f"{self.name}: truncated at tensor {n!r}")
                    vals = np.frombuffer(data, dtype="<f2", count=spec.size, offset=pos)
                    out[n] = vals.astype(np.float32).reshape(spec.shape)
                    pos += nb
                    spans[n] = nb
                    continue
                (k,) = struct.unpack_from("<I", data, pos)
                pos += 4
                flat = np.zeros(spec.size, dtype=np.float32)
                if k:
                    b, npos = struct.unpack_from("<BI", data, pos)
                    pos += 5
                    idx = golomb_decode(data[pos : pos + npos], k, b)
                    pos += npos
                    if idx.size and idx[-1] >= spec.size:
                        raise CompressorError(f"{self.name}: position out of range in {n!r}")
                    vals, pos = self._values_decode(data, pos, k)
                    flat[idx] = vals
                out[n] = flat.reshape(spec.shape)
                spans[n] = pos - start
        except struct.error as exc:
            raise CompressorError(f"{self.name}: truncated bitstream ({exc})") from exc
        if pos != len(data):
            raise CompressorError(f"{self.name}: {len(data) - pos} trailing bytes")
        return out, spans


@register_compressor("stc")
class StcCompressor(_SparseCompressor):
    """Sparse ternary compression: kept entries become +-mu, signs as packed bits."""

    def _values_encode(self, vals: np.ndarray) -> bytes:
        mu = np.float32(np.abs(vals.astype(np.float64)).mean())
        signs = np.packbits(vals < 0)
        return struct.pack("<f", mu) + signs.tobytes()

    def _values_decode(self, data: bytes, pos: int, k: int) -> tuple[np.ndarray, int]:
        (mu,) = struct.unpack_from("<f", data, pos)
        pos += 4
        nb = (k + 7) // 8
        if pos + nb > len(data):
            raise CompressorError("stc: truncated sign bits")
        neg = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=nb, offset=pos))[:k]
        vals = np.where(neg.astype(bool), -mu, mu).astype(np.float32)
        return vals, pos + nb


@register_compressor("topk-fp16")
class TopkFp16Compressor(_SparseCompressor):
    """Top-k with float16 values."""

    def _values_encode(self, vals: np.ndarray) -> bytes:
        return vals.astype("<f2").tobytes()

    def _values_decode(self, data: bytes, pos: int, k: int) -> tuple[np.ndarray, int]:
        if pos + 2 * k > len(data):
            raise CompressorError("topk-fp16: truncated values")
        vals = np.frombuffer(data, dtype="<f2", count=k, offset=pos).astype(np.float32)
        return vals, pos + 2 * k
