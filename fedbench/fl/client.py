"""One client's round: ClientState, client_update, the ClientExecutor seam, LocalClients.

client_update trains from the start model, forms delta + residual, runs the LSA steps if
configured and compresses with error feedback; it sees only its own setup and state, so a
Flower ClientApp can call it. LocalClients (the default executor) runs every client here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from fedbench.fl.adf import is_adf_name
from fedbench.fl.aggregation import derive_seed
from fedbench.fl.compressors import TensorSpec, UpdateCompressor, compress_with_feedback
from fedbench.fl.config import RunConfig
from fedbench.fl.data import FederatedData
from fedbench.fl.parallel import ClientPool
from fedbench.fl.template import is_running_stat, load_model_state
from fedbench.fl.training import train_local

__all__ = [
    "ClientExecutor",
    "ClientResult",
    "ClientSetup",
    "ClientState",
    "LocalClients",
    "TrainingDiverged",
    "client_update",
    "train_client",
]


class TrainingDiverged(RuntimeError):
    """Local training produced a non-finite loss or update."""


@dataclass
class ClientState:
    """What a client keeps between rounds: its error-feedback residual, its optimizer state
    and, with method.bn_stats=local, its own BatchNorm running statistics."""

    residual: dict[str, np.ndarray] | None = None
    optimizer_state: dict[str, Any] | None = None
    bn_stats: dict[str, torch.Tensor] | None = None


@dataclass
class ClientSetup:
    """What a client needs besides its state: its id and samples, the run's config, the
    transmitted tensors, the trainable parameters and the uplink compressor."""

    client: int
    cfg: RunConfig
    data: FederatedData
    indices: np.ndarray
    template: dict[str, TensorSpec]
    trainable: set[str]
    uplink: UpdateCompressor


@dataclass
class ClientResult:
    """One client's round: its bitstream, the decoded update (the server decodes the same),
    mean training loss, seconds spent training and coding, and its state after the round."""

    client: int
    bits: bytes
    update: dict[str, np.ndarray]
    loss: float
    train_s: float
    code_s: float
    state: ClientState


class ClientExecutor(Protocol):
    """Where the clients of a round run: locally (LocalClients) or elsewhere (e.g. Flower)."""

    def run_round(
        self, round_: int, selected: Sequence[int], start: dict[str, torch.Tensor], lr: float
    ) -> list[ClientResult]:
        """Run the selected clients from the `start` model; their results in client order."""
        ...

    def close(self) -> None:
        """Release what the executor holds (threads, connections)."""
        ...


def train_client(
    model: nn.Module,
    setup: ClientSetup,
    start: dict[str, torch.Tensor],
    lr: float,
    round_: int,
    state: ClientState,
) -> tuple[float, dict[str, Any]]:
    """Load `start` into `model` and train the client on it; (mean loss, optimizer state)."""
    cfg = setup.cfg
    load_model_state(model, start)
    if state.bn_stats:
        # method.bn_stats=local: the client's own statistics replace the start model's
        with torch.no_grad():
            buffers = model.state_dict()
            for n, t in state.bn_stats.items():
                buffers[n].copy_(t)
    return train_local(
        model,
        setup.data,
        setup.indices,
        cfg.train,
        lr,
        setup.trainable,
        derive_seed(cfg.seed, round_, setup.client),
        augment=cfg.data.augment,
        optimizer_state=state.optimizer_state,
        bn_mode=cfg.train.bn_mode,
        adf_lr_scale=cfg.method.adf_lr_scale,
    )


def client_update(
    model: nn.Module,
    setup: ClientSetup,
    start: dict[str, torch.Tensor],
    lr: float,
    round_: int,
    state: ClientState,
    trained: tuple[float, dict[str, Any]] | None = None,
) -> ClientResult:
    """One client's round: train from `start`, delta + residual, LSA, compress with feedback.

    `trained`: (loss, optimizer state) when `model` was already trained by train_client
    (the parallel path); its training time is then the caller's (train_s excludes it).
    """
    cfg, k, up = setup.cfg, setup.client, setup.uplink
    t0 = time.perf_counter()
    loss, opt_state = (
        train_client(model, setup, start, lr, round_, state) if trained is None else trained
    )
    new_opt = opt_state if cfg.train.keep_optimizer_state else state.optimizer_state
    train_s = time.perf_counter() - t0
    res = state.residual
    update = _delta(model, start, setup.template, res)
    if not math.isfinite(loss) or not all(np.isfinite(u).all() for u in update.values()):
        raise TrainingDiverged(
            f"round {round_}, client {k}: local training diverged (non-finite loss or "
            f"update; loss {loss}); lower train.lr or check train.bn_mode"
        )
    code_s = 0.0
    # Seeds of stochastic compressors (QSGD): run seed, round, client.
    up.set_context(cfg.seed, round_, k)
    if cfg.method.lsa_steps > 0:
        t1 = time.perf_counter()
        dec = up.decode(up.encode(update))
        code_s += time.perf_counter() - t1
        t1 = time.perf_counter()
        _lsa(model, setup, start, dec, lr, round_)
        train_s += time.perf_counter() - t1
        fine = _delta(model, start, setup.template, res)
        update = {
            n: (update[n] if s.kind == "weight" else fine[n]) for n, s in setup.template.items()
        }
    t1 = time.perf_counter()
    # Decoding is deterministic: the client's reconstruction (for its residual) is the
    # server's, so the simulation decodes each bitstream once.
    bits, dec, residual = compress_with_feedback(up, update)
    code_s += time.perf_counter() - t1
    bn_stats = None
    if cfg.method.bn_stats == "local":
        bn_stats = {
            n: t.detach().clone() for n, t in model.state_dict().items() if is_running_stat(n)
        }
    state = ClientState(residual, new_opt, bn_stats)
    return ClientResult(k, bits, dec, loss, train_s, code_s, state)


def _delta(
    model: nn.Module,
    start: dict[str, torch.Tensor],
    template: dict[str, TensorSpec],
    res: dict[str, np.ndarray] | None,
) -> dict[str, np.ndarray]:
    """Client model minus start, plus the client's residual, for the transmitted tensors."""
    state = model.state_dict()
    out = {}
    for n in template:
        # .contiguous(): a channels_last difference would give a non-C-contiguous array
        # (astype keeps strides), and the codec and residuals expect the standard layout
        d = (state[n] - start[n]).detach().contiguous().cpu().numpy().astype(np.float32)
        out[n] = d + res[n] if res is not None else d
    return out


def _lsa(
    model: nn.Module,
    setup: ClientSetup,
    start: dict[str, torch.Tensor],
    dec: dict[str, np.ndarray],
    lr: float,
    round_: int,
) -> None:
    """LSA-style: set weights to start + decoded update, train only the factors."""
    cfg = setup.cfg
    with torch.no_grad():
        state = model.state_dict()
        for n, s in setup.template.items():
            if s.kind == "weight":
                state[n].copy_(start[n] + torch.from_numpy(dec[n]).to(start[n].device))
    factors = {n for n in setup.trainable if is_adf_name(n)}
    # only factors train here, so their lr is the steps' lr: lsa_lr as given, or the
    # round's lr times adf_lr_scale
    lsa_lr = cfg.method.lsa_lr or lr * cfg.method.adf_lr_scale
    train_local(
        model,
        setup.data,
        setup.indices,
        cfg.train,
        lsa_lr,
        setup.trainable,
        derive_seed(cfg.seed, round_, setup.client, 0x15A),
        steps=cfg.method.lsa_steps,
        augment=cfg.data.augment,
        only=factors,
        bn_mode="frozen",
    )


class LocalClients:
    """The default ClientExecutor: every client in this process, holding all clients' states.

    `setup_of(k)` gives client k's setup when it runs (so it sees the run's current
    trainable set and compressor). With `workers` > 1 the clients train `workers` at a
    time on a ClientPool's replicas (a chunk is coded before the next one trains, because
    each replica holds its client's model until then); the chunk's wall time is charged
    once, to its first client. Otherwise each client trains in place on `model`.
    """

    def __init__(
        self,
        model: nn.Module,
        setup_of: Callable[[int], ClientSetup],
        workers: int = 1,
        threads: int = 1,
    ) -> None:
        self.model = model
        self.setup_of = setup_of
        self.workers = workers
        self.threads = threads
        self.states: dict[int, ClientState] = {}
        self.pool: ClientPool | None = None

    def _finish(self, result: ClientResult) -> ClientResult:
        """Keep the client's new state (a remote client would keep its own)."""
        self.states[result.client] = result.state
        return result

    def run_round(
        self, round_: int, selected: Sequence[int], start: dict[str, torch.Tensor], lr: float
    ) -> list[ClientResult]:
        """Run the selected clients from `start`; results in the order of `selected`."""
        states = {k: self.states.get(k, ClientState()) for k in selected}
        if self.workers <= 1 or len(selected) <= 1:
            return [
                self._finish(
                    client_update(self.model, self.setup_of(k), start, lr, round_, states[k])
                )
                for k in selected
            ]
        if self.pool is None:
            self.pool = ClientPool(self.model, self.workers, self.threads)
        out = []
        for i in range(0, len(selected), self.workers):
            chunk = list(selected[i : i + self.workers])
            setups = {k: self.setup_of(k) for k in chunk}
            t0 = time.perf_counter()
            done = self.pool.map(
                lambda model, k, setups=setups: train_client(
                    model, setups[k], start, lr, round_, states[k]
                ),
                chunk,
            )
            par_s = time.perf_counter() - t0
            # the global RNG as sequential training leaves it (the workers re-seeded it in
            # turn; nothing drew from it, see the dropout check)
            seed = setups[chunk[-1]].cfg.seed
            torch.manual_seed(derive_seed(derive_seed(seed, round_, chunk[-1]), 2))
            for j, (k, (replica, trained)) in enumerate(zip(chunk, done, strict=True)):
                res = client_update(replica, setups[k], start, lr, round_, states[k], trained)
                if j == 0:
                    res.train_s += par_s
                out.append(self._finish(res))
        return out

    def close(self) -> None:
        """Stop the pool's worker threads, if any."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None
