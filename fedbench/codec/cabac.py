"""NNC (ISO/IEC 15938-17) DeepCABAC level coding, bit-exact with NNCodec 2.1.3's deepCABAC.

``encode_levels`` produces exactly the bytes of a fresh ``deepCABAC.Encoder``:
``initCtxModels(cabac_unary_length, param_opt_flag)``, ``encodeLayer`` (or ``encodeLayer2``
when ``baseWeights`` is given, TCA) and ``finish()``. ``decode_levels`` is the matching
decoder; blocked scans with several block rows can be decoded in parallel from entry points
(``encode_levels_with_entry_points``), with results identical to sequential decoding.

Settings are named as in the conformance manifest (``encoder_init``/``encode_args``). The
reference's quirks are reproduced on purpose (see /work/shared/conformance/README.md §7):
estimator flags always present, TCA writes the HDSP bin whenever profile is 1, DQ row skip
advances the state ``layerWidth`` times per skipped segment, and the param_opt pseudo-pass
feeds raw DQ levels, ignores codebook limits and never resets the neighbour.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from fedbench.codec import _kernels as K
from fedbench.codec import tables
from fedbench.codec.errors import (
    CorruptStreamError,
    InvalidTensorError,
    SettingsError,
    TruncatedStreamError,
)
from fedbench.codec.limits import INT32_MAX, LEVEL_MIN, check_int32

__all__ = [
    "CabacSettings",
    "decode_levels",
    "decode_levels_with_entry_points",
    "default_chan_zero_list",
    "encode_levels",
    "encode_levels_with_entry_points",
    "general_kernels",
    "parse_hdsp_mode",
]

_HDSP_NAMES = {"alwaysoff": 99, "tensoroff": 0, "tensoron": 1}
_MAX_ELEMENTS = INT32_MAX
_MAX_GTX = 32
# Upper bound on context-coded bins per stream byte (the cheapest bin costs ~0.0082 bit).
_MAX_BINS_PER_BYTE = 2048  # about twice the true maximum (~972), for safety


# Set by general_kernels(): the kernels then skip their lean common-path variants.
_force_general = False


@contextmanager
def general_kernels() -> Iterator[None]:
    """Within the block, code with the general kernels only (process-wide; for tests/benchmarks).

    The lean encoder/decoder (no DQ, TCA, HDSP or codebook limits) must give exactly the bytes
    and levels of the general loop; this switch lets a test run both on the same input.
    """
    global _force_general
    before = _force_general
    _force_general = True
    try:
        yield
    finally:
        _force_general = before


def parse_hdsp_mode(mode: Any) -> int:
    """An HDSP mode ("AlwaysOff"/"TensorOff"/"TensorOn", "HdspMode.X", 99/0/1, enum) as 99/0/1."""
    if isinstance(mode, (bool, np.bool_)):
        raise SettingsError(
            f"hdspMode must be AlwaysOff/TensorOff/TensorOn or 99/0/1, got {mode!r}"
        )
    if isinstance(mode, (int, np.integer)):
        if int(mode) in (99, 0, 1):
            return int(mode)
        raise SettingsError(
            f"hdspMode integer must be 99 (AlwaysOff), 0 (TensorOff) or 1 (TensorOn), got {mode}"
        )
    name = getattr(mode, "name", None)
    text = name if isinstance(name, str) else str(mode)
    key = text.rsplit(".", 1)[-1].strip().lower()
    if key in _HDSP_NAMES:
        return _HDSP_NAMES[key]
    raise SettingsError(f"unknown hdspMode {mode!r}; expected AlwaysOff, TensorOff or TensorOn")


def _flag(name: str, value: Any) -> int:
    """Validate a 0/1 setting."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)) and int(value) in (0, 1):
        return int(value)
    raise SettingsError(f"{name} must be 0 or 1, got {value!r}")


def _int_setting(name: str, value: Any, lo: int, hi: int) -> int:
    """Validate an integer setting in [lo, hi]."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise SettingsError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if not lo <= v <= hi:
        raise SettingsError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _shape_tuple(shape: Any) -> tuple[int, ...]:
    """Validate a tensor shape."""
    try:
        shp = tuple(int(s) for s in shape)
    except TypeError:
        shp = (int(shape),)
    if any(s < 0 for s in shp):
        raise InvalidTensorError(f"negative dimension in shape {shp}")
    num = math.prod(shp)
    if num == 0:
        raise InvalidTensorError(f"cannot code an empty tensor (shape {shp})")
    if num > _MAX_ELEMENTS:
        raise InvalidTensorError(f"tensor too large: {num} elements (max {_MAX_ELEMENTS})")
    return shp


@dataclass(frozen=True)
class CabacSettings:
    """NNC level-coding settings, named as in the conformance manifest; validated on creation.

    The encoder uses all of them; the decoder ignores param_opt_flag (an encoder choice) and
    rowSkipFlag (read from the stream), so one object serves both. hdspMode is stored as
    99/0/1 (AlwaysOff/TensorOff/TensorOn) and the flags as ints.
    """

    cabac_unary_length: int = 11
    param_opt_flag: int = 0
    dq_flag: int = 0
    scan_order: int = 0
    general_profile_idc: int = 1
    parent_node_id_present_flag: int = 0
    rowSkipFlag: int = 0
    hdspMode: Any = "AlwaysOff"
    codebook_size: int = 0
    codebook_zero_offset: int = 0

    def __post_init__(self) -> None:
        """Validate every setting and normalise it to an int."""
        norm = {
            "cabac_unary_length": _int_setting(
                "cabac_unary_length", self.cabac_unary_length, 1, _MAX_GTX
            ),
            "param_opt_flag": _flag("param_opt_flag", self.param_opt_flag),
            "dq_flag": _flag("dq_flag", self.dq_flag),
            "scan_order": _int_setting("scan_order", self.scan_order, 0, 4),
            "general_profile_idc": _flag("general_profile_idc", self.general_profile_idc),
            "parent_node_id_present_flag": _flag(
                "parent_node_id_present_flag", self.parent_node_id_present_flag
            ),
            "rowSkipFlag": _flag("rowSkipFlag", self.rowSkipFlag),
            "hdspMode": parse_hdsp_mode(self.hdspMode),
            "codebook_size": _int_setting("codebook_size", self.codebook_size, 0, INT32_MAX),
            "codebook_zero_offset": _int_setting(
                "codebook_zero_offset", self.codebook_zero_offset, 0, INT32_MAX
            ),
        }
        cb, off = norm["codebook_size"], norm["codebook_zero_offset"]
        if cb == 0 and off != 0:
            raise SettingsError("codebook_zero_offset must be 0 when codebook_size is 0")
        if cb > 0 and off > cb - 1:
            raise SettingsError(f"codebook_zero_offset {off} must be < codebook_size {cb}")
        for name, value in norm.items():
            object.__setattr__(self, name, value)


_SETTING_NAMES = frozenset(f.name for f in fields(CabacSettings))


def _settings(settings: CabacSettings | None, kw: dict[str, Any], what: str) -> CabacSettings:
    """The CabacSettings of a call: `settings` (default: all defaults) with kw's fields replaced."""
    unknown = set(kw) - _SETTING_NAMES
    if unknown:
        raise SettingsError(f"unknown {what} setting(s): {', '.join(sorted(unknown))}")
    if settings is None:
        return CabacSettings(**kw)
    if not isinstance(settings, CabacSettings):
        raise SettingsError(f"settings must be a CabacSettings, got {type(settings).__name__}")
    return replace(settings, **kw) if kw else settings


def _build_params(
    shape: tuple[int, ...], s: CabacSettings, *, tca: bool, encoder: bool
) -> np.ndarray:
    """Pack the settings (plus geometry) into the kernels' parameter vector."""
    scan = s.scan_order
    num = math.prod(shape)
    width = math.prod(shape[1:]) if len(shape) > 1 else 1
    rows = num // width
    if width == 1 or num == width:
        scan = 0  # as the bindings do
    if scan == 0:
        bw, bh, nbr = width, rows, 1
    else:
        bw = bh = 4 << scan
        nbr = -(-rows // bh)
    prm = np.zeros(K.P_LEN, dtype=np.int64)
    prm[K.P_WIDTH] = width
    prm[K.P_NUM] = num
    prm[K.P_DQ] = s.dq_flag
    prm[K.P_SCAN] = scan
    prm[K.P_PROFILE] = s.general_profile_idc
    # encodeLayer2 passes general_profile_idc in place of parent_node_id_present_flag (quirk)
    prm[K.P_PARENT] = s.general_profile_idc if tca else s.parent_node_id_present_flag
    # the decoder reads the row skip flag from the stream; param_opt only steers the encoder
    prm[K.P_ROWSKIP] = s.rowSkipFlag if encoder else 0
    prm[K.P_CBSIZE] = s.codebook_size
    prm[K.P_CBOFF] = s.codebook_zero_offset
    prm[K.P_HDSP] = s.hdspMode
    prm[K.P_TCA] = 1 if tca else 0
    prm[K.P_NGTX] = s.cabac_unary_length
    prm[K.P_PARAMOPT] = s.param_opt_flag if encoder else 0
    prm[K.P_BW] = bw
    prm[K.P_BH] = bh
    prm[K.P_NBR] = nbr
    prm[K.P_GENERAL] = 1 if _force_general else 0
    return prm


def _int32_array(name: str, a: Any, num: int) -> np.ndarray:
    """A flat int32 copy of an integer array with num elements, all codable levels."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub":
        raise InvalidTensorError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.size != num:
        raise InvalidTensorError(f"{name} has {arr.size} elements, expected {num}")
    check_int32(name, arr, lo=LEVEL_MIN)
    return np.ascontiguousarray(arr, dtype=np.int32).reshape(-1)


def _hist_array(prm: np.ndarray, hdspHist: Any) -> np.ndarray:
    """The HDSP history mask as a flat int8 array (a dummy unless TensorOn)."""
    num = int(prm[K.P_NUM])
    if prm[K.P_HDSP] != 1:
        return np.zeros(1, dtype=np.int8)
    if hdspHist is None:
        raise SettingsError("hdspMode TensorOn needs hdspHist (one int8 per element)")
    h = np.asarray(hdspHist)
    if h.size != num:
        raise SettingsError(f"hdspHist has {h.size} elements, expected {num}")
    return np.ascontiguousarray(h, dtype=np.int8).reshape(-1)


def _skip_perm(prm: np.ndarray) -> np.ndarray:
    """DQ state permutation of one skipped row segment (the reference advances layerWidth times)."""
    return K.dq_skip_perm(int(prm[K.P_WIDTH]))


def default_chan_zero_list(levels: np.ndarray, general_profile_idc: int = 1) -> np.ndarray:
    """ChanZeroList as coder/baseline computes it: all-zero rows for profile 1 and ndim >= 2."""
    lv = np.asarray(levels)
    rows = lv.shape[0] if lv.ndim >= 1 else 1
    if general_profile_idc == 1 and lv.ndim >= 2:
        return (~lv.reshape(rows, -1).any(axis=1)).astype(np.int32)
    return np.zeros(rows, dtype=np.int32)


def encode_levels(
    levels: Any,
    settings: CabacSettings | None = None,
    *,
    ChanZeroList: Any = None,
    hdspHist: Any = None,
    baseWeights: Any = None,
    **kw: Any,
) -> bytes:
    """Encode an integer level tensor exactly as NNCodec's Encoder (init, encodeLayer[2], finish).

    Settings: a CabacSettings and/or its fields as keywords (named as in the conformance
    manifest; keywords override the object's fields). ChanZeroList=None computes it as
    coder/baseline does; baseWeights not None selects TCA (encodeLayer2 semantics).
    """
    s = _settings(settings, kw, "encode")
    return _encode(levels, s, ChanZeroList, hdspHist, baseWeights)[0]


def encode_levels_with_entry_points(
    levels: Any,
    settings: CabacSettings | None = None,
    *,
    ChanZeroList: Any = None,
    hdspHist: Any = None,
    baseWeights: Any = None,
    **kw: Any,
) -> tuple[bytes, np.ndarray]:
    """Encode like encode_levels, plus the entry points (uint64) decodeLayerAndCreateEPs gives.

    Entry point = (bit offset since the previous block row << 11) | (8 value bits << 3) | DQ
    state, one per block row after the first (empty unless a blocked scan has > 1 block row).
    The encoder derives them itself: the decoder's bit offset equals the number of coder
    shifts, and its value register equals the stream bits at that offset minus the coder's low.
    """
    s = _settings(settings, kw, "encode")
    data, tbo, low, dq, nbr = _encode(levels, s, ChanZeroList, hdspHist, baseWeights)
    if nbr <= 1:
        return data, np.zeros(0, dtype=np.uint64)
    buf = np.frombuffer(data + b"\x00\x00\x00", dtype=np.uint8)
    start = tbo[1:] + 1  # first of the 8 stream bits aligned with the value register
    byte = start >> 3
    sh = start & 7
    word = (buf[byte].astype(np.int64) << 8) | buf[byte + 1].astype(np.int64)
    bits8 = (word >> (8 - sh)) & 255
    val = (bits8 - low[1:]) & 255
    delta = np.diff(tbo)
    eps = (
        (delta.astype(np.uint64) << np.uint64(11))
        | (val.astype(np.uint64) << np.uint64(3))
        | (dq[1:].astype(np.uint64) & np.uint64(7))
    )
    return data, eps


def _encode(
    levels: Any, s: CabacSettings, ChanZeroList: Any, hdspHist: Any, baseWeights: Any
) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray, int]:
    """Validate, encode; (bytes, per-block-row shift counts, low bits, DQ states, block rows)."""
    lv = np.asarray(levels)
    shape = _shape_tuple(lv.shape)
    tca = baseWeights is not None
    prm = _build_params(shape, s, tca=tca, encoder=True)
    num = int(prm[K.P_NUM])
    flat = _int32_array("levels", lv, num)
    cb, off = int(prm[K.P_CBSIZE]), int(prm[K.P_CBOFF])
    if cb > 0 and s.general_profile_idc == 1 and not s.dq_flag and flat.size:
        lo, hi = int(flat.min()), int(flat.max())
        if lo < -off or hi > cb - 1 - off:
            raise InvalidTensorError(
                f"levels [{lo}, {hi}] outside the codebook range [{-off}, {cb - 1 - off}]"
            )
    rows = num // int(prm[K.P_WIDTH])
    if ChanZeroList is None:
        chan = default_chan_zero_list(lv.reshape(shape), s.general_profile_idc)
    else:
        chan = np.ascontiguousarray(np.asarray(ChanZeroList), dtype=np.int64).reshape(-1)
        if chan.size != rows:
            raise SettingsError(f"ChanZeroList has {chan.size} entries, expected {rows} (shape[0])")
        if chan.size and (chan.min() < 0 or chan.max() > 1):
            raise SettingsError("ChanZeroList entries must be 0 or 1")
        chan = chan.astype(np.int32)
    base = _int32_array("baseWeights", baseWeights, num) if tca else np.zeros(1, np.int32)
    hist = _hist_array(prm, hdspHist)
    perm = _skip_perm(prm)
    nnz = int(np.count_nonzero(flat))
    cap = 4096 + rows // 4 + num // 8 + 8 * nnz
    nbr = int(prm[K.P_NBR])
    ep_tbo = np.zeros(nbr, dtype=np.int64)
    ep_low = np.zeros(nbr, dtype=np.int64)
    ep_dq = np.zeros(nbr, dtype=np.int64)
    while True:
        out = np.empty(cap, dtype=np.uint8)
        n = K.encode_kernel(flat, base, hist, chan, perm, prm, out, ep_tbo, ep_low, ep_dq)
        if n >= 0:
            return out[:n].tobytes(), ep_tbo, ep_low, ep_dq, nbr
        cap *= 4  # rare (huge levels): retry with a larger buffer


def _as_bytes(data: Any) -> np.ndarray:
    """The stream as a contiguous uint8 array."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise SettingsError(f"stream array must be uint8, got {data.dtype}")
        return np.ascontiguousarray(data).reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(bytes(data), dtype=np.uint8)
    raise SettingsError(f"stream must be bytes or a uint8 array, got {type(data).__name__}")


def _check_finish(buf: np.ndarray, state: np.ndarray, what: str) -> None:
    """Terminating bin, stop pattern and byte count at the end of a stream."""
    if state[4] > 0:
        raise TruncatedStreamError(
            f"{what}: stream truncated (decoder read past the end of the {buf.size} bytes)"
        )
    t, stop_ok, consumed, ovr = K.decode_finish(buf, state)
    if ovr > 0:
        raise TruncatedStreamError(f"{what}: stream truncated before the terminating bin")
    if t != 1:
        raise CorruptStreamError(
            f"{what}: terminating bin not found (corrupt stream or wrong settings/shape)"
        )
    if not stop_ok:
        raise CorruptStreamError(
            f"{what}: no proper stop/alignment pattern at the end of the stream"
        )
    if consumed != buf.size:
        raise CorruptStreamError(f"{what}: {buf.size - consumed} unconsumed trailing bytes")


def _split_entry_points(
    eps: Any, nbr: int, first: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Absolute bit offsets, value bits and DQ states per block row from reference entry points."""
    e = np.asarray(eps)
    if e.dtype.kind not in "iu":
        raise SettingsError(f"entry points must be integers, got dtype {e.dtype}")
    e = e.astype(np.uint64).reshape(-1)
    if e.size != nbr - 1:
        raise CorruptStreamError(
            f"{e.size} entry points given, the layer has {nbr} block rows (needs {nbr - 1})"
        )
    off = np.zeros(nbr, dtype=np.int64)
    val = np.zeros(nbr, dtype=np.int64)
    dq = np.zeros(nbr, dtype=np.int64)
    deltas = (e >> np.uint64(11)).astype(np.int64)
    if deltas.size and (deltas.max() > 2**40):
        raise CorruptStreamError("entry point bit offset out of range")
    off[0] = first
    off[1:] = first + np.cumsum(deltas)
    val[1:] = ((e >> np.uint64(3)) & np.uint64(255)).astype(np.int64)
    dq[1:] = (e & np.uint64(7)).astype(np.int64)
    return off, val, dq


def _decode(
    data: Any,
    shape: Any,
    s: CabacSettings,
    hdspHist: Any,
    baseWeights: Any,
    entry_points: Any,
    num_threads: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a stream; returns (levels, entry points of the stream in the reference format)."""
    buf = _as_bytes(data)
    shp = _shape_tuple(shape)
    tca = baseWeights is not None
    prm = _build_params(shp, s, tca=tca, encoder=False)
    if buf.size < 2:
        raise TruncatedStreamError(f"stream of {buf.size} bytes is too short (at least 2 needed)")
    num = int(prm[K.P_NUM])
    rows = num // int(prm[K.P_WIDTH])
    nbr = int(prm[K.P_NBR])
    n = int(prm[K.P_NGTX])
    nctx = tables.ctx_layout(n)["total"]
    base = _int32_array("baseWeights", baseWeights, num) if tca else np.zeros(1, np.int32)
    hist = _hist_array(prm, hdspHist)
    perm = _skip_perm(prm)
    # One context-coded bin costs at least ~0.0082 bit, so a stream of L bytes holds fewer
    # than about 972*L bins: bound what we allocate by what the stream can possibly hold.
    max_bins = _MAX_BINS_PER_BYTE * (buf.size + 1) + 4096
    chan = np.zeros(rows if rows <= max_bins else 0, dtype=np.int32)
    eco = np.zeros(nctx, dtype=np.int32)
    state = np.zeros(6, dtype=np.int64)
    rs, hflag = K.decode_header(buf, prm, chan, eco, state)
    if state[4] > 0:
        raise TruncatedStreamError(f"stream of {buf.size} bytes ends inside the side information")
    coded = num
    if rs and chan.size:
        coded -= int(np.count_nonzero(chan)) * int(prm[K.P_WIDTH])
    if int(prm[K.P_CBSIZE]) == 1 and int(prm[K.P_PROFILE]) == 1:
        coded = 0  # codebook of size 1: nothing is coded
    if coded > max_bins:
        raise TruncatedStreamError(
            f"stream of {buf.size} bytes is too short to hold {coded} coded levels (wrong shape?)"
        )
    first = int(8 * state[3] - 8 + state[2])
    out = np.zeros(num, dtype=np.int32)
    rec_off = np.zeros(nbr, dtype=np.int64)
    rec_val = np.zeros(nbr, dtype=np.int64)
    rec_dq = np.zeros(nbr, dtype=np.int64)
    rec_off[0] = first
    use_ep = entry_points is not None and nbr > 1
    if entry_points is not None and nbr <= 1 and np.asarray(entry_points).size:
        raise CorruptStreamError(
            f"{np.asarray(entry_points).size} entry points given for a layer with one block row"
        )
    if not use_ep:
        err = K.decode_rows(
            buf,
            prm,
            rs,
            hflag,
            chan,
            eco,
            base,
            hist,
            perm,
            out,
            state,
            0,
            nbr,
            0,
            rec_off,
            rec_val,
            rec_dq,
            rec_off,
            rec_val,
            rec_dq,
        )
        final = state
    else:
        ep_off, ep_val, ep_dq = _split_entry_points(entry_points, nbr, first)
        threads = (os.cpu_count() or 1) if num_threads is None else max(1, int(num_threads))
        threads = min(threads, nbr)
        bounds = np.linspace(0, nbr, threads + 1).astype(np.int64)
        states = [state.copy() for _ in range(threads)]

        def run(i: int) -> int:
            return K.decode_rows(
                buf,
                prm,
                rs,
                hflag,
                chan,
                eco,
                base,
                hist,
                perm,
                out,
                states[i],
                int(bounds[i]),
                int(bounds[i + 1]),
                1,
                ep_off,
                ep_val,
                ep_dq,
                rec_off,
                rec_val,
                rec_dq,
            )

        if threads == 1:
            errs = [run(0)]
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                errs = list(pool.map(run, range(threads)))
        err = max(errs)
        for st in states:
            if st[4] > 0:
                raise TruncatedStreamError(
                    "stream truncated: a block row reads past the end of the data"
                )
        bad = np.nonzero(
            (rec_off[1:] != ep_off[1:]) | (rec_val[1:] != ep_val[1:]) | (rec_dq[1:] != ep_dq[1:])
        )[0]
        if bad.size:
            raise CorruptStreamError(
                f"entry point {int(bad[0])} does not match the stream "
                "(corrupt stream or entry points)"
            )
        final = states[-1]
    if err == K.E_OVERFLOW:
        raise CorruptStreamError("decoded level does not fit in int32 (corrupt stream)")
    _check_finish(buf, final, "decode_levels")
    deltas = np.diff(rec_off).astype(np.uint64)
    eps = (
        (deltas << np.uint64(11))
        | ((rec_val[1:].astype(np.uint64) & np.uint64(255)) << np.uint64(3))
        | (rec_dq[1:].astype(np.uint64) & np.uint64(7))
    )
    return out.reshape(shp), eps.astype(np.uint64)


def decode_levels_with_entry_points(
    data: Any,
    shape: Any,
    settings: CabacSettings | None = None,
    *,
    hdspHist: Any = None,
    baseWeights: Any = None,
    entry_points: Any = None,
    num_threads: int | None = None,
    **kw: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode a stream, plus its entry points (uint64, reference format; empty if none)."""
    s = _settings(settings, kw, "decode")
    return _decode(data, shape, s, hdspHist, baseWeights, entry_points, num_threads)


def decode_levels(
    data: Any,
    shape: Any,
    settings: CabacSettings | None = None,
    *,
    hdspHist: Any = None,
    baseWeights: Any = None,
    entry_points: Any = None,
    num_threads: int | None = None,
    **kw: Any,
) -> np.ndarray:
    """Decode a stream of encode_levels into an int32 array of the given shape.

    Takes the encoder's settings (a CabacSettings and/or its fields as keywords; param_opt_flag
    and rowSkipFlag are ignored, the latter is read from the stream), plus entry_points (decode
    block rows in parallel from them) and num_threads. Raises CorruptStreamError/
    TruncatedStreamError on damaged streams, SettingsError on bad settings.
    """
    s = _settings(settings, kw, "decode")
    return _decode(data, shape, s, hdspHist, baseWeights, entry_points, num_threads)[0]
