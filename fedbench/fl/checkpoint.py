"""Checkpoint/resume: file format, config key, RNG states, tensors and plain data only."""

from __future__ import annotations

import io
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedbench.fl.config import ConfigError, RunConfig, config_to_dict
from fedbench.fl.outputs import atomic_write

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_FORMAT",
    "CheckpointMismatch",
    "config_key",
    "cpu_state",
    "plain",
    "read_checkpoint",
    "restore_rng",
    "rng_state",
    "write_checkpoint",
]

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_FORMAT = 2


class CheckpointMismatch(ConfigError):
    """The checkpoint in --out belongs to a run with a different config."""


def config_key(cfg: RunConfig) -> dict[str, Any]:
    """The config a checkpoint must match to be resumed (device may differ)."""
    d = config_to_dict(cfg)
    d.pop("device", None)
    if d.get("strategy") == "fedavg":
        del d["strategy"]  # checkpoints written before strategies existed still resume
    return d


def cpu_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies of a state dict's tensors."""
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) RNG states as tensors and plain data."""
    np_state = np.random.get_state()
    return {
        "python": plain(random.getstate()),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *map(plain, np_state[2:])],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(rng: dict[str, Any]) -> None:
    """Set the global RNGs to a state saved by rng_state."""
    random.setstate(_tuples(rng["python"]))
    name, keys, *rest = rng["numpy"]
    np.random.set_state((name, keys.numpy(), *rest))
    torch.set_rng_state(rng["torch"])
    if rng.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def write_checkpoint(path: Path, cfg: RunConfig, state: dict[str, Any]) -> None:
    """Atomically write a run's state (tensors and plain data) with the format and config key.

    Only tensors and plain data (dict, list, str, int, float, bool, None) may be in `state`,
    so the file loads with torch.load(weights_only=True) and cannot run code.
    """
    buf = io.BytesIO()
    torch.save({"format": CHECKPOINT_FORMAT, "config": config_key(cfg), **state}, buf)
    atomic_write(path, buf.getvalue())


def read_checkpoint(path: Path, cfg: RunConfig) -> dict[str, Any] | None:
    """The state saved at `path` (None: no file); CheckpointMismatch if another config's."""
    if not path.is_file():
        return None
    try:
        # weights_only: a checkpoint is data; unpickling arbitrary objects could run code
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointMismatch(
            f"checkpoint: {path} holds objects other than tensors and plain data, so it "
            "was not loaded (loading it could run code); delete it to start over"
        ) from exc
    if state.get("format") != CHECKPOINT_FORMAT or state.get("config") != config_key(cfg):
        raise CheckpointMismatch(
            f"config: {path} was written by a run with a different config or fedbench "
            "version; use another --out folder or delete the checkpoint to start over"
        )
    return state


def plain(value: Any) -> Any:
    """Numpy scalars to Python numbers, tuples to lists (what weights_only loading allows)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _tuples(value: Any) -> Any:
    """Lists back to tuples (random.setstate wants its nested tuples)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value
