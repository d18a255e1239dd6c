"""QSGD's buckets: one norm per `bucket_size` entries, as in the paper's experiments."""

from __future__ import annotations

import numpy as np
import pytest
from fltools import small_config

from fedbench.fl.compressors import TensorSpec
from fedbench.fl.config import ConfigError
from fedbench.fl.methods import get_method
from fedbench.fl.methods.qsgd import QsgdCompressor

TEMPLATE = {
    "conv.weight": TensorSpec((64, 64, 3, 3), "weight"),
    "fc.bias": TensorSpec((10,), "fine"),
}


def _update(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s.shape).astype(np.float32) for n, s in TEMPLATE.items()}


def _mse(bucket: int | None, levels: int = 2) -> float:
    comp = QsgdCompressor(TEMPLATE, levels=levels, bucket_size=bucket)
    u = _update()
    comp.set_context(0, 1, 0)
    dec = comp.decode(comp.encode(u))
    return float(np.mean((dec["conv.weight"] - u["conv.weight"]) ** 2))


@pytest.mark.parametrize("bucket", [1, 7, 512, None])
def test_each_entry_is_within_one_level_of_its_bucket_norm(bucket):
    comp = QsgdCompressor(TEMPLATE, levels=4, bucket_size=bucket)
    u = _update(1)
    comp.set_context(3, 2, 1)
    bits = comp.encode(u)
    dec = comp.decode(bits)
    assert sum(comp.tensor_bytes(bits).values()) == len(bits)
    for n, spec in TEMPLATE.items():
        flat, got = u[n].ravel().astype(np.float64), dec[n].ravel()
        b = spec.size if bucket is None else min(bucket, spec.size)
        for start in range(0, spec.size, b):
            part = slice(start, start + b)
            norm = np.linalg.norm(flat[part])
            assert np.abs(got[part] - flat[part]).max() <= norm / 4 * (1 + 1e-5) + 1e-6
            # decoded values are multiples of the bucket's step: sign * norm * l / s
            levels = np.abs(got[part]) / (np.float32(norm) / 4)
            np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)


def test_buckets_cut_the_quantization_variance():
    """At 2 levels one norm per 36,864-entry tensor gives a mean square error ~80 times the
    update's own (1 here); buckets of 512 bring it down about 10 times."""
    whole, buckets = _mse(None), _mse(512)
    assert whole > 5.0
    assert buckets < whole / 4


def test_the_stream_is_unbiased_over_seeds():
    comp = QsgdCompressor(TEMPLATE, levels=2, bucket_size=512)
    u = _update(2)
    mean = np.zeros(TEMPLATE["conv.weight"].shape)
    for k in range(200):
        comp.set_context(0, k, 0)
        mean += comp.decode(comp.encode(u))["conv.weight"] / 200
    err = np.abs(mean - u["conv.weight"]).mean()
    assert err < 0.2  # one draw: ~1.0; 200 draws: ~1/sqrt(200) of it


def test_bucket_size_is_checked():
    cls = get_method("qsgd")
    cls.validate(small_config(method={"name": "qsgd", "bucket_size": None}))
    with pytest.raises(ConfigError, match="method.bucket_size"):
        cls.validate(small_config(method={"name": "qsgd", "bucket_size": 0}))
