"""Binary arithmetic coder of NNC/DeepCABAC (bit-exact with NNCodec 2.1.3's BinEnc/BinDec).

The coder state travels as plain integers through small @njit functions (tuples in, tuples
out) so that LLVM keeps it in registers inside the syntax kernels of cabac.py:

- encoder state ``(low, rng, bits_left, num_buffered, buffered_byte, pos)`` writing into a
  preallocated uint8 buffer ``out`` (the caller guarantees room; see cabac.py);
- decoder state ``(val, rng, bits_needed, pos, overrun)`` reading from a uint8 array; bytes
  past the end read as 0 and are counted in ``overrun`` so the caller can raise afterwards.

Context models live in one int32 array ``cx`` of shape (nctx, 4): s0 (fast sub-state),
S = s1 + 16*s0, and the two adaptation shifts; see tables.py for the update rule.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from fedbench.codec.tables import CURVE_TAB_S4, IDX_TO_ECO_SET, RPS_TABLE

MASK32 = 0xFFFFFFFF


@intrinsic
def _clz32(typingctx, x):
    """Count of leading zeros of the low 32 bits of an int64 (LLVM ctlz, one instruction)."""
    sig = types.int64(types.int64)

    def codegen(context, builder, signature, args):
        v = builder.trunc(args[0], ir.IntType(32))
        r = builder.ctlz(v, ir.Constant(ir.IntType(1), 0))
        return builder.zext(r, ir.IntType(64))

    return sig, codegen


# ----------------------------------------------------------------------------- contexts
@njit(cache=True, nogil=True)
def ctx_new(nctx: int) -> np.ndarray:
    """Context array (nctx, 4): s0, S = s1 + 16*s0, fast shift SH0+4, slow shift SH1; all set 0."""
    cx = np.empty((nctx, 4), dtype=np.int32)
    for c in range(nctx):
        ctx_set(cx, c, 0)
    return cx


@njit(cache=True, nogil=True)
def ctx_set(cx: np.ndarray, c: int, eco: int) -> None:
    """Initialise context c to estimator parameter set eco (initState)."""
    cx[c, 0] = IDX_TO_ECO_SET[eco, 3]
    cx[c, 1] = IDX_TO_ECO_SET[eco, 2]
    cx[c, 2] = IDX_TO_ECO_SET[eco, 0] + 4
    cx[c, 3] = IDX_TO_ECO_SET[eco, 1]


@njit(cache=True, nogil=True)
def ctx_reset_all(cx: np.ndarray, eco: np.ndarray) -> None:
    """Reset every context to the initial state of its chosen parameter set (resetState)."""
    for c in range(cx.shape[0]):
        e = eco[c]
        cx[c, 0] = IDX_TO_ECO_SET[e, 3]
        cx[c, 1] = IDX_TO_ECO_SET[e, 2]


@njit(cache=True, nogil=True, inline="always")
def _upd(cx: np.ndarray, c: int, b: int) -> None:
    """Dual-rate estimator update of context c after bin b (branch-free)."""
    sg = 2 * b - 1  # +1 for a one, -1 for a zero
    a = np.int64(cx[c, 0])
    s1 = np.int64(cx[c, 1]) - a * 16
    a += sg * (CURVE_TAB_S4[16 + ((sg * a) >> 3)] >> cx[c, 2])
    s1 += sg * (CURVE_TAB_S4[16 + ((sg * s1) >> 7)] >> cx[c, 3])
    cx[c, 0] = a
    cx[c, 1] = s1 + 16 * a


# ----------------------------------------------------------------------------- encoder
@njit(cache=True, nogil=True)
def enc_write_out(low, bl, nb, bb, pos, out):
    """Move the leading byte of low into the output, resolving carries (BinEnc::write_out)."""
    lead = low >> (24 - bl)
    bl += 8
    low &= MASK32 >> bl
    if lead == 0xFF:
        nb += 1
    elif nb > 0:
        carry = lead >> 8
        out[pos] = (bb + carry) & 0xFF
        pos += 1
        bb = lead & 0xFF
        fill = (0xFF + carry) & 0xFF
        while nb > 1:
            out[pos] = fill
            pos += 1
            nb -= 1
    else:
        nb = 1
        bb = lead
    return low, bl, nb, bb, pos


@njit(cache=True, nogil=True, inline="always")
def enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, b):
    """Encode bin b with context c; returns the new encoder state."""
    s = np.int64(cx[c, 1])
    rlps = np.int64(RPS_TABLE[abs(s >> 7) + (rng & 0xE0)])
    rng -= rlps
    lps = b ^ (1 - ((s >> 31) & 1))  # 1 when b is not the most probable symbol (S >= 0 -> 1)
    low += rng * lps
    rng += (rlps - rng) * lps
    n = _clz32(rng) - 23  # renormalisation shift (0 for an MPS that keeps rng >= 256)
    low <<= n
    rng <<= n
    bl -= n
    if bl < 12:
        low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
    _upd(cx, c, b)
    return low, rng, bl, nb, bb, pos


@njit(cache=True, nogil=True, inline="always")
def enc_bypass(low, rng, bl, nb, bb, pos, out, b):
    """Encode one bypass (equiprobable) bin."""
    low <<= 1
    if b:
        low += rng
    bl -= 1
    if bl < 12:
        low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
    return low, rng, bl, nb, bb, pos


@njit(cache=True, nogil=True)
def enc_bypass_bins(low, rng, bl, nb, bb, pos, out, bins, num):
    """Encode the num low bits of bins as bypass bins, MSB first, 8 at a time (encodeBinsEP)."""
    while num > 8:
        num -= 8
        pattern = bins >> num
        low = ((low << 8) + rng * pattern) & MASK32
        bins -= pattern << num
        bl -= 8
        if bl < 12:
            low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
    low = ((low << num) + rng * bins) & MASK32
    bl -= num
    if bl < 12:
        low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
    return low, rng, bl, nb, bb, pos


@njit(cache=True, nogil=True)
def enc_finish(low, rng, bl, nb, bb, pos, out):
    """Terminating bin 1, flush, stop bit and byte alignment; returns the final length."""
    # encodeBinTrm(1)
    rng -= 2
    low = ((low + rng) << 7) & MASK32
    rng = 2 << 7
    bl -= 7
    if bl < 12:
        low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
    # finish()
    if low >> (32 - bl):
        out[pos] = (bb + 1) & 0xFF
        pos += 1
        while nb > 1:
            out[pos] = 0
            pos += 1
            nb -= 1
        low -= 1 << (32 - bl)
    else:
        if nb > 0:
            out[pos] = bb
            pos += 1
        while nb > 1:
            out[pos] = 0xFF
            pos += 1
            nb -= 1
    low >>= 8
    low <<= 1
    low += 1
    bl -= 1
    low = (low << (32 - (24 - bl))) & MASK32
    i = 0
    while i < 24 - bl:
        out[pos] = (low >> (24 - i)) & 0xFF
        pos += 1
        i += 8
    return pos


# ----------------------------------------------------------------------------- decoder
@njit(cache=True, nogil=True, inline="always")
def _read(data, pos, ovr):
    """Next byte of the stream (0 past its end, counted in ovr)."""
    if pos < data.shape[0]:
        return np.int64(data[pos]), pos + 1, ovr
    return np.int64(0), pos + 1, ovr + 1


@njit(cache=True, nogil=True)
def dec_start(data):
    """Start decoding at byte 0 (startBinDecoder); returns (val, rng, bits_needed, pos, overrun)."""
    ovr = 0
    b0, pos, ovr = _read(data, 0, ovr)
    b1, pos, ovr = _read(data, pos, ovr)
    return 256 * b0 + b1, np.int64(510), np.int64(-8), pos, ovr


@njit(cache=True, nogil=True, inline="always")
def dec_bin(val, rng, bn, pos, ovr, data, cx, c):
    """Decode one context-coded bin; returns (state..., bin)."""
    s = np.int64(cx[c, 1])
    rlps = np.int64(RPS_TABLE[abs(s >> 7) + (rng & 0xE0)])
    rmps = rng - rlps
    scaled = rmps << 7
    lps = np.int64(val >= scaled)
    b = (1 - ((s >> 31) & 1)) ^ lps
    val -= scaled * lps
    rng = rmps + (rlps - rmps) * lps
    n = _clz32(rng) - 23
    rng <<= n
    val <<= n
    bn += n
    if bn >= 0:
        x, pos, ovr = _read(data, pos, ovr)
        val += x << bn
        bn -= 8
    _upd(cx, c, b)
    return val, rng, bn, pos, ovr, b


@njit(cache=True, nogil=True, inline="always")
def dec_bypass(val, rng, bn, pos, ovr, data):
    """Decode one bypass bin; returns (state..., bin)."""
    val += val
    bn += 1
    if bn >= 0:
        x, pos, ovr = _read(data, pos, ovr)
        val += x
        bn = -8
    sr = rng << 7
    if val >= sr:
        return val - sr, rng, bn, pos, ovr, 1
    return val, rng, bn, pos, ovr, 0


@njit(cache=True, nogil=True)
def dec_bypass_bins(val, rng, bn, pos, ovr, data, num):
    """Decode num bypass bins, MSB first; returns (state..., value)."""
    r = np.int64(0)
    for _ in range(num):
        val, rng, bn, pos, ovr, b = dec_bypass(val, rng, bn, pos, ovr, data)
        r = (r << 1) | b
    return val, rng, bn, pos, ovr, r


@njit(cache=True, nogil=True, inline="always")
def dec_terminate(val, rng, bn, pos, ovr, data):
    """Decode the terminating bin (decodeBinTrm); returns (state..., bin)."""
    rng -= 2
    if val >= (rng << 7):
        return val, rng, bn, pos, ovr, 1
    if rng < 256:
        rng += rng
        val += val
        bn += 1
        if bn == 0:
            x, pos, ovr = _read(data, pos, ovr)
            val += x
            bn = -8
    return val, rng, bn, pos, ovr, 0


@njit(cache=True, nogil=True)
def dec_bit_offset(pos, bn):
    """Total bit offset of the decoder (EntryPoint.totalBitOffset)."""
    return 8 * pos - 8 + bn


@njit(cache=True, nogil=True)
def dec_seek(data, tbo, epval):
    """Decoder state at an entry point (bit offset tbo, 8 value bits epval), range 256."""
    byte_off = (tbo + 9) >> 3
    bit_off = (tbo + 9) & 7
    pos = byte_off
    bn = bit_off - 9
    if bit_off != 0:
        pos += 1
    else:
        bn += 8
    ovr = 0
    if pos > data.shape[0]:
        ovr = pos - data.shape[0]
        prev = np.int64(0)
    elif pos >= 1:
        prev = np.int64(data[pos - 1])
    else:
        prev = np.int64(0)
        ovr = 1
    val = (epval << 7) + ((prev << (8 + bn)) & 127)
    return val, np.int64(256), bn, pos, ovr
