"""Fixtures of the FL tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fltools import synthetic_arrays

from fedbench.fl.data import federated_data_from_arrays


@pytest.fixture
def synthetic_data():
    """FederatedData with 4 iid clients of unequal size and a validation split, on the CPU."""
    x_tr, y_tr, x_te, y_te = synthetic_arrays()
    x_va, y_va, _, _ = synthetic_arrays(n_train=40, n_test=1, seed=7)
    idx = np.arange(len(x_tr))
    parts = [idx[:30], idx[30:70], idx[70:120], idx[120:]]
    return federated_data_from_arrays(
        x_tr, y_tr, x_te, y_te, parts, "classification", 2, x_val=x_va, y_val=y_va
    )


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: the test machine is shared and results stay reproducible."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
