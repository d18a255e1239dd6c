"""The client seam: a client driven by hand with only its own shard and state sends the bits
the run's local executor sends; the round does not depend on the order results arrive in."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from fltools import small_config, tiny_model_fn

from fedbench.fl.client import ClientSetup, ClientState, LocalClients, client_update
from fedbench.fl.loop import FederatedRun


def _recording(run: FederatedRun) -> list:
    """Wrap run.clients.run_round to record (round, start copy, lr, results) per round."""
    calls = []
    inner = run.clients.run_round

    def run_round(r, selected, start, lr):
        start_copy = {n: t.clone() for n, t in start.items()}
        results = inner(r, selected, start, lr)
        calls.append((r, start_copy, lr, results))
        return results

    run.clients.run_round = run_round
    return calls


def test_hand_driven_client_sends_the_local_executors_bits(synthetic_data, tmp_path):
    cfg = small_config(
        method={"name": "adf", "sparsity": 0.8},
        setting={"direction": "bi"},
        train={"rounds": 3, "keep_optimizer_state": True, "client_fraction": 1.0},
    )
    run = FederatedRun(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
    k = 2
    # what a Flower ClientApp would hold: its model, its samples only, its own compressor
    model = copy.deepcopy(run.model)
    idx = torch.from_numpy(synthetic_data.client_indices[k])
    shard = dataclasses.replace(
        synthetic_data,
        x_train=synthetic_data.x_train[idx].clone(),
        y_train=synthetic_data.y_train[idx].clone(),
        client_indices=[np.arange(len(idx))],
    )
    setup = ClientSetup(
        k,
        cfg,
        shard,
        np.arange(len(idx)),
        run.template,
        set(run.trainable),
        run.method.build_compressor(run.template, False),
    )
    calls = _recording(run)
    for _ in range(cfg.train.rounds):
        run.step()
    state = ClientState()
    for r, start, lr, results in calls:
        mine = client_update(model, setup, start, lr, r, state)
        theirs = next(res for res in results if res.client == k)
        assert mine.bits == theirs.bits, f"round {r}"
        assert mine.loss == theirs.loss
        state = mine.state
    # the state carried over: residual and optimizer state equal the executor's
    for n, a in run.residuals[k].items():
        assert a.tobytes() == state.residual[n].tobytes(), n
    assert state.optimizer_state is not None and k in run.opt_states


class Reversed(LocalClients):
    """LocalClients whose results arrive in reverse client order."""

    def run_round(self, round_, selected, start, lr):
        return super().run_round(round_, selected, start, lr)[::-1]


def test_round_does_not_depend_on_arrival_order(synthetic_data, tmp_path):
    cfg = small_config(method={"name": "adf", "sparsity": 0.8}, train={"rounds": 2})
    runs = []
    for name in ("ordered", "reversed"):
        run = FederatedRun(cfg, tmp_path / name, data=synthetic_data, model_fn=tiny_model_fn)
        if name == "reversed":
            run.clients = Reversed(run.model, run.client_setup, 1, cfg.threads)
        for _ in range(cfg.train.rounds):
            run.step()
        runs.append(run)
    a, b = runs
    assert a.ledger.to_csv() == b.ledger.to_csv()
    for n, t in a.global_state.items():
        assert torch.equal(t, b.global_state[n]), n
