"""Round trips, parallel entry-point decoding, damaged streams and settings of DeepCABAC."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fedbench.codec.cabac import (
    decode_levels,
    decode_levels_with_entry_points,
    default_chan_zero_list,
    encode_levels,
    encode_levels_with_entry_points,
    parse_hdsp_mode,
)
from fedbench.codec.errors import (
    CodecError,
    CorruptStreamError,
    InvalidTensorError,
    SettingsError,
    TruncatedStreamError,
)

DEC_KEYS = {
    "cabac_unary_length",
    "dq_flag",
    "scan_order",
    "general_profile_idc",
    "parent_node_id_present_flag",
    "hdspMode",
    "hdspHist",
    "codebook_size",
    "codebook_zero_offset",
    "baseWeights",
}


def _levels(rng, shape, kind):
    if kind == "gauss":
        x = np.round(rng.normal(0, 3, shape))
    elif kind == "wide":
        x = np.round(rng.laplace(0, 400, shape))
    elif kind == "sparse":
        x = np.where(rng.random(shape) < 0.02, rng.integers(-3, 4, shape), 0)
    elif kind == "zero_rows":
        x = np.round(rng.normal(0, 2, shape))
        x[rng.random(shape[0]) < 0.5] = 0
    else:
        x = np.zeros(shape)
    return x.astype(np.int32)


def _dec_args(enc_args):
    return {k: v for k, v in enc_args.items() if k in DEC_KEYS}


def _roundtrip(levels, **args):
    """Encode/decode; with DQ the input is first projected onto valid DQ levels by one pass."""
    chan = default_chan_zero_list(levels, args.get("general_profile_idc", 1))
    args = {**args, "ChanZeroList": chan}
    data = encode_levels(levels, **args)
    dec = decode_levels(data, levels.shape, **_dec_args(args))
    assert dec.shape == levels.shape and dec.dtype == np.int32
    if args.get("dq_flag"):
        # levels invalid for the DQ state walk are mapped; the result must be a fixed point
        data2 = encode_levels(dec, **args)
        if not args.get("param_opt_flag"):
            # (the param_opt pseudo-pass sees the raw levels, so its choices may differ)
            assert data2 == data
        dec2 = decode_levels(data2, levels.shape, **_dec_args(args))
        np.testing.assert_array_equal(dec2, dec)
    else:
        skip = np.zeros(levels.shape, bool)
        if args.get("rowSkipFlag") and levels.ndim >= 2 and args.get("general_profile_idc", 1) == 1:
            skip[chan.astype(bool)] = True
        np.testing.assert_array_equal(dec, np.where(skip, 0, levels))
    return data


COMBOS = list(
    itertools.product(
        [0, 1],  # dq_flag
        [0, 1, 2],  # scan_order
        [0, 1],  # param_opt_flag
        [0, 1],  # rowSkipFlag
        [0, 1],  # general_profile_idc
    )
)


@pytest.mark.parametrize("dq,scan,popt,rskip,prof", COMBOS)
def test_roundtrip_setting_combinations(dq, scan, popt, rskip, prof):
    rng = np.random.default_rng(1000 * dq + 100 * scan + 10 * popt + 2 * rskip + prof)
    for shape, kind in (((37, 21), "zero_rows"), ((20, 3, 3), "gauss"), ((50,), "sparse")):
        lv = _levels(rng, shape, kind)
        _roundtrip(
            lv,
            dq_flag=dq,
            scan_order=scan,
            param_opt_flag=popt,
            rowSkipFlag=rskip,
            general_profile_idc=prof,
        )


@pytest.mark.parametrize("scan", [3, 4])
def test_roundtrip_large_blocks(scan):
    rng = np.random.default_rng(scan)
    _roundtrip(_levels(rng, (150, 70), "gauss"), scan_order=scan)
    _roundtrip(_levels(rng, (150, 70), "zero_rows"), scan_order=scan, dq_flag=1, rowSkipFlag=1)


@pytest.mark.parametrize("n", [1, 2, 4, 10, 11, 16])
def test_roundtrip_gt_flag_counts(n):
    rng = np.random.default_rng(n)
    _roundtrip(_levels(rng, (30, 40), "wide"), cabac_unary_length=n)
    _roundtrip(_levels(rng, (30, 40), "gauss"), cabac_unary_length=n, param_opt_flag=1)


def test_roundtrip_extreme_values():
    lv = np.array([0, 1, -1, 2**30, -(2**30), 2**31 - 1, -(2**31 - 1), 12, 13, -14], np.int32)
    _roundtrip(lv)
    _roundtrip(lv.reshape(2, 5), param_opt_flag=1)


@pytest.mark.parametrize("mode", ["TensorOn", "TensorOff", "AlwaysOff"])
@pytest.mark.parametrize("dq", [0, 1])
def test_roundtrip_hdsp(mode, dq):
    rng = np.random.default_rng(7)
    lv = _levels(rng, (24, 30), "sparse")
    hist = (rng.random(lv.shape) < 0.3).astype(np.int8)
    _roundtrip(
        lv,
        parent_node_id_present_flag=1,
        hdspMode=mode,
        hdspHist=hist,
        dq_flag=dq,
        param_opt_flag=1,
    )


@pytest.mark.parametrize("dq,scan,rskip", [(0, 0, 0), (1, 0, 1), (0, 1, 1), (1, 2, 0)])
def test_roundtrip_tca(dq, scan, rskip):
    rng = np.random.default_rng(11)
    base = _levels(rng, (40, 27), "gauss")
    lv = np.where(rng.random(base.shape) < 0.5, base, _levels(rng, (40, 27), "sparse")).astype(
        np.int32
    )
    _roundtrip(
        lv, baseWeights=base, dq_flag=dq, scan_order=scan, rowSkipFlag=rskip, param_opt_flag=1
    )


@pytest.mark.parametrize("size,off", [(1, 0), (2, 0), (2, 1), (6, 0), (6, 5), (9, 4), (40, 17)])
@pytest.mark.parametrize("prof", [0, 1])
def test_roundtrip_codebook(size, off, prof):
    rng = np.random.default_rng(size * 100 + off)
    lv = rng.integers(-off, size - off, (12, 33)).astype(np.int32)
    data = _roundtrip(
        lv, codebook_size=size, codebook_zero_offset=off, general_profile_idc=prof, param_opt_flag=1
    )
    if size == 1 and prof == 1:
        assert data == b"\xfe\x80"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=4),
    seed=st.integers(0, 2**31),
    kind=st.sampled_from(["gauss", "wide", "sparse", "zero_rows", "zeros"]),
    scan=st.integers(0, 4),
    dq=st.integers(0, 1),
    popt=st.integers(0, 1),
    rskip=st.integers(0, 1),
)
def test_roundtrip_hypothesis(shape, seed, kind, scan, dq, popt, rskip):
    rng = np.random.default_rng(seed)
    lv = _levels(rng, tuple(shape), kind)
    _roundtrip(lv, scan_order=scan, dq_flag=dq, param_opt_flag=popt, rowSkipFlag=rskip)


@pytest.mark.parametrize("dq,rskip", [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("scan", [1, 2])
def test_parallel_entry_point_decode_equals_sequential(dq, rskip, scan):
    rng = np.random.default_rng(dq * 10 + rskip + scan * 100)
    lv = _levels(rng, (131, 45), "zero_rows")
    args = {"dq_flag": dq, "rowSkipFlag": rskip, "scan_order": scan, "param_opt_flag": 1}
    data, eps = encode_levels_with_entry_points(lv, **args)
    nbr = -(-131 // (4 << scan))
    assert eps.dtype == np.uint64 and eps.size == nbr - 1
    seq, eps2 = decode_levels_with_entry_points(data, lv.shape, **_dec_args(args))
    np.testing.assert_array_equal(eps, eps2)
    for threads in (1, 2, 3, 8, None):
        par = decode_levels(
            data, lv.shape, entry_points=eps, num_threads=threads, **_dec_args(args)
        )
        np.testing.assert_array_equal(par, seq)


def test_entry_points_empty_for_single_block_row():
    lv = _levels(np.random.default_rng(0), (10, 512), "gauss")
    data, eps = encode_levels_with_entry_points(lv, scan_order=2)
    assert eps.size == 0
    np.testing.assert_array_equal(decode_levels(data, lv.shape, scan_order=2, entry_points=eps), lv)


def test_tampered_entry_points_raise():
    lv = _levels(np.random.default_rng(3), (64, 40), "gauss")
    data, eps = encode_levels_with_entry_points(lv, scan_order=1)
    bad = eps.copy()
    bad[2] += np.uint64(1 << 11)
    with pytest.raises(CorruptStreamError):
        decode_levels(data, lv.shape, scan_order=1, entry_points=bad)
    with pytest.raises(CorruptStreamError):
        decode_levels(data, lv.shape, scan_order=1, entry_points=eps[:-1])


def _stream():
    lv = _levels(np.random.default_rng(5), (16, 12), "gauss")
    return lv, encode_levels(lv, scan_order=1)


def test_truncated_streams_raise():
    lv, data = _stream()
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode_levels(data[:cut], lv.shape, scan_order=1)
    with pytest.raises(TruncatedStreamError):
        decode_levels(data[: len(data) // 2], lv.shape, scan_order=1)


def test_trailing_bytes_raise():
    lv, data = _stream()
    assert decode_levels(data, lv.shape, scan_order=1).shape == lv.shape
    with pytest.raises(CorruptStreamError, match="trailing"):
        decode_levels(data + b"\x00", lv.shape, scan_order=1)


def test_flipped_bits_never_crash():
    lv, data = _stream()
    raised = 0
    for i in range(len(data) * 8):
        b = bytearray(data)
        b[i // 8] ^= 1 << (i % 8)
        try:
            out = decode_levels(bytes(b), lv.shape, scan_order=1)
            assert out.shape == lv.shape
        except CodecError:
            raised += 1
    assert raised > len(data) * 4  # the termination checks catch most flips


@settings(max_examples=60, deadline=None)
@given(
    garbage=st.binary(min_size=0, max_size=200),
    rows=st.integers(1, 40),
    width=st.integers(1, 40),
    dq=st.integers(0, 1),
    scan=st.integers(0, 4),
)
@example(garbage=b"", rows=4, width=4, dq=0, scan=0)
@example(garbage=b"\x80", rows=4, width=4, dq=1, scan=1)
def test_garbage_raises_a_stream_error_or_decodes_a_valid_tensor(garbage, rows, width, dq, scan):
    # The settings and shape are valid, so the only thing wrong is the bytes: that must be a
    # CorruptStreamError (or its TruncatedStreamError), never a SettingsError, another
    # CodecError or an exception from inside the kernels.
    try:
        out = decode_levels(garbage, (rows, width), dq_flag=dq, scan_order=scan)
    except CorruptStreamError as exc:
        if len(garbage) < 2:  # shorter than the shortest stream (b"\xfe\x80")
            assert isinstance(exc, TruncatedStreamError)
        return
    # Random bytes pass the termination bin, stop pattern and length checks only by chance
    # (none of 20,000 tries did); then the result must be a tensor the coder can code again.
    assert len(garbage) >= 2
    assert out.shape == (rows, width) and out.dtype == np.int32
    again = encode_levels(out, dq_flag=dq, scan_order=scan)
    np.testing.assert_array_equal(decode_levels(again, out.shape, dq_flag=dq, scan_order=scan), out)


def test_wrong_shape_decodes_the_same_matrix_view_or_raises_a_stream_error():
    lv, data = _stream()  # 16x12, 8x8 blocks (scan_order 1): two block rows
    # The coder sees a tensor as a matrix (rows = dim 0, width = product of the other dims):
    # shapes with the same matrix view code the very same bins, so they decode to the levels.
    for shape in [(16, 3, 4), (16, 12, 1), (16, 1, 12), (16, 2, 2, 3)]:
        out = decode_levels(data, shape, scan_order=1)
        assert out.shape == shape and out.dtype == np.int32
        np.testing.assert_array_equal(out, lv.reshape(shape))
    # Any other view reads different bins (another number of levels, another block scan, or
    # no side-info bin for 1-D / Nx1 / 1xN). For this fixed stream each is caught by the
    # termination checks, as a stream error: the settings themselves are fine.
    for shape in [
        (16, 13),
        (16, 11),
        (17, 12),
        (12, 16),
        (8, 24),
        (192,),
        (192, 1),
        (1, 192),
        (1,),
        (5, 5, 5),
        (200, 100),
    ]:
        with pytest.raises(CorruptStreamError):
            decode_levels(data, shape, scan_order=1)
    # More levels than the bytes can hold even at the cheapest bin cost: refused up front.
    with pytest.raises(TruncatedStreamError, match="too short to hold"):
        decode_levels(data, (1000, 1000), scan_order=1)


def test_raster_stream_decodes_under_every_2d_view():
    """Raster scan without row skip: one bin sequence over the flattened levels.

    The neighbour context runs across row boundaries and the only side information is the
    row-skip bypass bin of a matrix, so every view with rows > 1 and width > 1 decodes the
    same levels; a 1-D, Nx1 or 1xN view has no side-info bin and must fail.
    """
    lv, _ = _stream()
    data = encode_levels(lv, scan_order=0)
    for shape in [(12, 16), (8, 24), (2, 96), (96, 2), (4, 4, 12), (3, 8, 8)]:
        np.testing.assert_array_equal(decode_levels(data, shape), lv.reshape(shape))
    for shape in [(192,), (192, 1), (1, 192)]:
        with pytest.raises(CorruptStreamError):
            decode_levels(data, shape)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"dq_flag": 2},
        {"scan_order": 5},
        {"scan_order": -1},
        {"general_profile_idc": 2},
        {"param_opt_flag": "yes"},
        {"cabac_unary_length": 0},
        {"cabac_unary_length": 1.5},
        {"hdspMode": "Sometimes"},
        {"hdspMode": 5},
        {"codebook_size": -1},
        {"codebook_size": 4, "codebook_zero_offset": 4},
        {"codebook_zero_offset": 1},
        {"rowSkipFlag": 1, "ChanZeroList": np.zeros(3, np.int32)},
        {"rowSkipFlag": 1, "ChanZeroList": np.full(4, 2, np.int32)},
        {"hdspMode": "TensorOn", "parent_node_id_present_flag": 1},
    ],
)
def test_settings_validation(kwargs):
    lv = np.zeros((4, 6), np.int32)
    with pytest.raises(SettingsError):
        encode_levels(lv, **kwargs)


def test_unknown_settings_rejected():
    with pytest.raises(SettingsError):
        encode_levels_with_entry_points(np.zeros((4, 4), np.int32), scan=1)
    with pytest.raises(SettingsError, match="unknown encode setting"):
        encode_levels(np.zeros((4, 4), np.int32), scan=1)
    with pytest.raises(SettingsError, match="unknown decode setting"):
        decode_levels(encode_levels(np.zeros((4, 4), np.int32)), (4, 4), ChanZeroList=None)


def test_invalid_tensors():
    with pytest.raises(InvalidTensorError):
        encode_levels(np.zeros((0, 3), np.int32))
    with pytest.raises(InvalidTensorError):
        encode_levels(np.array([0.5, 1.0]))
    with pytest.raises(InvalidTensorError):
        encode_levels(np.array([2**31], np.int64))
    with pytest.raises(InvalidTensorError):
        encode_levels(np.array([5, 0], np.int32), codebook_size=3, codebook_zero_offset=1)
    with pytest.raises(InvalidTensorError):
        encode_levels(np.zeros((4, 4), np.int32), baseWeights=np.zeros(3, np.int32))
    with pytest.raises(SettingsError):
        decode_levels(b"\x00\x00", (2, 2), bogus=1)
    with pytest.raises(SettingsError):
        decode_levels("text", (2, 2))


def test_hdsp_mode_spellings():
    assert parse_hdsp_mode("AlwaysOff") == 99
    assert parse_hdsp_mode("HdspMode.TensorOn") == 1
    assert parse_hdsp_mode(0) == 0
    assert parse_hdsp_mode("tensoroff") == 0


def test_known_small_stream():
    # README §6.1: the 1-D length-1 vector [1] is 8d 00 23 38
    assert encode_levels(np.array([1], np.int32)) == bytes.fromhex("8d002338")
    np.testing.assert_array_equal(decode_levels(bytes.fromhex("8d002338"), (1,)), [1])


def test_large_levels_grow_buffer():
    rng = np.random.default_rng(9)
    lv = (rng.integers(2**29, 2**30, 5000) * rng.choice([-1, 1], 5000)).astype(np.int32)
    data = encode_levels(lv)
    np.testing.assert_array_equal(decode_levels(data, lv.shape), lv)


def _reference_encode(dc, lv, *, n, popt, dq, scan, rskip, chan):
    enc = dc.Encoder()
    enc.initCtxModels(n, popt)
    enc.encodeLayer(
        np.ascontiguousarray(lv, np.int32),
        dq,
        scan,
        1,
        0,
        rskip,
        chan.astype(np.int32),
        dc.HdspMode.AlwaysOff,
        np.zeros(2, np.int8),
        0,
        0,
    )
    return bytes(enc.finish())


@pytest.mark.slow
def test_differential_against_reference_deepcabac():
    """Bit-exact against nncodec's C++ coder on random (incl. long zero-run) tensors."""
    dc = pytest.importorskip("nncodec.extensions.deepCABAC")
    rng = np.random.default_rng(2024)
    cases = 0
    for shape in [(300, 200), (4000,), (64, 3, 3, 3), (257, 129)]:
        for density in (0.0005, 0.01, 0.3, 1.0):
            x = np.round(rng.normal(0, 6, shape)) * (rng.random(shape) < density)
            x[rng.random(shape[0]) < 0.2] = 0
            lv = x.astype(np.int32)
            for dq, scan, rskip, popt in [
                (0, 0, 0, 0),
                (0, 1, 1, 0),
                (1, 0, 0, 1),
                (1, 2, 1, 0),
                (0, 3, 0, 1),
            ]:
                chan = default_chan_zero_list(lv)
                if dq:
                    # valid DQ levels: project through one encode/decode of our own coder
                    lv2 = decode_levels(
                        encode_levels(lv, dq_flag=1, scan_order=scan),
                        lv.shape,
                        dq_flag=1,
                        scan_order=scan,
                    )
                else:
                    lv2 = lv
                ref = _reference_encode(
                    dc, lv2, n=11, popt=popt, dq=dq, scan=scan, rskip=rskip, chan=chan
                )
                ours = encode_levels(
                    lv2,
                    param_opt_flag=popt,
                    dq_flag=dq,
                    scan_order=scan,
                    rowSkipFlag=rskip,
                    ChanZeroList=chan,
                )
                assert ours == ref, (shape, density, dq, scan, rskip, popt)
                cases += 1
    assert cases == 80


def test_huge_shape_on_short_stream_is_rejected_before_allocating():
    _, data = _stream()
    with pytest.raises(TruncatedStreamError, match="too short"):
        decode_levels(data, (2**31 - 1,))
    with pytest.raises(CodecError):
        decode_levels(data, (2**20, 2**10), rowSkipFlag=1)


def test_all_zero_large_tensor_roundtrips():
    lv = np.zeros((3000, 700), np.int32)
    data = encode_levels(lv)
    assert len(data) < 4000
    np.testing.assert_array_equal(decode_levels(data, lv.shape), lv)
    data = encode_levels(lv, rowSkipFlag=1)
    np.testing.assert_array_equal(decode_levels(data, lv.shape), lv)
