"""The synchronous round loop: local training, compressed differential updates with error
accumulation, FedAvg, (compressed) broadcast, evaluation, accounting, checkpoint/resume.

A round r is: broadcast (the server's model to the round's selected clients), local
training, upload, aggregation. Every byte is charged in one place, the run's `Ledger`
(fedbench.fl.ledger), message by message, together with what uncompressed FedAvg (the fp32
reference) sends for the same message; metrics.csv, summary.json and ledger.csv are sums
over it. The rules:

- uplink: len() of each selected client's bitstream; reference: 4 bytes per transmitted
  parameter of the same architecture without filter factors.
- initial model (round 1's broadcast): free by default (a shared seed or public checkpoint
  gives it); `setting.initial_model: charged` charges the full float32 model once to each
  client when it is first selected, for the method and the reference alike.
- downlink from round 2 on, unidirectional: the full float32 model (4 bytes per transmitted
  parameter) to each selected client; reference likewise (without factors).
- downlink from round 2 on, bidirectional: after aggregating round r the server codes one
  broadcast (mean update + server residual). A client receives, when it is next selected,
  every broadcast it has missed (catch-up, so partial participation stays in sync), or the
  clients' current model as float32 when that is smaller; it is charged then. The reference
  sends each selected client the float32 model. The broadcast after the last round is
  computed (the clients' model of the last round is evaluated on it) but never charged:
  no training uses it.
- compression_ratio = fp32 bytes / bytes charged, over the same rounds and clients.

Evaluation: every evaluated round records the server model W on the test and validation
splits, and the clients' model (bidirectional: the decoded `view` every client holds; uni:
W itself, sent losslessly) on the test split. The headline (final_acc, figures) is the
server model; best_acc and rounds_to_target select rounds on the validation split.

ADF runs also record in summary.json the resolved `adf_position` and `adf_factor_min` /
`adf_factor_max`: the extremes of the server's aggregated factors over all rounds (taken
before any fold), i.e. how far the factors moved from 1. With `adf_fold` in bidirectional
runs, both sides fold with the factors the clients decoded, after the broadcast: the server
folds W by the clients' factors s_v (weights x s_v, its factors / s_v, an exact
reparametrisation), the clients fold their copy, so both stay in sync even where the
tensors folded into are not transmitted.

Server state: `global` is the server model W. Bidirectional runs also keep `view`, the model
every client decoded; the server residual is W - view, so the next broadcast codes
(mean update + residual) exactly as error accumulation prescribes.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import pickle
import platform
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedbench.fl.adf import (
    adf_fold_targets,
    fold_adf_state,
    fold_by_client_factors,
    is_adf_name,
)
from fedbench.fl.aggregation import build_strategy, derive_seed
from fedbench.fl.client import (
    FederatedData,
    evaluate,
    load_federated_data,
    lr_at_round,
    train_local,
)
from fedbench.fl.compressors import (
    TensorSpec,
    UpdateCompressor,
    compress_with_feedback,
)
from fedbench.fl.config import ConfigError, RunConfig, config_to_dict
from fedbench.fl.ledger import CLASSES, Ledger, class_bytes, tensor_classes
from fedbench.fl.parallel import ClientPool, has_global_rng_layers

__all__ = [
    "METRIC_COLUMNS",
    "CheckpointMismatch",
    "FederatedRun",
    "StopRun",
    "TrainingDiverged",
    "build_template",
    "resolve_device",
    "run_fl",
]

log = logging.getLogger("fedbench.fl")

METRIC_COLUMNS = [
    "round",
    "lr",
    "num_clients",
    "train_loss",
    "test_loss",
    "test_acc",
    "test_miou",
    "test_map",
    "val_metric",
    "clients_test_acc",
    "clients_test_metric",
    "bytes_up",
    "bytes_down",
    "fp32_bytes_up",
    "fp32_bytes_down",
    "bytes_total_cum",
    "fp32_bytes_cum",
    "fp32_bytes_up_cum",
    "bytes_up_cum",
    "update_sparsity",
    "downlink_sparsity",
    "train_s",
    "code_s",
    "eval_s",
    # the round's charged bytes per direction and tensor class (they add up to bytes_up/down)
    *(f"bytes_{d}_{c}" for d in ("up", "down") for c in CLASSES),
]

CHECKPOINT = "checkpoint.pt"
LEDGER = "ledger.csv"
SERVER = -1  # the server's id in ledger receivers
CHECKPOINT_FORMAT = 2


class CheckpointMismatch(ConfigError):
    """The checkpoint in --out belongs to a run with a different config."""


class TrainingDiverged(RuntimeError):
    """Local training produced a non-finite loss or update."""


class StopRun(Exception):
    """Raised by a round callback (or stop_after_round) to end a run early, as a kill would."""


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device: invalid value 'cuda'; no CUDA device is available here")
    return torch.device(name)


def _module_of(model: nn.Module) -> dict[str, nn.Module]:
    """Map each state_dict name to the module that owns it."""
    out = {}
    for mname, module in model.named_modules():
        for local, _ in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            out[f"{mname}.{local}" if mname else local] = module
    return out


def _classifier_prefix(model: nn.Module) -> str | None:
    """Name of the last Linear module (else the last Conv2d): the output layer."""
    last = None
    for cls in (nn.Linear, nn.Conv2d):
        for mname, module in model.named_modules():
            if isinstance(module, cls):
                last = mname
        if last is not None:
            return last
    return None


def _match_partial(model: nn.Module, names: list[str], patterns: list[str]) -> set[str]:
    """State names selected by the partial-update patterns (shortcuts or fnmatch).

    Every pattern must match some tensor, except the `adf` shortcut (a model without factors
    has none); the whole list must match at least one.
    """
    from fnmatch import fnmatchcase

    owner = _module_of(model)
    clf = _classifier_prefix(model)
    chosen: set[str] = set()
    for pat in patterns:
        if pat == "adf":
            hit = {n for n in names if is_adf_name(n)}
        elif pat == "bn":
            hit = {n for n in names if isinstance(owner.get(n), nn.modules.batchnorm._BatchNorm)}
        elif pat == "bias":
            hit = {n for n in names if n.endswith("bias")}
        elif pat == "classifier":
            hit = {n for n in names if clf is not None and n.rsplit(".", 1)[0] == clf}
        else:
            hit = {n for n in names if fnmatchcase(n, pat)}
        # `adf` may match nothing: one pattern list then serves methods with and without
        # factors (fp32, unscaled, stc, topk-fp16).
        if not hit and pat != "adf":
            raise ConfigError(
                f"setting.partial: pattern {pat!r} matches no tensor of the model; use "
                "adf, bn, bias, classifier or an fnmatch pattern on state_dict names"
            )
        chosen |= hit
    if not chosen:
        raise ConfigError(
            f"setting.partial: {patterns!r} matches no tensor of the model (`adf` selects "
            "nothing without filter factors, i.e. unless method.name=adf)"
        )
    return chosen


def build_template(model: nn.Module, cfg: RunConfig) -> dict[str, TensorSpec]:
    """The transmitted tensors (ordered) with their kind, from the model and the config."""
    state = model.state_dict()
    names = [n for n, t in state.items() if t.is_floating_point()]
    if cfg.setting.partial:
        chosen = _match_partial(model, names, cfg.setting.partial)
        names = [n for n in names if n in chosen]
    template = {}
    for n in names:
        t = state[n]
        is_weight = t.dim() >= 2 and n.endswith("weight") and not is_adf_name(n)
        if not is_weight and not cfg.method.include_nonweights and not is_adf_name(n):
            continue
        template[n] = TensorSpec(tuple(t.shape), "weight" if is_weight else "fine")
    if not template:
        raise ConfigError("setting.partial: no tensor left to train and transmit")
    return template


def _versions() -> dict[str, str]:
    """Library versions recorded in summary.json."""
    import numba

    from fedbench import __version__

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "numba": numba.__version__,
        "fedbench": __version__,
        "machine": platform.machine(),
        "platform": platform.platform(),
    }


def _sparsity(update: dict[str, np.ndarray], template: dict[str, TensorSpec]) -> float:
    """Fraction of zeros over the weight tensors of an update (all tensors if none)."""
    names = [n for n, s in template.items() if s.kind == "weight"] or list(template)
    total = sum(update[n].size for n in names)
    zeros = sum(int(np.count_nonzero(update[n] == 0)) for n in names)
    return zeros / max(total, 1)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to `path` via a temporary file and rename (no torn files after a kill)."""
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fmt(v: Any) -> Any:
    """CSV cell: floats with repr precision, NaN as empty."""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return v


class FederatedRun:
    """One federated run: state, one-round step, checkpointing and outputs."""

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        *,
        data: FederatedData | None = None,
        model_fn: Callable[[RunConfig, FederatedData], nn.Module] | None = None,
    ) -> None:
        self.cfg = cfg
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.device = resolve_device(cfg.device)
        # Float reductions depend on the thread count: the config fixes it (summary.json).
        torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.data = data if data is not None else load_federated_data(cfg, self.device)
        torch.manual_seed(derive_seed(cfg.seed, 0x30DE1))
        self.model = (model_fn or _default_model)(cfg, self.data)
        self.method = cfg.method_class(cfg)
        factors = self.method.has_factors
        self.adf_position = cfg.resolved_adf_position if factors else None
        self.method.prepare_model(self.model)
        self.model.to(self.device)
        self.template = build_template(self.model, cfg)
        self.fold_targets = adf_fold_targets(self.model) if factors else {}
        if factors and cfg.method.adf_fold and cfg.setting.direction == "uni":
            # uni clients get the server model as sent: folding into a tensor that is not
            # transmitted would change the clients' model without charging for it
            folded = {t for ts in self.fold_targets.values() for t in ts}
            missing = sorted(folded - set(self.template))
            if missing:
                more = ", ..." if len(missing) > 3 else ""
                raise ConfigError(
                    "method.adf_fold: with direction=uni the factors fold into tensors that "
                    f"are not transmitted ({', '.join(missing[:3])}{more}); transmit them "
                    "(method.include_nonweights / setting.partial), or use direction=bi or "
                    "adf_fold=false"
                )
        self.num_tx = sum(s.size for s in self.template.values())
        state = self.model.state_dict()
        floats = {n: t for n, t in state.items() if t.is_floating_point()}
        self.classes = tensor_classes(self.model, floats)
        # The fp32 reference: uncompressed FedAvg of the same architecture without factors.
        self.num_tx_ref = sum(s.size for n, s in self.template.items() if not is_adf_name(n))
        self.model_params = sum(t.numel() for t in floats.values())
        self.model_params_ref = sum(t.numel() for n, t in floats.items() if not is_adf_name(n))
        self._tx_classes = class_bytes(
            {n: 4 * s.size for n, s in self.template.items()}, self.classes
        )
        self._full_classes = class_bytes(
            {n: 4 * t.numel() for n, t in floats.items()}, self.classes
        )
        params = {n for n, _ in self.model.named_parameters()}
        self.trainable = {n for n in self.template if n in params}
        self.up: UpdateCompressor = self.method.build_compressor(self.template, False)
        self.down: UpdateCompressor = self.method.build_compressor(self.template, True)
        self.strategy = build_strategy(
            cfg.strategy, cfg.data.num_clients, cfg.train.client_fraction, cfg.seed
        )
        self.sizes = self.data.client_sizes()
        if min(self.sizes) < 1:
            raise ConfigError("data.num_clients: some client got no training samples")
        # Server and client state (everything a checkpoint holds).
        self.global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.view = (
            {k: v.clone() for k, v in self.global_state.items()}
            if cfg.setting.direction == "bi"
            else None
        )
        self.residuals: dict[int, dict[str, np.ndarray]] = {}
        self.opt_states: dict[int, Any] = {}
        self.rows: list[dict[str, Any]] = []
        self.round = 0
        self.elapsed = 0.0
        self.ledger = Ledger()
        # Bidirectional: (bytes, class bytes) of the broadcast after each round (index r-1),
        # and per client the last round whose broadcast it has received (0: initial model).
        self.broadcasts: list[tuple[int, dict[str, int]]] = []
        self.synced: dict[int, int] = {}
        self.initialised: set[int] = set()
        self.majority_acc = self.data.majority_acc()
        self._pool: ClientPool | None = None
        if cfg.train.parallel_clients > 1 and has_global_rng_layers(self.model):
            # the workers would race for torch's global RNG: results would not be seeded
            raise ConfigError(
                "train.parallel_clients: the model has dropout layers (torch's global RNG), "
                "which concurrent clients cannot draw from reproducibly; use 1"
            )

    # ------------------------------------------------------------------ one round

    def _train_client(
        self, model: nn.Module, k: int, start: dict[str, torch.Tensor], lr: float, round_: int
    ) -> tuple[float, dict[str, Any]]:
        """Load `start` into `model` and train client k on it; (loss, optimizer state)."""
        cfg = self.cfg
        model.load_state_dict(start)
        seed = derive_seed(cfg.seed, round_, k)
        return train_local(
            model,
            self.data,
            self.data.client_indices[k],
            cfg.train,
            lr,
            self.trainable,
            seed,
            augment=cfg.data.augment,
            optimizer_state=self.opt_states.get(k),
            bn_mode=cfg.train.bn_mode,
            adf_lr_scale=cfg.method.adf_lr_scale,
        )

    def _train_parallel(
        self, selected: list[int], start: dict[str, torch.Tensor], lr: float, round_: int
    ) -> Any:
        """Yield (client, trained or None, parallel train seconds) in client order.

        train.parallel_clients = K > 1: the clients are trained K at a time on the pool's
        replicas (a chunk is yielded, i.e. coded, before the next one trains, because each
        replica holds its client's model until then); the chunk's wall time is charged
        once, with its first client. K = 1: None, and _client_update trains in place.
        """
        cfg = self.cfg
        workers = cfg.train.parallel_clients
        if workers <= 1 or len(selected) <= 1:
            for k in selected:
                yield k, None, 0.0
            return
        if self._pool is None:
            self._pool = ClientPool(self.model, workers, cfg.threads)
        for i in range(0, len(selected), workers):
            chunk = selected[i : i + workers]
            t0 = time.perf_counter()
            done = self._pool.map(
                lambda model, k: self._train_client(model, k, start, lr, round_), chunk
            )
            par_s = time.perf_counter() - t0
            # the global RNG as sequential training leaves it (the workers re-seeded it in
            # turn; nothing drew from it, see the dropout check)
            torch.manual_seed(derive_seed(derive_seed(cfg.seed, round_, chunk[-1]), 2))
            for j, (k, trained) in enumerate(zip(chunk, done, strict=True)):
                yield k, trained, par_s if j == 0 else 0.0

    def _client_update(
        self,
        k: int,
        start: dict[str, torch.Tensor],
        lr: float,
        round_: int,
        trained: tuple[nn.Module, tuple[float, dict[str, Any]]] | None = None,
    ) -> tuple[dict[str, np.ndarray], bytes, float, float, float]:
        """Train client k, return (decoded update, bitstream, loss, train_s, code_s).

        `trained`: (replica, (loss, optimizer state)) of a client already trained by the
        parallel phase; its training time is then the caller's (train_s excludes it).
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        if trained is None:
            model = self.model
            loss, opt_state = self._train_client(model, k, start, lr, round_)
        else:
            model, (loss, opt_state) = trained
        if cfg.train.keep_optimizer_state:
            self.opt_states[k] = opt_state
        train_s = time.perf_counter() - t0
        res = self.residuals.get(k)
        update = self._delta(model, start, res)
        if not math.isfinite(loss) or not all(np.isfinite(u).all() for u in update.values()):
            raise TrainingDiverged(
                f"round {round_}, client {k}: local training diverged (non-finite loss or "
                f"update; loss {loss}); lower train.lr or check train.bn_mode"
            )
        code_s = 0.0
        # Seeds of stochastic compressors (QSGD): run seed, round, client.
        self.up.set_context(cfg.seed, round_, k)
        if cfg.method.lsa_steps > 0:
            t1 = time.perf_counter()
            dec = self.up.decode(self.up.encode(update))
            code_s += time.perf_counter() - t1
            t1 = time.perf_counter()
            self._lsa(model, k, start, dec, lr, round_)
            train_s += time.perf_counter() - t1
            fine = self._delta(model, start, res)
            update = {
                n: (update[n] if s.kind == "weight" else fine[n]) for n, s in self.template.items()
            }
        t1 = time.perf_counter()
        # Decoding is deterministic: the client's reconstruction (for its residual) is the
        # server's, so the simulation decodes each bitstream once.
        bits, dec, self.residuals[k] = compress_with_feedback(self.up, update)
        code_s += time.perf_counter() - t1
        return dec, bits, loss, train_s, code_s

    def _delta(
        self, model: nn.Module, start: dict[str, torch.Tensor], res: dict[str, np.ndarray] | None
    ) -> dict[str, np.ndarray]:
        """Client model minus start, plus the client's residual, for the transmitted tensors."""
        state = model.state_dict()
        out = {}
        for n in self.template:
            # .contiguous(): a channels_last difference would give a non-C-contiguous array
            # (astype keeps strides), and the codec and residuals expect the standard layout
            d = (state[n] - start[n]).detach().contiguous().cpu().numpy().astype(np.float32)
            out[n] = d + res[n] if res is not None else d
        return out

    def _lsa(
        self,
        model: nn.Module,
        k: int,
        start: dict[str, torch.Tensor],
        dec: dict[str, np.ndarray],
        lr: float,
        round_: int,
    ) -> None:
        """LSA-style: set weights to start + decoded update, train only the factors."""
        cfg = self.cfg
        with torch.no_grad():
            state = model.state_dict()
            for n, s in self.template.items():
                if s.kind == "weight":
                    state[n].copy_(start[n] + torch.from_numpy(dec[n]).to(start[n].device))
        factors = {n for n in self.trainable if is_adf_name(n)}
        # only factors train here, so their lr is the steps' lr: lsa_lr as given, or the
        # round's lr times adf_lr_scale
        lsa_lr = cfg.method.lsa_lr or lr * cfg.method.adf_lr_scale
        train_local(
            model,
            self.data,
            self.data.client_indices[k],
            cfg.train,
            lsa_lr,
            self.trainable,
            derive_seed(cfg.seed, round_, k, 0x15A),
            steps=cfg.method.lsa_steps,
            augment=cfg.data.augment,
            only=factors,
            bn_mode="frozen",
        )

    def _classes_of(self, comp: UpdateCompressor, bits: bytes) -> dict[str, int]:
        """Bytes of a bitstream per tensor class."""
        return class_bytes(comp.tensor_bytes(bits), self.classes)

    def _deliver(self, r: int, selected: list[int]) -> None:
        """Charge the round's broadcast to the selected clients (see the module docstring)."""
        cfg = self.cfg
        if cfg.setting.initial_model == "charged":
            new = [k for k in selected if k not in self.initialised]
            if new:
                self.ledger.charge(
                    r,
                    "down",
                    "initial",
                    "server",
                    new,
                    4 * self.model_params,
                    4 * self.model_params_ref,
                    self._full_classes,
                )
        self.initialised.update(selected)
        if r == 1:
            return  # round 1 trains from the initial model
        ref = 4 * self.num_tx_ref
        if cfg.setting.direction == "uni":
            self.ledger.charge(
                r, "down", "model", "server", selected, 4 * self.num_tx, ref, self._tx_classes
            )
            return
        groups: dict[int, list[int]] = {}
        for k in selected:
            groups.setdefault(self.synced.get(k, 0), []).append(k)
        for last, clients in sorted(groups.items()):
            missed = self.broadcasts[last : r - 1]
            nbytes = sum(n for n, _ in missed)
            if nbytes > 4 * self.num_tx:
                # the clients' current model as float32 reproduces `view` exactly
                kind, nbytes, classes = "snapshot", 4 * self.num_tx, self._tx_classes
            else:
                kind = "broadcast" if len(missed) == 1 else "catchup"
                classes = dict.fromkeys(CLASSES, 0)
                for _, c in missed:
                    for key, v in c.items():
                        classes[key] += v
            self.ledger.charge(r, "down", kind, "server", clients, nbytes, ref, classes)
            for k in clients:
                self.synced[k] = r - 1

    def step(self) -> dict[str, Any]:
        """Run the next round; returns its metrics row."""
        cfg = self.cfg
        r = self.round + 1
        lr = lr_at_round(cfg.train, r)
        selected = self.strategy.configure(r)
        bi = cfg.setting.direction == "bi"
        self._deliver(r, selected)
        start = self.view if bi else self.global_state
        results, losses, sparsities = [], [], []
        train_s, code_s = 0.0, 0.0
        for k, trained, par_s in self._train_parallel(selected, start, lr, r):
            dec, bits, loss, ts, cs = self._client_update(k, start, lr, r, trained)
            train_s += par_s
            results.append((dec, self.sizes[k]))
            losses.append((loss, self.sizes[k]))
            sparsities.append(_sparsity(dec, self.template))
            self.ledger.charge(
                r,
                "up",
                "update",
                f"client{k}",
                [SERVER],
                len(bits),
                4 * self.num_tx_ref,
                self._classes_of(self.up, bits),
            )
            train_s += ts
            code_s += cs
        mean = self.strategy.aggregate(results)
        del results
        fold = self.method.has_factors and cfg.method.adf_fold
        with torch.no_grad():
            for n in self.template:
                g = self.global_state[n]
                g.add_(torch.from_numpy(mean[n]).to(g.device))
            adf_min, adf_max = self._factor_range()
            if fold and not bi:
                fold_adf_state(self.global_state, self.fold_targets)
        down_sparsity = float("nan")
        if bi:
            t1 = time.perf_counter()
            u = {
                n: (self.global_state[n] - self.view[n])
                .contiguous()
                .cpu()
                .numpy()
                .astype(np.float32)
                for n in self.template
            }
            self.down.set_context(cfg.seed, r, 0xB0ADCA57)
            bits = self.down.encode(u)
            dec = self.down.decode(bits)
            self.broadcasts.append((len(bits), self._classes_of(self.down, bits)))
            code_s += time.perf_counter() - t1
            with torch.no_grad():
                for n in self.template:
                    v = self.view[n]
                    v.add_(torch.from_numpy(dec[n]).to(v.device))
                if fold:
                    # After the broadcast, so the factor update reaches the clients; both
                    # sides fold with the clients' factors and stay in sync.
                    fold_by_client_factors(self.global_state, self.view, self.fold_targets)
            down_sparsity = _sparsity(dec, self.template)
        t1 = time.perf_counter()
        evals = self._evaluate(r)
        eval_s = time.perf_counter() - t1
        prev = self.rows[-1] if self.rows else {}
        nan = float("nan")
        tot = self.ledger.totals(r)
        row = {
            "round": r,
            "lr": lr,
            "num_clients": len(selected),
            "train_loss": sum(loss * n for loss, n in losses) / sum(n for _, n in losses),
            "test_loss": evals.get("test_loss", nan),
            "test_acc": evals.get("test_acc", nan),
            "test_miou": evals.get("test_miou", nan),
            "test_map": evals.get("test_map", nan),
            "val_metric": evals.get("val_metric", nan),
            "clients_test_acc": evals.get("clients_test_acc", nan),
            "clients_test_metric": evals.get("clients_test_metric", nan),
            "bytes_up": tot["bytes_up"],
            "bytes_down": tot["bytes_down"],
            "fp32_bytes_up": tot["fp32_up"],
            "fp32_bytes_down": tot["fp32_down"],
            "bytes_total_cum": prev.get("bytes_total_cum", 0) + tot["bytes_up"] + tot["bytes_down"],
            "fp32_bytes_cum": prev.get("fp32_bytes_cum", 0) + tot["fp32_up"] + tot["fp32_down"],
            "fp32_bytes_up_cum": prev.get("fp32_bytes_up_cum", 0) + tot["fp32_up"],
            "bytes_up_cum": prev.get("bytes_up_cum", 0) + tot["bytes_up"],
            "update_sparsity": float(np.mean(sparsities)),
            "downlink_sparsity": down_sparsity,
            "train_s": train_s,
            "code_s": code_s,
            "eval_s": eval_s,
            # not in metrics.csv; summarised in summary.json
            "adf_min": adf_min,
            "adf_max": adf_max,
        }
        for d, classes in self.ledger.by_class(r).items():
            row.update({f"bytes_{d}_{c}": n for c, n in classes.items()})
        self.rows.append(row)
        self.round = r
        return row

    def _evaluate(self, r: int) -> dict[str, float]:
        """Server model on test and validation, clients' model on test (evaluated rounds)."""
        cfg = self.cfg
        if not (r % cfg.eval.every == 0 or r == cfg.train.rounds):
            return {}
        key = self.primary_metric()
        bs = cfg.train.eval_batch_size
        opts = {"precision": cfg.train.precision, "memory_format": cfg.train.memory_format}
        self.model.load_state_dict(self.global_state)
        out = evaluate(self.model, self.data, bs, **opts)
        if self.data.has_val:
            out["val_metric"] = evaluate(self.model, self.data, bs, split="val", **opts)[key]
        if self.view is not None:
            self.model.load_state_dict(self.view)
            clients = evaluate(self.model, self.data, bs, **opts)
        else:
            clients = out  # uni: clients receive W itself, losslessly
        out["clients_test_acc"] = clients["test_acc"]
        out["clients_test_metric"] = clients[key]
        return out

    def _factor_range(self) -> tuple[float, float]:
        """Smallest and largest server factor after aggregation, before any fold (NaN: none)."""
        vals = [self.global_state[n] for n in self.fold_targets]
        if not vals:
            return float("nan"), float("nan")
        return min(float(v.min()) for v in vals), max(float(v.max()) for v in vals)

    # ------------------------------------------------------------- metrics & outputs

    def primary_metric(self) -> str:
        """Column of the task's primary metric."""
        return {"multilabel": "test_map", "segmentation": "test_miou"}.get(
            self.data.task, "test_acc"
        )

    def write_metrics(self) -> None:
        """metrics.csv with one row per finished round."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
        w.writeheader()
        for row in self.rows:
            w.writerow({k: _fmt(row[k]) for k in METRIC_COLUMNS})
        _atomic_write(self.out / "metrics.csv", buf.getvalue().encode())

    def summary(self) -> dict[str, Any]:
        """Per-run figures (summary.json)."""
        cfg = self.cfg
        key = self.primary_metric()
        evaluated = [row for row in self.rows if not math.isnan(row[key])]
        last = self.rows[-1]
        target = cfg.eval.target_accuracy
        # Rounds are selected on the validation split, never on the test set.
        scored = [row for row in evaluated if not math.isnan(row["val_metric"])]
        best = max(scored, key=lambda row: row["val_metric"]) if scored else None
        to_target = None
        if target is not None and scored:
            to_target = next((row["round"] for row in scored if row["val_metric"] >= target), None)
        total = last["bytes_total_cum"]
        led = self.ledger.totals()
        if led["bytes_up"] + led["bytes_down"] != total:  # pragma: no cover - invariant
            raise RuntimeError("ledger and metrics disagree on the bytes sent")
        final_clients = next((row["clients_test_metric"] for row in reversed(evaluated)), None)
        return {
            "method": cfg.method.name,
            "direction": cfg.setting.direction,
            "metric": key,
            "headline_model": "server",
            "final_acc": evaluated[-1][key] if evaluated else None,
            "final_acc_clients": final_clients,
            "final_test_acc": last["test_acc"],
            "selection": "validation" if scored else None,
            "best_round": best["round"] if best else None,
            "best_val": best["val_metric"] if best else None,
            "best_acc": best[key] if best else None,
            "majority_acc": self.majority_acc,
            "total_bytes": total,
            "fp32_bytes": last["fp32_bytes_cum"],
            "bytes_up": last["bytes_up_cum"],
            "bytes_down": total - last["bytes_up_cum"],
            "fp32_bytes_up": last["fp32_bytes_up_cum"],
            "fp32_bytes_down": last["fp32_bytes_cum"] - last["fp32_bytes_up_cum"],
            "compression_ratio": last["fp32_bytes_cum"] / total if total else None,
            "compression_ratio_up": (
                last["fp32_bytes_up_cum"] / last["bytes_up_cum"] if last["bytes_up_cum"] else None
            ),
            "bytes_by_class": self.ledger.by_class(),
            "accounting": {
                "round": "broadcast, local training, upload, aggregation",
                "initial_model": cfg.setting.initial_model,
                "downlink": (
                    "float32 model to each selected client from round 2"
                    if cfg.setting.direction == "uni"
                    else "missed broadcasts (or the float32 model if smaller) to each "
                    "selected client from round 2, charged when it is selected"
                ),
                "final_broadcast_charged": False,
                "reference": "uncompressed FedAvg without filter factors: float32 model to "
                "and float32 update from each selected client",
            },
            "rounds": self.round,
            "rounds_to_target": to_target,
            "target_accuracy": target,
            "transmitted_params": self.num_tx,
            "reference_transmitted_params": self.num_tx_ref,
            "adf_position": self.adf_position,
            "adf_factor_min": _nanext(self.rows, "adf_min", min),
            "adf_factor_max": _nanext(self.rows, "adf_max", max),
            "mean_update_sparsity": float(np.mean([r["update_sparsity"] for r in self.rows])),
            "train_s": float(sum(r["train_s"] for r in self.rows)),
            "code_s": float(sum(r["code_s"] for r in self.rows)),
            "wall_s": self.elapsed,
            "seed": cfg.seed,
            "device": str(self.device),
            "threads": cfg.threads,
            "precision": cfg.train.precision,
            "memory_format": cfg.train.memory_format,
            "parallel_clients": cfg.train.parallel_clients,
            "versions": _versions(),
            "config": config_to_dict(cfg),
        }

    def write_ledger(self) -> None:
        """ledger.csv: one row per message sent so far."""
        _atomic_write(self.out / LEDGER, self.ledger.to_csv().encode())

    # --------------------------------------------------------------- checkpointing

    def _config_key(self) -> dict[str, Any]:
        """The config a checkpoint must match to be resumed (device may differ)."""
        d = config_to_dict(self.cfg)
        d.pop("device", None)
        if d.get("strategy") == "fedavg":
            del d["strategy"]  # checkpoints written before strategies existed still resume
        return d

    def save_checkpoint(self) -> None:
        """Atomically write everything needed to continue after this round.

        Only tensors and plain data (dict, list, str, int, float, bool, None) are stored, so
        the file loads with torch.load(weights_only=True) and cannot run code.
        """

        def cpu(s: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
            return {k: v.detach().cpu().clone() for k, v in s.items()}

        np_state = np.random.get_state()
        state = {
            "format": CHECKPOINT_FORMAT,
            "round": self.round,
            "config": self._config_key(),
            "global": cpu(self.global_state),
            "view": cpu(self.view) if self.view else None,
            "residuals": {
                int(k): {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in res.items()}
                for k, res in self.residuals.items()
            },
            "opt_states": self.opt_states,
            "rows": [_plain(r) for r in self.rows],
            "elapsed": float(self.elapsed),
            "ledger": self.ledger.to_state(),
            "broadcasts": [[n, dict(c)] for n, c in self.broadcasts],
            "synced": {int(k): int(v) for k, v in self.synced.items()},
            "initialised": sorted(int(k) for k in self.initialised),
            "rng": {
                "python": _plain(random.getstate()),
                "numpy": [
                    np_state[0],
                    torch.from_numpy(np_state[1].copy()),
                    *map(_plain, np_state[2:]),
                ],
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            },
        }
        buf = io.BytesIO()
        torch.save(state, buf)
        _atomic_write(self.out / CHECKPOINT, buf.getvalue())

    def load_checkpoint(self) -> bool:
        """Restore from <out>/checkpoint.pt if present; False when there is none."""
        path = self.out / CHECKPOINT
        if not path.is_file():
            return False
        try:
            # weights_only: a checkpoint is data; unpickling arbitrary objects could run code
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            raise CheckpointMismatch(
                f"checkpoint: {path} holds objects other than tensors and plain data, so it "
                "was not loaded (loading it could run code); delete it to start over"
            ) from exc
        if state.get("format") != CHECKPOINT_FORMAT or state.get("config") != self._config_key():
            raise CheckpointMismatch(
                f"config: {path} was written by a run with a different config or fedbench "
                "version; use another --out folder or delete the checkpoint to start over"
            )
        dev = self.device
        self.global_state = {k: v.to(dev) for k, v in state["global"].items()}
        self.view = {k: v.to(dev) for k, v in state["view"].items()} if state["view"] else None
        self.residuals = {
            int(k): {n: t.numpy() for n, t in res.items()} for k, res in state["residuals"].items()
        }
        self.opt_states = state["opt_states"]
        self.rows = state["rows"]
        self.round = state["round"]
        self.elapsed = state["elapsed"]
        self.ledger = Ledger.from_state(state["ledger"])
        self.broadcasts = [(int(n), dict(c)) for n, c in state["broadcasts"]]
        self.synced = {int(k): int(v) for k, v in state["synced"].items()}
        self.initialised = set(state["initialised"])
        rng = state["rng"]
        random.setstate(_tuples(rng["python"]))
        name, keys, *rest = rng["numpy"]
        np.random.set_state((name, keys.numpy(), *rest))
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return True


def _plain(value: Any) -> Any:
    """Numpy scalars to Python numbers, tuples to lists (what weights_only loading allows)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tuples(value: Any) -> Any:
    """Lists back to tuples (random.setstate wants its nested tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _nanext(rows: list[dict[str, Any]], key: str, fn: Callable[..., float]) -> float | None:
    """min/max of a row value over the rounds, ignoring NaN and missing; None if none."""
    vals = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return fn(vals) if vals else None


def _default_model(cfg: RunConfig, data: FederatedData) -> nn.Module:
    """Build the configured model from the fedbench.models registry."""
    from fedbench.models import build_model

    model = build_model(
        cfg.model.name,
        data.num_classes,
        in_channels=data.channels,
        small_input=cfg.model.small_input,
        task=data.task,
        pretrained=cfg.model.pretrained,
    )
    report = getattr(model, "pretrained_report", None)
    if report is not None:  # which tensors kept their initialisation, in run.log
        log.info("%s; skipped: %s", report.summary(), report.skipped)
    return model


def _setup_logging(out: Path) -> logging.Handler:
    """Attach a run.log file handler to the fl logger."""
    handler = logging.FileHandler(out / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    return handler


def run_fl(
    cfg: RunConfig,
    out: str | Path,
    *,
    data: FederatedData | None = None,
    model_fn: Callable[[RunConfig, FederatedData], nn.Module] | None = None,
    progress: bool = False,
    stop_after_round: int | None = None,
    on_round: Callable[[int, dict[str, Any]], None] | None = None,
    resume: bool = True,
) -> dict[str, Any] | None:
    """Run (or resume) a federated run; writes metrics.csv, summary.json, run.log to `out`.

    Returns the summary, or None when stopped early (stop_after_round / StopRun from
    `on_round`), which leaves the checkpoint of the last finished round behind.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    handler = _setup_logging(out)
    run: FederatedRun | None = None
    try:
        run = FederatedRun(cfg, out, data=data, model_fn=model_fn)
        resumed = False
        if resume:
            try:
                resumed = run.load_checkpoint()
            except CheckpointMismatch:
                # A changed config (e.g. a workflow rerun with new params) starts over; the
                # old checkpoint is kept aside rather than silently reused.
                stale = out / (CHECKPOINT + ".stale")
                os.replace(out / CHECKPOINT, stale)
                msg = (
                    f"{out / CHECKPOINT} belongs to another config; moved to {stale}, starting over"
                )
                log.warning("%s", msg)
                warnings.warn(msg, stacklevel=2)
        if resumed:
            log.info("resuming after round %d from %s", run.round, out / CHECKPOINT)
        else:
            log.info(
                "start: method=%s direction=%s device=%s clients=%d transmitted params=%d",
                cfg.method.name,
                cfg.setting.direction,
                run.device,
                cfg.data.num_clients,
                run.num_tx,
            )
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=cfg.train.rounds, initial=run.round, unit="round", dynamic_ncols=True)
        try:
            while run.round < cfg.train.rounds:
                t0 = time.perf_counter()
                row = run.step()
                run.elapsed += time.perf_counter() - t0
                key = run.primary_metric()
                log.info(
                    "round %d: loss %.4f %s %.4f up %d down %d total %.3f MB sparsity %.4f "
                    "train %.2fs code %.2fs",
                    row["round"],
                    row["train_loss"],
                    key,
                    row[key],
                    row["bytes_up"],
                    row["bytes_down"],
                    row["bytes_total_cum"] / 1e6,
                    row["update_sparsity"],
                    row["train_s"],
                    row["code_s"],
                )
                if cfg.checkpoint:
                    run.save_checkpoint()
                run.write_metrics()
                run.write_ledger()
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(
                        round=row["round"],
                        acc=f"{row[key]:.4f}",
                        MB=f"{row['bytes_total_cum'] / 1e6:.2f}",
                    )
                if on_round is not None:
                    on_round(row["round"], row)
                if stop_after_round is not None and row["round"] >= stop_after_round:
                    raise StopRun(f"stopped after round {row['round']}")
        except StopRun as exc:
            log.info("%s", exc)
            return None
        finally:
            if bar is not None:
                bar.close()
        if not run.rows:
            raise ConfigError("train.rounds: nothing was run")
        run.write_metrics()
        run.write_ledger()
        summary = run.summary()
        _atomic_write(out / "summary.json", (json.dumps(summary, indent=2) + "\n").encode())
        log.info(
            "done: %s %.4f, %d bytes (fp32 %d, ratio %.1f), %.1f s",
            summary["metric"],
            summary["final_acc"] or float("nan"),
            summary["total_bytes"],
            summary["fp32_bytes"],
            summary["compression_ratio"] or float("nan"),
            summary["wall_s"],
        )
        return summary
    finally:
        if run is not None and run._pool is not None:
            run._pool.close()  # the parallel-client threads end with the run
        log.removeHandler(handler)
        handler.close()
