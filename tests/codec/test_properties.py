"""Property tests: random tensors and settings round-trip; mutated streams never pass silently."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedbench.codec import CodecConfig, CodecError, api, container, decode, encode, step_size

_SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)
_int_dtypes = st.sampled_from([np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8])
_float_dtypes = st.sampled_from([np.float16, np.float32, np.float64])


@st.composite
def _tensor(draw: st.DrawFn) -> np.ndarray:
    shape = draw(_shapes)
    if draw(st.booleans()):
        dtype = np.dtype(draw(_int_dtypes))
        if dtype == np.bool_:
            return draw(hnp.arrays(dtype, shape))
        info = np.iinfo(dtype)
        lo, hi = max(info.min, -(2**31) + 1), min(info.max, 2**31 - 1)
        return draw(hnp.arrays(dtype, shape, elements=st.integers(lo, hi)))
    dtype = np.dtype(draw(_float_dtypes))
    scale = draw(st.sampled_from([2.0**-10, 2.0**-6, 1.0]))
    width = min(32, dtype.itemsize * 8)
    elements = st.floats(-scale, scale, allow_nan=False, allow_subnormal=False, width=width)
    arr = draw(hnp.arrays(dtype, shape, elements=elements))
    if draw(st.booleans()):  # sparse updates: most entries exactly zero
        arr[np.asarray(draw(hnp.arrays(np.bool_, shape)))] = 0
    return arr


_models = st.dictionaries(st.text(min_size=0, max_size=12), _tensor(), min_size=1, max_size=4)


@st.composite
def _config(draw: st.DrawFn) -> CodecConfig:
    mode = draw(st.sampled_from(["nnc", "sparse"]))
    return CodecConfig(
        mode=mode,
        qp=draw(st.integers(-48, -20)),
        qp_density=draw(st.sampled_from([1, 2, 3])),
        nonweight_qp=draw(st.integers(-80, -40)),
        dq=draw(st.booleans()),
        param_opt=draw(st.booleans()),
        scan_order=draw(st.integers(0, 4)),
        row_skip=draw(st.booleans()),
        cabac_unary_length=draw(st.sampled_from([4, 10, 11])),
        num_threads=draw(st.sampled_from([1, 2, None])),
        segment_elements=draw(st.sampled_from([0, 4096])),
    )


def _assert_close(x: dict, stream: bytes, cfg: CodecConfig) -> None:
    y = decode(stream)
    # The QP actually used (a too-fine QP is coarsened to keep levels in int32).
    qps = {e.name: e.qp for e in container.parse(stream, max_elements=1 << 20)}
    assert list(x) == list(y)
    for name, a in x.items():
        b = y[name]
        assert b.dtype == a.dtype and b.shape == a.shape
        if a.dtype.kind != "f":
            assert np.array_equal(a, b)
            continue
        weight = a.ndim >= 2
        assert qps[name] >= (cfg.qp if weight else cfg.nonweight_qp)
        step = step_size(qps[name], cfg.qp_density)
        # URQ: half a step; the DQ trellis may take the second-nearest level (< 2 steps).
        tol = step * (2.0 if cfg.dq and weight else 0.5) * (1 + 1e-6)
        # The reference's float32 arithmetic (scale * w, step * level) adds a few ulps.
        amax = float(np.abs(a.astype(np.float64)).max(initial=0.0))
        tol += 8 * float(np.finfo(np.float32).eps) * amax
        if a.dtype == np.float16:
            tol += 1e-3 * amax
        err = np.abs(b.astype(np.float64) - a.astype(np.float64)).max(initial=0.0)
        assert err <= tol


@_SETTINGS
@given(_models, _config())
def test_roundtrip(x: dict, cfg: CodecConfig) -> None:
    _assert_close(x, encode(x, cfg), cfg)


@_SETTINGS
@given(_models, _config())
def test_parallel_equals_serial(x: dict, cfg: CodecConfig) -> None:
    one = CodecConfig(**{**cfg.__dict__, "num_threads": 1})
    many = CodecConfig(**{**cfg.__dict__, "num_threads": 3})
    saved = api._PARALLEL_MIN_ELEMENTS, api._PARALLEL_MIN_PER_ITEM
    api._PARALLEL_MIN_ELEMENTS = api._PARALLEL_MIN_PER_ITEM = 0  # threads even for tiny input
    try:
        serial = encode(x, one)
        assert serial == encode(x, many)
        a, b = decode(serial, num_threads=1), decode(serial, num_threads=3)
    finally:
        api._PARALLEL_MIN_ELEMENTS, api._PARALLEL_MIN_PER_ITEM = saved
    assert all(np.array_equal(a[k], b[k]) for k in a)


@st.composite
def _mutation(draw: st.DrawFn, n: int) -> tuple[str, int, int]:
    kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "set"]))
    pos = draw(st.integers(0, n - 1))
    return kind, pos, draw(st.integers(0, 255))


def _mutate(data: bytes, kind: str, pos: int, val: int) -> bytes:
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << (val % 8))]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + bytes([val]) + data[pos:]
    if kind == "delete":
        return data[:pos] + data[pos + 1 :]
    return data[:pos] + bytes([val]) + data[pos + 1 :]


@_SETTINGS
@given(_models, _config(), st.data())
def test_mutated_streams_are_rejected(x: dict, cfg: CodecConfig, data: st.DataObject) -> None:
    stream = encode(x, cfg)
    reference = decode(stream)
    for _ in range(5):
        kind, pos, val = data.draw(_mutation(len(stream)))
        bad = _mutate(stream, kind, pos, val)
        if bad == stream:
            continue
        try:
            out = decode(bad)
        except CodecError:
            continue
        # Only a CRC collision (about 2^-32) could get here; then the result must be intact.
        assert list(out) == list(reference)
        assert all(np.array_equal(out[k], reference[k]) for k in out)
