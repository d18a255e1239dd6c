"""The round loop: FederatedRun (strategy -> clients -> server -> ledger -> outputs) and run_fl.

A round r is: broadcast (the server's model to the round's selected clients, charged by
`ledger.Downlink`), local training and upload (`client.client_update`, run where the run's
`ClientExecutor` puts the clients: `client.LocalClients` by default), aggregation by the
strategy (`aggregation`), the server's update, fold and broadcast (`server.server_round`),
evaluation. Every byte is charged in the run's `Ledger`, message by message, together with
what uncompressed FedAvg (the fp32 reference) sends for the same message (the rules:
fedbench.fl.ledger); metrics.csv, summary.json and ledger.csv (fedbench.fl.outputs) are
sums over it. After each round the run can be checkpointed (fedbench.fl.checkpoint).

Evaluation: every evaluated round records the server model W on the test and validation
splits, and the clients' model (bidirectional: the decoded `view` every client holds; uni:
W itself, sent losslessly) on the test split. The headline (final_acc, figures) is the
server model; best_acc and rounds_to_target select rounds on the validation split.

ADF runs also record in summary.json the resolved `adf_position`, `adf_layer_positions`
(how many factors act in the weight and in the output position on this model), and
`adf_factor_min` /
`adf_factor_max`: the extremes of the server's aggregated factors over all rounds (taken
before any fold), i.e. how far the factors moved from 1; and in factors.npz the factors
themselves, per tensor and round (fedbench.fl.outputs.write_factors).
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fedbench.fl.adf import adf_fold_targets, adf_positions, is_adf_name
from fedbench.fl.aggregation import build_strategy, derive_seed
from fedbench.fl.checkpoint import (
    CHECKPOINT,
    CheckpointMismatch,
    cpu_state,
    plain,
    read_checkpoint,
    restore_rng,
    rng_state,
    write_checkpoint,
)
from fedbench.fl.client import ClientExecutor, ClientSetup, ClientState, LocalClients
from fedbench.fl.compressors import UpdateCompressor
from fedbench.fl.config import ConfigError, RunConfig
from fedbench.fl.data import FederatedData, load_federated_data
from fedbench.fl.ledger import SERVER, Downlink, Ledger, class_bytes, tensor_classes
from fedbench.fl.outputs import (
    primary_metric,
    setup_logging,
    summarize,
    update_sparsity,
    write_factors,
    write_ledger,
    write_metrics,
    write_summary,
)
from fedbench.fl.parallel import has_global_rng_layers
from fedbench.fl.server import evaluate_models, server_round
from fedbench.fl.template import build_template, default_model, resolve_device
from fedbench.fl.training import lr_at_round

__all__ = ["FederatedRun", "StopRun", "run_fl"]

log = logging.getLogger("fedbench.fl")


class StopRun(Exception):
    """Raised by a round callback (or stop_after_round) to end a run early, as a kill would."""


class FederatedRun:
    """One federated run: its state, the one-round step, checkpointing and outputs.

    `clients`: where the clients run (a ClientExecutor); default LocalClients, which holds
    every client's state in this process (and in the checkpoint).
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: str | Path,
        *,
        data: FederatedData | None = None,
        model_fn: Callable[[RunConfig, FederatedData], nn.Module] | None = None,
        clients: ClientExecutor | None = None,
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
        self.model = (model_fn or default_model)(cfg, self.data)
        self.method = cfg.method_class(cfg)
        factors = self.method.has_factors
        self.adf_position = cfg.resolved_adf_position if factors else None
        self.method.prepare_model(self.model)
        # where the factors act on this model, layer by layer (auto on a VGG without BN:
        # every one in the weight position although the config resolves to output)
        positions = list(adf_positions(self.model).values()) if factors else []
        self.adf_layer_positions = (
            {p: positions.count(p) for p in ("weight", "output")} if factors else None
        )
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
        # The fp32 reference: uncompressed FedAvg of the same transmitted tensors without
        # factors; a factors-only partial update (setting.regime factors) has no such tensor,
        # and its reference is the factors themselves as float32 (not a ratio over 0 bytes).
        ref_names = [n for n in self.template if not is_adf_name(n)] or list(self.template)
        self.num_tx_ref = sum(self.template[n].size for n in ref_names)
        self.downlink = Downlink(
            cfg.setting.direction,
            cfg.setting.initial_model,
            num_tx=self.num_tx,
            num_tx_ref=self.num_tx_ref,
            model_params=sum(t.numel() for t in floats.values()),
            model_params_ref=sum(t.numel() for n, t in floats.items() if not is_adf_name(n)),
            tx_classes=class_bytes({n: 4 * s.size for n, s in self.template.items()}, self.classes),
            full_classes=class_bytes({n: 4 * t.numel() for n, t in floats.items()}, self.classes),
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
        # Server state (with the ledger, the rows and the clients' states: the checkpoint).
        self.global_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.view = (
            {k: v.clone() for k, v in self.global_state.items()}
            if cfg.setting.direction == "bi"
            else None
        )
        self.rows: list[dict[str, Any]] = []
        self.round = 0
        self.elapsed = 0.0
        self.ledger = Ledger()
        self.majority_acc = self.data.majority_acc()
        if cfg.train.parallel_clients > 1 and has_global_rng_layers(self.model):
            # the workers would race for torch's global RNG: results would not be seeded
            raise ConfigError(
                "train.parallel_clients: the model has dropout layers (torch's global RNG), "
                "which concurrent clients cannot draw from reproducibly; use 1"
            )
        self.clients: ClientExecutor = clients or LocalClients(
            self.model, self.client_setup, cfg.train.parallel_clients, cfg.threads
        )

    def client_setup(self, k: int) -> ClientSetup:
        """Client k's setup as of now (the run's current trainable set and compressor)."""
        return ClientSetup(
            k,
            self.cfg,
            self.data,
            self.data.client_indices[k],
            self.template,
            self.trainable,
            self.up,
        )

    @property
    def residuals(self) -> dict[int, dict[str, np.ndarray]]:
        """The local clients' error-feedback residuals (clients that have uploaded)."""
        states = getattr(self.clients, "states", {})
        return {k: s.residual for k, s in states.items() if s.residual is not None}

    @property
    def opt_states(self) -> dict[int, Any]:
        """The local clients' kept optimizer states (train.keep_optimizer_state)."""
        states = getattr(self.clients, "states", {})
        return {k: s.optimizer_state for k, s in states.items() if s.optimizer_state is not None}

    def close(self) -> None:
        """Release the clients' executor (the parallel-client threads)."""
        self.clients.close()

    # ------------------------------------------------------------------ one round

    def _classes_of(self, comp: UpdateCompressor, bits: bytes) -> dict[str, int]:
        """Bytes of a bitstream per tensor class."""
        return class_bytes(comp.tensor_bytes(bits), self.classes)

    def step(self) -> dict[str, Any]:
        """Run the next round; returns its metrics row."""
        cfg = self.cfg
        r = self.round + 1
        lr = lr_at_round(cfg.train, r)
        selected = self.strategy.configure(r)
        self.downlink.deliver(self.ledger, r, selected)
        start = self.view if self.view is not None else self.global_state
        # in client order, however the executor's results arrived: the mean's float sums
        # do not depend on where or when clients ran
        results = sorted(self.clients.run_round(r, selected, start, lr), key=lambda c: c.client)
        for res in results:
            self.ledger.charge(
                r,
                "up",
                "update",
                f"client{res.client}",
                [SERVER],
                len(res.bits),
                4 * self.num_tx_ref,
                self._classes_of(self.up, res.bits),
            )
        losses = [(res.loss, self.sizes[res.client]) for res in results]
        sparsities = [update_sparsity(res.update, self.template) for res in results]
        train_s = sum(res.train_s for res in results)
        code_s = sum(res.code_s for res in results)
        mean = self.strategy.aggregate([(res.update, self.sizes[res.client]) for res in results])
        del results
        srv = server_round(
            self.global_state,
            self.view,
            mean,
            self.template,
            fold_targets=self.fold_targets,
            fold=self.method.has_factors and cfg.method.adf_fold,
            downlink=self.down,
            seed=cfg.seed,
            round_=r,
        )
        down_sparsity = float("nan")
        if srv.bits is not None:
            self.downlink.record_broadcast(len(srv.bits), self._classes_of(self.down, srv.bits))
            code_s += srv.code_s
            down_sparsity = update_sparsity(srv.update, self.template)
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
            "adf_min": srv.adf_min,
            "adf_max": srv.adf_max,
            "adf_factors": srv.factors,  # factors.npz
        }
        for d, classes in self.ledger.by_class(r).items():
            row.update({f"bytes_{d}_{c}": n for c, n in classes.items()})
        self.rows.append(row)
        self.round = r
        return row

    def _evaluate(self, r: int) -> dict[str, float]:
        """Server and clients' models (server.evaluate_models) in evaluated rounds, else {}."""
        cfg = self.cfg
        if not (r % cfg.eval.every == 0 or r == cfg.train.rounds):
            return {}
        return evaluate_models(
            self.model, self.data, cfg, self.global_state, self.view, self.primary_metric()
        )

    # ------------------------------------------------------------- metrics & outputs

    def primary_metric(self) -> str:
        """Column of the task's primary metric."""
        return primary_metric(self.data.task)

    def summary(self) -> dict[str, Any]:
        """Per-run figures (summary.json)."""
        return summarize(
            self.cfg,
            self.rows,
            self.ledger,
            metric=self.primary_metric(),
            rounds=self.round,
            majority_acc=self.majority_acc,
            transmitted_params=self.num_tx,
            reference_transmitted_params=self.num_tx_ref,
            adf_position=self.adf_position,
            adf_layer_positions=self.adf_layer_positions,
            wall_s=self.elapsed,
            device=str(self.device),
        )

    def write_outputs(self) -> None:
        """metrics.csv and ledger.csv as of the last finished round."""
        write_metrics(self.out, self.rows)
        write_ledger(self.out, self.ledger)
        write_factors(self.out, self.rows)

    # --------------------------------------------------------------- checkpointing

    def save_checkpoint(self) -> None:
        """Atomically write everything needed to continue after this round."""
        write_checkpoint(
            self.out / CHECKPOINT,
            self.cfg,
            {
                "round": self.round,
                "global": cpu_state(self.global_state),
                "view": cpu_state(self.view) if self.view else None,
                "residuals": {
                    int(k): {n: torch.from_numpy(np.ascontiguousarray(a)) for n, a in res.items()}
                    for k, res in self.residuals.items()
                },
                "opt_states": self.opt_states,
                "bn_stats": {
                    k: cpu_state(s.bn_stats)
                    for k, s in getattr(self.clients, "states", {}).items()
                    if s.bn_stats is not None
                },
                "rows": [plain(r) for r in self.rows],
                "elapsed": float(self.elapsed),
                "ledger": self.ledger.to_state(),
                **self.downlink.to_state(),
                "rng": rng_state(),
            },
        )

    def load_checkpoint(self) -> bool:
        """Restore from <out>/checkpoint.pt if present; False when there is none."""
        state = read_checkpoint(self.out / CHECKPOINT, self.cfg)
        if state is None:
            return False
        dev = self.device
        self.global_state = {k: v.to(dev) for k, v in state["global"].items()}
        self.view = {k: v.to(dev) for k, v in state["view"].items()} if state["view"] else None
        residuals = {
            int(k): {n: t.numpy() for n, t in res.items()} for k, res in state["residuals"].items()
        }
        opt_states = state["opt_states"]
        # checkpoints from before method.bn_stats=local have no client statistics
        bn_stats = {
            int(k): {n: t.to(dev) for n, t in s.items()}
            for k, s in state.get("bn_stats", {}).items()
        }
        if isinstance(self.clients, LocalClients):
            self.clients.states = {
                k: ClientState(residuals.get(k), opt_states.get(k), bn_stats.get(k))
                for k in dict.fromkeys([*residuals, *opt_states, *bn_stats])
            }
        self.rows = state["rows"]
        self.round = state["round"]
        self.elapsed = state["elapsed"]
        self.ledger = Ledger.from_state(state["ledger"])
        self.downlink.load_state(state)
        restore_rng(state["rng"])
        return True


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
    handler = setup_logging(out)
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
                run.write_outputs()
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
        run.write_outputs()
        summary = run.summary()
        write_summary(out, summary)
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
        if run is not None:
            run.close()  # the parallel-client threads end with the run
        log.removeHandler(handler)
        handler.close()
