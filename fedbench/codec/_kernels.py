"""numba kernels of the NNC level syntax (encoder, param_opt pseudo-pass, decoder).

Settings travel in an int64 parameter vector ``prm`` (indices P_*) so that one compiled
kernel serves every combination. Context indices come from tables.py (CTX_* and ctx_*(n),
summed up by ctx_layout): sig 0..23, TCA sig 24..39, HDSP sig 40..47, sign 48..52, gtx
53..53+4n-1, EG prefix 53+4n.., estimator flag 53+4n+34, row skip 53+4n+36.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fedbench.codec.engine import (
    _clz32,
    _read,
    ctx_new,
    ctx_reset_all,
    ctx_set,
    dec_bin,
    dec_bit_offset,
    dec_bypass,
    dec_bypass_bins,
    dec_seek,
    dec_start,
    dec_terminate,
    enc_bin,
    enc_bypass,
    enc_bypass_bins,
    enc_finish,
    enc_write_out,
)
from fedbench.codec.tables import (
    CTX_GTX,
    CTX_SIG,
    CTX_SIG_HDSP,
    CTX_SIG_TCA,
    CTX_SIGN,
    CTX_SIGN_TCA,
    CURVE_TAB_S4,
    DQ_STATE_TRANS,
    IDX_TO_ECO_SET,
    RPS_TABLE,
    SCALED_EST_BITS,
    ctx_count,
    ctx_eg_prefix,
    ctx_estimator_flag,
    ctx_gtx_tca,
    ctx_row_skip,
)

# Parameter vector indices.
P_WIDTH = 0  # layer width (product of dims 1..)
P_NUM = 1  # number of elements
P_DQ = 2  # dq_flag
P_SCAN = 3  # effective scan order
P_PROFILE = 4  # general_profile_idc
P_PARENT = 5  # effective parent_node_id_present_flag (general_profile_idc for TCA)
P_ROWSKIP = 6  # rowSkipFlag
P_CBSIZE = 7  # codebook_size
P_CBOFF = 8  # codebook_zero_offset
P_HDSP = 9  # hdsp mode: 99 AlwaysOff, 0 TensorOff, 1 TensorOn
P_TCA = 10  # 1 for encodeLayer2 / decodeLayer2
P_NGTX = 11  # number of gt flags
P_PARAMOPT = 12  # param_opt_flag
P_BW = 13  # block width (width for raster)
P_BH = 14  # block height (rows for raster)
P_NBR = 15  # number of block rows (1 for raster)
P_GENERAL = 16  # 1: never the lean kernels (tests check that both give the same)
P_LEN = 17

# Error codes of the decoder kernels.
E_OK = 0
E_OVERFLOW = 1  # decoded magnitude does not fit int32
E_ENTRY = 2  # entry point inconsistent with the decoded stream

# Bytes that one coded value can add at most (44 regular bins x 7 bits + 30 bypass bits).
VALUE_MARGIN = 64

# Zero-run fast path. A significance context that has seen enough zeros saturates
# (s0 <= -120 and s1 <= -1920: the update step becomes 0), so a run of zeros coded with it
# is a fixed walk of the range: rng -= rps[q + (rng & 0xE0)] until it drops below 256, then
# one renormalisation (one 0 bit). For each q = |S >> 7| and rng in [256, 511] these tables
# give the number of zero bins up to and including that renormalisation and the range just
# before doubling, so whole intervals are coded/decoded in one step.
SAT_S0 = -120
SAT_S1 = -1920


@njit(cache=True)
def _run_tables():
    """RUN_STEPS[q, rng] and RUN_LAST[q, rng] of the zero-run fast path."""
    steps = np.zeros((32, 512), dtype=np.int64)
    last = np.zeros((32, 512), dtype=np.int64)
    for q in range(32):
        for r0 in range(256, 512):
            r = r0
            k = 0
            while True:
                r -= RPS_TABLE[q + (r & 0xE0)]
                k += 1
                if r < 256:
                    break
            steps[q, r0] = k
            last[q, r0] = r
    return steps, last


RUN_STEPS, RUN_LAST = _run_tables()


# ----------------------------------------------------------------------------- helpers
@njit(cache=True, nogil=True)
def _geometry(prm):
    """Width, rows, block width/height and number of block rows."""
    w = prm[P_WIDTH]
    return w, prm[P_NUM] // w, prm[P_BW], prm[P_BH], prm[P_NBR]


@njit(cache=True, nogil=True)
def _side_present(prm):
    """Whether the tensor carries side information (row skip / HDSP bins)."""
    return (
        prm[P_PROFILE] == 1
        and prm[P_WIDTH] > 1
        and prm[P_NUM] > prm[P_WIDTH]
        and prm[P_CBSIZE] != 1
    )


@njit(cache=True, nogil=True)
def _max_abs(prm, neg):
    """Codebook magnitude limit of a value (-1 = unlimited)."""
    if prm[P_CBSIZE] > 0 and prm[P_PROFILE] == 1:
        if neg:
            return prm[P_CBOFF]
        return prm[P_CBSIZE] - prm[P_CBOFF] - 1
    return -1


@njit(cache=True, nogil=True)
def _sign_coded(prm):
    """Whether the sign bin is coded (not inferable from the codebook)."""
    cb = prm[P_CBSIZE]
    off = prm[P_CBOFF]
    return not (cb > 0 and (off == 0 or off == cb - 1)) or prm[P_PROFILE] == 0


@njit(cache=True, nogil=True, inline="always")
def _ctx_ids(st, nbv, bv, hd):
    """(sig, sign) contexts from DQ state, neighbour value, TCA base value and HDSP activity."""
    cls = np.int64(nbv != 0) + np.int64(nbv > 0)  # 0 zero, 1 negative, 2 positive
    if hd:
        sigc = CTX_SIG_HDSP + st
    elif bv != 0:
        sigc = CTX_SIG_TCA + 2 * st + (1 if abs(bv) > 1 else 0)
    else:
        sigc = CTX_SIG + 3 * st + cls
    if bv != 0:
        signc = CTX_SIGN_TCA + (0 if bv < 0 else 1)
    else:
        signc = CTX_SIGN + cls
    return sigc, signc


@njit(cache=True, nogil=True, inline="always")
def _gtx_ctx(i, neg, tb, n):
    """Context of gt flag i (neg: value <= 0; tb: |base| or 0 without TCA base)."""
    if tb > 0:
        return ctx_gtx_tca(n) + 2 * i + (0 if tb >= i else 1)
    return CTX_GTX + 2 * i + (1 if neg else 0)


@njit(cache=True, nogil=True)
def _flag_list(prm, use_hdsp, ctx_out):
    """Contexts whose estimator-selection flag is in the stream (xShiftParameterIds order).

    Writes them to ctx_out and returns (count, list of all contexts re-initialised incl.
    unsignalled ones as negative entries -(c+1)).
    """
    n = prm[P_NGTX]
    dq = prm[P_DQ]
    tca = prm[P_TCA]
    cb = prm[P_CBSIZE]
    off = prm[P_CBOFF]
    k = 0
    for i in range(CTX_SIG, CTX_SIG_TCA if dq else CTX_SIG + 3):
        ctx_out[k] = i if cb != 1 else -(i + 1)
        k += 1
    if tca:
        for i in range(CTX_SIG_TCA, CTX_SIG_HDSP if dq else CTX_SIG_TCA + 2):
            ctx_out[k] = i if cb != 1 else -(i + 1)
            k += 1
    if use_hdsp:
        for i in range(CTX_SIG_HDSP, CTX_SIGN if dq else CTX_SIG_HDSP + 1):
            ctx_out[k] = i if cb != 1 else -(i + 1)
            k += 1
    sign_ok = not (cb > 0 and (off == 0 or off == cb - 1)) and cb != 1
    for a in range(5 if tca else 3):
        i = CTX_SIGN + a
        ctx_out[k] = i if sign_ok else -(i + 1)
        k += 1
    maxabs = max(off, cb - 1 - off) if cb > 0 else -1
    for a in range(2 * n):
        i = CTX_GTX + a
        ctx_out[k] = i if (maxabs == -1 or a < maxabs * 2) else -(i + 1)
        k += 1
    if tca:
        for a in range(2 * n, 4 * n):
            i = CTX_GTX + a
            ok = maxabs == -1 or a < (maxabs - 1) * 2 + 2 * n
            ctx_out[k] = i if ok else -(i + 1)
            k += 1
    lvl = n - 1
    for a in range(31):
        i = ctx_eg_prefix(n) + a
        lvl += 1 << a
        ctx_out[k] = i if (maxabs == -1 or lvl < maxabs) else -(i + 1)
        k += 1
    return k


# ----------------------------------------------------------------------------- pseudo pass
@njit(cache=True, nogil=True, inline="always")
def _pbin(o0, o01, acc, c, b):
    """param_opt pseudo-coding of bin b in context c for all nine parameter sets."""
    for e in range(9):
        s = o01[c, e]
        acc[c, e] += SCALED_EST_BITS[512 + (s >> 3), b]
        a = o0[c, e]
        s1 = s - a * 16
        r0 = IDX_TO_ECO_SET[e, 0] + 4
        r1 = IDX_TO_ECO_SET[e, 1]
        if b:
            a += CURVE_TAB_S4[16 + (a >> 3)] >> r0
            s1 += CURVE_TAB_S4[16 + (s1 >> 7)] >> r1
        else:
            a -= CURVE_TAB_S4[16 + ((-a) >> 3)] >> r0
            s1 -= CURVE_TAB_S4[16 + ((-s1) >> 7)] >> r1
        o0[c, e] = a
        o01[c, e] = s1 + 16 * a


@njit(cache=True, nogil=True, inline="always")
def _pseudo_value(o0, o01, acc, v, sigc, signc, tb, n):
    """pseudoEncodeWeightVal: no codebook limits, EG suffix not costed."""
    if v == 0:
        _pbin(o0, o01, acc, sigc, 0)
        return
    _pbin(o0, o01, acc, sigc, 1)
    neg = v < 0
    _pbin(o0, o01, acc, signc, 1 if neg else 0)
    rem = abs(v) - 1
    gr = 1 if rem else 0
    _pbin(o0, o01, acc, _gtx_ctx(0, v <= 0, tb, n), gr)
    cnt = 1
    while gr and cnt < n:
        rem -= 1
        gr = 1 if rem else 0
        _pbin(o0, o01, acc, _gtx_ctx(cnt, v <= 0, tb, n), gr)
        cnt += 1
    if gr:
        rem -= 1
        c = ctx_eg_prefix(n)
        if rem > 0:
            _pbin(o0, o01, acc, c, 1)
            base = 1
            c += 1
            k = 1
            while rem > base + (1 << k) - 1:
                _pbin(o0, o01, acc, c, 1)
                base += 1 << k
                c += 1
                k += 1
            _pbin(o0, o01, acc, c, 0)
        else:
            _pbin(o0, o01, acc, c, 0)


@njit(cache=True, nogil=True)
def _pseudo_pass(lv, base, hist, chan, skip_perm, prm, use_hdsp, acc):
    """The encoder's param_opt pseudo-pass over the layer (with the reference's quirks)."""
    nctx = acc.shape[0]
    o0 = np.empty((nctx, 9), dtype=np.int32)
    o01 = np.empty((nctx, 9), dtype=np.int32)
    for c in range(nctx):
        for e in range(9):
            o01[c, e] = IDX_TO_ECO_SET[e, 2]
            o0[c, e] = IDX_TO_ECO_SET[e, 3]
    w, rows, bw, bh, nbr = _geometry(prm)
    n = prm[P_NGTX]
    dq = prm[P_DQ]
    prof1 = prm[P_PROFILE] == 1
    tca = prm[P_TCA] == 1
    hd_on = use_hdsp == 1 and prm[P_HDSP] == 1
    rs = prm[P_ROWSKIP] != 0 and _side_present(prm)
    fast_ok = not (tca and prof1) and not hd_on
    if prm[P_SCAN] == 0 and not rs:
        w = prm[P_NUM]
        rows = 1
        bw = w
        bh = 1
    st = 0
    nbv = 0  # neighbour: raw levels, never reset at block-row boundaries (quirk)
    for br in range(nbr):
        y0 = br * bh
        y1 = min(y0 + bh, rows)
        for x0 in range(0, w, bw):
            x1 = min(x0 + bw, w)
            for y in range(y0, y1):
                if rs and chan[y] == 1:
                    if dq:
                        st = skip_perm[st]
                    continue
                row = y * w
                x = x0
                while x < x1:
                    p = row + x
                    raw = lv[p]
                    if raw == 0 and fast_ok and nbv == 0 and (st == 0 or st == 5):
                        # all nine estimators saturated: a run of zeros costs a constant per bin
                        c = 3 * st
                        sat = True
                        for e in range(9):
                            a = o0[c, e]
                            if a > SAT_S0 or o01[c, e] - 16 * a > SAT_S1:
                                sat = False
                                break
                        if sat:
                            end = x + 1
                            while end < x1 and lv[row + end] == 0:
                                end += 1
                            for e in range(9):
                                acc[c, e] += (end - x) * SCALED_EST_BITS[512 + (o01[c, e] >> 3), 0]
                            x = end
                            continue
                    bv = base[p] if (tca and prof1) else 0
                    hd = prof1 and hd_on and hist[p] == 1
                    sigc, signc = _ctx_ids(st, nbv, bv, hd)
                    _pseudo_value(o0, o01, acc, raw, sigc, signc, abs(bv), n)
                    nbv = raw
                    if dq:
                        k = raw
                        if k != 0:
                            k = (k + (-(st & 1) if k < 0 else (st & 1))) >> 1
                        st = DQ_STATE_TRANS[st, k & 1]
                    x += 1
        if br < nbr - 1:
            for c in range(nctx):
                for e in range(9):
                    o01[c, e] = IDX_TO_ECO_SET[e, 2]
                    o0[c, e] = IDX_TO_ECO_SET[e, 3]


@njit(cache=True, nogil=True)
def _best_idx(acc, c):
    """Cheapest estimator parameter set of context c (getBestIdx, 3-bit penalty for idx > 0)."""
    best = 0
    mn = acc[c, 0]
    for i in range(1, 9):
        x = acc[c, i] + 3 * 32768
        if x < mn:
            best = i
            mn = x
    return best


# ----------------------------------------------------------------------------- encoder
@njit(cache=True, nogil=True, inline="always")
def _enc_value(low, rng, bl, nb, bb, pos, out, cx, v, sigc, signc, tb, n, maxabs, sign_coded):
    """xEncWeight: sig, sign, gt flags and Exp-Golomb remainder of one value."""
    if v == 0:
        return enc_bin(low, rng, bl, nb, bb, pos, out, cx, sigc, 0)
    low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, sigc, 1)
    neg = v < 0
    if sign_coded:
        low, rng, bl, nb, bb, pos = enc_bin(
            low, rng, bl, nb, bb, pos, out, cx, signc, 1 if neg else 0
        )
    if maxabs == 1:
        return low, rng, bl, nb, bb, pos
    if not (maxabs == -1 or maxabs > 1):
        return low, rng, bl, nb, bb, pos
    rem = abs(np.int64(v)) - 1
    gr = 1 if rem else 0
    lez = v <= 0
    low, rng, bl, nb, bb, pos = enc_bin(
        low, rng, bl, nb, bb, pos, out, cx, _gtx_ctx(0, lez, tb, n), gr
    )
    cnt = 1
    while gr and cnt < n and (maxabs == -1 or maxabs > cnt + 1):
        rem -= 1
        gr = 1 if rem else 0
        low, rng, bl, nb, bb, pos = enc_bin(
            low, rng, bl, nb, bb, pos, out, cx, _gtx_ctx(cnt, lez, tb, n), gr
        )
        cnt += 1
    if maxabs != -1 and maxabs == cnt + 1:
        rem -= 1
        cnt += 1
        gr = 0
    if gr and (maxabs == -1 or maxabs > cnt + 1):
        rem -= 1
        rmax = -1 if maxabs == -1 else maxabs - (cnt + 1)
        c = ctx_eg_prefix(n)
        if rem > 0:
            low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, 1)
            base = np.int64(1)
            c += 1
            k = 1
            while rem > base + (1 << k) - 1 and (rmax == -1 or rmax >= base + (1 << k)):
                low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, 1)
                base += 1 << k
                c += 1
                k += 1
            if rmax == -1 or rmax >= base + (1 << k):
                low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, 0)
            low, rng, bl, nb, bb, pos = enc_bypass_bins(
                low, rng, bl, nb, bb, pos, out, rem - base, k
            )
        else:
            low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, 0)
    return low, rng, bl, nb, bb, pos


@njit(cache=True, nogil=True, inline="always")
def _enc_value_simple(low, rng, bl, nb, bb, pos, out, cx, v, sigc, cls, n):
    """_enc_value for a non-zero v without TCA/HDSP/codebook limits (the common case)."""
    low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, sigc, 1)
    neg = np.int64(v < 0)
    low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, CTX_SIGN + cls, neg)
    a = abs(np.int64(v)) - 1
    g0 = CTX_GTX + neg
    i = 0
    while True:
        g = np.int64(a > i)
        low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, g0 + 2 * i, g)
        if g == 0:
            return low, rng, bl, nb, bb, pos
        i += 1
        if i == n:
            break
    # Exp-Golomb order 0 of r = |v| - n - 1: context-coded unary prefix, bypass suffix
    r = a - n
    c = ctx_eg_prefix(n)
    base = np.int64(0)
    k = 0
    while r >= base + (np.int64(1) << k):
        low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, 1)
        base += np.int64(1) << k
        c += 1
        k += 1
    low, rng, bl, nb, bb, pos = enc_bin(low, rng, bl, nb, bb, pos, out, cx, c, 0)
    if k > 0:
        low, rng, bl, nb, bb, pos = enc_bypass_bins(low, rng, bl, nb, bb, pos, out, r - base, k)
    return low, rng, bl, nb, bb, pos


@njit(cache=True, nogil=True, inline="always")
def _dec_value_simple(val, rng, bn, pos, ovr, data, cx, cls, n):
    """_dec_value without TCA/HDSP/codebook limits, after a significance bin of 1."""
    val, rng, bn, pos, ovr, sgn = dec_bin(val, rng, bn, pos, ovr, data, cx, CTX_SIGN + cls)
    g0 = CTX_GTX + sgn
    d = np.int64(1)
    i = 0
    while True:
        val, rng, bn, pos, ovr, g = dec_bin(val, rng, bn, pos, ovr, data, cx, g0 + 2 * i)
        if g == 0:
            break
        d += 1
        i += 1
        if i == n:
            c = ctx_eg_prefix(n)
            rb = 0
            for j in range(31):
                val, rng, bn, pos, ovr, g = dec_bin(val, rng, bn, pos, ovr, data, cx, c + j)
                if g == 0:
                    break
                d += np.int64(1) << rb
                rb += 1
            val, rng, bn, pos, ovr, r = dec_bypass_bins(val, rng, bn, pos, ovr, data, rb)
            d += r
            break
    if sgn:
        d = -d
    return val, rng, bn, pos, ovr, d


@njit(cache=True, nogil=True)
def encode_kernel(lv, base, hist, chan, skip_perm, prm, out, ep_tbo, ep_low, ep_dq):
    """Encode one layer (initCtxModels .. finish) into out; the length, or -1 if out is short.

    At the start of every block row br (blocked scans) it records the decoder's bit offset
    (the number of coder shifts so far), the low 8 bits of the coder's low register and the
    DQ state in ep_*[br]: cabac.py turns them into the decoder's entry points.
    """
    n = prm[P_NGTX]
    nctx = ctx_count(n)
    flag_ctx = ctx_estimator_flag(n)
    row_ctx = ctx_row_skip(n)
    cap = out.shape[0]
    cx = ctx_new(nctx)
    eco = np.zeros(nctx, dtype=np.int32)
    low = np.int64(0)
    rng = np.int64(510)
    bl = np.int64(23)
    nb = np.int64(0)
    bb = np.int64(0)
    pos = np.int64(0)
    w, rows, bw, bh, nbr = _geometry(prm)
    side = _side_present(prm)
    hdsp_flag = 0
    rs = False
    if side:
        if prm[P_PARENT]:
            hdsp_flag = 1 if prm[P_HDSP] == 1 else 0
            low, rng, bl, nb, bb, pos = enc_bypass(low, rng, bl, nb, bb, pos, out, hdsp_flag)
        rs = prm[P_ROWSKIP] != 0
        low, rng, bl, nb, bb, pos = enc_bypass(low, rng, bl, nb, bb, pos, out, 1 if rs else 0)
        if rs:
            for r in range(rows):
                if pos + nb + VALUE_MARGIN > cap:
                    return -1
                low, rng, bl, nb, bb, pos = enc_bin(
                    low, rng, bl, nb, bb, pos, out, cx, row_ctx, chan[r]
                )
    # estimator selection (param_opt pseudo-pass, then one flag per possible context)
    acc = np.zeros((nctx, 9), dtype=np.int64)
    if prm[P_PARAMOPT] and (prm[P_CBSIZE] != 1 or prm[P_PROFILE] == 0):
        _pseudo_pass(lv, base, hist, chan, skip_perm, prm, hdsp_flag, acc)
    flist = np.empty(nctx + 8, dtype=np.int64)
    nf = _flag_list(prm, hdsp_flag, flist)
    for j in range(nf):
        c = flist[j]
        if c < 0:
            ctx_set(cx, -c - 1, 0)
            eco[-c - 1] = 0
            continue
        if pos + nb + VALUE_MARGIN > cap:
            return -1
        e = _best_idx(acc, c)
        low, rng, bl, nb, bb, pos = enc_bin(
            low, rng, bl, nb, bb, pos, out, cx, flag_ctx, 1 if e else 0
        )
        if e:
            low, rng, bl, nb, bb, pos = enc_bypass_bins(low, rng, bl, nb, bb, pos, out, e - 1, 3)
        ctx_set(cx, c, e)
        eco[c] = e
    if prm[P_SCAN] != 0 and nbr > 1:
        rng = 256
    ep_tbo[0] = 23 - bl + 8 * (pos + nb)
    ep_low[0] = low & 255
    ep_dq[0] = 0
    # levels
    dq = prm[P_DQ]
    prof1 = prm[P_PROFILE] == 1
    tca = prm[P_TCA] == 1
    hd_on = hdsp_flag == 1 and prm[P_HDSP] == 1
    cb1 = prm[P_CBSIZE] == 1 and prof1
    maxp = _max_abs(prm, False)
    maxn = _max_abs(prm, True)
    sign_coded = _sign_coded(prm)
    fast_ok = not (tca and prof1) and not hd_on and not cb1
    simple = fast_ok and maxp == -1 and maxn == -1 and sign_coded
    if simple and not dq and not prm[P_GENERAL]:
        coder = np.empty(6, dtype=np.int64)
        coder[0] = low
        coder[1] = rng
        coder[2] = bl
        coder[3] = nb
        coder[4] = bb
        coder[5] = pos
        if encode_levels_lean(lv, chan, rs, prm, out, eco, coder, ep_tbo, ep_low, ep_dq) < 0:
            return -1
        low = coder[0]
        rng = coder[1]
        bl = coder[2]
        nb = coder[3]
        bb = coder[4]
        pos = coder[5]
        if pos + nb + VALUE_MARGIN > cap:
            return -1
        return enc_finish(low, rng, bl, nb, bb, pos, out)
    if prm[P_SCAN] == 0 and not rs:
        # raster without row skipping: one contiguous segment (longer zero runs)
        w = prm[P_NUM]
        rows = 1
        bw = w
        bh = 1
    st = 0
    nbv = 0
    for br in range(nbr):
        y0 = br * bh
        y1 = min(y0 + bh, rows)
        for x0 in range(0, w, bw):
            x1 = min(x0 + bw, w)
            for y in range(y0, y1):
                if rs and chan[y] == 1:
                    if dq:
                        st = skip_perm[st]
                    continue
                row = y * w
                x = x0
                while x < x1:
                    p = row + x
                    v = lv[p]
                    if pos + nb + VALUE_MARGIN > cap:
                        return -1
                    if v == 0 and fast_ok and nbv == 0 and (st == 0 or st == 5):
                        c = 3 * st
                        a = cx[c, 0]
                        sq = cx[c, 1]
                        if a <= SAT_S0 and sq - 16 * a <= SAT_S1:
                            e = x + 1
                            while e < x1 and lv[row + e] == 0:
                                e += 1
                            if pos + nb + VALUE_MARGIN + (e - x) // 8 > cap:
                                return -1
                            q = abs(sq >> 7)
                            while x < e:
                                k = RUN_STEPS[q, rng]
                                if x + k <= e:
                                    rng = RUN_LAST[q, rng] << 1
                                    low <<= 1
                                    bl -= 1
                                    if bl < 12:
                                        low, bl, nb, bb, pos = enc_write_out(
                                            low, bl, nb, bb, pos, out
                                        )
                                    x += k
                                else:
                                    rng -= RPS_TABLE[q + (rng & 0xE0)]
                                    x += 1
                            continue
                    if dq and v != 0:
                        v = (v + (-(st & 1) if v < 0 else (st & 1))) >> 1
                    if simple:
                        cls = np.int64(nbv != 0) + np.int64(nbv > 0)
                        if v == 0:
                            low, rng, bl, nb, bb, pos = enc_bin(
                                low, rng, bl, nb, bb, pos, out, cx, 3 * st + cls, 0
                            )
                        else:
                            low, rng, bl, nb, bb, pos = _enc_value_simple(
                                low, rng, bl, nb, bb, pos, out, cx, v, 3 * st + cls, cls, n
                            )
                    elif not cb1:
                        bv = base[p] if (tca and prof1) else 0
                        hd = prof1 and hd_on and hist[p] == 1
                        sigc, signc = _ctx_ids(st, nbv, bv, hd)
                        if v == 0:
                            low, rng, bl, nb, bb, pos = enc_bin(
                                low, rng, bl, nb, bb, pos, out, cx, sigc, 0
                            )
                        else:
                            low, rng, bl, nb, bb, pos = _enc_value(
                                low,
                                rng,
                                bl,
                                nb,
                                bb,
                                pos,
                                out,
                                cx,
                                v,
                                sigc,
                                signc,
                                abs(bv),
                                n,
                                maxn if v < 0 else maxp,
                                sign_coded,
                            )
                    nbv = v
                    if dq:
                        st = DQ_STATE_TRANS[st, v & 1]
                    x += 1
        if br < nbr - 1:
            ctx_reset_all(cx, eco)
            nbv = 0
            rng = 256
            ep_tbo[br + 1] = 23 - bl + 8 * (pos + nb)
            ep_low[br + 1] = low & 255
            ep_dq[br + 1] = st
    if pos + nb + VALUE_MARGIN > cap:
        return -1
    return enc_finish(low, rng, bl, nb, bb, pos, out)


# ----------------------------------------------------------------------------- decoder
@njit(cache=True, nogil=True)
def decode_header(data, prm, chan, eco, state):
    """Decode side info and estimator flags into chan/eco, state[0:5]; (rowskip, hdsp_flag)."""
    n = prm[P_NGTX]
    nctx = ctx_count(n)
    flag_ctx = ctx_estimator_flag(n)
    row_ctx = ctx_row_skip(n)
    cx = ctx_new(nctx)
    for c in range(nctx):
        eco[c] = 0
    val, rng, bn, pos, ovr = dec_start(data)
    _, rows, _, _, nbr = _geometry(prm)
    hdsp_flag = 0
    rs = 0
    if _side_present(prm):
        if prm[P_PARENT]:
            val, rng, bn, pos, ovr, hdsp_flag = dec_bypass(val, rng, bn, pos, ovr, data)
        val, rng, bn, pos, ovr, rs = dec_bypass(val, rng, bn, pos, ovr, data)
        if rs and chan.shape[0] < rows:
            # the caller did not allocate the row list: the stream is far too short for it
            ovr += 1
        elif rs:
            for r in range(rows):
                val, rng, bn, pos, ovr, b = dec_bin(val, rng, bn, pos, ovr, data, cx, row_ctx)
                chan[r] = b
                if ovr > 8:
                    break
    flist = np.empty(nctx + 8, dtype=np.int64)
    nf = _flag_list(prm, hdsp_flag, flist)
    for j in range(nf):
        c = flist[j]
        if c < 0:
            continue
        val, rng, bn, pos, ovr, b = dec_bin(val, rng, bn, pos, ovr, data, cx, flag_ctx)
        if b:
            val, rng, bn, pos, ovr, e = dec_bypass_bins(val, rng, bn, pos, ovr, data, 3)
            eco[c] = e + 1
    if prm[P_SCAN] != 0 and nbr > 1:
        rng = 256
    state[0] = val
    state[1] = rng
    state[2] = bn
    state[3] = pos
    state[4] = ovr
    return rs, hdsp_flag


@njit(cache=True, nogil=True, inline="always")
def _dec_value(val, rng, bn, pos, ovr, data, cx, signc, tb, n, maxp, maxn, sign_coded, sgn_inf):
    """decodeWeightVal after a significance bin of 1; returns (state..., value (int64))."""
    d = np.int64(1)
    if sign_coded:
        val, rng, bn, pos, ovr, sgn = dec_bin(val, rng, bn, pos, ovr, data, cx, signc)
    else:
        sgn = sgn_inf
    maxabs = maxn if sgn == 1 else maxp
    if maxabs > 1 or maxabs == -1:
        lez = sgn == 1
        j = -1
        while True:
            j += 1
            val, rng, bn, pos, ovr, g = dec_bin(
                val, rng, bn, pos, ovr, data, cx, _gtx_ctx(j, lez, tb, n)
            )
            d += g
            if not (g == 1 and j < n - 1 and (maxabs > d or maxabs == -1)):
                break
        if g == 1 and (maxabs > d or maxabs == -1):
            rb = 0
            j = -1
            while True:
                j += 1
                val, rng, bn, pos, ovr, g = dec_bin(
                    val, rng, bn, pos, ovr, data, cx, ctx_eg_prefix(n) + j
                )
                if g and (maxabs > d or maxabs == -1):
                    d += np.int64(1) << rb
                    rb += 1
                if not (g == 1 and j < 30 and (maxabs >= d + (np.int64(1) << rb) or maxabs == -1)):
                    break
            val, rng, bn, pos, ovr, r = dec_bypass_bins(val, rng, bn, pos, ovr, data, rb)
            d += r
    if sgn:
        d = -d
    return val, rng, bn, pos, ovr, d


@njit(cache=True, nogil=True)
def decode_rows(
    data,
    prm,
    rs,
    hdsp_flag,
    chan,
    eco,
    base,
    hist,
    skip_perm,
    out,
    state,
    br0,
    br1,
    use_ep,
    ep_off,
    ep_val,
    ep_dq,
    rec_off,
    rec_val,
    rec_dq,
):
    """Decode block rows [br0, br1) into out (zero-initialised); returns an error code (E_*).

    Sequential (use_ep == 0): continue from state (val, rng, bn, pos, ovr, dq, 0) with the
    encoder's resets at block-row ends, recording entry points (absolute bit offset, value
    bits, DQ state) of the following block row in rec_*. With entry points (use_ep == 1):
    every block row br > 0 starts at ep_off[br]/ep_val[br]/ep_dq[br]; block row 0 starts
    from state. The final decoder state is written back to state.
    """
    n = prm[P_NGTX]
    nctx = eco.shape[0]
    cx = ctx_new(nctx)
    for c in range(nctx):
        ctx_set(cx, c, eco[c])
    w, rows, bw, bh, nbr = _geometry(prm)
    dq = prm[P_DQ]
    prof1 = prm[P_PROFILE] == 1
    tca = prm[P_TCA] == 1
    hd_on = hdsp_flag == 1 and prm[P_HDSP] == 1
    cb1 = prm[P_CBSIZE] == 1 and prof1
    rs_on = rs == 1 and _side_present(prm)
    sign_coded = _sign_coded(prm)
    sgn_inf = 1 if prm[P_CBOFF] != 0 else 0
    maxp = _max_abs(prm, False)
    maxn = _max_abs(prm, True)
    val = state[0]
    rng = state[1]
    bn = state[2]
    pos = state[3]
    ovr = state[4]
    st = state[5]
    err = E_OK
    limit = data.shape[0] + 16
    fast_ok = not (tca and prof1) and not hd_on and not cb1
    simple = fast_ok and maxp == -1 and maxn == -1 and sign_coded
    if simple and not dq and not prm[P_GENERAL]:
        return decode_rows_lean(
            data,
            prm,
            rs_on,
            chan,
            eco,
            out,
            state,
            br0,
            br1,
            use_ep,
            ep_off,
            ep_val,
            rec_off,
            rec_val,
            rec_dq,
        )
    if prm[P_SCAN] == 0 and not rs_on:
        # raster without row skipping: one contiguous segment (longer zero runs)
        w = prm[P_NUM]
        rows = 1
        bw = w
        bh = 1
    for br in range(br0, br1):
        if use_ep and br > 0:
            val, rng, bn, pos, ovr2 = dec_seek(data, ep_off[br], ep_val[br])
            ovr += ovr2
            st = ep_dq[br]
            ctx_reset_all(cx, eco)
        nbv = 0
        y0 = br * bh
        y1 = min(y0 + bh, rows)
        for x0 in range(0, w, bw):
            x1 = min(x0 + bw, w)
            for y in range(y0, y1):
                if rs_on and chan[y] == 1:
                    if dq:
                        st = skip_perm[st]
                    continue
                row = y * w
                x = x0
                while x < x1:
                    if pos > limit:
                        # far past the end: garbage; stop early, the caller reports truncation
                        state[0] = val
                        state[1] = rng
                        state[2] = bn
                        state[3] = pos
                        state[4] = ovr + 1
                        state[5] = st
                        return err
                    if fast_ok and nbv == 0 and (st == 0 or st == 5):
                        c = 3 * st
                        a = cx[c, 0]
                        sq = cx[c, 1]
                        if a <= SAT_S0 and sq - 16 * a <= SAT_S1:
                            q = abs(sq >> 7)
                            while x < x1:
                                k = RUN_STEPS[q, rng]
                                lst = RUN_LAST[q, rng]
                                if x + k <= x1 and val < (lst << 7):
                                    rng = lst << 1
                                    x += k
                                else:
                                    rm = rng - RPS_TABLE[q + (rng & 0xE0)]
                                    if val >= (rm << 7):
                                        break  # a significant value: decoded below
                                    rng = rm
                                    x += 1
                                    if rng >= 256:
                                        continue
                                    rng <<= 1
                                val <<= 1
                                bn += 1
                                if bn >= 0:
                                    xb, pos, ovr = _read(data, pos, ovr)
                                    val += xb
                                    bn -= 8
                            if x >= x1:
                                break
                    p = row + x
                    if simple:
                        cls = np.int64(nbv != 0) + np.int64(nbv > 0)
                        val, rng, bn, pos, ovr, sig = dec_bin(
                            val, rng, bn, pos, ovr, data, cx, 3 * st + cls
                        )
                        if sig:
                            val, rng, bn, pos, ovr, d = _dec_value_simple(
                                val, rng, bn, pos, ovr, data, cx, cls, n
                            )
                        else:
                            d = np.int64(0)
                    elif cb1:
                        d = np.int64(0)
                    else:
                        bv = base[p] if (tca and prof1) else 0
                        hd = prof1 and hd_on and hist[p] == 1
                        sigc, signc = _ctx_ids(st, nbv, bv, hd)
                        val, rng, bn, pos, ovr, sig = dec_bin(
                            val, rng, bn, pos, ovr, data, cx, sigc
                        )
                        if sig:
                            val, rng, bn, pos, ovr, d = _dec_value(
                                val,
                                rng,
                                bn,
                                pos,
                                ovr,
                                data,
                                cx,
                                signc,
                                abs(bv),
                                n,
                                maxp,
                                maxn,
                                sign_coded,
                                sgn_inf,
                            )
                        else:
                            d = np.int64(0)
                    nbv = d
                    if dq:
                        nst = DQ_STATE_TRANS[st, d & 1]
                        if d != 0:
                            d = 2 * d + ((st & 1) if d < 0 else -(st & 1))
                        st = nst
                    if d > 2147483647 or d < -2147483647:
                        err = E_OVERFLOW
                        d = 0
                    out[p] = d
                    x += 1
        if br < nbr - 1:
            rec_off[br + 1] = dec_bit_offset(pos, bn)
            rec_val[br + 1] = val >> 7
            rec_dq[br + 1] = st
            if not use_ep:
                ctx_reset_all(cx, eco)
                rng = 256
    state[0] = val
    state[1] = rng
    state[2] = bn
    state[3] = pos
    state[4] = ovr
    state[5] = st
    return err


@njit(cache=True, nogil=True)
def decode_finish(data, state):
    """Terminating bin and stop pattern; returns (term_bin, stop_ok, bytes_consumed, overrun)."""
    val = state[0]
    rng = state[1]
    bn = state[2]
    pos = state[3]
    ovr = state[4]
    val, rng, bn, pos, ovr, t = dec_terminate(val, rng, bn, pos, ovr, data)
    stop_ok = False
    if t == 1 and 1 <= pos <= data.shape[0]:
        last = np.int64(data[pos - 1])
        stop_ok = ((last << (8 + bn)) & 0xFF) == 0x80
    return t, stop_ok, pos, ovr


@njit(cache=True, nogil=True)
def dq_skip_perm(width):
    """DQ state after `width` zero transitions from each state (row-skip quirk)."""
    perm = np.empty(8, dtype=np.int32)
    for s in range(8):
        t = s
        for _ in range(width % 4 + 4 if width >= 4 else width):
            t = DQ_STATE_TRANS[t, 0]
        perm[s] = t
    return perm


# ----------------------------------------------------------------------------- lean decoder
# The common case (no DQ, no TCA/HDSP, no codebook limits) has its own kernel. Everything on
# the per-bin path takes and returns scalars only: numba inlines a function with an array
# argument by copying the array variable, which costs an atomic NRT incref/decref pair per
# inlined call, in the hottest loop. Contexts live in four 1-D int64 arrays (no 2-D index
# arithmetic), table indices are cast to unsigned (no negative-index wrap-around), and the
# stream is read from a zero-padded copy, so a byte read needs no bounds check (the
# per-value position limit keeps every read inside the padding; reads past the real end
# still count as overrun, from the final position).
LEAN_PAD = 512  # > the per-value limit slack (16) + the bytes one value can read (< 200)


@njit(cache=True, nogil=True, inline="always")
def _lbin(val, rng, s):
    """One context-coded bin with combined state s: returns (val, rng, shift, bin)."""
    rlps = np.int64(RPS_TABLE[np.uint64(abs(s >> 7) + (rng & 0xE0))])
    rmps = rng - rlps
    scaled = rmps << 7
    lps = val >= scaled
    if lps:
        val -= scaled
        rng = rlps
    else:
        rng = rmps
    b = np.int64(s >= 0) ^ np.int64(lps)
    k = _clz32(rng) - 23
    return val << k, rng << k, k, b


@njit(cache=True, nogil=True, inline="always")
def _lupd(a, s, sh0, sh1, b):
    """Dual-rate estimator update (s0, S) after bin b, scalars only."""
    s1 = s - a * 16
    if b:
        a += CURVE_TAB_S4[np.uint64(16 + (a >> 3))] >> sh0
        s1 += CURVE_TAB_S4[np.uint64(16 + (s1 >> 7))] >> sh1
    else:
        a -= CURVE_TAB_S4[np.uint64(16 + ((-a) >> 3))] >> sh0
        s1 -= CURVE_TAB_S4[np.uint64(16 + ((-s1) >> 7))] >> sh1
    return a, s1 + 16 * a


@njit(cache=True, nogil=True)
def _lean_reset(ca, cs, csh0, csh1, eco):
    """Contexts at the initial state of their parameter sets."""
    for c in range(eco.shape[0]):
        e = eco[c]
        ca[c] = IDX_TO_ECO_SET[e, 3]
        cs[c] = IDX_TO_ECO_SET[e, 2]
        csh0[c] = IDX_TO_ECO_SET[e, 0] + 4
        csh1[c] = IDX_TO_ECO_SET[e, 1]


@njit(cache=True, nogil=True)
def decode_rows_lean(
    data,
    prm,
    rs_on,
    chan,
    eco,
    out,
    state,
    br0,
    br1,
    use_ep,
    ep_off,
    ep_val,
    rec_off,
    rec_val,
    rec_dq,
):
    """decode_rows for dq_flag 0 without TCA, HDSP or codebook limits (same results)."""
    n = prm[P_NGTX]
    nctx = eco.shape[0]
    ca = np.empty(nctx, dtype=np.int64)
    cs = np.empty(nctx, dtype=np.int64)
    csh0 = np.empty(nctx, dtype=np.int64)
    csh1 = np.empty(nctx, dtype=np.int64)
    _lean_reset(ca, cs, csh0, csh1, eco)
    nd = data.shape[0]
    buf = np.zeros(nd + LEAN_PAD, dtype=np.uint8)
    buf[:nd] = data
    w, rows, bw, bh, nbr = _geometry(prm)
    val = state[0]
    rng = state[1]
    bn = state[2]
    pos = state[3]
    ovr = state[4]
    err = E_OK
    limit = nd + 16
    maxpos = pos
    eg0 = ctx_eg_prefix(n)
    if prm[P_SCAN] == 0 and not rs_on:
        w = prm[P_NUM]
        rows = 1
        bw = w
        bh = 1
    for br in range(br0, br1):
        if use_ep and br > 0:
            maxpos = max(maxpos, pos)
            val, rng, bn, pos, ovr2 = dec_seek(data, ep_off[br], ep_val[br])
            ovr += ovr2
            _lean_reset(ca, cs, csh0, csh1, eco)
        cls = 0
        y0 = br * bh
        y1 = min(y0 + bh, rows)
        for x0 in range(0, w, bw):
            x1 = min(x0 + bw, w)
            for y in range(y0, y1):
                if rs_on and chan[y] == 1:
                    continue
                row = y * w
                x = x0
                while x < x1:
                    if pos > limit:
                        state[0] = val
                        state[1] = rng
                        state[2] = bn
                        state[3] = pos
                        state[4] = ovr + 1
                        state[5] = 0
                        return err
                    if cls == 0:
                        a = ca[0]
                        sq = cs[0]
                        if a <= SAT_S0 and sq - 16 * a <= SAT_S1:
                            # saturated zero context: whole zero runs per range interval
                            q = abs(sq >> 7)
                            while x < x1:
                                k = RUN_STEPS[q, rng]
                                lst = RUN_LAST[q, rng]
                                if x + k <= x1 and val < (lst << 7):
                                    rng = lst << 1
                                    x += k
                                else:
                                    rm = rng - RPS_TABLE[q + (rng & 0xE0)]
                                    if val >= (rm << 7):
                                        break  # a significant value: decoded below
                                    rng = rm
                                    x += 1
                                    if rng >= 256:
                                        continue
                                    rng <<= 1
                                val <<= 1
                                bn += 1
                                if bn >= 0:
                                    val += np.int64(buf[pos])
                                    pos += 1
                                    bn -= 8
                                    if pos > limit:
                                        # a long run past the end: keep the reads inside the
                                        # padding; the check above reports the truncation
                                        break
                            if x >= x1:
                                break
                    # significance
                    s = cs[cls]
                    val, rng, k, b = _lbin(val, rng, s)
                    bn += k
                    if bn >= 0:
                        val += np.int64(buf[pos]) << bn
                        pos += 1
                        bn -= 8
                    ca[cls], cs[cls] = _lupd(ca[cls], s, csh0[cls], csh1[cls], b)
                    if b == 0:  # out is zero-initialised by the caller
                        cls = 0
                        x += 1
                        continue
                    # sign
                    c = CTX_SIGN + cls
                    s = cs[c]
                    val, rng, k, sgn = _lbin(val, rng, s)
                    bn += k
                    if bn >= 0:
                        val += np.int64(buf[pos]) << bn
                        pos += 1
                        bn -= 8
                    ca[c], cs[c] = _lupd(ca[c], s, csh0[c], csh1[c], sgn)
                    # greater-than flags
                    c = CTX_GTX + sgn
                    d = np.int64(1)
                    i = 0
                    while True:
                        s = cs[c]
                        val, rng, k, b = _lbin(val, rng, s)
                        bn += k
                        if bn >= 0:
                            val += np.int64(buf[pos]) << bn
                            pos += 1
                            bn -= 8
                        ca[c], cs[c] = _lupd(ca[c], s, csh0[c], csh1[c], b)
                        if b == 0:
                            break
                        d += 1
                        i += 1
                        c += 2
                        if i == n:
                            # Exp-Golomb remainder: context-coded unary prefix, bypass suffix
                            rb = 0
                            for j in range(31):
                                c = eg0 + j
                                s = cs[c]
                                val, rng, k, b = _lbin(val, rng, s)
                                bn += k
                                if bn >= 0:
                                    val += np.int64(buf[pos]) << bn
                                    pos += 1
                                    bn -= 8
                                ca[c], cs[c] = _lupd(ca[c], s, csh0[c], csh1[c], b)
                                if b == 0:
                                    break
                                d += np.int64(1) << rb
                                rb += 1
                            r = np.int64(0)
                            sr = rng << 7
                            for _ in range(rb):
                                val += val
                                bn += 1
                                if bn >= 0:
                                    val += np.int64(buf[pos])
                                    pos += 1
                                    bn = -8
                                bit = np.int64(val >= sr)
                                val -= sr * bit
                                r = (r << 1) | bit
                            d += r
                            break
                    if sgn:
                        d = -d
                        cls = 1
                    else:
                        cls = 2
                    if d > 2147483647 or d < -2147483647:
                        err = E_OVERFLOW
                        d = 0
                    out[row + x] = d
                    x += 1
        if br < nbr - 1:
            rec_off[br + 1] = dec_bit_offset(pos, bn)
            rec_val[br + 1] = val >> 7
            rec_dq[br + 1] = 0
            if not use_ep:
                _lean_reset(ca, cs, csh0, csh1, eco)
                rng = 256
    maxpos = max(maxpos, pos)
    state[0] = val
    state[1] = rng
    state[2] = bn
    state[3] = pos
    state[4] = ovr + max(0, maxpos - nd)
    state[5] = 0
    return err


# ----------------------------------------------------------------------------- lean encoder
@njit(cache=True, nogil=True, inline="always")
def _lenc(low, rng, s, b):
    """Encode bin b with combined state s (scalars only): returns (low, rng, shift)."""
    rlps = np.int64(RPS_TABLE[np.uint64(abs(s >> 7) + (rng & 0xE0))])
    rng -= rlps
    if b ^ np.int64(s >= 0):  # the less probable symbol
        low += rng
        rng = rlps
    k = _clz32(rng) - 23
    return low << k, rng << k, k


@njit(cache=True, nogil=True)
def encode_levels_lean(lv, chan, rs, prm, out, eco, coder, ep_tbo, ep_low, ep_dq):
    """encode_kernel's level loop for dq_flag 0 without TCA, HDSP or codebook limits.

    coder holds (low, rng, bl, nb, bb, pos) on entry and exit; returns 0, or -1 when out is
    too small. Same bytes as the general loop; see decode_rows_lean for why it is separate.
    """
    n = prm[P_NGTX]
    nctx = eco.shape[0]
    ca = np.empty(nctx, dtype=np.int64)
    cs = np.empty(nctx, dtype=np.int64)
    csh0 = np.empty(nctx, dtype=np.int64)
    csh1 = np.empty(nctx, dtype=np.int64)
    _lean_reset(ca, cs, csh0, csh1, eco)
    cap = out.shape[0]
    low = coder[0]
    rng = coder[1]
    bl = coder[2]
    nb = coder[3]
    bb = coder[4]
    pos = coder[5]
    w, rows, bw, bh, nbr = _geometry(prm)
    eg0 = ctx_eg_prefix(n)
    if prm[P_SCAN] == 0 and not rs:
        w = prm[P_NUM]
        rows = 1
        bw = w
        bh = 1
    cls = 0
    for br in range(nbr):
        y0 = br * bh
        y1 = min(y0 + bh, rows)
        for x0 in range(0, w, bw):
            x1 = min(x0 + bw, w)
            for y in range(y0, y1):
                if rs and chan[y] == 1:
                    continue
                row = y * w
                x = x0
                while x < x1:
                    v = np.int64(lv[row + x])
                    if pos + nb + VALUE_MARGIN > cap:
                        return -1
                    if v == 0 and cls == 0:
                        a = ca[0]
                        sq = cs[0]
                        if a <= SAT_S0 and sq - 16 * a <= SAT_S1:
                            e = x + 1
                            while e < x1 and lv[row + e] == 0:
                                e += 1
                            if pos + nb + VALUE_MARGIN + (e - x) // 8 > cap:
                                return -1
                            q = abs(sq >> 7)
                            while x < e:
                                k = RUN_STEPS[q, rng]
                                if x + k <= e:
                                    rng = RUN_LAST[q, rng] << 1
                                    low <<= 1
                                    bl -= 1
                                    if bl < 12:
                                        low, bl, nb, bb, pos = enc_write_out(
                                            low, bl, nb, bb, pos, out
                                        )
                                    x += k
                                else:
                                    rng -= RPS_TABLE[q + (rng & 0xE0)]
                                    x += 1
                            continue
                    # significance
                    b = np.int64(v != 0)
                    s = cs[cls]
                    low, rng, k = _lenc(low, rng, s, b)
                    bl -= k
                    if bl < 12:
                        low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
                    ca[cls], cs[cls] = _lupd(ca[cls], s, csh0[cls], csh1[cls], b)
                    if v == 0:
                        cls = 0
                        x += 1
                        continue
                    # sign
                    neg = np.int64(v < 0)
                    c = CTX_SIGN + cls
                    s = cs[c]
                    low, rng, k = _lenc(low, rng, s, neg)
                    bl -= k
                    if bl < 12:
                        low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
                    ca[c], cs[c] = _lupd(ca[c], s, csh0[c], csh1[c], neg)
                    cls = 1 if neg else 2
                    # greater-than flags
                    a = abs(v) - 1
                    c = CTX_GTX + neg
                    i = 0
                    while True:
                        g = np.int64(a > i)
                        s = cs[c]
                        low, rng, k = _lenc(low, rng, s, g)
                        bl -= k
                        if bl < 12:
                            low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
                        ca[c], cs[c] = _lupd(ca[c], s, csh0[c], csh1[c], g)
                        if g == 0:
                            break
                        i += 1
                        c += 2
                        if i == n:
                            # Exp-Golomb order 0 of |v| - n - 1: context-coded unary prefix
                            r = a - n
                            base = np.int64(0)
                            j = 0
                            while True:
                                g = np.int64(r >= base + (np.int64(1) << j))
                                c = eg0 + j
                                s = cs[c]
                                low, rng, k = _lenc(low, rng, s, g)
                                bl -= k
                                if bl < 12:
                                    low, bl, nb, bb, pos = enc_write_out(low, bl, nb, bb, pos, out)
                                ca[c], cs[c] = _lupd(ca[c], s, csh0[c], csh1[c], g)
                                if g == 0:
                                    break
                                base += np.int64(1) << j
                                j += 1
                            if j > 0:
                                low, rng, bl, nb, bb, pos = enc_bypass_bins(
                                    low, rng, bl, nb, bb, pos, out, r - base, j
                                )
                            break
                    x += 1
        if br < nbr - 1:
            _lean_reset(ca, cs, csh0, csh1, eco)
            cls = 0
            rng = 256
            ep_tbo[br + 1] = 23 - bl + 8 * (pos + nb)
            ep_low[br + 1] = low & 255
            ep_dq[br + 1] = 0
    coder[0] = low
    coder[1] = rng
    coder[2] = bl
    coder[3] = nb
    coder[4] = bb
    coder[5] = pos
    return 0
