"""`fedbench pretrain`: central training, a checksummed checkpoint FL runs start from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from fltools import TinyNet, small_config, tiny_model_fn

from fedbench.fl.config import ConfigError
from fedbench.fl.loop import FederatedRun
from fedbench.pretrain import CHECKPOINT, REPORT, pretrain


def test_pretrain_writes_a_checked_checkpoint_and_learns(synthetic_data, tmp_path):
    cfg = small_config(train={"lr": 0.05})
    report = pretrain(cfg, tmp_path, 3, data=synthetic_data, model_fn=tiny_model_fn)
    blob = (tmp_path / CHECKPOINT).read_bytes()
    assert report["sha256"] == hashlib.sha256(blob).hexdigest()
    assert json.loads((tmp_path / REPORT).read_text())["sha256"] == report["sha256"]
    assert report["train_samples"] == 160 and report["epochs"] == 3
    assert [h["epoch"] for h in report["history"]] == [1, 2, 3]
    # the synthetic task is easy: well above the majority class after 3 epochs
    assert report["final_test"] > report["majority_acc"] + 0.2
    assert report["final_val"] is not None
    state = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert set(state) == set(TinyNet().state_dict())


def test_fl_run_starts_from_the_pretrained_checkpoint(synthetic_data, tmp_path):
    pretrain(small_config(), tmp_path / "src", 2, data=synthetic_data, model_fn=tiny_model_fn)
    path = tmp_path / "src" / CHECKPOINT
    state = torch.load(path, weights_only=True)
    cfg = small_config(model={"pretrained": str(path)})

    def model_fn(c, d):
        from fedbench.models.registry import load_pretrained

        model = TinyNet(d.channels, d.num_classes)
        load_pretrained(model, c.model.pretrained)
        return model

    run = FederatedRun(cfg, tmp_path / "fl", data=synthetic_data, model_fn=model_fn)
    for k, v in state.items():
        assert torch.equal(run.global_state[k], v), k


def test_pretrain_is_deterministic_and_rejects_zero_epochs(synthetic_data, tmp_path):
    a = pretrain(small_config(), tmp_path / "a", 1, data=synthetic_data, model_fn=tiny_model_fn)
    b = pretrain(small_config(), tmp_path / "b", 1, data=synthetic_data, model_fn=tiny_model_fn)
    assert a["sha256"] == b["sha256"]
    with pytest.raises(ConfigError, match="epochs"):
        pretrain(small_config(), tmp_path / "c", 0, data=synthetic_data, model_fn=tiny_model_fn)


SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(
    not (SHARED_DATA / "pneumoniamnist.npz").is_file(),
    reason="offline copy ../shared/data/pneumoniamnist.npz absent",
)
def test_cli_pretrain_then_fl_from_it(tmp_path, capsys):
    from fedbench.cli import main

    common = [
        "--set",
        f"data.root={tmp_path / 'data'}",
        "--set",
        f"data.mirror={SHARED_DATA}",
        "--set",
        "data.max_train_samples=64",
        "--set",
        "data.max_test_samples=64",
        "--set",
        "device=cpu",
    ]
    assert (
        main(
            [
                "pretrain",
                "--config",
                "smoke",
                "--out",
                str(tmp_path / "src"),
                "--epochs",
                "1",
                *common,
            ]
        )
        == 0
    )
    assert "sha256" in capsys.readouterr().out
    ckpt = tmp_path / "src" / "model.pt"
    assert (
        main(
            [
                "fl",
                "--config",
                "smoke",
                "--out",
                str(tmp_path / "fl"),
                "--no-progress",
                "--set",
                f"model.pretrained={ckpt}",
                "--set",
                "train.rounds=1",
                "--set",
                "data.num_clients=2",
                *common,
            ]
        )
        == 0
    )
    summary = json.loads((tmp_path / "fl" / "summary.json").read_text())
    assert summary["config"]["model"]["pretrained"] == str(ckpt)
    assert (
        main(
            [
                "fl",
                "--config",
                "smoke",
                "--out",
                str(tmp_path / "bad"),
                "--no-progress",
                "--set",
                "model.pretrained=imagenet",
                *common,
            ]
        )
        == 1
    )
    assert "no published ImageNet weights" in capsys.readouterr().err
