"""`fedbench bench bytes`: one real update's bytes per tensor class, per coding variant."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fl"))
from fltools import small_config, synthetic_arrays, tiny_model_fn

from fedbench.bench.bytes import VARIANTS, format_markdown, run_bytes_bench
from fedbench.fl.data import federated_data_from_arrays
from fedbench.fl.ledger import CLASSES


@pytest.fixture
def data():
    x_tr, y_tr, x_te, y_te = synthetic_arrays()
    parts = [np.arange(len(x_tr))]
    return federated_data_from_arrays(x_tr, y_tr, x_te, y_te, parts, "classification", 2)


def test_byte_table_adds_up_and_the_exact_knob_holds(data, tmp_path):
    cfg = small_config(method={"name": "unscaled"}, data={"num_clients": 1})
    report = run_bytes_bench(cfg, data=data, model_fn=tiny_model_fn)
    rows = {r["variant"]: r for r in report["rows"]}
    assert set(rows) == set(VARIANTS)
    # every class is measured as sent, the running statistics too (under the default, auto,
    # a run recalibrates them and sends none)
    assert cfg.method.bn_stats == "recalibrate"
    assert report["params_by_class"]["bn_stats"] > 0
    assert all(r["bytes_bn_stats"] > 0 for r in rows.values())
    for r in rows.values():
        assert sum(r[f"bytes_{c}"] for c in CLASSES) == r["total_bytes"]
        assert r["ratio"] == pytest.approx(4 * report["params"] / r["total_bytes"])
    # the old single fine QP against the chosen class QPs: fewer non-weight bytes
    assert (
        rows["s0.999 nnc classes"]["nonweight_bytes"] < rows["s0.999 nnc nw-75"]["nonweight_bytes"]
    )
    for label in ("s0.9 qp-16 exact classes", "s0.99 qp-16 exact classes"):
        r = rows[label]
        assert abs(r["measured_sparsity"] - r["sparsity"]) < 2e-3, label
    assert "| s0.9 nnc nw-75 |" in format_markdown(report)
