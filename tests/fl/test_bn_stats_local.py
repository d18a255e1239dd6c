"""method.bn_stats=local: BatchNorm running statistics never leave a client; each client
keeps its own between rounds, and evaluation states which statistics it used."""

from __future__ import annotations

import copy

import torch
from fltools import TinyNet, small_config, tiny_model_fn

from fedbench.fl import client as client_mod
from fedbench.fl.loop import FederatedRun, run_fl
from fedbench.fl.training import evaluate

STATS = ("bn1.running_mean", "bn1.running_var", "bn2.running_mean", "bn2.running_var")


def _cfg(**train):
    return small_config(
        method={"name": "unscaled", "sparsity": 0.8, "bn_stats": "local"},
        setting={"direction": "bi"},
        train={"rounds": 2, **train},
    )


def test_statistics_stay_on_the_clients_and_carry_over(synthetic_data, tmp_path, monkeypatch):
    run = FederatedRun(_cfg(), tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert not set(STATS) & set(run.template)  # never transmitted
    init = {n: run.global_state[n].clone() for n in STATS}
    seen = []
    train = client_mod.train_local

    def spy(model, *a, **kw):
        seen.append({n: model.state_dict()[n].clone() for n in STATS})
        return train(model, *a, **kw)

    monkeypatch.setattr(client_mod, "train_local", spy)
    run.step()
    after1 = {k: copy.deepcopy(s.bn_stats) for k, s in run.clients.states.items()}
    run.step()
    assert len(seen) == 8
    for k in range(4):
        # round 1 starts from the initial statistics, round 2 from the client's own
        assert all(torch.equal(seen[k][n], init[n]) for n in STATS)
        assert all(torch.equal(seen[4 + k][n], after1[k][n]) for n in STATS)
        assert not torch.equal(after1[k]["bn1.running_mean"], init["bn1.running_mean"])
    assert not torch.equal(after1[0]["bn1.running_mean"], after1[1]["bn1.running_mean"])
    # the server never receives them: its statistics are the initial ones, no bytes charged
    assert all(torch.equal(run.global_state[n], init[n]) for n in STATS)
    assert run.ledger.by_class()["up"]["bn_stats"] == 0
    assert run.ledger.by_class()["down"]["bn_stats"] == 0


def test_summary_states_which_statistics_evaluation_used(synthetic_data, tmp_path):
    s = run_fl(_cfg(), tmp_path / "a", data=synthetic_data, model_fn=tiny_model_fn)
    assert s["bn_stats_eval"].startswith("test-batch statistics")
    cfg = small_config(method={"name": "unscaled", "bn_stats": "send"}, train={"rounds": 1})
    s = run_fl(cfg, tmp_path / "b", data=synthetic_data, model_fn=tiny_model_fn)
    assert s["bn_stats_eval"] == "running statistics of the evaluated model"
    # the default (auto) under batch statistics: recalibrated, and the summary says so
    cfg = small_config(method={"name": "unscaled"}, train={"rounds": 1})
    s = run_fl(cfg, tmp_path / "c", data=synthetic_data, model_fn=tiny_model_fn)
    assert s["bn_stats_eval"].startswith("statistics of each evaluated model's own weights")
    assert s["config"]["method"]["bn_stats"] == "recalibrate"


def test_batch_statistics_evaluation_leaves_the_running_buffers(synthetic_data):
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # running statistics far from the data's
        model.bn1.running_mean.fill_(50.0)
    before = {n: t.clone() for n, t in model.state_dict().items()}
    running = evaluate(model, synthetic_data, 32)
    batch = evaluate(model, synthetic_data, 32, bn_stats="batch")
    assert running["test_loss"] != batch["test_loss"]
    after = model.state_dict()
    assert all(torch.equal(before[n], after[n]) for n in before if "num_batches" not in n)
    assert not model.training and not model.bn1.training and model.bn1.momentum == 0.1


def test_checkpoint_keeps_the_clients_statistics(synthetic_data, tmp_path):
    cfg = _cfg(rounds=3, client_fraction=0.75)
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    run.step()
    run.save_checkpoint()
    again = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    assert again.load_checkpoint()
    want = {k: s.bn_stats for k, s in run.clients.states.items()}
    got = {k: s.bn_stats for k, s in again.clients.states.items()}
    assert set(got) == set(want) and len(want) == 3
    for k, stats in want.items():
        assert set(got[k]) == set(STATS)
        assert all(torch.equal(got[k][n], stats[n]) for n in STATS)
    # and the resumed run goes on as the uninterrupted one
    assert again.step()["test_acc"] == run.step()["test_acc"]
