"""Helpers of the Flower tests: the data and model hooks the apps import by name (data-fn,
model-fn: synthetic images and the FL tests' TinyNet, so no data set is needed), configs,
and the comparison with `fedbench fl`."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from fltools import TinyNet, small_config

from fedbench.fl.data import FederatedData, federated_data_from_arrays


def _arrays(n: int, seed: int, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Two-class grey images; class 1 has a faintly brighter centre (not learnt at once)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.integers(0, 160, (n, size, size, 1)).astype(np.uint8)
    c = size // 4
    x[y == 1, c:-c, c:-c, 0] += 12
    return x, y.astype(np.int64)


def synthetic_data(cfg) -> FederatedData:
    """Synthetic data split over cfg.data.num_clients clients of unequal size."""
    x_tr, y_tr = _arrays(160, 0)
    x_te, y_te = _arrays(200, 1)
    x_va, y_va = _arrays(40, 2)
    n = cfg.data.num_clients
    cuts = np.linspace(0, len(x_tr), n + 1).astype(int)
    cuts[1:-1] += np.arange(1, n) * 3  # unequal sizes: the FedAvg weights matter
    parts = [np.arange(cuts[i], cuts[i + 1]) for i in range(n)]
    return federated_data_from_arrays(
        x_tr, y_tr, x_te, y_te, parts, "classification", 2, x_val=x_va, y_val=y_va
    )


def tiny_model(cfg, data: FederatedData):
    """TinyNet for the data's channels and classes."""
    return TinyNet(data.channels, data.num_classes)


HERE = Path(__file__).parent
# where the apps' processes find this module and fltools
PYTHON_PATH = [str(HERE), str(HERE.parent / "fl")]
HOOKS = {"data_fn": "flowertools:synthetic_data", "model_fn": "flowertools:tiny_model"}
# wall-time columns: everything else must be equal
TIMES = {"train_s", "code_s", "eval_s", "round_wall_s"}


def make_config(name="stc", direction="bi", clients=2, rounds=2, **sections):
    """A tiny run config: `clients` clients, `rounds` rounds, the given method."""
    return small_config(
        data={"num_clients": clients},
        train={"rounds": rounds, "batch_size": 16, "lr": 0.05, "local_epochs": 1},
        method={"name": name, **sections.pop("method", {})},
        setting={"direction": direction, **sections.pop("setting", {})},
        **sections,
    )


def read_rows(out: Path) -> list[dict]:
    """metrics.csv as dicts of strings."""
    with open(Path(out) / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def simulate(cfg, out: Path) -> list[dict]:
    """`fedbench fl` (run_fl) of the config on the same data and model; its rows."""
    from fedbench.fl.loop import run_fl

    run_fl(cfg, out, data=synthetic_data(cfg), model_fn=tiny_model, resume=False)
    return read_rows(out)


def assert_same_rounds(flower_rows: list[dict], sim_rows: list[dict]) -> None:
    """Bytes identical and every other metric equal (to 1e-4) per round."""
    assert len(flower_rows) == len(sim_rows)
    for fr, sr in zip(flower_rows, sim_rows, strict=True):
        for key, want in sr.items():
            if key in TIMES:
                continue
            got = fr[key]
            if key.startswith(("bytes", "fp32")) or key in ("round", "num_clients"):
                assert got == want, f"round {sr['round']}: {key} {got} != {want}"
            elif want == "":
                assert got == "", f"round {sr['round']}: {key} {got} != (none)"
            else:
                assert float(got) == pytest.approx(float(want), abs=1e-4), (
                    f"round {sr['round']}: {key} {got} != {want}"
                )
