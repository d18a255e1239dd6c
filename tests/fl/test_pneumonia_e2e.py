"""End-to-end FL on PneumoniaMNIST (offline copy) with a tiny CNN: learning and compression."""

from pathlib import Path

import pytest
from fltools import tiny_model_fn

from fedbench.fl.config import load_config
from fedbench.fl.loop import run_fl

MIRROR = Path("/work/shared/data")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (MIRROR / "pneumoniamnist.npz").is_file(),
                       reason="offline copy /work/shared/data/pneumoniamnist.npz absent"),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fldata")


@pytest.mark.parametrize("method,direction", [
    ("fp32", "uni"), ("stc", "bi"), ("adf", "uni"), ("unscaled", "bi"),
])
def test_pneumonia_learns_and_compresses(data_root, tmp_path, method, direction):
    cfg = load_config("smoke", [
        f"data.root={data_root}", f"data.mirror={MIRROR}", "data.max_train_samples=600",
        "data.max_test_samples=300", "data.num_clients=3", "train.rounds=6", "device=cpu",
        "train.local_epochs=2", "train.lr=0.05",
        f"method.name={method}", f"setting.direction={direction}", "method.sparsity=0.9",
    ])
    summary = run_fl(cfg, tmp_path, model_fn=tiny_model_fn)
    # the test set is 62.5 % pneumonia; a model that learnt something beats 0.5 clearly
    assert summary["best_acc"] > 0.7, summary
    if method == "fp32":
        assert summary["compression_ratio"] == 1.0
    else:
        assert summary["compression_ratio"] > 1.0
        assert summary["compression_ratio_up"] > 5.0


def test_cli_run_with_registry_model_and_rerun(data_root, tmp_path, capsys):
    """`fedbench fl` with the preset's registry model (resnet20); a rerun resumes, not redoes."""
    import json

    from fedbench.cli import main

    out = tmp_path / "run"
    argv = ["fl", "--config", "smoke", "--out", str(out), "--no-progress",
            "--set", f"data.root={data_root}", "--set", f"data.mirror={MIRROR}",
            "--set", "data.max_train_samples=64", "--set", "data.max_test_samples=64",
            "--set", "data.num_clients=2", "--set", "train.rounds=2", "--device", "cpu"]
    assert main(argv) == 0
    for name in ("metrics.csv", "summary.json", "run.log", "checkpoint.pt"):
        assert (out / name).is_file()
    first = json.loads((out / "summary.json").read_text())
    assert first["config"]["model"]["name"] == "resnet20" and first["rounds"] == 2
    assert main(argv) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second == first  # finished run: nothing retrained, same summary
    assert "resuming after round 2" in (out / "run.log").read_text()
