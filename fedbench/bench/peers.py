"""The codecs the benchmark compares: our NNC and sparse modes, NNCodec, general-purpose coders.

Every peer is a :class:`Peer` with ``encode(tensors) -> bytes`` and ``decode(bytes) -> object``
plus a ``verify(decoded) -> bool`` that checks the round trip against the reference
quantization. Peers whose library is missing report why through ``unavailable`` instead of
raising, so the benchmark skips them cleanly.

Reference levels (what the general-purpose coders compress and what H0 is computed on) are the
levels our quantizer produces with the benchmark's settings: weights (ndim > 1) at ``qp``,
other tensors at ``nonweight_qp``, as NNCodec does for a plain dict of arrays.
"""

from __future__ import annotations

import bz2
import contextlib
import io
import lzma
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "ALL_PEER_NAMES",
    "GP_PEERS",
    "OUR_PEERS",
    "Peer",
    "Reference",
    "Settings",
    "make_peers",
    "make_reference",
    "nncodec_identity_check",
    "smallest_int_dtype",
]


@dataclass(frozen=True)
class Settings:
    """Quantization and coder settings shared by every peer in one benchmark row group."""

    qp: int = -32
    qp_density: int = 2
    nonweight_qp: int = -75
    dq: bool = False
    param_opt: bool = False
    # NNCodec's compress() default (row_skipping=False); our CodecConfig defaults to True.
    row_skip: bool = False
    zstd_level: int = 19

    def label(self) -> str:
        """Short text naming the settings, used as the table's `setting` column."""
        return (
            f"qp={self.qp} qpd={self.qp_density} nwqp={self.nonweight_qp} "
            f"dq={int(self.dq)} po={int(self.param_opt)} rs={int(self.row_skip)}"
        )

    def tensor_qp(self, tensor: np.ndarray) -> int:
        """QP of one tensor: weights (ndim > 1) use qp, the rest nonweight_qp (NNCodec's rule)."""
        return self.qp if tensor.ndim > 1 else self.nonweight_qp

    def tensor_dq(self, tensor: np.ndarray) -> bool:
        """Whether DQ applies to one tensor (NNCodec applies DQ to weights only)."""
        return self.dq and tensor.ndim > 1


@dataclass
class Reference:
    """The reference quantization of one workload: per-tensor levels and reconstructions."""

    levels: dict[str, np.ndarray]
    recon: dict[str, np.ndarray]
    h0_bytes: float | None
    nonzero_fraction: float


@dataclass
class Peer:
    """One codec under test, configured for one workload's settings."""

    name: str
    encode: Callable[[], bytes] = field(repr=False)
    decode: Callable[[bytes], Any] = field(repr=False)
    verify: Callable[[Any], bool] = field(repr=False)
    input_kind: str = "float32"
    threads: int = 1
    jit: bool = False
    warmup: bool = True
    unavailable: str | None = None
    note: str = ""


OUR_PEERS: tuple[str, ...] = ("nnc", "nnc-1t", "sparse")
GP_PEERS: tuple[str, ...] = ("zlib", "lzma", "bz2", "zstd")
ALL_PEER_NAMES: tuple[str, ...] = OUR_PEERS + ("nncodec",) + GP_PEERS

# General-purpose coder levels: the usual "maximum" setting of each. zstd 19 is the highest
# non-"ultra" level; 22 gave the same size on dense levels and ~15 % less on 99 %-sparse int8
# levels at 2-4x the time (Settings.zstd_level selects it).
_GP_LEVELS = {"zlib": 9, "lzma": 9, "bz2": 9, "zstd": 19}


def _unavailable_peer(name: str, reason: str) -> Peer:
    def _fail(*_a: Any) -> Any:
        raise RuntimeError(f"peer {name} is unavailable: {reason}")

    return Peer(name, _fail, _fail, _fail, unavailable=reason)


def _quant_module() -> Any:
    """Our quantizer (needed for the reference levels of every peer)."""
    from fedbench.codec import quant

    return quant


def _cabac_module() -> Any:
    """Our CABAC (encode_levels), for the per-tensor byte identity check."""
    from fedbench.codec import cabac

    return cabac


def _dequantize(quant: Any, levels: np.ndarray, qp: int, qp_density: int, dq: bool) -> np.ndarray:
    # quant.dequantize covers DQ too: DQ levels are already on the fine grid.
    del dq
    return np.asarray(quant.dequantize(levels, qp, qp_density=qp_density), dtype=np.float32)


def make_reference(tensors: dict[str, np.ndarray], settings: Settings) -> Reference:
    """Quantize every tensor with our quantizer; compute H0 of the levels and reconstructions."""
    quant = _quant_module()
    levels: dict[str, np.ndarray] = {}
    recon: dict[str, np.ndarray] = {}
    nnz = 0
    for name, w in tensors.items():
        qp = settings.tensor_qp(w)
        dq = settings.tensor_dq(w)
        lv = np.asarray(quant.quantize(w, qp, qp_density=settings.qp_density, dq=dq))
        levels[name] = lv.astype(np.int32, copy=False)
        recon[name] = _dequantize(quant, levels[name], qp, settings.qp_density, dq)
        nnz += int(np.count_nonzero(lv))
    from fedbench.codec.entropy import zeroth_order_entropy_bytes

    h0 = float(zeroth_order_entropy_bytes(list(levels.values())))
    total = sum(t.size for t in tensors.values())
    return Reference(levels, recon, h0, nnz / total if total else 0.0)


def smallest_int_dtype(levels: dict[str, np.ndarray]) -> np.dtype:
    """The smallest signed integer dtype that holds every level of the workload."""
    lo = min((int(v.min()) for v in levels.values() if v.size), default=0)
    hi = max((int(v.max()) for v in levels.values() if v.size), default=0)
    for dt in (np.int8, np.int16, np.int32):
        info = np.iinfo(dt)
        if info.min <= lo and hi <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _recon_equal(decoded: dict[str, np.ndarray], ref: Reference) -> bool:
    if set(decoded) != set(ref.recon):
        return False
    for name, r in ref.recon.items():
        d = np.asarray(decoded[name])
        if d.shape != r.shape or not np.array_equal(d.astype(np.float32), r):
            return False
    return True


def _our_peer(
    name: str, tensors: dict[str, np.ndarray], ref: Reference, settings: Settings
) -> Peer:
    from fedbench.codec import CodecConfig
    from fedbench.codec import decode as decode_fn
    from fedbench.codec import encode as encode_fn

    mode = "sparse" if name == "sparse" else "nnc"
    kwargs: dict[str, Any] = {
        "mode": mode,
        "qp": settings.qp,
        "qp_density": settings.qp_density,
        "nonweight_qp": settings.nonweight_qp,
        "dq": settings.dq,
        "param_opt": settings.param_opt,
        "row_skip": settings.row_skip,
    }
    if name == "nnc-1t":
        kwargs["num_threads"] = 1
    cfg = CodecConfig(**kwargs)
    threads = cfg.num_threads or os.cpu_count() or 1

    def verify(decoded: Any) -> bool:
        return _recon_equal(decoded, ref)

    def decode(data: bytes) -> Any:
        # The stream does not carry the thread count: the single-thread row must pass it here.
        if name == "nnc-1t":
            return decode_fn(data, num_threads=1)
        return decode_fn(data)

    return Peer(
        name,
        encode=lambda: bytes(encode_fn(tensors, cfg)),
        decode=decode,
        verify=verify,
        input_kind="float32",
        threads=int(threads),
        jit=True,
    )


def _nncodec_peer(tensors: dict[str, np.ndarray], ref: Reference, settings: Settings) -> Peer:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from nncodec import nnc
    except Exception as exc:  # noqa: BLE001 - any import failure means "not available"
        return _unavailable_peer("nncodec", f"nncodec not importable ({type(exc).__name__}: {exc})")

    def encode() -> bytes:
        # NNCodec prints progress lines even with verbose=False; keep the table readable.
        with contextlib.redirect_stdout(io.StringIO()):
            bs = nnc.compress(
                tensors,
                bitstream_path=None,
                qp=settings.qp,
                qp_density=settings.qp_density,
                nonweight_qp=settings.nonweight_qp,
                use_dq=settings.dq,
                param_opt=settings.param_opt,
                row_skipping=settings.row_skip,
                return_bitstream=True,
                verbose=False,
            )
        return bytes(bs)

    def decode(data: bytes) -> dict[str, np.ndarray]:
        with contextlib.redirect_stdout(io.StringIO()):
            return nnc.decompress(bytearray(data), verbose=False)

    def verify(decoded: Any) -> bool:
        return _recon_equal(decoded, ref)

    return Peer("nncodec", encode, decode, verify, input_kind="float32", threads=1, jit=False)


def _zstd_funcs(level: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    import zstandard

    cctx = zstandard.ZstdCompressor(level=level, threads=0)
    dctx = zstandard.ZstdDecompressor()
    return cctx.compress, dctx.decompress


def _gp_level(name: str, settings: Settings) -> int:
    return settings.zstd_level if name == "zstd" else _GP_LEVELS[name]


def _gp_funcs(name: str, level: int) -> tuple[Callable[[bytes], bytes], Callable[[bytes], bytes]]:
    if name == "zlib":
        return (lambda b: zlib.compress(b, level)), zlib.decompress
    if name == "lzma":
        return (lambda b: lzma.compress(b, preset=level)), lzma.decompress
    if name == "bz2":
        return (lambda b: bz2.compress(b, level)), bz2.decompress
    if name == "zstd":
        return _zstd_funcs(level)
    raise ValueError(f"unknown general-purpose coder {name!r}")


def _gp_peers(name: str, ref: Reference, settings: Settings) -> list[Peer]:
    """Two rows per coder: levels as int32 bytes, and as the smallest dtype that holds them."""
    level = _gp_level(name, settings)
    comp, decomp = _gp_funcs(name, level)
    out: list[Peer] = []
    shapes = {k: v.shape for k, v in ref.levels.items()}
    min_dt = smallest_int_dtype(ref.levels)
    for dt in (np.dtype(np.int32), min_dt):
        if dt == np.int32 and out:
            break  # the smallest dtype is int32 itself: one row is enough
        # Shapes travel out of band (as they would in a real container): only levels are coded.
        raw = b"".join(v.astype(dt, copy=False).tobytes() for v in ref.levels.values())
        label = "int32" if dt == np.int32 and not out else f"min:{dt.name}"

        def encode(raw: bytes = raw) -> bytes:
            return comp(raw)

        def decode(data: bytes, dt: np.dtype = dt) -> dict[str, np.ndarray]:
            flat = np.frombuffer(decomp(data), dtype=dt)
            res: dict[str, np.ndarray] = {}
            off = 0
            for k, shp in shapes.items():
                n = math.prod(shp)
                res[k] = flat[off : off + n].astype(np.int32).reshape(shp)
                off += n
            return res

        def verify(decoded: Any) -> bool:
            return set(decoded) == set(ref.levels) and all(
                np.array_equal(decoded[k], v) for k, v in ref.levels.items()
            )

        threads = 1
        out.append(
            Peer(
                f"{name}-{level}/{label}",
                encode,
                decode,
                verify,
                input_kind=f"levels:{dt.name}",
                threads=threads,
                warmup=False,  # C libraries: no JIT, and a warm-up would double slow runs
                note="codes our quantized levels; quantization not timed",
            )
        )
    return out


def make_peers(
    names: list[str] | tuple[str, ...],
    tensors: dict[str, np.ndarray],
    ref: Reference,
    settings: Settings,
) -> list[Peer]:
    """Build the requested peers for one workload; unknown names raise ValueError."""
    peers: list[Peer] = []
    for name in names:
        if name in OUR_PEERS:
            peers.append(_our_peer(name, tensors, ref, settings))
        elif name == "nncodec":
            peers.append(_nncodec_peer(tensors, ref, settings))
        elif name in GP_PEERS:
            peers.extend(_gp_peers(name, ref, settings))
        else:
            raise ValueError(f"unknown peer {name!r}; use some of {', '.join(ALL_PEER_NAMES)}")
    return peers


def nncodec_identity_check(ref: Reference, settings: Settings) -> dict[str, Any]:
    """Compare our per-tensor CABAC payloads with NNCodec's NNR bitstream of the same levels.

    NNCodec codes an int32 dict (NNR_PT_INT) with exactly the CABAC payload of
    ``encode_levels`` per tensor, wrapped in NNR unit/NDU headers; for float tensors it adds a
    QP delta into the same CABAC codeword, so the identity is checked on the levels. Returns
    the sizes and whether every payload appears, in order, in NNCodec's bitstream.
    """
    out: dict[str, Any] = {"identical": None, "reason": ""}
    cabac = _cabac_module()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            from nncodec import nnc
    except Exception as exc:  # noqa: BLE001
        out["reason"] = f"nncodec not importable ({exc})"
        return out
    if settings.dq:
        out["reason"] = "DQ levels cannot be given to NNCodec as int tensors"
        return out
    payloads = [
        bytes(
            cabac.encode_levels(
                lv,
                cabac_unary_length=11,
                param_opt_flag=int(settings.param_opt),
                dq_flag=0,
                rowSkipFlag=int(settings.row_skip),
            )
        )
        for lv in ref.levels.values()
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        bs = bytes(
            nnc.compress(
                dict(ref.levels),
                bitstream_path=None,
                use_dq=False,
                param_opt=settings.param_opt,
                row_skipping=settings.row_skip,
                return_bitstream=True,
                verbose=False,
            )
        )
    pos = 0
    identical = True
    for p in payloads:
        at = bs.find(p, pos)
        if at < 0:
            identical = False
            break
        pos = at + len(p)
    payload_total = sum(len(p) for p in payloads)
    out.update(
        identical=identical,
        our_payload_bytes=payload_total,
        nncodec_int_bitstream_bytes=len(bs),
        nncodec_header_bytes=len(bs) - payload_total,
        num_tensors=len(payloads),
    )
    return out
