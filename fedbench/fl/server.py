"""The server side of one round: apply the aggregate, ADF fold, code the broadcast, evaluate.

Server state: `global_state` is the server model W. Bidirectional runs also keep `view`, the
model every client decoded; the server residual is W - view, so the next broadcast codes
(mean update + residual) exactly as error accumulation prescribes.

With `adf_fold`, unidirectional runs fold W after aggregation (clients get W as sent). In
bidirectional runs both sides fold with the factors the clients decoded, after the
broadcast: the server folds W by the clients' factors s_v (weights x s_v, its factors /
s_v, an exact reparametrisation), the clients fold their copy, so both stay in sync even
where the tensors folded into are not transmitted.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedbench.fl.adf import fold_adf_state, fold_by_client_factors
from fedbench.fl.compressors import TensorSpec, UpdateCompressor
from fedbench.fl.config import RunConfig
from fedbench.fl.data import FederatedData
from fedbench.fl.template import load_model_state
from fedbench.fl.training import evaluate, recalibrate_bn, recalibration_indices

__all__ = ["BROADCAST_CONTEXT", "ServerRound", "evaluate_models", "server_round"]

# Context key of the broadcast's stochastic coding (clients use their id there).
BROADCAST_CONTEXT = 0xB0ADCA57


@dataclass
class ServerRound:
    """What the server did with a round's aggregate: the extremes of its factors after
    aggregation, before any fold (NaN: none), the factors themselves, and (bidirectional)
    the broadcast's
    bitstream, its decoded update and the seconds spent coding it."""

    adf_min: float
    adf_max: float
    # factor name -> the server's factors at the same moment (empty without factors)
    factors: dict[str, list[float]] = field(default_factory=dict)
    bits: bytes | None = None
    update: dict[str, np.ndarray] | None = None
    code_s: float = 0.0


def _factor_range(
    global_state: dict[str, torch.Tensor], fold_targets: dict[str, tuple[str, ...]]
) -> tuple[float, float]:
    """Smallest and largest server factor (NaN, NaN without factors)."""
    vals = [global_state[n] for n in fold_targets]
    if not vals:
        return float("nan"), float("nan")
    return min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)


def server_round(
    global_state: dict[str, torch.Tensor],
    view: dict[str, torch.Tensor] | None,
    mean: dict[str, np.ndarray],
    template: dict[str, TensorSpec],
    *,
    fold_targets: dict[str, tuple[str, ...]],
    fold: bool,
    downlink: UpdateCompressor,
    seed: int,
    round_: int,
) -> ServerRound:
    """Add the aggregated `mean` to W, fold (uni), and with a `view` (bidirectional) code the
    broadcast W - view, apply it to `view` and fold both sides; all in place."""
    with torch.no_grad():
        for n in template:
            g = global_state[n]
            g.add_(torch.from_numpy(mean[n]).to(g.device))
        adf_min, adf_max = _factor_range(global_state, fold_targets)
        factors = {n: global_state[n].reshape(-1).cpu().tolist() for n in fold_targets}
        if fold and view is None:
            fold_adf_state(global_state, fold_targets)
    out = ServerRound(adf_min, adf_max, factors)
    if view is None:
        return out
    t1 = time.perf_counter()
    u = {
        n: (global_state[n] - view[n]).contiguous().cpu().numpy().astype(np.float32)
        for n in template
    }
    downlink.set_context(seed, round_, BROADCAST_CONTEXT)
    out.bits = downlink.encode(u)
    out.update = downlink.decode(out.bits)
    out.code_s = time.perf_counter() - t1
    with torch.no_grad():
        for n in template:
            v = view[n]
            v.add_(torch.from_numpy(out.update[n]).to(v.device))
        if fold:
            # After the broadcast, so the factor update reaches the clients; both sides fold
            # with the clients' factors and stay in sync.
            fold_by_client_factors(global_state, view, fold_targets)
    return out


def evaluate_models(
    model: nn.Module,
    data: FederatedData,
    cfg: RunConfig,
    global_state: dict[str, torch.Tensor],
    view: dict[str, torch.Tensor] | None,
    metric: str,
) -> dict[str, float]:
    """Server model on test (and validation: val_metric), clients' model on test.

    The clients' model is `view` (bidirectional) or W itself (uni: sent losslessly).
    With method.bn_stats=recalibrate each model is evaluated with the BatchNorm statistics
    of its own weights (training.recalibrate_bn); the states themselves are not changed.
    `model` is used as scratch: it ends holding the last state evaluated.
    """
    bs = cfg.train.eval_batch_size
    opts = {
        "precision": cfg.train.precision,
        "memory_format": cfg.train.memory_format,
        # local BatchNorm statistics: the server's model has none of its own
        "bn_stats": "batch" if cfg.method.bn_stats == "local" else "running",
    }
    recal = None
    if cfg.method.bn_stats == "recalibrate":
        recal = recalibration_indices(data, cfg.method.bn_recalibrate_samples, cfg.seed)

    def load(state: dict[str, torch.Tensor]) -> None:
        load_model_state(model, state)
        if recal is not None:
            recalibrate_bn(model, data, recal, bs, opts["precision"], opts["memory_format"])

    load(global_state)
    out = evaluate(model, data, bs, **opts)
    if data.has_val:
        out["val_metric"] = evaluate(model, data, bs, split="val", **opts)[metric]
    if view is not None:
        load(view)
        clients = evaluate(model, data, bs, **opts)
    else:
        clients = out  # uni: clients receive W itself, losslessly
    out["clients_test_acc"] = clients["test_acc"]
    out["clients_test_metric"] = clients[metric]
    return out
