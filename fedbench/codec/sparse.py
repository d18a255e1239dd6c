"""Sparse-update coding mode: a binary range coder with counting estimators, two binarizations.

The NNC estimator cannot represent very small probabilities, so a 99.95 %-zero update costs
about twice the zeroth-order entropy of its levels. This mode codes one int32 level tensor
(flattened, C order) with an LZMA-style binary range coder (32-bit range, 16-bit probabilities)
whose contexts adapt as Krichevsky-Trofimov counters (rate 1/(n+2), later a fixed window), so
tiny probabilities are learned quickly and represented precisely.

Two binarizations, chosen per tensor by the container and signalled there:

* ``METHOD_RUNS``: number of non-zeros M, then per non-zero the run of zeros before it
  (adaptive Exp-Golomb whose start order follows from N and M, context-coded prefix and top
  suffix bits), then its sign and magnitude. Cost is close to log2 C(N, M) plus the values.
* ``METHOD_DENSE``: per element a significance flag with neighbour contexts, then sign and
  magnitude (unary greater-than flags with contexts, Exp-Golomb remainder).

Each payload is independent, so segments and tensors can be coded on several threads; every
kernel is ``nogil``. Decoders are bounds-checked and report damage through a status code.

Payload syntax (what a decoder must reproduce):

* Coder: low 33 bits / range 32 bits, bound = (range >> 16) * P0 with P0 the top 16 bits of
  a 31-bit state clamped to 1..65535; renormalise while range < 2^24 (LZMA carry handling).
  State update p += (target - p) * (65536 // (n + 2)) >> 16 with n the context's count, capped
  at 1022. Bypass bins halve the range. The always-zero first byte is not stored; the final
  value is chosen with trailing zero bytes, up to 4 of which are dropped (read back as 0).
* Magnitude a >= 1: 14 greater-than flags (context 12 + 3 i + cls), then a - 15 as order-0
  Exp-Golomb, prefix bins context coded (54 + min(k, 39)), suffix bypass.
* Runs: M (non-zeros) as bypass order-0 Exp-Golomb; k0 = max(floor(log2(mean run + 1)) - 1,
  0) with mean run = (N - M) // M; per non-zero the zero run before it as Exp-Golomb of order
  k0 (prefix bin j: context 94 + min(j, 47); the top 3 suffix bits through a binary context
  tree 142 + 8 min(j, 47) + node, the rest bypass), the sign (context 9 + previous sign class:
  0 none, 1 positive, 2 negative), the magnitude with cls 0.
* Dense: per element a significance bin (context 3 c1 + c2, the magnitude classes 0 / 1 / >1
  of the previous two levels), then for non-zeros the sign (context 9 + class of the previous
  level's sign) and the magnitude with cls = c1.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fedbench.codec.errors import CorruptStreamError
from fedbench.codec.limits import INT32_MIN

METHOD_RUNS = 1
METHOD_DENSE = 2

# Probability state: P(bit == 0) scaled by 2^31; the coder uses its top 16 bits.
_PSHIFT = 31
_PONE = 1 << _PSHIFT
_PHALF = 1 << (_PSHIFT - 1)
# Counting window: rate 1/(n+2) until n reaches _CMAX, then fixed (about 1/1024).
_CMAX = 1022
_TOP = 1 << 24
_MASK32 = 0xFFFFFFFF

# Greater-than flags before the Exp-Golomb remainder of a magnitude.
_NGT = 14
# Context layout (shared by both methods; unused entries cost nothing).
_C_SIG = 0  # 9 significance contexts (dense)
_C_SIGN = 9  # 3 sign contexts
_C_GT = 12  # _NGT * 3 greater-than contexts
_C_REMP = _C_GT + _NGT * 3  # 40 remainder prefix contexts
_C_RUNP = _C_REMP + 40  # 48 run prefix contexts
_C_RUNS = _C_RUNP + 48  # 48 * 8 run suffix tree contexts
_NCTX = _C_RUNS + 48 * 8

# Decoder status codes.
OK = 0
ERR_RUN = 1  # a run or count exceeds the tensor
ERR_VALUE = 2  # a magnitude outside the int32 range or an overlong prefix
ERR_OVERREAD = 3  # the decoder read far past the payload

# Largest magnitude of an int32 level.
_MAXABS = -INT32_MIN

_RATE = np.array([(1 << 16) // (n + 2) for n in range(_CMAX + 1)], dtype=np.int64)


@njit(cache=True, nogil=True, inline="always")
def _init_ctx(p, cnt):
    for i in range(p.shape[0]):
        p[i] = _PHALF
        cnt[i] = 0


@njit(cache=True, nogil=True, inline="always")
def _update(p, cnt, rate, c, bit):
    n = cnt[c]
    r = rate[n]
    if bit == 0:
        p[c] += ((_PONE - p[c]) * r) >> 16
    else:
        p[c] -= (p[c] * r) >> 16
    if n < _CMAX:
        cnt[c] = n + 1


@njit(cache=True, nogil=True, inline="always")
def _p16(p, c):
    q = p[c] >> (_PSHIFT - 16)
    if q < 1:
        q = 1
    elif q > 65535:
        q = 65535
    return q


# ---------------------------------------------------------------- encoder
# The coder state (low, rng, cache, csz, pos) travels as plain integers through inlined
# functions so that LLVM keeps it in registers. The output buffer never grows inside them:
# the kernels check the room once per coded value (_room) and grow the buffer there.

# Bytes one coded value can need at most: < 100 context bins of <= 16.01 bits plus < 80
# bypass bins, with margin.
_ROOM = 512


@njit(cache=True, nogil=True)
def _grow(buf, need):
    n = buf.shape[0] * 2
    while n < need:
        n *= 2
    nb = np.empty(n, dtype=np.uint8)
    nb[: buf.shape[0]] = buf
    return nb


@njit(cache=True, nogil=True, inline="always")
def _room(buf, pos, csz):
    if pos + csz + _ROOM > buf.shape[0]:
        return _grow(buf, pos + csz + _ROOM)
    return buf


@njit(cache=True, nogil=True, inline="always")
def _shift_low(low, cache, csz, pos, buf):
    if low < 0xFF000000 or low > _MASK32:
        carry = low >> 32
        temp = cache
        while True:
            buf[pos] = (temp + carry) & 0xFF
            pos += 1
            temp = 0xFF
            csz -= 1
            if csz == 0:
                break
        cache = (low >> 24) & 0xFF
    csz += 1
    low = (low & 0x00FFFFFF) << 8
    return low, cache, csz, pos


@njit(cache=True, nogil=True, inline="always")
def _enc_bit(low, rng, cache, csz, pos, buf, p, cnt, rate, c, bit):
    bound = (rng >> 16) * _p16(p, c)
    if bit == 0:
        rng = bound
    else:
        low += bound
        rng -= bound
    _update(p, cnt, rate, c, bit)
    while rng < _TOP:
        rng = (rng << 8) & _MASK32
        low, cache, csz, pos = _shift_low(low, cache, csz, pos, buf)
    return low, rng, cache, csz, pos


@njit(cache=True, nogil=True, inline="always")
def _enc_bypass(low, rng, cache, csz, pos, buf, bit):
    rng >>= 1
    if bit:
        low += rng
    while rng < _TOP:
        rng = (rng << 8) & _MASK32
        low, cache, csz, pos = _shift_low(low, cache, csz, pos, buf)
    return low, rng, cache, csz, pos


@njit(cache=True, nogil=True)
def _enc_bits(low, rng, cache, csz, pos, buf, value, nbits):
    for i in range(nbits - 1, -1, -1):
        low, rng, cache, csz, pos = _enc_bypass(low, rng, cache, csz, pos, buf, (value >> i) & 1)
    return low, rng, cache, csz, pos


@njit(cache=True, nogil=True)
def _enc_eg_bypass(low, rng, cache, csz, pos, buf, value):
    # Order-0 Exp-Golomb in bypass bins, for side values (counts).
    k = 0
    while value >= (1 << k):
        value -= 1 << k
        low, rng, cache, csz, pos = _enc_bypass(low, rng, cache, csz, pos, buf, 1)
        k += 1
    low, rng, cache, csz, pos = _enc_bypass(low, rng, cache, csz, pos, buf, 0)
    return _enc_bits(low, rng, cache, csz, pos, buf, value, k)


@njit(cache=True, nogil=True)
def _enc_finish(low, rng, cache, csz, pos, buf):
    # Pick the value in [low, low + range) with the most trailing zero bits, so that the
    # decoder's zero padding stands in for them and they need not be written.
    hi = low + rng - 1
    for nb in range(1, 5):
        m = (1 << (32 - 8 * nb)) - 1
        v = (low + m) & ~m
        if v <= hi:
            low = v
            break
    for _ in range(5):
        low, cache, csz, pos = _shift_low(low, cache, csz, pos, buf)
    # The first byte is always 0 (the initial cache) and trailing zeros are implied by the
    # decoder's padding; at most 4 are dropped so that over-reads stay detectable.
    end = pos
    t = 0
    while t < 4 and end > 1 and buf[end - 1] == 0:
        end -= 1
        t += 1
    return buf[1:end]


@njit(cache=True, nogil=True, inline="always")
def _enc_magnitude(low, rng, cache, csz, pos, buf, p, cnt, rate, a, cls):
    # a >= 1: greater-than flags, then an Exp-Golomb remainder with context-coded prefix.
    for i in range(_NGT):
        g = 1 if a > i + 1 else 0
        low, rng, cache, csz, pos = _enc_bit(
            low, rng, cache, csz, pos, buf, p, cnt, rate, _C_GT + 3 * i + cls, g
        )
        if g == 0:
            return low, rng, cache, csz, pos
    r = a - _NGT - 1
    k = 0
    while r >= (1 << k):
        r -= 1 << k
        low, rng, cache, csz, pos = _enc_bit(
            low, rng, cache, csz, pos, buf, p, cnt, rate, _C_REMP + min(k, 39), 1
        )
        k += 1
    low, rng, cache, csz, pos = _enc_bit(
        low, rng, cache, csz, pos, buf, p, cnt, rate, _C_REMP + min(k, 39), 0
    )
    return _enc_bits(low, rng, cache, csz, pos, buf, r, k)


@njit(cache=True, nogil=True)
def _new_contexts():
    p = np.empty(_NCTX, dtype=np.int64)
    cnt = np.empty(_NCTX, dtype=np.int64)
    _init_ctx(p, cnt)
    return p, cnt


@njit(cache=True, nogil=True)
def _run_k0(n, m):
    # Start order of the run code: about log2 of the mean run, less one, so that the adaptive
    # prefix contexts only have to learn one or two bins.
    mean = (n - m) // m
    k = 0
    while (2 << k) <= mean + 1:
        k += 1
    return max(k - 1, 0)


@njit(cache=True, nogil=True)
def encode_runs_kernel(levels, rate):
    """Code a flat int32 level array with the run-length binarization; returns bytes."""
    n = levels.shape[0]
    m = 0
    for i in range(n):
        if levels[i] != 0:
            m += 1
    # Positions first, in a tight loop of their own: the coding loop then visits only them.
    where = np.empty(m, dtype=np.int64)
    t = 0
    for i in range(n):
        if levels[i] != 0:
            where[t] = i
            t += 1
    p, cnt = _new_contexts()
    buf = np.empty(m * 4 + 2 * _ROOM, dtype=np.uint8)
    low = np.int64(0)
    rng = np.int64(_MASK32)
    cache = np.int64(0)
    csz = np.int64(1)
    pos = np.int64(0)
    low, rng, cache, csz, pos = _enc_eg_bypass(low, rng, cache, csz, pos, buf, m)
    if m > 0:
        k0 = _run_k0(n, m)
        last = -1
        prev_sign = 0
        for t in range(m):
            i = where[t]
            v = levels[i]
            buf = _room(buf, pos, csz)
            run = i - last - 1
            last = i
            # Exp-Golomb of order k0 with adaptive prefix; top suffix bits via a context tree.
            k = k0
            j = 0
            while run >= (1 << k):
                run -= 1 << k
                low, rng, cache, csz, pos = _enc_bit(
                    low, rng, cache, csz, pos, buf, p, cnt, rate, _C_RUNP + min(j, 47), 1
                )
                k += 1
                j += 1
            low, rng, cache, csz, pos = _enc_bit(
                low, rng, cache, csz, pos, buf, p, cnt, rate, _C_RUNP + min(j, 47), 0
            )
            node = 1
            base = _C_RUNS + 8 * min(j, 47)
            for b in range(k - 1, -1, -1):
                bit = (run >> b) & 1
                if node < 8:
                    low, rng, cache, csz, pos = _enc_bit(
                        low, rng, cache, csz, pos, buf, p, cnt, rate, base + node, bit
                    )
                    node = 2 * node + bit
                else:
                    low, rng, cache, csz, pos = _enc_bypass(low, rng, cache, csz, pos, buf, bit)
            a = np.int64(v)
            neg = 1 if a < 0 else 0
            if neg:
                a = -a
            low, rng, cache, csz, pos = _enc_bit(
                low, rng, cache, csz, pos, buf, p, cnt, rate, _C_SIGN + prev_sign, neg
            )
            prev_sign = 1 + neg
            low, rng, cache, csz, pos = _enc_magnitude(
                low, rng, cache, csz, pos, buf, p, cnt, rate, a, 0
            )
    buf = _room(buf, pos, csz)
    return _enc_finish(low, rng, cache, csz, pos, buf)


@njit(cache=True, nogil=True, inline="always")
def _cls(v):
    if v == 0:
        return 0
    if v == 1 or v == -1:
        return 1
    return 2


@njit(cache=True, nogil=True)
def encode_dense_kernel(levels, rate):
    """Code a flat int32 level array with per-element significance flags; returns bytes."""
    n = levels.shape[0]
    p, cnt = _new_contexts()
    buf = np.empty(n // 2 + 2 * _ROOM, dtype=np.uint8)
    low = np.int64(0)
    rng = np.int64(_MASK32)
    cache = np.int64(0)
    csz = np.int64(1)
    pos = np.int64(0)
    c1 = 0
    c2 = 0
    s1 = 0
    for i in range(n):
        buf = _room(buf, pos, csz)
        v = levels[i]
        sig = 1 if v != 0 else 0
        low, rng, cache, csz, pos = _enc_bit(
            low, rng, cache, csz, pos, buf, p, cnt, rate, _C_SIG + 3 * c1 + c2, sig
        )
        if sig:
            a = np.int64(v)
            neg = 1 if a < 0 else 0
            if neg:
                a = -a
            low, rng, cache, csz, pos = _enc_bit(
                low, rng, cache, csz, pos, buf, p, cnt, rate, _C_SIGN + s1, neg
            )
            low, rng, cache, csz, pos = _enc_magnitude(
                low, rng, cache, csz, pos, buf, p, cnt, rate, a, c1
            )
            s1 = 1 + neg
        else:
            s1 = 0
        c2 = c1
        c1 = _cls(v)
    buf = _room(buf, pos, csz)
    return _enc_finish(low, rng, cache, csz, pos, buf)


# ---------------------------------------------------------------- decoder
# State (rng, code, pos) as plain integers; bytes past the end of the payload read as 0.


@njit(cache=True, nogil=True, inline="always")
def _byte(data, pos):
    if pos < data.shape[0]:
        return np.int64(data[pos])
    return np.int64(0)


@njit(cache=True, nogil=True, inline="always")
def _dec_bit(rng, code, pos, data, p, cnt, rate, c):
    bound = (rng >> 16) * _p16(p, c)
    if code < bound:
        rng = bound
        bit = 0
    else:
        code -= bound
        rng -= bound
        bit = 1
    _update(p, cnt, rate, c, bit)
    while rng < _TOP:
        rng = (rng << 8) & _MASK32
        code = ((code << 8) & _MASK32) | _byte(data, pos)
        pos += 1
    return bit, rng, code, pos


@njit(cache=True, nogil=True, inline="always")
def _dec_bypass(rng, code, pos, data):
    rng >>= 1
    if code >= rng:
        code -= rng
        bit = 1
    else:
        bit = 0
    while rng < _TOP:
        rng = (rng << 8) & _MASK32
        code = ((code << 8) & _MASK32) | _byte(data, pos)
        pos += 1
    return bit, rng, code, pos


@njit(cache=True, nogil=True)
def _dec_bits(rng, code, pos, data, nbits):
    v = np.int64(0)
    for _ in range(nbits):
        bit, rng, code, pos = _dec_bypass(rng, code, pos, data)
        v = (v << 1) | bit
    return v, rng, code, pos


@njit(cache=True, nogil=True)
def _dec_eg_bypass(rng, code, pos, data, maxk):
    # Returns -1 for a prefix longer than maxk.
    k = 0
    base = np.int64(0)
    while True:
        bit, rng, code, pos = _dec_bypass(rng, code, pos, data)
        if bit == 0:
            break
        base += np.int64(1) << k
        k += 1
        if k > maxk:
            return np.int64(-1), rng, code, pos
    v, rng, code, pos = _dec_bits(rng, code, pos, data, k)
    return base + v, rng, code, pos


@njit(cache=True, nogil=True, inline="always")
def _dec_magnitude(rng, code, pos, data, p, cnt, rate, cls):
    # Returns the magnitude (>= 1), or -1 on a value outside the int32 range.
    a = np.int64(1)
    for i in range(_NGT):
        bit, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, _C_GT + 3 * i + cls)
        if bit == 0:
            return a, rng, code, pos
        a += 1
    k = 0
    base = np.int64(0)
    while True:
        bit, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, _C_REMP + min(k, 39))
        if bit == 0:
            break
        base += np.int64(1) << k
        k += 1
        if k > 31:
            return np.int64(-1), rng, code, pos
    v, rng, code, pos = _dec_bits(rng, code, pos, data, k)
    a += base + v
    if a > _MAXABS:
        return np.int64(-1), rng, code, pos
    return a, rng, code, pos


@njit(cache=True, nogil=True, inline="always")
def _overread(pos, data):
    # A valid payload lets the decoder read at most 4 bytes past its end (the zero padding
    # that the encoder trimmed); more means the stream is damaged.
    return pos > data.shape[0] + 4


@njit(cache=True, nogil=True, inline="always")
def _dec_start(data):
    # The encoder's first byte is always 0 and is not stored: read four, not five.
    code = np.int64(0)
    for i in range(4):
        code = (code << 8) | _byte(data, i)
    return np.int64(_MASK32), code, np.int64(4)


@njit(cache=True, nogil=True)
def decode_runs_kernel(data, out, rate):
    """Decode a run-length payload into the zeroed flat int32 array out; returns a status."""
    n = out.shape[0]
    p, cnt = _new_contexts()
    rng, code, pos = _dec_start(data)
    m, rng, code, pos = _dec_eg_bypass(rng, code, pos, data, 40)
    if m < 0 or m > n:
        return ERR_RUN
    if m == 0:
        return ERR_OVERREAD if _overread(pos, data) else OK
    k0 = _run_k0(n, m)
    at = np.int64(-1)
    prev_sign = 0
    for _ in range(m):
        k = k0
        j = 0
        base = np.int64(0)
        while True:
            bit, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, _C_RUNP + min(j, 47))
            if bit == 0:
                break
            base += np.int64(1) << k
            k += 1
            j += 1
            if k > 40:
                return ERR_RUN
        node = 1
        cbase = _C_RUNS + 8 * min(j, 47)
        run = np.int64(0)
        for _b in range(k):
            if node < 8:
                bit, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, cbase + node)
                node = 2 * node + bit
            else:
                bit, rng, code, pos = _dec_bypass(rng, code, pos, data)
            run = (run << 1) | bit
        at += base + run + 1
        if at >= n:
            return ERR_RUN
        neg, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, _C_SIGN + prev_sign)
        prev_sign = 1 + neg
        a, rng, code, pos = _dec_magnitude(rng, code, pos, data, p, cnt, rate, 0)
        if a < 0 or (neg == 0 and a == _MAXABS):
            return ERR_VALUE
        out[at] = -a if neg else a
        if _overread(pos, data):
            return ERR_OVERREAD
    return ERR_OVERREAD if _overread(pos, data) else OK


@njit(cache=True, nogil=True)
def decode_dense_kernel(data, out, rate):
    """Decode a per-element payload into the flat int32 array out; returns a status."""
    n = out.shape[0]
    p, cnt = _new_contexts()
    rng, code, pos = _dec_start(data)
    c1 = 0
    c2 = 0
    s1 = 0
    for i in range(n):
        sig, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, _C_SIG + 3 * c1 + c2)
        if sig:
            neg, rng, code, pos = _dec_bit(rng, code, pos, data, p, cnt, rate, _C_SIGN + s1)
            a, rng, code, pos = _dec_magnitude(rng, code, pos, data, p, cnt, rate, c1)
            if a < 0 or (neg == 0 and a == _MAXABS):
                return ERR_VALUE
            v = -a if neg else a
            out[i] = v
            s1 = 1 + neg
            c1n = 1 if a == 1 else 2
        else:
            out[i] = 0
            s1 = 0
            c1n = 0
        c2 = c1
        c1 = c1n
        if (i & 4095) == 0 and _overread(pos, data):
            return ERR_OVERREAD
    return ERR_OVERREAD if _overread(pos, data) else OK


# ---------------------------------------------------------------- Python API

_ERRORS = {
    ERR_RUN: "a zero run or non-zero count runs past the end of the tensor",
    ERR_VALUE: "a magnitude is outside the int32 range",
    ERR_OVERREAD: "the payload ends before its levels do (read past the end)",
}

# Minimum fraction of non-zero levels at which the dense binarization is tried.
DENSE_TRY = 0.02
# Above this fraction of non-zero levels only the dense binarization is tried.
RUNS_TRY = 0.35


def choose_and_encode(levels: np.ndarray) -> tuple[int, bytes]:
    """Code flat int32 levels with the cheaper binarization; returns (method, payload)."""
    flat = np.ascontiguousarray(levels, dtype=np.int32).reshape(-1)
    n = flat.shape[0]
    frac = np.count_nonzero(flat) / n if n else 0.0
    best: tuple[int, bytes] | None = None
    if frac < RUNS_TRY:
        best = (METHOD_RUNS, encode_runs_kernel(flat, _RATE).tobytes())
    if frac >= DENSE_TRY:
        dense = encode_dense_kernel(flat, _RATE).tobytes()
        if best is None or len(dense) < len(best[1]):
            best = (METHOD_DENSE, dense)
    assert best is not None
    return best


def encode(levels: np.ndarray, method: int) -> bytes:
    """Code flat int32 levels with the given binarization method."""
    flat = np.ascontiguousarray(levels, dtype=np.int32).reshape(-1)
    if method == METHOD_RUNS:
        return encode_runs_kernel(flat, _RATE).tobytes()
    if method == METHOD_DENSE:
        return encode_dense_kernel(flat, _RATE).tobytes()
    raise ValueError(f"unknown sparse coding method {method}")


def decode_into(data: bytes, method: int, out: np.ndarray) -> None:
    """Decode one payload into the flat int32 array out (zeroed); raises CorruptStreamError."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if method == METHOD_RUNS:
        status = decode_runs_kernel(buf, out, _RATE)
    elif method == METHOD_DENSE:
        status = decode_dense_kernel(buf, out, _RATE)
    else:
        raise CorruptStreamError(f"unknown sparse coding method {method}")
    if status != OK:
        raise CorruptStreamError(f"sparse payload is damaged: {_ERRORS[int(status)]}")


def decode(data: bytes, method: int, n: int) -> np.ndarray:
    """Decode one payload of n levels; returns a flat int32 array."""
    out = np.zeros(n, dtype=np.int32)
    decode_into(data, method, out)
    return out


# Smallest cost of one element in the dense binarization: one significance bin at the
# largest probability the 16-bit model allows, -log2(65535/65536) bits.
DENSE_MIN_BITS_PER_ELEMENT = float(-np.log2(65535 / 65536))
