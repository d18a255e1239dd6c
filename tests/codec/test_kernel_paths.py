"""The lean common-path kernels and the general kernels give the same bytes and levels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fedbench.codec import _kernels as K
from fedbench.codec import cabac
from fedbench.codec.cabac import (
    CabacSettings,
    decode_levels,
    decode_levels_with_entry_points,
    encode_levels_with_entry_points,
    general_kernels,
)


@st.composite
def _lean_case(draw: st.DrawFn) -> tuple[np.ndarray, CabacSettings]:
    """Levels and settings for which the lean kernels are taken (no DQ/TCA/HDSP/codebook)."""
    s = CabacSettings(
        cabac_unary_length=draw(st.sampled_from([1, 2, 4, 11, 32])),
        param_opt_flag=draw(st.integers(0, 1)),
        scan_order=draw(st.integers(0, 4)),
        general_profile_idc=draw(st.integers(0, 1)),
        parent_node_id_present_flag=draw(st.integers(0, 1)),
        rowSkipFlag=draw(st.integers(0, 1)),
        hdspMode=draw(st.sampled_from(["AlwaysOff", "TensorOff"])),
    )
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if draw(st.booleans()):
        shape: tuple[int, ...] = (draw(st.integers(1, 5000)),)
    else:
        shape = (draw(st.integers(1, 140)), draw(st.integers(1, 90)))
    # From long zero runs (the zero-run fast path needs saturated contexts) to dense tensors,
    # magnitudes from gt flags only to long Exp-Golomb codes and the int32 limit.
    density = draw(st.sampled_from([0.0, 0.001, 0.02, 0.3, 1.0]))
    scale = draw(st.sampled_from([1.0, 8.0, 300.0, 1e6]))
    lv = np.round(rng.laplace(0, scale, shape)) * (rng.random(shape) < density)
    lv = np.clip(lv, -(2**31 - 1), 2**31 - 1).astype(np.int32)
    if lv.ndim == 2:
        lv[rng.random(shape[0]) < draw(st.sampled_from([0.0, 0.3]))] = 0  # rows to skip
    if draw(st.booleans()) and lv.size:
        lv.reshape(-1)[rng.integers(0, lv.size)] = draw(st.sampled_from([2**31 - 1, -(2**31 - 1)]))
    return lv, s


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_lean_case())
def test_lean_and_general_kernels_agree(case: tuple[np.ndarray, CabacSettings]) -> None:
    lv, s = case
    data, eps = encode_levels_with_entry_points(lv, s)
    with general_kernels():
        data_g, eps_g = encode_levels_with_entry_points(lv, s)
    assert data == data_g
    np.testing.assert_array_equal(eps, eps_g)
    dec, dec_eps = decode_levels_with_entry_points(data, lv.shape, s)
    with general_kernels():
        dec_g, dec_eps_g = decode_levels_with_entry_points(data, lv.shape, s)
        par_g = decode_levels(data, lv.shape, s, entry_points=eps, num_threads=2)
    par = decode_levels(data, lv.shape, s, entry_points=eps, num_threads=2)
    for out in (dec, dec_g, par, par_g):
        np.testing.assert_array_equal(out, lv)
    np.testing.assert_array_equal(dec_eps, eps)
    np.testing.assert_array_equal(dec_eps_g, eps)


def _general_flag() -> int:
    return int(cabac._build_params((4, 4), CabacSettings(), tca=False, encoder=True)[K.P_GENERAL])


def test_general_kernels_switch_is_scoped() -> None:
    assert _general_flag() == 0
    with general_kernels():
        assert _general_flag() == 1
        with general_kernels():
            assert _general_flag() == 1
        assert _general_flag() == 1  # the inner block restores, not clears
    assert _general_flag() == 0
    with pytest.raises(RuntimeError), general_kernels():
        raise RuntimeError
    assert _general_flag() == 0
