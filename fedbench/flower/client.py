"""The fedbench ClientApp: each SuperNode runs its fedbench clients' local rounds.

A SuperNode with node config `partition-id=p num-partitions=P` hosts the clients k with
k % P == p. Per client it keeps, in Flower's `context.state` (never sent), what the
simulator keeps per client: the error-feedback residual and the optimizer state, and,
bidirectionally, the clients' model, which it updates by decoding the broadcasts it
receives (and folding ADF factors, as the server does). A round: apply the payload
(broadcasts, or a float32 model), train from that start model, delta + residual,
compress with error feedback (the simulator's own client code), reply with the bitstream.

The server says which broadcast round and which trained round it believes each client's
state is at; a client whose state disagrees (its SuperNode restarted, a reply was lost)
replies with an error for that client instead of training on a wrong state, and the
server resets it (see fedbench.flower.server).
"""

from __future__ import annotations

import tempfile
from typing import Any

import numpy as np
import torch

from fedbench.flower import common as C
from fedbench.flower.records import (
    fp32_tensors,
    load_blob,
    record_of,
    save_blob,
    streams_of,
)

# One built run per config in this process (the simulation runtime reuses its workers;
# a deployment starts a fresh process per message).
_HOSTS: dict[str, tuple[Any, dict[str, torch.Tensor], Any]] = {}


def _host(opts: C.FlowerOptions) -> tuple[Any, dict[str, torch.Tensor]]:
    """The fedbench run of this config (data, model, compressors) and its initial state."""
    key = f"{opts.key}|{opts.data_fn}|{opts.model_fn}"
    if key not in _HOSTS:
        scratch = tempfile.TemporaryDirectory(prefix="fedbench-client-")
        run = C.build_run(opts, scratch.name)
        initial = {k: v.detach().clone() for k, v in run.global_state.items()}
        _HOSTS[key] = (run, initial, scratch)
    run, initial, _ = _HOSTS[key]
    return run, initial


def _start_model(
    run: Any, initial: dict[str, torch.Tensor], state: dict | None, streams: list, r: int
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """The client's start model of round r from its state and this round's payload; also
    the clients' model to keep (bidirectional)."""
    from fedbench.fl.adf import fold_by_client_factors
    from fedbench.fl.server import BROADCAST_CONTEXT

    cfg = run.cfg
    base = {k: v.clone() for k, v in initial.items()}
    shapes = {n: s.shape for n, s in run.template.items()}
    floats = {n: tuple(t.shape) for n, t in initial.items() if t.is_floating_point()}
    payload = dict(streams)
    if C.INITIAL in payload:  # setting.initial_model: charged
        base.update(fp32_tensors(payload.pop(C.INITIAL), floats, base))
    if cfg.setting.direction == "uni":
        if C.MODEL in payload:
            base.update(fp32_tensors(payload.pop(C.MODEL), shapes, base))
        if payload:
            raise ValueError(f"unexpected payload {sorted(payload)} (direction uni)")
        return base, None
    view = base if state is None or state.get("view") is None else state["view"]
    fold = run.method.has_factors and cfg.method.adf_fold
    for name, data in payload.items():
        if name == C.SNAPSHOT:
            view.update(fp32_tensors(data, shapes, view))
        elif name == C.SNAPSHOT_EXTRA:
            extra = {n: tuple(view[n].shape) for n in C.snapshot_extra(run)}
            view.update(fp32_tensors(data, extra, view))
        elif name.startswith(C.BROADCAST.split("{")[0]):
            run.down.set_context(cfg.seed, int(name.rsplit(".", 1)[1]), BROADCAST_CONTEXT)
            dec = run.down.decode(data)
            with torch.no_grad():
                for n in run.template:
                    view[n].add_(torch.from_numpy(dec[n]).to(view[n].device))
                if fold:  # as the server folds after each broadcast
                    scratch = {n: t.clone() for n, t in view.items()}
                    fold_by_client_factors(scratch, view, run.fold_targets)
        else:
            raise ValueError(f"unexpected payload {name!r} (direction bi)")
    return view, view


def _client_round(
    run: Any, k: int, start: dict[str, torch.Tensor], lr: float, r: int, state: dict | None
) -> Any:
    """The simulator's client round for client k (fedbench.fl.client.client_update) from
    its kept residual, optimizer state and (method.bn_stats=local) BatchNorm statistics; a
    ClientResult."""
    from fedbench.fl.client import ClientState, client_update

    residual = None
    if state is not None and state.get("residual") is not None:
        residual = {n: t.numpy() for n, t in state["residual"].items()}
    kept = ClientState(
        residual,
        None if state is None else state.get("opt"),
        None if state is None else state.get("bn_stats"),
    )
    return client_update(run.model, run.client_setup(k), start, lr, r, kept)


def handle_train(content: Any, run_config: dict[str, Any], context_state: Any) -> Any:
    """Run this node's clients of one round; returns the reply's RecordDict."""
    from flwr.app import ConfigRecord, RecordDict

    from fedbench.fl.client import TrainingDiverged

    opts = C.FlowerOptions(run_config)
    meta = content[C.META]
    if meta["config-key"] != opts.key:
        raise ValueError("the message belongs to another fedbench config than this run's")
    r, lr = int(meta["round"]), float(meta["lr"])
    clients = [int(k) for k in meta["clients"]]
    run, initial = _host(opts)
    if C.STATE not in context_state:
        context_state[C.STATE] = ConfigRecord()
    store = context_state[C.STATE]
    reply: dict[str, Any] = {}
    out = {"loss": [], "train_s": [], "code_s": [], "errors": []}
    for i, k in enumerate(clients):
        slot = f"client{k}"
        state = None if meta["reset"][i] or slot not in store else load_blob(store[slot])
        loss, train_s, code_s, err = float("nan"), 0.0, 0.0, ""
        try:
            if not meta["reset"][i]:
                held = 0 if state is None else int(state["held"])
                trained = 0 if state is None else int(state["round"])
                if (held, trained) != (int(meta["held"][i]), int(meta["trained"][i])):
                    raise RuntimeError(
                        f"state: holds broadcast {held} and round {trained}, the server "
                        f"expects {meta['held'][i]} and {meta['trained'][i]}"
                    )
            streams = streams_of(content[C.DOWN.format(k)])
            start, view = _start_model(run, initial, state, streams, r)
            res = _client_round(run, k, start, lr, r, state)
            loss, train_s, code_s = res.loss, res.train_s, res.code_s
            held_now = (state or {}).get("held", 0)
            new = {
                "held": r - 1 if view is not None and r > 1 else held_now,
                "round": r,
                "residual": None
                if res.state.residual is None
                else {
                    n: torch.from_numpy(np.ascontiguousarray(a))
                    for n, a in res.state.residual.items()
                },
                "opt": res.state.optimizer_state,
                "bn_stats": res.state.bn_stats,
                "view": view,
            }
            store[slot] = save_blob(new)
            reply[C.UP.format(k)] = record_of([(C.UPDATE, res.bits)])
        except TrainingDiverged as exc:
            err = f"diverged: {exc}"
        except Exception as exc:  # noqa: BLE001 - reported to the server, which records it
            err = f"{type(exc).__name__}: {exc}"
        out["loss"].append(float(loss))
        out["train_s"].append(float(train_s))
        out["code_s"].append(float(code_s))
        out["errors"].append(err)
    reply[C.META] = ConfigRecord({"round": r, "config-key": opts.key, "clients": clients, **out})
    return RecordDict(reply)


def handle_query(node_config: Any) -> Any:
    """The reply to the server's query: which partition this SuperNode serves."""
    from flwr.app import ConfigRecord, RecordDict

    meta = {
        "partition-id": int(node_config["partition-id"]),
        "num-partitions": int(node_config["num-partitions"]),
    }
    return RecordDict({C.META: ConfigRecord(meta)})


def _make_app() -> Any:
    """The ClientApp object Flower loads (`fedbench.flower.client:app`)."""
    from flwr.app import Message
    from flwr.clientapp import ClientApp

    app = ClientApp()

    @app.query()
    def query(msg: Message, context: Any) -> Message:
        return Message(handle_query(context.node_config), reply_to=msg)

    @app.train()
    def train(msg: Message, context: Any) -> Message:
        content = handle_train(msg.content, dict(context.run_config), context.state)
        return Message(content, reply_to=msg)

    return app


app = _make_app()
