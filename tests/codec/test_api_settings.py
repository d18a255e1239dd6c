"""encode's per-tensor settings: qp= overrides the QP chosen by rank, in one stream."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fedbench.codec import (
    CodecConfig,
    InvalidTensorError,
    SettingsError,
    container,
    decode,
    encode,
    step_size,
)
from fedbench.codec.api import DEFAULT_MAX_ELEMENTS


def _pin_tensors() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2024)
    return {
        "w": rng.normal(0, 0.01, (12, 20)).astype(np.float32),
        "a.adf_scale": rng.normal(0, 0.001, 12).astype(np.float32),
        "b": rng.normal(0, 0.01, 12).astype(np.float32),
        "w2": rng.normal(0, 0.02, (6, 5, 3)).astype(np.float32),
    }


# sha256 of the streams the code before qp= made for the same tensors: three encode calls
# ({a.adf_scale} with nonweight_qp=-50, {w2} with qp=-40, the rest with the config) spliced
# into one container by fl/compressors.py's former _merge_streams.
_PINNED = {
    ("nnc", False): (364, "83da9c0fe3858bd95b632712d6821d3ce510f01c85966eda8042a2205043c4d7"),
    ("nnc", True): (322, "ba550e5e04c22400910300f3bc2e71bf70e54f1ebd1437c0d0955128f7710dff"),
    ("sparse", False): (302, "50ab7b40497a4f08b197516618c1823ef148ee0e7d164e6f0705b5dca13a534a"),
}


@pytest.mark.parametrize(("mode", "dq"), list(_PINNED))
def test_qp_override_bytes_equal_the_former_spliced_streams(mode: str, dq: bool) -> None:
    data = encode(_pin_tensors(), CodecConfig(mode=mode, dq=dq), qp={"a.adf_scale": -50, "w2": -40})
    assert (len(data), hashlib.sha256(data).hexdigest()) == _PINNED[(mode, dq)]


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_qp_override_is_stored_and_decoded_at_that_step(mode: str) -> None:
    t = _pin_tensors()
    cfg = CodecConfig(mode=mode)
    override = {"a.adf_scale": -50, "w2": -40}
    data = encode(t, cfg, qp=override)
    want = {"w": cfg.qp, "b": cfg.nonweight_qp, **override}
    entries = container.parse(data, max_elements=DEFAULT_MAX_ELEMENTS)
    assert [e.name for e in entries] == list(t)
    assert {e.name: e.qp for e in entries} == want
    dec = decode(data)
    for name, qp in want.items():
        step = step_size(qp, cfg.qp_density)
        err = np.abs(dec[name].astype(np.float64) - t[name]).max()
        assert err <= step / 2 * (1 + 1e-6), name
    # the coarse factor really is coarser than the fine tensors' QP would give
    assert np.abs(dec["a.adf_scale"] - t["a.adf_scale"]).max() > step_size(cfg.nonweight_qp, 2)
    # tensors without an override are coded as without qp= at all
    plain = decode(encode(t, cfg))
    for name in ("w", "b"):
        np.testing.assert_array_equal(dec[name], plain[name])


def test_qp_override_equal_to_the_rank_choice_changes_nothing() -> None:
    t = _pin_tensors()
    cfg = CodecConfig()
    same = {"w": cfg.qp, "w2": cfg.qp, "a.adf_scale": cfg.nonweight_qp, "b": cfg.nonweight_qp}
    assert encode(t, cfg, qp=same) == encode(t, cfg) == encode(t, cfg, qp={})


@pytest.mark.filterwarnings("ignore:overflow encountered")
def test_qp_override_too_fine_is_still_coarsened() -> None:
    big = {"x": np.array([1e30, -1e30, 1.0], np.float32)}
    data = encode(big, qp={"x": -200})
    (entry,) = container.parse(data, max_elements=DEFAULT_MAX_ELEMENTS)
    assert entry.qp > -200
    np.testing.assert_allclose(decode(data)["x"][:2], big["x"][:2], rtol=1e-6)


@pytest.mark.parametrize(
    ("qp", "exc", "match"),
    [
        ({"nope": -40}, InvalidTensorError, "unknown tensors"),
        ({"w": 1.5}, SettingsError, r"qp\['w'\] must be an integer"),
        ({"w": True}, SettingsError, "must be an integer"),
        ({"w": 5000}, SettingsError, r"-4096\.\.4096"),
        ({"w": -600}, SettingsError, "float32 range"),
        ({"i": -40}, SettingsError, "losslessly"),
        ([("w", -40)], SettingsError, "mapping"),
    ],
)
def test_qp_override_rejects_bad_settings(qp: object, exc: type, match: str) -> None:
    t = {"w": np.ones((3, 4), np.float32), "i": np.arange(4, dtype=np.int32)}
    with pytest.raises(exc, match=match):
        encode(t, qp=qp)  # type: ignore[arg-type]
