"""What the ServerApp and the ClientApp share: the Flower run config, the message layout,
and building the fedbench run (data, model, method, template, compressors) from a config.

Both sides build the run the same way `fedbench fl` does (`FederatedRun`): the same data
split, the same seeded initial model (round 1 trains from it without sending it, as the
simulator does unless `setting.initial_model: charged`), the same compressors.

Flower run config (`[tool.flwr.app.config]`, or `flwr run --run-config`):
  fedbench-config  the resolved fedbench run config as JSON (config_to_dict)
  out              the ServerApp's output folder (absolute; on the SuperLink's machine)
  data-fn          optional "module:function", (RunConfig) -> FederatedData, instead of
                   the configured data set (tests, custom data)
  model-fn         optional "module:function", (RunConfig, FederatedData) -> nn.Module
  round-timeout    seconds the server waits for a round's replies (then it goes on
                   without the missing clients)
  node-timeout     seconds the server waits for the SuperNodes at the start
  num-nodes        SuperNodes to wait for (each hosts the clients k with
                   k % num-partitions == partition-id); 0: one per fedbench client
  resume           continue from <out>/checkpoint.pt when it matches the config
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_ROUND_TIMEOUT",
    "MSG_QUERY",
    "MSG_TRAIN",
    "FlowerOptions",
    "build_run",
    "config_key",
    "load_hook",
    "snapshot_extra",
]

# Message types: "query" asks a SuperNode which partition it serves, "train" runs clients.
MSG_QUERY = "query"
MSG_TRAIN = "train"
# Record names in a message's content.
META = "fedbench"  # ConfigRecord: round, lr, clients, ... (both directions)
DOWN = "down.{}"  # ArrayRecord per client: what the server sends it this round
UP = "up.{}"  # ArrayRecord per client: its update bitstream
STATE = "fedbench.state"  # ConfigRecord in context.state: one blob per hosted client
UPDATE = "update"  # the uplink bitstream's name in UP
INITIAL, MODEL, SNAPSHOT = "initial", "model", "snapshot"  # float32 payloads
SNAPSHOT_EXTRA = "snapshot.folded"  # float32: folded tensors that are not transmitted
BROADCAST = "broadcast.{:06d}"  # the broadcast coded after round j

DEFAULT_ROUND_TIMEOUT = 3600.0
DEFAULT_NODE_TIMEOUT = 300.0


def load_hook(spec: str) -> Callable[..., Any] | None:
    """The callable named by "module:attr" ("" or None: no hook)."""
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise ValueError(f"hook {spec!r}: expected module:function")
    return getattr(importlib.import_module(module), attr)


def config_key(config_json: str) -> str:
    """A short hash of the fedbench config: both sides check they run the same one."""
    return hashlib.sha256(config_json.encode()).hexdigest()[:16]


class FlowerOptions:
    """The Flower run config, parsed (see the module docstring)."""

    def __init__(self, run_config: Mapping[str, Any]) -> None:
        self.config_json = str(run_config["fedbench-config"])
        self.out = Path(str(run_config.get("out", "")))
        self.data_fn = str(run_config.get("data-fn", ""))
        self.model_fn = str(run_config.get("model-fn", ""))
        self.round_timeout = float(run_config.get("round-timeout", DEFAULT_ROUND_TIMEOUT))
        self.node_timeout = float(run_config.get("node-timeout", DEFAULT_NODE_TIMEOUT))
        self.num_nodes = int(run_config.get("num-nodes", 0))
        self.resume = bool(run_config.get("resume", True))
        self.key = config_key(self.config_json)

    def config(self) -> Any:
        """The fedbench RunConfig."""
        from fedbench.fl.config import config_from_dict

        return config_from_dict(json.loads(self.config_json))


def build_run(opts: FlowerOptions, out: str | Path, run_cls: type | None = None, **kw: Any) -> Any:
    """The fedbench run of this config (data, model, method, compressors), as `fedbench fl`
    builds it; `run_cls` a FederatedRun subclass (the server's), `kw` its extra arguments."""
    from fedbench.fl.loop import FederatedRun

    cfg = opts.config()
    data_fn = load_hook(opts.data_fn)
    data = data_fn(cfg) if data_fn is not None else None
    return (run_cls or FederatedRun)(cfg, out, data=data, model_fn=load_hook(opts.model_fn), **kw)


def snapshot_extra(run: Any) -> list[str]:
    """Tensors a snapshot must carry besides the transmitted ones: those the bidirectional
    ADF fold changes on both sides without transmitting them (BatchNorm weight and bias
    when only weights are transmitted). A client that applies every broadcast folds them
    itself; one that gets a snapshot instead cannot, so the server sends them (charged)."""
    cfg = run.cfg
    if not (run.method.has_factors and cfg.method.adf_fold and cfg.setting.direction == "bi"):
        return []
    folded = {t for ts in run.fold_targets.values() for t in ts}
    return [n for n in run.global_state if n in folded and n not in run.template]
