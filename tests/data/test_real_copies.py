"""Prepare the real offline copies in ../shared/data (skipped where absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from fedbench.data import load_prepared, prepare

_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
MIRROR = Path(os.environ.get("FEDBENCH_DATA_MIRROR", _SHARED_DATA))


@pytest.mark.slow
@pytest.mark.skipif(
    not (MIRROR / "cifar10-jpeg.tar.gz").is_file(), reason=f"no offline CIFAR-10 copy in {MIRROR}"
)
def test_cifar10_offline_copy(tmp_path):
    p = load_prepared(prepare("cifar10", tmp_path / "raw", tmp_path / "cifar10.npz", mirror=MIRROR))
    assert p.x_train.shape == (50000, 32, 32, 3) and p.x_test.shape == (10000, 32, 32, 3)
    np.testing.assert_array_equal(np.bincount(p.y_train), [5000] * 10)
    np.testing.assert_array_equal(np.bincount(p.y_test), [1000] * 10)
    # official CIFAR-10 train statistics, within the JPEG re-encoding error
    np.testing.assert_allclose(p.mean, [0.4914, 0.4822, 0.4465], atol=0.005)


@pytest.mark.slow
@pytest.mark.skipif(
    not (MIRROR / "pneumoniamnist.npz").is_file(), reason=f"no PneumoniaMNIST copy in {MIRROR}"
)
def test_pneumoniamnist_offline_copy(tmp_path):
    p = load_prepared(
        prepare("pneumoniamnist", tmp_path / "raw", tmp_path / "p.npz", mirror=MIRROR)
    )
    assert p.x_train.shape == (4708, 28, 28, 1) and p.x_test.shape == (624, 28, 28, 1)
    assert p.x_val.shape == (524, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(p.y_train), [1214, 3494])
