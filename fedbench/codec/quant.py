"""Quantization of float tensors to DeepCABAC integer levels (URQ, RDOQ, 8-state dependent).

Mirrors NNCodec 2.1.3's ``Encoder.quantLayer`` (``Quant.cpp``): the same float32/double
arithmetic, the same candidate sets, tie-breaking and scan order, so that ``quantize_dq`` and the
rate-aware uniform path reproduce the reference bit for bit. The rate models use the coder's own
contexts (``tables.ctx_bits``/``ctx_update``); the CABAC coding itself lives in ``cabac.py``.

Layer geometry follows the reference: the tensor is a matrix with ``shape[0]`` rows and
``prod(shape[1:])`` columns; 1-D tensors are a column; blocked scans (scan_order 1..4, blocks of
8/16/32/64) fall back to raster when the width is 1 or there is a single row.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from numba import njit

from fedbench.codec.errors import InvalidTensorError, SettingsError
from fedbench.codec.limits import INT32_MAX, INT32_MIN
from fedbench.codec.tables import DQ_STATE_TRANS, ctx_bits, ctx_init, ctx_update

__all__ = [
    "dequantize",
    "estimate_rd_cost",
    "quantize",
    "quantize_dq",
    "quantize_rdoq",
    "quantize_uniform",
    "safe_qp",
    "scan_positions",
    "step_size",
]

# TCQ::quant's overflow limits: (1 << 31) - 3 and -((1 << 31) - 2) after int32 wrap-around.
_TCQ_MAX = 2147483645
_TCQ_MIN = -2147483646
_MAX_QP_DENSITY = 7  # qp_density is a 3-bit syntax element in NNR
_LN2_OVER_6 = math.log(2.0) / 6.0
_SCALE = 32768.0  # the rate table's scale: bits * 2^15


# ----------------------------------------------------------------------------- validation


def _check_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise SettingsError(f"{name} must be an integer, got {value!r}")
    return int(value)


def _check_qp_density(qp_density: object) -> int:
    d = _check_int("qp_density", qp_density)
    if not 0 <= d <= _MAX_QP_DENSITY:
        raise SettingsError(f"qp_density must be in 0..{_MAX_QP_DENSITY}, got {d}")
    return d


def _check_lambda(lambda_scale: object) -> float:
    if isinstance(lambda_scale, bool) or not isinstance(lambda_scale, Real):
        raise SettingsError(f"lambda_scale must be a real number, got {lambda_scale!r}")
    lam = float(lambda_scale)
    if not math.isfinite(lam) or lam < 0.0:
        raise SettingsError(f"lambda_scale must be finite and >= 0, got {lambda_scale!r}")
    # quantLayer's binding takes lambdaScale as float32 before widening it to double.
    return float(np.float32(lam))


def _check_scan_order(scan_order: object) -> int:
    s = _check_int("scan_order", scan_order)
    if not 0 <= s <= 4:
        raise SettingsError(f"scan_order must be in 0..4 (raster, blocks of 8/16/32/64), got {s}")
    return s


def _check_num_gtx(name: str, value: object) -> int:
    n = _check_int(name, value)
    if not 1 <= n <= 32:
        raise SettingsError(f"{name} must be in 1..32, got {n}")
    return n


def _as_weights(w: object) -> np.ndarray:
    arr = np.asarray(w)
    if arr.dtype.kind != "f":
        raise InvalidTensorError(
            f"weights must be a floating-point array, got dtype {arr.dtype}; "
            "integer levels go to the coder directly"
        )
    with np.errstate(over="ignore"):
        w32 = np.asarray(arr, dtype=np.float32, order="C")
    if not np.isfinite(w32).all():
        raise InvalidTensorError(
            "weights contain NaN or Inf (or values beyond float32 range); clean the tensor first"
        )
    return w32


def _as_importance(importance: object, shape: tuple[int, ...]) -> np.ndarray:
    arr = np.asarray(importance)
    if arr.dtype.kind not in "fiu":
        raise InvalidTensorError(f"importance must be a real array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise InvalidTensorError(
            f"importance shape {arr.shape} differs from the weights' shape {shape}"
        )
    f = np.asarray(arr, dtype=np.float64, order="C")
    if not np.isfinite(f).all() or (f < 0).any():
        raise InvalidTensorError("importance must be finite and non-negative")
    return f


def _geometry(shape: tuple[int, ...], scan_order: int) -> tuple[int, int]:
    """(layer width, effective scan order) as quantLayer computes them."""
    n = int(np.prod(shape, dtype=np.int64))
    width = int(np.prod(shape[1:], dtype=np.int64)) if len(shape) > 1 else 1
    if width == 1 or n == width:
        scan_order = 0
    return width, scan_order


# ----------------------------------------------------------------------------- step size


def step_size(qp: int, qp_density: int = 2) -> float:
    """Quantization step of an integer QP: (2^d + (qp & (2^d-1))) * 2^((qp >> d) - d) as float32."""
    qp = _check_int("qp", qp)
    d = _check_qp_density(qp_density)
    k = 1 << d
    mul = k + (qp & (k - 1))  # Python's & and >> on negatives match C's two's complement
    shift = qp >> d
    e = shift - d
    # float32 must hold both the step and 1/step as normal numbers.
    if e < -126 or e > 126:
        raise SettingsError(f"qp {qp} (qp_density {d}) gives a step outside float32 range")
    return float(np.float32(mul * 2.0**e))


def _float32_step(qp: int, qp_density: int) -> np.float32:
    return np.float32(step_size(qp, qp_density))


def _fits(w32: np.ndarray, step: np.float32) -> bool:
    """Whether every URQ, RDOQ and trellis level at this step lies within the trellis' limits."""
    if not w32.size:
        return True
    scale = np.float32(np.float32(1.0) / step)
    dscale = 1.0 / float(step)  # RDOQ scales in double
    # Rounding is monotone, so the extremes decide; the trellis' bounds are the tighter ones.
    for x in (float(w32.max()), float(w32.min())):
        for r in (float(np.float32(np.float32(x) * scale)), x * dscale):
            if not _TCQ_MIN <= _round_half_away(r) <= _TCQ_MAX:
                return False
    return True


def safe_qp(w: np.ndarray, qp: int, qp_density: int = 2) -> int:
    """`qp` if no level overflows int32, else the coarser QP NNCodec's quantLayer falls back to.

    The answer always fits: where NNCodec's float32 formula lands one step short (its
    quantLayer then fails its own check), the QP is raised until the levels fit.
    """
    w32 = _as_weights(w)
    d = _check_qp_density(qp_density)
    qp = _check_int("qp", qp)
    if _fits(w32, _float32_step(qp, d)):
        return qp
    # Encoder::quantLayer's retry: the smallest step that keeps max|w|/step below 2^31 - 3,
    # evaluated with the same float32 intermediates.
    max_abs = float(np.abs(w32).max())
    k = 1 << d
    min_step = max_abs / float(_TCQ_MAX)
    base_qp = np.float32(math.floor(math.log2(min_step)) * k)
    new_qp = np.float32(
        float(base_qp) + ((min_step * k) / 2.0 ** float(base_qp / np.float32(k)) - k)
    )
    qp = math.ceil(float(new_qp))
    # Each 2^d steps double the step, so this ends within a few rounds.
    while not _fits(w32, _float32_step(qp, d)):
        qp += 1
    return qp


# ----------------------------------------------------------------------------- scan


@njit(cache=True, nogil=True)
def _scan_kernel(num: int, stride: int, scan_order: int) -> np.ndarray:
    pos = np.empty(num, dtype=np.int64)
    if scan_order == 0:
        for i in range(num):
            pos[i] = i
        return pos
    bw = 4 << scan_order  # 8, 16, 32, 64
    bh = bw
    height = num // stride
    bbh = height % bh
    bbw = stride % bw
    x = 0
    y = 0
    for i in range(num):
        pos[i] = y * stride + x
        # Scan::getNextPosition: raster inside a block, blocks left to right, block rows down.
        if x + 1 < stride and (x + 1) % bw != 0:
            x += 1
        elif y + 1 < height and (y + 1) % bh != 0:
            if x + bbw >= stride:
                x -= bbw - 1
            else:
                x -= bw - 1
            y += 1
        elif x + 1 < stride:
            x += 1
            if y + bbh >= height:
                y -= bbh - 1
            else:
                y -= bh - 1
        elif y + 1 < height:
            x = 0
            y += 1
    return pos


def scan_positions(shape: tuple[int, ...], scan_order: int = 0) -> np.ndarray:
    """Flat (C-order) positions of a tensor's elements in the coder's scan order."""
    s = _check_scan_order(scan_order)
    shape = tuple(int(v) for v in shape)
    width, s = _geometry(shape, s)
    return _scan_kernel(int(np.prod(shape, dtype=np.int64)), width, s)


# ----------------------------------------------------------------------------- rate model
#
# The coder's layout is sig 3*state + c (0..23), sign 48 + c, gt 53 + 2i + (v <= 0), Exp-Golomb
# prefix 53 + 4n + j (tables.ctx_layout). The quantizer keeps only the contexts a level without
# TCA/HDSP can touch, packed as sig 0..23, sign 24..26, gt 27.., prefix 27 + 2n..: the trellis
# copies whole context sets every step, so a smaller set is directly faster. All start at set 0.
_SIGN = 24
_GTX = 27


def _num_ctx(n: int) -> int:
    return _GTX + 2 * n + 32


@njit(cache=True, nogil=True, inline="always")
def _nb_class(nb: int) -> int:
    if nb == 0:
        return 0
    return 1 if nb < 0 else 2


@njit(cache=True, nogil=True, inline="always")
def _abs_bits(s01: np.ndarray, a: int, g: int, n: int) -> int:
    """Scaled bits of the gt flags and Exp-Golomb remainder of a magnitude a >= 1."""
    rem = a - 1
    gr = 1 if rem > 0 else 0
    bits = ctx_bits(s01[_GTX + g], gr)
    coded = 1
    while gr == 1 and coded < n:
        rem -= 1
        gr = 1 if rem > 0 else 0
        bits += ctx_bits(s01[_GTX + 2 * coded + g], gr)
        coded += 1
    if gr == 1:
        rem -= 1
        ctx = _GTX + 2 * n
        if rem > 0:
            bits += ctx_bits(s01[ctx], 1)
            base = 1
            ctx += 1
            k = 1
            while rem > base + (1 << k) - 1:
                bits += ctx_bits(s01[ctx], 1)
                base += 1 << k
                ctx += 1
                k += 1
            bits += ctx_bits(s01[ctx], 0)
            bits += k << 15  # bypass suffix bins
        else:
            bits += ctx_bits(s01[ctx], 0)
    return bits


@njit(cache=True, nogil=True, inline="always")
def _weight_bits(s01: np.ndarray, value: int, state: int, nb: int, n: int) -> int:
    """Scaled bits of coding one level (TCABACEncoder::xEncWeight with BinEst::encodeBin)."""
    c = _nb_class(nb)
    if value == 0:
        return ctx_bits(s01[3 * state + c], 0)
    bits = ctx_bits(s01[3 * state + c], 1) + ctx_bits(s01[_SIGN + c], 1 if value < 0 else 0)
    return bits + _abs_bits(s01, abs(value), 0 if value > 0 else 1, n)


@njit(cache=True, nogil=True, inline="always")
def _upd(s0: np.ndarray, s01: np.ndarray, shifts: int, ctx: int, b: int) -> None:
    a, bb = ctx_update(s0[ctx], s01[ctx], shifts, b)
    s0[ctx] = a
    s01[ctx] = bb


@njit(cache=True, nogil=True, inline="always")
def _weight_update(
    s0: np.ndarray, s01: np.ndarray, shifts: int, value: int, state: int, nb: int, n: int
) -> None:
    """Context updates of coding one level (xEncWeight with BinEst::updateBin)."""
    c = _nb_class(nb)
    if value == 0:
        _upd(s0, s01, shifts, 3 * state + c, 0)
        return
    _upd(s0, s01, shifts, 3 * state + c, 1)
    _upd(s0, s01, shifts, _SIGN + c, 1 if value < 0 else 0)
    g = 0 if value > 0 else 1
    rem = abs(value) - 1
    gr = 1 if rem > 0 else 0
    _upd(s0, s01, shifts, _GTX + g, gr)
    coded = 1
    while gr == 1 and coded < n:
        rem -= 1
        gr = 1 if rem > 0 else 0
        _upd(s0, s01, shifts, _GTX + 2 * coded + g, gr)
        coded += 1
    if gr == 1:
        rem -= 1
        ctx = _GTX + 2 * n
        if rem > 0:
            _upd(s0, s01, shifts, ctx, 1)
            base = 1
            ctx += 1
            k = 1
            while rem > base + (1 << k) - 1:
                _upd(s0, s01, shifts, ctx, 1)
                base += 1 << k
                ctx += 1
                k += 1
            _upd(s0, s01, shifts, ctx, 0)
        else:
            _upd(s0, s01, shifts, ctx, 0)


@njit(cache=True, nogil=True)
def _init_ctx(num_ctx: int) -> tuple[np.ndarray, np.ndarray, int]:
    s0_init, s01_init, shifts = ctx_init(0)
    s0 = np.full(num_ctx, s0_init, dtype=np.int16)
    s01 = np.full(num_ctx, s01_init, dtype=np.int16)
    return s0, s01, shifts


# ----------------------------------------------------------------------------- URQ


@njit(cache=True, nogil=True)
def _round_half_away(x: float) -> float:
    # C's round(); numpy/Python round half to even.
    if x >= 0.0:
        return math.floor(x + 0.5) if x < 4503599627370496.0 else x
    return -math.floor(-x + 0.5) if x > -4503599627370496.0 else x


@njit(cache=True, nogil=True)
def _urq_kernel(w: np.ndarray, scale: np.float32, out: np.ndarray) -> bool:
    # float32 product (as the C++ float * float), rounded half away from zero in double:
    # r + copysign(0.5, r) is exact for a float32 r (its 24 bits plus the half fit a double)
    # and the conversion truncates. No early exit and no branch per element, so LLVM
    # vectorises the loop; out-of-range products are clamped (written as garbage-free
    # values) and reported afterwards through the extremes, as quantizeURQ's check
    # (level > 2^31 - 1 or level < -2^31) would.
    lo = 0.0
    hi = 0.0
    for i in range(w.size):
        r = np.float64(np.float32(scale * w[i]))
        lo = min(lo, r)
        hi = max(hi, r)
        c = min(max(r + math.copysign(0.5, r), -2147483648.0), 2147483647.0)
        out[i] = np.int32(c)
    return hi < 2147483647.5 and lo > -2147483648.5


def _overflow_error(qp: int, qp_density: int, w32: np.ndarray) -> SettingsError:
    return SettingsError(
        f"qp {qp} is too fine for this tensor: levels overflow int32; "
        f"use qp >= {safe_qp(w32, qp, qp_density)} (safe_qp gives NNCodec's fallback)"
    )


def quantize_uniform(w: np.ndarray, qp: int, qp_density: int = 2) -> np.ndarray:
    """Uniform reconstruction quantization: round half away from zero of float32(1/step)*w."""
    w32 = _as_weights(w)
    d = _check_qp_density(qp_density)
    qp = _check_int("qp", qp)
    step = _float32_step(qp, d)
    scale = np.float32(np.float32(1.0) / step)
    out = np.empty(w32.shape, dtype=np.int32)
    if not _urq_kernel(w32.reshape(-1), scale, out.reshape(-1)):
        raise _overflow_error(qp, d, w32)
    return out


# ----------------------------------------------------------------------------- RDOQ


@njit(cache=True, nogil=True)
def _rdoq_kernel(
    w: np.ndarray,
    imp: np.ndarray,
    use_imp: bool,
    qscale: float,
    dist_scale: float,
    n: int,
    num_ctx: int,
    reference_rate: bool,
    out: np.ndarray,
) -> int:
    s0, s01, shifts = _init_ctx(num_ctx)
    nb = 0
    for i in range(w.size):
        v = np.float64(w[i])
        r = _round_half_away(v * qscale)
        if r > INT32_MAX or r < INT32_MIN:
            return 0
        sign = -1 if v < 0 else 1
        absw = np.float64(sign) * v * qscale
        fi = imp[i] if use_imp else 1.0
        best = 0
        min_cost = dist_scale * (absw * absw) * fi + _weight_bits(s01, 0, 0, nb, n)
        max_q = np.int64(_round_half_away(absw))
        for q in range(max(1, max_q - 1), max_q + 1):
            diff = absw - q
            # NNCodec costs the candidate as +|q| (sign and gt contexts of a positive level).
            lv = q if reference_rate else sign * q
            cost = dist_scale * (diff * diff) * fi + _weight_bits(s01, lv, 0, nb, n)
            if cost < min_cost:
                best = q
                min_cost = cost
        best *= sign
        out[i] = best
        _weight_update(s0, s01, shifts, best, 0, nb, n)
        nb = best
    return 1


def quantize_rdoq(
    w: np.ndarray,
    qp: int,
    qp_density: int = 2,
    lambda_scale: float = 1.0,
    importance: np.ndarray | None = None,
    cabac_unary_length: int = 11,
    scan_order: int = 0,
    reference_rate: bool = True,
) -> np.ndarray:
    """Rate-distortion optimised uniform quantization, live CABAC context rates (weighted RD)."""
    # Per weight (in scan order) pick among 0, r-1 and r (r = round(|w|/step)) the level with the
    # least F_i * (|w|/step - level)^2 + lambda * bits, lambda = lambda_scale * ln2 / 6 (step^2 per
    # bit), bits from the coder's contexts as they stand, which are then updated with the choice.
    # importance=None (F_i = 1), reference_rate=True and cabac_unary_length=10 is NNCodec's
    # quantLayer(dq_flag=0, lambdaScale > 0) bit for bit; that path costs each candidate as +|level|
    # (positive sign/gt contexts), reference_rate=False costs the signed level instead. F_i is used
    # as given (pass importance / importance.mean() to keep lambda's meaning).
    w32 = _as_weights(w)
    d = _check_qp_density(qp_density)
    qp = _check_int("qp", qp)
    lam = _check_lambda(lambda_scale)
    n = _check_num_gtx("cabac_unary_length", cabac_unary_length)
    s = _check_scan_order(scan_order)
    imp = None if importance is None else _as_importance(importance, w32.shape)
    if lam <= 0.0:
        # lambda 0 means rate is free: plain rounding (quantLayer's lambdaScale <= 0 path).
        return quantize_uniform(w32, qp, d)
    step = _float32_step(qp, d)
    width, s = _geometry(w32.shape, s)
    pos = _scan_kernel(w32.size, width, s)
    w_scan = w32.reshape(-1)[pos]
    imp_scan = np.ones(1) if imp is None else imp.reshape(-1)[pos]
    # Cost = d^2 * 2^15/lambda + bits * 2^15 with lambda = lambda_scale * ln2/6 (in step^2/bit).
    dist_scale = _SCALE / (lam * _LN2_OVER_6)
    out_scan = np.empty(w32.size, dtype=np.int32)
    ok = _rdoq_kernel(
        w_scan,
        imp_scan,
        imp is not None,
        1.0 / float(step),
        dist_scale,
        n,
        _num_ctx(n),
        bool(reference_rate),
        out_scan,
    )
    if not ok:
        raise _overflow_error(qp, d, w32)
    out = np.empty(w32.size, dtype=np.int32)
    out[pos] = out_scan
    return out.reshape(w32.shape)


# ----------------------------------------------------------------------------- DQ (TCQ)


def _tcq_branches() -> np.ndarray:
    """Trellis connections in the order Trellis::Trellis pushes them: [curr, i] = (prev, slot)."""
    conns: list[list[tuple[int, int]]] = [[] for _ in range(8)]
    for prev in range(8):
        quant_id = prev & 1
        slot0 = 3 * quant_id  # PreQuant slot of the parity-0 candidate of this quantizer
        slot1 = 2 - quant_id  # ... and of the parity-1 candidate
        conns[int(DQ_STATE_TRANS[prev, 0])].append((prev, slot0))
        conns[int(DQ_STATE_TRANS[prev, 0])].append((prev, 4))  # slot 4: level zero
        conns[int(DQ_STATE_TRANS[prev, 1])].append((prev, slot1))
    assert all(len(c) == 3 for c in conns)
    return np.array(conns, dtype=np.int64)


_BRANCHES = _tcq_branches()
_HALF_DBL_MAX = 0.5 * np.finfo(np.float64).max
_DBL_MAX = float(np.finfo(np.float64).max)


@njit(cache=True, nogil=True, inline="always")
def _prequant(v: float, qscale: float, dscale: float, dist: np.ndarray, lvl: np.ndarray) -> None:
    # TCQ::PreQuant: slots q & 3 for the four fine-grid indices above max(1, int(org) - 1),
    # slot 4 for zero; the stored level is the transmitted index sign * ((q + 1) >> 1).
    sign = -1 if v < 0 else 1
    org = qscale * v * np.float64(sign)
    mq = max(1, np.int64(np.int32(org)) - 1)
    dist[4] = dscale * (org * org)
    lvl[4] = 0
    for q in range(mq, mq + 4):
        diff = org - np.float64(q)
        dist[q & 3] = dscale * (diff * diff)
        lvl[q & 3] = sign * ((q + 1) >> 1)


@njit(cache=True, nogil=True)
def _tcq_kernel(
    w: np.ndarray,
    qstep: float,
    dscale: float,
    rate_aware: bool,
    n: int,
    num_ctx: int,
    branches: np.ndarray,
    trans: np.ndarray,
    half_max: float,
    dbl_max: float,
    out: np.ndarray,
) -> int:
    num = w.size
    scale = np.float32(1.0 / qstep)
    qscale = 1.0 / qstep
    dec = np.empty((num, 8), dtype=np.uint8)  # prev | slot << 3
    cost = np.empty((2, 8), dtype=np.float64)
    for s in range(8):
        cost[0, s] = half_max
        cost[1, s] = half_max
    cost[0, 0] = 0.0
    dist = np.empty(5, dtype=np.float64)
    lvl = np.empty(5, dtype=np.int64)
    # Rate model (CabacRate): two banks of 8 estimators, swapped every step like Trellis::curr/prev.
    # Contexts are copied from the chosen predecessor; the neighbour value is not (the C++ copies
    # only m_CtxStore), and the update uses the *current* state id: both quirks are kept.
    nc = num_ctx if rate_aware else 1
    s0_init, s01_init, shifts = ctx_init(0)
    s0 = np.full((2, 8, nc), s0_init, dtype=np.int16)  # s0 fits int8, S int16 (as in SBMPCtx)
    s01 = np.full((2, 8, nc), s01_init, dtype=np.int16)
    nbv = np.zeros((2, 8), dtype=np.int64)
    rate = np.zeros((8, 5), dtype=np.float64)
    p = 0
    for i in range(num):
        v = np.float64(w[i])
        r = _round_half_away(np.float64(np.float32(w[i] * scale)))
        if r > _TCQ_MAX or r < _TCQ_MIN:
            return 0
        _prequant(v, qscale, dscale, dist, lvl)
        c = 1 - p
        if rate_aware:
            # Every predecessor has three outgoing branches (two non-zero slots of one sign and
            # zero); their rates share the sig and sign bins.
            for prev in range(8):
                row = s01[p, prev]
                cl = _nb_class(nbv[p, prev])
                sig_s = row[3 * prev + cl]
                rate[prev, 4] = np.float64(ctx_bits(sig_s, 0))
                q0 = 3 * (prev & 1)
                q1 = 2 - (prev & 1)
                ka = lvl[q0]
                head = ctx_bits(sig_s, 1) + ctx_bits(row[_SIGN + cl], 1 if ka < 0 else 0)
                g = 0 if ka > 0 else 1
                rate[prev, q0] = np.float64(head + _abs_bits(row, abs(ka), g, n))
                rate[prev, q1] = np.float64(head + _abs_bits(row, abs(lvl[q1]), g, n))
        for curr in range(8):
            min_cost = dbl_max
            best_prev = 0
            best_slot = 0
            for b in range(3):
                prev = branches[curr, b, 0]
                slot = branches[curr, b, 1]
                cst = cost[p, prev] + dist[slot]
                if rate_aware:
                    cst += rate[prev, slot]
                if cst < min_cost:
                    min_cost = cst
                    best_prev = prev
                    best_slot = slot
            dec[i, curr] = best_prev | (best_slot << 3)
            cost[c, curr] = min_cost
            if rate_aware:
                for j in range(nc):
                    s0[c, curr, j] = s0[p, best_prev, j]
                    s01[c, curr, j] = s01[p, best_prev, j]
                level = lvl[best_slot]
                _weight_update(s0[c, curr], s01[c, curr], shifts, level, curr, nbv[c, curr], n)
                nbv[c, curr] = level
        p = c
    best = 0
    min_cost = cost[p, 0]
    for s in range(1, 8):
        if cost[p, s] < min_cost:
            min_cost = cost[p, s]
            best = s
    state = best
    for i in range(num - 1, -1, -1):
        packed = dec[i, state]
        prev = packed & 7
        slot = packed >> 3
        if slot == 4:
            out[i] = 0
        else:
            _prequant(np.float64(w[i]), qscale, dscale, dist, lvl)
            k = lvl[slot]
            level = k << 1
            level += (prev & 1) if level < 0 else -(prev & 1)
            out[i] = level
        state = prev
    return 1


def quantize_dq(
    w: np.ndarray,
    qp: int,
    qp_density: int = 2,
    lambda_scale: float = 0.0,
    max_num_no_rem: int = 10,
    scan_order: int = 0,
    general_profile_idc: int = 1,
) -> np.ndarray:
    """8-state trellis-coded dependent quantization, bit-exact with quantLayer(dq_flag=1)."""
    w32 = _as_weights(w)
    d = _check_qp_density(qp_density)
    qp = _check_int("qp", qp)
    lam = _check_lambda(lambda_scale)
    n = _check_num_gtx("max_num_no_rem", max_num_no_rem)
    s = _check_scan_order(scan_order)
    # general_profile_idc reaches only the rate model's codebook checks, which are off here.
    if _check_int("general_profile_idc", general_profile_idc) not in (0, 1):
        raise SettingsError(f"general_profile_idc must be 0 or 1, got {general_profile_idc}")
    step = _float32_step(qp, d)
    width, s = _geometry(w32.shape, s)
    pos = _scan_kernel(w32.size, width, s)
    w_scan = w32.reshape(-1)[pos]
    if lam > 0.0:
        # quantizeTCQ: lambdaFactor = lambdaScale * 4 * (ln2 / 6) * 0.7, same evaluation order.
        lambda_factor = lam * 4.0 * (math.log(2.0) / 6.0) * 0.7
        dscale = _SCALE / lambda_factor
        rate_aware = lambda_factor > 0.0
    else:
        dscale, rate_aware = 1.0, False
    out_scan = np.empty(w32.size, dtype=np.int32)
    ok = _tcq_kernel(
        w_scan,
        float(step),
        dscale,
        rate_aware,
        n,
        _num_ctx(n),
        _BRANCHES,
        DQ_STATE_TRANS.astype(np.int64),
        _HALF_DBL_MAX,
        _DBL_MAX,
        out_scan,
    )
    if not ok:
        raise _overflow_error(qp, d, w32)
    out = np.empty(w32.size, dtype=np.int32)
    out[pos] = out_scan
    return out.reshape(w32.shape)


# ----------------------------------------------------------------------------- dispatch


def quantize(
    w: np.ndarray,
    qp: int,
    qp_density: int = 2,
    dq: bool = False,
    lambda_scale: float = 0.0,
    importance: np.ndarray | None = None,
    scan_order: int = 0,
    cabac_unary_length: int = 11,
    max_num_no_rem: int = 10,
) -> np.ndarray:
    """Quantize a float tensor: DQ trellis if dq, RDOQ if lambda_scale > 0, else URQ."""
    if dq:
        if importance is not None:
            raise SettingsError("importance weighting is not supported with dq=True")
        return quantize_dq(
            w,
            qp,
            qp_density,
            lambda_scale=lambda_scale,
            max_num_no_rem=max_num_no_rem,
            scan_order=scan_order,
        )
    if _check_lambda(lambda_scale) > 0.0:
        return quantize_rdoq(
            w,
            qp,
            qp_density,
            lambda_scale=lambda_scale,
            importance=importance,
            cabac_unary_length=cabac_unary_length,
            scan_order=scan_order,
        )
    return quantize_uniform(w, qp, qp_density)


def dequantize(levels: np.ndarray, qp: int, qp_density: int = 2) -> np.ndarray:
    """Reconstruct float32 weights step * level (DQ levels are already on the fine grid)."""
    arr = np.asarray(levels)
    if arr.dtype.kind not in "iu":
        raise InvalidTensorError(f"levels must be an integer array, got dtype {arr.dtype}")
    step = _float32_step(_check_int("qp", qp), _check_qp_density(qp_density))
    return (step * arr.astype(np.float32)).astype(np.float32)


# ----------------------------------------------------------------------------- cost estimate


@njit(cache=True, nogil=True)
def _rd_cost_kernel(
    w: np.ndarray,
    lv: np.ndarray,
    imp: np.ndarray,
    use_imp: bool,
    qscale: float,
    dq: bool,
    n: int,
    num_ctx: int,
    trans: np.ndarray,
    block_len: int,
) -> tuple[float, float]:
    s0, s01, shifts = _init_ctx(num_ctx)
    s0_init, s01_init, _ = ctx_init(0)
    nb = 0
    state = 0
    dist = 0.0
    bits = 0
    for i in range(w.size):
        level = np.int64(lv[i])
        diff = np.float64(w[i]) * qscale - np.float64(level)
        dist += diff * diff * (imp[i] if use_imp else 1.0)
        value = level
        if dq and value != 0:
            value += -(state & 1) if value < 0 else (state & 1)
            value >>= 1
        bits += _weight_bits(s01, value, state, nb, n)
        _weight_update(s0, s01, shifts, value, state, nb, n)
        nb = value
        if dq:
            state = trans[state, value & 1]
        if block_len > 0 and (i + 1) % block_len == 0 and i + 1 < w.size:
            # The coder resets contexts and neighbour (not the DQ state) after each block row.
            s0[:] = s0_init
            s01[:] = s01_init
            nb = 0
    return dist, bits / 32768.0


def estimate_rd_cost(
    w: np.ndarray,
    levels: np.ndarray,
    qp: int,
    qp_density: int = 2,
    lambda_scale: float = 1.0,
    importance: np.ndarray | None = None,
    dq: bool = False,
    cabac_unary_length: int = 11,
    scan_order: int = 0,
) -> tuple[float, float, float]:
    """(J, distortion, bits): J = sum F_i (w_i/step - L_i)^2 + lambda*bits (adaptive contexts)."""
    w32 = _as_weights(w)
    lv = np.asarray(levels)
    if lv.dtype.kind not in "iu" or lv.shape != w32.shape:
        raise InvalidTensorError("levels must be an integer array of the weights' shape")
    d = _check_qp_density(qp_density)
    lam = _check_lambda(lambda_scale)
    n = _check_num_gtx("cabac_unary_length", cabac_unary_length)
    s = _check_scan_order(scan_order)
    imp = None if importance is None else _as_importance(importance, w32.shape)
    step = _float32_step(_check_int("qp", qp), d)
    width, s = _geometry(w32.shape, s)
    pos = _scan_kernel(w32.size, width, s)
    dist, bits = _rd_cost_kernel(
        w32.reshape(-1)[pos],
        lv.reshape(-1)[pos].astype(np.int64),
        np.ones(1) if imp is None else imp.reshape(-1)[pos],
        imp is not None,
        1.0 / float(step),
        bool(dq),
        n,
        _num_ctx(n),
        DQ_STATE_TRANS.astype(np.int64),
        width * (4 << s) if s else 0,
    )
    lam_eff = lam * _LN2_OVER_6 * (4.0 * 0.7 if dq else 1.0)
    return dist + lam_eff * bits, dist, bits
