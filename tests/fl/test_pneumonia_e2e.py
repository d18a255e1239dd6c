"""End-to-end FL on PneumoniaMNIST (offline copy) with a tiny CNN: learning and compression."""

from pathlib import Path

import pytest
from fltools import tiny_model_fn

from fedbench.fl.config import load_config
from fedbench.fl.loop import run_fl

MIRROR = Path(__file__).resolve().parents[2].parent / "shared" / "data"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not (MIRROR / "pneumoniamnist.npz").is_file(),
        reason="offline copy ../shared/data/pneumoniamnist.npz absent",
    ),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("fldata")


@pytest.mark.parametrize(
    "method,direction",
    [
        ("fp32", "uni"),
        ("stc", "bi"),
        ("adf", "uni"),
        ("unscaled", "bi"),
    ],
)
def test_pneumonia_learns_and_compresses(data_root, tmp_path, method, direction):
    cfg = load_config(
        "smoke",
        [
            f"data.root={data_root}",
            f"data.mirror={MIRROR}",
            "data.max_train_samples=600",
            "data.max_test_samples=300",
            "data.num_clients=3",
            "train.rounds=6",
            "device=cpu",
            "train.local_epochs=2",
            "train.lr=0.05",
            f"method.name={method}",
            f"setting.direction={direction}",
            "method.sparsity=0.9",
        ],
    )
    summary = run_fl(cfg, tmp_path, model_fn=tiny_model_fn)
    # The test set is 62.5 % pneumonia: a model must clearly beat the majority class.
    assert 0.6 < summary["majority_acc"] < 0.68  # 300 of the 624 test images
    assert summary["final_acc"] > summary["majority_acc"] + 0.1, summary
    assert summary["best_acc"] > summary["majority_acc"] + 0.1, summary
    assert summary["selection"] == "validation"
    ratio, ratio_up = summary["compression_ratio"], summary["compression_ratio_up"]
    if method == "fp32":
        assert ratio == 1.0 and ratio_up == 1.0
    elif direction == "uni":
        # downlink float32 models: 6 uplinks + 5 downlinks per client at most 11/5 = 2.2x
        # the tiny CNN's 1-D tensors (BN, biases: 15 % of it) cap its uplink ratio near 6x
        assert 1.5 < ratio < 2.2 and ratio_up > 4
    else:
        assert ratio > 4 and ratio_up > 4


def test_validation_split_is_held_out_of_training(data_root):
    from fedbench.fl.data import load_federated_data

    cfg = load_config(
        "smoke",
        [
            f"data.root={data_root}",
            f"data.mirror={MIRROR}",
            "data.max_train_samples=600",
            "data.num_clients=3",
            "device=cpu",
            "data.val_fraction=0.1",
        ],
    )
    data = load_federated_data(cfg, "cpu")
    assert len(data.x_val) == 60 and len(data.x_train) == 540
    assert sum(data.client_sizes()) == 540
    train = {bytes(x.numpy()) for x in data.x_train}
    assert not any(bytes(x.numpy()) in train for x in data.x_val)


def test_cli_run_with_registry_model_and_rerun(data_root, tmp_path, capsys):
    """`fedbench fl` with the preset's registry model (resnet20); a rerun resumes, not redoes."""
    import json

    from fedbench.cli import main

    out = tmp_path / "run"
    argv = [
        "fl",
        "--config",
        "smoke",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        f"data.root={data_root}",
        "--set",
        f"data.mirror={MIRROR}",
        "--set",
        "data.max_train_samples=64",
        "--set",
        "data.max_test_samples=64",
        "--set",
        "data.num_clients=2",
        "--set",
        "train.rounds=2",
        "--device",
        "cpu",
    ]
    assert main(argv) == 0
    for name in ("metrics.csv", "summary.json", "run.log", "checkpoint.pt"):
        assert (out / name).is_file()
    first = json.loads((out / "summary.json").read_text())
    assert first["config"]["model"]["name"] == "resnet20" and first["rounds"] == 2
    assert main(argv) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second == first  # finished run: nothing retrained, same summary
    assert "resuming after round 2" in (out / "run.log").read_text()
