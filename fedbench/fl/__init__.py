"""Federated learning with compressed differential updates and Adaptive Differential Filters.

- `config`: RunConfig dataclasses, YAML presets (fedbench/fl/presets), `--set` overrides.
- `compressors`: the UpdateCompressor interface and its registry (fp32, deepcabac, stc,
  topk-fp16); `sparsify`: the sparsifiers.
- `adf`: per-filter factors (conv(x, s * W), or s * BN(conv(x)) where a BatchNorm follows),
  folding.
- `aggregation`: FedAvg strategy (configure / aggregate).
- `data`: data loading and splitting; `training`: local training and evaluation primitives.
- `client`: one client's round (ClientState, client_update) and the local ClientExecutor;
  `parallel`: several clients at once; `server`: the server's round (aggregate, fold,
  broadcast); `ledger`: bytes sent and the downlink charging rules.
- `loop`: the round loop (`FederatedRun`, `run_fl`); `checkpoint`: checkpoint/resume;
  `outputs`: metrics.csv, summary.json, ledger.csv; `template`: device, model, transmitted
  tensors.

Importing this package stays light (no torch); `run_fl` and `FederatedRun` load on use.
"""

from __future__ import annotations

from typing import Any

from fedbench.fl.config import ConfigError, RunConfig, list_presets, load_config

__all__ = ["ConfigError", "FederatedRun", "RunConfig", "list_presets", "load_config", "run_fl"]


def __getattr__(name: str) -> Any:
    # torch-dependent names load on first use
    if name in ("run_fl", "FederatedRun"):
        from fedbench.fl import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'fedbench.fl' has no attribute {name!r}")
