"""`encode` a dict of tensors to bytes and `decode` it back: the codec's public entry points."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, TypeVar

import numpy as np

from fedbench.codec import cabac, container, quant, sparse
from fedbench.codec.config import CodecConfig, check_qp
from fedbench.codec.container import (
    CODER_EMPTY,
    CODER_NNC,
    CODER_SPARSE,
    KIND_LOSSLESS,
    KIND_QUANTIZED,
    TensorEntry,
)
from fedbench.codec.errors import (
    CodecError,
    CorruptStreamError,
    InvalidTensorError,
    SettingsError,
)
from fedbench.codec.limits import INT32_MAX, LEVEL_MIN, check_int32

__all__ = ["DEFAULT_MAX_ELEMENTS", "decode", "encode"]

# Hard cap on the elements one stream may announce (1 GiB of float32): decode refuses more
# before allocating anything; pass max_elements to raise it for genuinely larger models.
DEFAULT_MAX_ELEMENTS = 1 << 28

_T = TypeVar("_T")
_R = TypeVar("_R")


# Below this many elements in all, or per item, a thread pool costs more than it saves (small
# tensors spend their time in Python, under the GIL).
_PARALLEL_MIN_ELEMENTS = 1 << 18
_PARALLEL_MIN_PER_ITEM = 1 << 12


def _pmap(
    fn: Callable[[_T], _R],
    items: Iterable[_T],
    threads: int,
    work: int | None = None,
    sizes: list[int] | None = None,
) -> list[_R]:
    """map over a thread pool (the kernels release the GIL); serial for one thread or little work.

    With sizes, the largest items are started first (longest-processing-time order), so that
    one big tensor left for last does not run alone while the other cores idle.
    """
    items = list(items)
    small = work is not None and (
        work < _PARALLEL_MIN_ELEMENTS or work < _PARALLEL_MIN_PER_ITEM * len(items)
    )
    if threads <= 1 or len(items) <= 1 or small:
        return [fn(x) for x in items]
    order = list(range(len(items)))
    if sizes is not None:
        order.sort(key=lambda i: -sizes[i])
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as ex:
        futures = {i: ex.submit(fn, items[i]) for i in order}
        return [futures[i].result() for i in range(len(items))]


def _threads(n: int | None) -> int:
    return n if n is not None else (os.cpu_count() or 1)


# ----------------------------------------------------------------------------- encode


@dataclass
class _Prepared:
    entry: TensorEntry
    levels: np.ndarray  # int32, original shape


def _as_array(name: object, value: Any) -> np.ndarray:
    if not isinstance(name, str):
        raise InvalidTensorError(
            f"tensor names must be strings, got {type(name).__name__} {name!r}"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidTensorError(f"tensor name {name!r} cannot be encoded as UTF-8") from exc
    if len(name.encode("utf-8")) > container.MAX_NAME_BYTES:
        raise InvalidTensorError(f"tensor name {name[:40]!r}... is longer than 65536 bytes")
    try:
        arr = np.asarray(value)
    except Exception as exc:  # anything np.asarray chokes on is not a tensor for us
        raise InvalidTensorError(f"tensor {name!r}: not convertible to an array ({exc})") from exc
    if arr.dtype.name not in container.DTYPE_CODES:
        raise InvalidTensorError(
            f"tensor {name!r}: dtype {arr.dtype} is not supported (bool, integer and "
            "float16/32/64 tensors are)"
        )
    if arr.ndim > container.MAX_NDIM:
        raise InvalidTensorError(f"tensor {name!r}: {arr.ndim} dimensions (at most 32)")
    return arr


def _lossless_levels(name: str, arr: np.ndarray) -> np.ndarray:
    check_int32(f"tensor {name!r}", arr)
    return np.ascontiguousarray(arr, dtype=np.int32)


def _quantize(
    w32: np.ndarray,
    qp: int,
    dq: bool,
    weight: bool,
    cfg: CodecConfig,
    importance: np.ndarray | None,
) -> tuple[np.ndarray, int]:
    """Levels and the QP used: a QP too fine for the tensor's range is coarsened (stored)."""
    lam = cfg.lambda_scale if weight else 0.0
    imp = importance if weight else None
    if not dq and lam == 0.0:
        try:
            levels = quant.quantize_uniform(w32, qp, cfg.qp_density)
        except SettingsError:
            levels = None  # overflow: fall back below
        # The CABAC codes magnitudes up to 2^31 - 1 only: -2^31 also needs a coarser QP.
        if levels is not None and (not levels.size or int(levels.min()) >= LEVEL_MIN):
            return levels, qp
    if w32.size:
        # safe_qp's answer keeps every level within +-(2^31 - 2) for all three quantizers.
        qp = quant.safe_qp(w32, qp, cfg.qp_density)
    levels = quant.quantize(
        w32,
        qp,
        cfg.qp_density,
        dq=dq,
        lambda_scale=lam,
        importance=imp,
        scan_order=cfg.scan_order,
        cabac_unary_length=cfg.cabac_unary_length,
    )
    return levels, qp


def _prepare(
    name: str,
    arr: np.ndarray,
    cfg: CodecConfig,
    importance: np.ndarray | None,
    qp_override: int | None = None,
) -> _Prepared:
    shape = tuple(int(d) for d in arr.shape)
    if arr.dtype.kind == "f":
        if arr.dtype == np.float64:
            with np.errstate(over="ignore", invalid="ignore"):
                w32 = np.ascontiguousarray(arr, dtype=np.float32)
        else:
            w32 = np.ascontiguousarray(arr, dtype=np.float32)
        if not np.isfinite(w32).all():
            raise InvalidTensorError(
                f"tensor {name!r}: contains NaN or Inf (or values beyond float32 range)"
            )
        weight = arr.ndim >= 2
        qp = cfg.qp if weight else cfg.nonweight_qp
        if qp_override is not None:
            qp = qp_override
        dq = cfg.dq and weight
        levels, qp = _quantize(w32, qp, dq, weight, cfg, importance)
        entry = TensorEntry(
            name=name,
            dtype=arr.dtype.name,
            shape=shape,
            kind=KIND_QUANTIZED,
            coder=CODER_NNC,
            qp=int(qp),
            qp_density=cfg.qp_density,
            dq=dq,
        )
    else:
        levels = _lossless_levels(name, arr)
        entry = TensorEntry(
            name=name,
            dtype=arr.dtype.name,
            shape=shape,
            kind=KIND_LOSSLESS,
            coder=CODER_NNC,
        )
    return _Prepared(entry, np.ascontiguousarray(levels, dtype=np.int32).reshape(shape))


def _cabac_settings(e: TensorEntry) -> cabac.CabacSettings:
    """The NNC coding settings the container entry records (profile 1, no parent node)."""
    return _settings_of(
        e.cabac_unary_length, int(e.param_opt), int(e.dq_flag), e.scan_order, int(e.row_skip)
    )


# Cached: a model's tensors share a handful of settings, and validating costs ~6 us a tensor.
@lru_cache(maxsize=256)
def _settings_of(unary: int, popt: int, dq: int, scan: int, rs: int) -> cabac.CabacSettings:
    return cabac.CabacSettings(
        cabac_unary_length=unary, param_opt_flag=popt, dq_flag=dq, scan_order=scan, rowSkipFlag=rs
    )


def _nnc_job(p: _Prepared, cfg: CodecConfig) -> list[bytes]:
    e = p.entry
    lv = p.levels if p.levels.ndim >= 1 else p.levels.reshape(1)
    matrix = lv.ndim >= 2 and lv.shape[0] > 1 and lv.size // lv.shape[0] > 1
    e.scan_order = cfg.scan_order if matrix else 0
    e.param_opt = cfg.param_opt
    e.cabac_unary_length = cfg.cabac_unary_length
    e.dq_flag = e.kind == KIND_QUANTIZED and e.dq
    # DQ + row skip + blocked scan does not round-trip in NNCodec (conformance quirk Q01):
    # row skipping is dropped for that combination.
    e.row_skip = cfg.row_skip and lv.ndim >= 2 and not (e.dq_flag and e.scan_order > 0)
    czl = cabac.default_chan_zero_list(lv)
    settings = _cabac_settings(e)
    if e.scan_order > 0:
        # Entry points let the decoder code block rows in parallel; getting them costs a decode.
        payload, eps = cabac.encode_levels_with_entry_points(lv, settings, ChanZeroList=czl)
        e.entry_points = [int(x) for x in eps]
    else:
        payload = cabac.encode_levels(lv, settings, ChanZeroList=czl)
    payload = bytes(payload)
    e.segments = [(0, len(payload))]
    return [payload]


def _sparse_jobs(p: _Prepared, cfg: CodecConfig) -> list[tuple[_Prepared, int, int]]:
    e = p.entry
    n = p.levels.size
    if n == 0 or not p.levels.any():
        e.coder = CODER_EMPTY
        return []
    e.coder = CODER_SPARSE
    seg = cfg.segment_elements if cfg.segment_elements and n > cfg.segment_elements else n
    e.segment_elements = seg if seg < n else 0
    return [(p, start, min(n, start + seg)) for start in range(0, n, seg)]


def _sparse_code(job: tuple[_Prepared, int, int]) -> tuple[int, bytes]:
    p, start, stop = job
    return sparse.choose_and_encode(p.levels.reshape(-1)[start:stop])


def _tensor_qps(
    qp: Mapping[str, int] | None, arrays: Mapping[str, np.ndarray], cfg: CodecConfig
) -> dict[str, int]:
    """Validate encode's per-tensor QPs: known float tensors, QPs CodecConfig would accept."""
    if qp is None:
        return {}
    if not isinstance(qp, Mapping):
        raise SettingsError(f"qp must be a mapping name -> QP, got {type(qp).__name__}")
    unknown = set(qp) - set(arrays)
    if unknown:
        raise InvalidTensorError(f"qp given for unknown tensors {sorted(unknown)}")
    out = {}
    for name, value in qp.items():
        if arrays[name].dtype.kind != "f":
            raise SettingsError(
                f"qp given for tensor {name!r} of dtype {arrays[name].dtype}, which is coded "
                "losslessly"
            )
        out[name] = check_qp(f"qp[{name!r}]", value, cfg.qp_density)
    return out


def encode(
    tensors: Mapping[str, Any],
    config: CodecConfig | None = None,
    *,
    importance: Mapping[str, Any] | None = None,
    qp: Mapping[str, int] | None = None,
) -> bytes:
    """Encode a name -> tensor mapping (numpy arrays, CPU torch tensors, ...) into one stream.

    Per-tensor settings are keyword mappings keyed by tensor name: importance (weights of the
    rate-aware quantizers' distortion) and qp (the QP of that float tensor, replacing the
    config's choice by rank, qp for ndim >= 2 and nonweight_qp otherwise; a QP too fine for
    the tensor's range is still coarsened). Each tensor's QP is stored in the stream, so
    `decode` needs no settings.
    """
    cfg = CodecConfig() if config is None else config
    if not isinstance(cfg, CodecConfig):
        raise SettingsError(f"config must be a CodecConfig, got {type(cfg).__name__}")
    if not isinstance(tensors, Mapping):
        raise InvalidTensorError(f"tensors must be a mapping name -> array, got {type(tensors)}")
    items = [(name, _as_array(name, value)) for name, value in tensors.items()]
    names = {name for name, _ in items}
    imp = dict(importance or {})
    unknown = set(imp) - names
    if unknown:
        raise InvalidTensorError(f"importance given for unknown tensors {sorted(unknown)}")
    qps = _tensor_qps(qp, dict(items), cfg)
    threads = _threads(cfg.num_threads)
    work = sum(arr.size for _, arr in items)
    prepared = _pmap(
        lambda it: _prepare(it[0], it[1], cfg, imp.get(it[0]), qps.get(it[0])),
        items,
        threads,
        work,
        [arr.size for _, arr in items],
    )
    if cfg.mode == "nnc":
        for p in prepared:
            if p.levels.size == 0:
                p.entry.coder = CODER_EMPTY
        coded = [p for p in prepared if p.entry.coder == CODER_NNC]
        payload_lists = _pmap(
            lambda p: _nnc_job(p, cfg), coded, threads, work, [p.levels.size for p in coded]
        )
        payloads = [b for pl in payload_lists for b in pl]
    else:
        jobs = [j for p in prepared for j in _sparse_jobs(p, cfg)]
        results = _pmap(_sparse_code, jobs, threads, work, [j[2] - j[1] for j in jobs])
        payloads = []
        for (p, _, _), (method, payload) in zip(jobs, results, strict=True):
            p.entry.segments.append((method, len(payload)))
            payloads.append(payload)
    return container.write(cfg.mode, [p.entry for p in prepared], payloads)


# ----------------------------------------------------------------------------- decode


def _decode_nnc(e: TensorEntry, data: bytes) -> np.ndarray:
    payload = data[e.offset : e.offset + e.payload_length]
    shape = e.shape if len(e.shape) >= 1 else (1,)
    eps = np.asarray(e.entry_points, dtype=np.uint64) if e.entry_points else None
    try:
        # settings inside the try: a damaged header's values must surface as CorruptStreamError
        lv = cabac.decode_levels(
            payload, shape, _cabac_settings(e), entry_points=eps, num_threads=1
        )
    except CodecError as exc:
        raise CorruptStreamError(f"tensor {e.name!r}: {exc}") from exc
    except Exception as exc:  # a damaged payload must not surface as IndexError & co.
        raise CorruptStreamError(f"tensor {e.name!r}: NNC payload does not decode ({exc})") from exc
    return np.asarray(lv, dtype=np.int32).reshape(-1)


def _decode_segment(job: tuple[TensorEntry, np.ndarray, bytes, int, int, int]) -> None:
    e, out, data, method, start, stop = job
    try:
        sparse.decode_into(data, method, out[start:stop])
    except CorruptStreamError as exc:
        raise CorruptStreamError(f"tensor {e.name!r}: {exc}") from exc


_INT_RANGES = {
    "bool": (0, 1),
    "int8": (-128, 127),
    "int16": (-32768, 32767),
    "uint8": (0, 255),
    "uint16": (0, 65535),
    "uint32": (0, INT32_MAX),
    "uint64": (0, INT32_MAX),
}


def _finish(e: TensorEntry, flat: np.ndarray) -> np.ndarray:
    lv = flat.reshape(e.shape)
    if e.kind == KIND_QUANTIZED:
        # quant.dequantize's float32 step * float32(level), in one pass.
        step = np.float32(quant.step_size(e.qp, e.qp_density))
        return np.multiply(lv, step, dtype=np.float32).astype(e.dtype, copy=False)
    lo_hi = _INT_RANGES.get(e.dtype)
    if lo_hi is not None and lv.size and (lv.min() < lo_hi[0] or lv.max() > lo_hi[1]):
        raise CorruptStreamError(f"tensor {e.name!r}: decoded values do not fit {e.dtype}")
    return lv.astype(e.dtype)


def decode(
    data: bytes, *, num_threads: int | None = None, max_elements: int = DEFAULT_MAX_ELEMENTS
) -> dict[str, np.ndarray]:
    """Decode a stream made by `encode`; float tensors come back in their original dtype."""
    entries = container.parse(data, max_elements=max_elements)
    data = bytes(data)
    threads = _threads(num_threads)
    flats: dict[str, np.ndarray] = {}
    seg_jobs = []
    nnc_entries = []
    for e in entries:
        if e.coder == CODER_EMPTY:
            flats[e.name] = container.empty_levels(e)
        elif e.coder == CODER_NNC:
            nnc_entries.append(e)
        else:
            out = container.empty_levels(e)
            flats[e.name] = out
            pos = e.offset
            for (method, length), (start, stop) in zip(
                e.segments, container.segment_bounds(e), strict=True
            ):
                seg_jobs.append((e, out, data[pos : pos + length], method, start, stop))
                pos += length
    work = sum(e.size for e in entries)
    _pmap(_decode_segment, seg_jobs, threads, work, [j[5] - j[4] for j in seg_jobs])
    nnc_levels = _pmap(
        lambda e: _decode_nnc(e, data), nnc_entries, threads, work, [e.size for e in nnc_entries]
    )
    for e, lv in zip(nnc_entries, nnc_levels, strict=True):
        flats[e.name] = lv
    return {e.name: _finish(e, flats[e.name]) for e in entries}
