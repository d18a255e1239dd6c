"""method.bn_stats=recalibrate: BatchNorm running statistics are never sent; every evaluated
model gets the statistics of its own weights, measured on the clients' training samples."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fltools import TinyNet, small_config, tiny_model_fn

from fedbench.fl.config import ConfigError
from fedbench.fl.loop import FederatedRun, run_fl
from fedbench.fl.server import evaluate_models
from fedbench.fl.template import load_model_state
from fedbench.fl.training import (
    _normalize,
    evaluate,
    recalibrate_bn,
    recalibration_indices,
)

STATS = ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var")


def _cfg(bn_stats: str = "recalibrate", **method):
    return small_config(
        method={"name": "unscaled", "sparsity": 0.8, "bn_stats": bn_stats, **method},
        setting={"direction": "bi"},
        train={"rounds": 2},
    )


def _bn1_input(model: TinyNet, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.conv1(x)


def test_recalibration_measures_the_statistics_of_the_weights_on_the_samples(synthetic_data):
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # stored statistics far from the data's: they must not matter
        model.bn1.running_mean.fill_(50.0)
        model.bn1.running_var.fill_(1e-3)
    idx = recalibration_indices(synthetic_data, None, seed=0)
    n = recalibrate_bn(model, synthetic_data, idx, batch_size=len(idx))
    assert n == 2
    x = _normalize(synthetic_data, synthetic_data.x_train[torch.from_numpy(idx)])
    h = _bn1_input(model, x)
    torch.testing.assert_close(model.bn1.running_mean, h.mean((0, 2, 3)), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(
        model.bn1.running_var, h.var((0, 2, 3), unbiased=True), rtol=1e-4, atol=1e-6
    )
    # modes and momentum as they were: the model is ready for evaluation
    assert not model.training and not model.bn1.training and model.bn1.momentum == 0.1


def test_recalibration_in_batches_is_the_mean_of_the_batch_statistics(synthetic_data):
    torch.manual_seed(0)
    model = TinyNet()
    idx = recalibration_indices(synthetic_data, None, seed=0)[:96]
    recalibrate_bn(model, synthetic_data, idx, batch_size=32)
    x = _normalize(synthetic_data, synthetic_data.x_train[torch.from_numpy(idx)])
    h = _bn1_input(model, x).split(32)
    torch.testing.assert_close(
        model.bn1.running_mean, torch.stack([b.mean((0, 2, 3)) for b in h]).mean(0)
    )
    torch.testing.assert_close(
        model.bn1.running_var, torch.stack([b.var((0, 2, 3)) for b in h]).mean(0)
    )


def test_recalibration_samples_are_the_pooled_clients_or_a_seeded_subset(synthetic_data):
    pooled = np.sort(np.concatenate(synthetic_data.client_indices))
    assert np.array_equal(recalibration_indices(synthetic_data, None, 0), pooled)
    assert np.array_equal(recalibration_indices(synthetic_data, 10_000, 0), pooled)
    a = recalibration_indices(synthetic_data, 50, 3)
    assert len(a) == 50 and len(set(a)) == 50 and set(a) <= set(pooled)
    assert np.array_equal(a, recalibration_indices(synthetic_data, 50, 3))
    assert not np.array_equal(a, recalibration_indices(synthetic_data, 50, 4))


def test_statistics_are_never_sent_and_each_model_is_evaluated_with_its_own(
    synthetic_data, tmp_path
):
    run = FederatedRun(_cfg(), tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert not set(STATS) & set(run.template)
    init = {n: run.global_state[n].clone() for n in STATS}
    row = run.step()
    # the server's and the clients' states keep the initial statistics; no bytes for them
    assert all(torch.equal(run.global_state[n], init[n]) for n in STATS)
    assert all(torch.equal(run.view[n], init[n]) for n in STATS)
    by_class = run.ledger.by_class()
    assert by_class["up"]["bn_stats"] == 0 and by_class["down"]["bn_stats"] == 0
    # the reported accuracies are those of the models with recalibrated statistics
    idx = recalibration_indices(synthetic_data, run.cfg.method.bn_recalibrate_samples, 1)
    bs = run.cfg.train.eval_batch_size
    for state, key in ((run.global_state, "test_acc"), (run.view, "clients_test_acc")):
        model = TinyNet()
        load_model_state(model, state)
        stored = evaluate(model, synthetic_data, bs)
        recalibrate_bn(model, synthetic_data, idx, bs)
        assert row[key] == evaluate(model, synthetic_data, bs)["test_acc"]
        assert stored["test_loss"] != evaluate(model, synthetic_data, bs)["test_loss"]
    # evaluating leaves the states as they were
    evaluate_models(run.model, synthetic_data, run.cfg, run.global_state, run.view, "test_acc")
    assert all(torch.equal(run.global_state[n], init[n]) for n in STATS)


def test_the_policy_changes_what_the_statistics_are_not_the_training(synthetic_data, tmp_path):
    runs = {}
    for policy in ("send", "recalibrate"):
        run = FederatedRun(
            _cfg(policy), tmp_path / policy, data=synthetic_data, model_fn=tiny_model_fn
        )
        run.step()
        run.step()
        runs[policy] = run
    send, recal = runs["send"], runs["recalibrate"]
    for n in recal.template:  # weights, affine, bias: the same trajectory, bit for bit
        assert torch.equal(send.global_state[n], recal.global_state[n]), n
    assert send.ledger.totals()["bytes_up"] > recal.ledger.totals()["bytes_up"]


def test_summary_states_the_recalibrated_statistics(synthetic_data, tmp_path):
    s = run_fl(
        _cfg(bn_recalibrate_samples=64), tmp_path, data=synthetic_data, model_fn=tiny_model_fn
    )
    assert "own weights" in s["bn_stats_eval"] and "64 pooled" in s["bn_stats_eval"]
    assert s["bytes_by_class"]["up"]["bn_stats"] == 0


@pytest.mark.parametrize(
    ("section", "values", "match"),
    [
        ("train", {"bn_mode": "frozen"}, "needs train.bn_mode=batch"),
        ("method", {"bn_recalibrate_samples": 1}, "bn_recalibrate_samples"),
    ],
)
def test_recalibration_options_are_checked(section, values, match):
    sections = {
        "method": {"name": "unscaled", "bn_stats": "recalibrate"},
        section: values,
    }
    if section == "method":
        sections["method"] = {**sections["method"], **values}
    with pytest.raises(ConfigError, match=match):
        small_config(**sections)
