"""`fedbench bench sim` on synthetic data: table columns, positive and consistent numbers."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fl"))
from fltools import small_config, synthetic_arrays, tiny_model_fn

from fedbench.bench.sim import COLUMNS, LABELS, run_sim_bench, write_outputs
from fedbench.cli import main
from fedbench.fl.aggregation import select_clients
from fedbench.fl.data import federated_data_from_arrays

SIZES = (37, 50, 73)


@pytest.fixture
def data():
    x_tr, y_tr, x_te, y_te = synthetic_arrays()
    idx = np.arange(len(x_tr))
    parts = [idx[:37], idx[37:87], idx[87:]]
    return federated_data_from_arrays(x_tr, y_tr, x_te, y_te, parts, "classification", 2)


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    yield
    torch.set_num_threads(old)


@pytest.mark.parametrize(
    "train",
    [
        {"local_epochs": 2},
        {
            "local_steps": 3,
            "precision": "bf16",
            "memory_format": "channels_last",
            "parallel_clients": 2,
            "client_fraction": 0.67,
        },
    ],
)
def test_sim_bench_table(data, tmp_path, train):
    cfg = small_config(data={"num_clients": 3, "augment": True}, train={"rounds": 5, **train})
    report = run_sim_bench(
        cfg, rounds=2, data=data, model_fn=tiny_model_fn, label="tiny", command="test"
    )
    rows = report["rows"]
    assert [r["round"] for r in rows] == [1, 2, "total"]
    assert report["rounds"] == 2 and report["precision"] == cfg.train.precision
    for r in rows[:2]:
        chosen = select_clients(3, cfg.train.client_fraction, cfg.seed, r["round"])
        assert r["clients"] == len(chosen) == (2 if "client_fraction" in train else 3)
        # 2 epochs of all samples (batch 16, no singleton batch among these sizes), or 3
        # batches: 16 + 16 + 5 for the client of 37 samples, else 3 x 16
        want = (
            sum(37 if SIZES[k] == 37 else 48 for k in chosen)
            if "local_steps" in train
            else 2 * sum(SIZES)
        )
        assert r["samples"] == want
    for r in rows:
        for k in (
            "train_s",
            "plain_s",
            "code_s",
            "eval_s",
            "step_s",
            "samples_per_s",
            "plain_samples_per_s",
        ):
            assert r[k] > 0 and math.isfinite(r[k]), k
        assert r["samples_per_s"] == pytest.approx(r["samples"] / r["train_s"])
        assert r["plain_samples_per_s"] == pytest.approx(r["samples"] / r["plain_s"])
        assert r["overhead_pct"] == pytest.approx(100 * (r["train_s"] / r["plain_s"] - 1))
        assert r["step_s"] >= r["train_s"] + r["code_s"] + r["eval_s"] - 1e-9
    total = rows[-1]
    for k in ("clients", "samples", "train_s", "plain_s", "code_s", "eval_s"):
        assert total[k] == pytest.approx(rows[0][k] + rows[1][k])
    csv_path, json_path = write_outputs(report, tmp_path / "out" / "bench")
    with open(csv_path) as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0]) == LABELS + COLUMNS and len(table) == 3
    assert table[2]["round"] == "total" and int(table[2]["samples"]) == total["samples"]
    assert table[0]["precision"] == cfg.train.precision and table[0]["config"] == "tiny"
    saved = json.loads(json_path.read_text())
    for key in (
        "versions",
        "cpu_model",
        "cpu_bf16",
        "loadavg_before",
        "loadavg_after",
        "threads",
        "torch_threads",
        "command",
        "config",
    ):
        assert key in saved, key
    assert saved["config"]["train"]["rounds"] == 2


def test_cli_rejects_bad_config(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "sim",
            "--config",
            "smoke",
            "--set",
            "train.precision=fp8",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    assert "train.precision" in capsys.readouterr().err
    assert main(["bench", "sim", "--config", "smoke", "--rounds", "0", "--out", str(tmp_path)]) == 2


MIRROR = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(not (MIRROR / "pneumoniamnist.npz").is_file(), reason="no data mirror")
def test_cli_on_the_smoke_preset(tmp_path, capsys):
    rc = main(
        [
            "bench",
            "sim",
            "--config",
            "smoke",
            "--rounds",
            "1",
            "--out",
            str(tmp_path),
            "--set",
            f"data.mirror={MIRROR}",
            "--set",
            f"data.root={tmp_path / 'data'}",
            "--set",
            "data.max_train_samples=96",
            "--set",
            "data.max_test_samples=64",
            "--set",
            "device=cpu",
        ]
    )
    assert rc == 0
    saved = json.loads((tmp_path / "sim_bench.json").read_text())
    assert saved["rows"][0]["samples"] > 0
    assert saved["command"].startswith("fedbench bench sim --config smoke")
    assert "sim_bench.csv" in capsys.readouterr().out
