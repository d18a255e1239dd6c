"""Server-side strategy (Flower-like): configure selects the clients of a round, aggregate
averages their decoded updates weighted by local sample counts (FedAvg).

Strategies are registered by name (`register_strategy`, or the entry-point group
`fedbench.strategies` of an installed package, each naming a class); config key `strategy`
picks one. A strategy class is built as cls(num_clients, fraction, seed) and has
configure(round_) -> clients and aggregate([(update, num_samples), ...]) -> update."""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

import numpy as np

__all__ = [
    "STRATEGY_ENTRY_POINT_GROUP",
    "FedAvgStrategy",
    "derive_seed",
    "get_strategy",
    "register_strategy",
    "select_clients",
    "strategies",
    "weighted_mean",
]

STRATEGY_ENTRY_POINT_GROUP = "fedbench.strategies"
_STRATEGIES: dict[str, type] = {}
_loaded = False


def register_strategy(name: str) -> Callable[[type], type]:
    """Class decorator adding an aggregation strategy to the registry under `name`."""

    def deco(cls: type) -> type:
        cls.name = name
        _STRATEGIES[name] = cls
        return cls

    return deco


def strategies() -> dict[str, type]:
    """Every registered strategy (built-in first, then installed entry points)."""
    global _loaded
    if not _loaded:
        _loaded = True
        for ep in entry_points(group=STRATEGY_ENTRY_POINT_GROUP):
            if ep.name not in _STRATEGIES:
                _STRATEGIES[ep.name] = ep.load()
    return dict(_STRATEGIES)


def get_strategy(name: str, on_error: Callable[[str], Exception] = KeyError) -> type:
    """The registered strategy class `name`."""
    table = strategies()
    if name not in table:
        raise on_error(f"strategy: invalid value {name!r}; allowed: {', '.join(table)}")
    return table[name]


def build_strategy(name: str, num_clients: int, fraction: float, seed: int) -> Any:
    """An instance of the registered strategy `name`."""
    return get_strategy(name)(num_clients, fraction, seed)


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed derived from `seed` and integer keys (round, client, purpose)."""
    return int(np.random.SeedSequence([int(seed), *[int(k) for k in keys]]).generate_state(1)[0])


def select_clients(num_clients: int, fraction: float, seed: int, round_: int) -> list[int]:
    """Seeded choice of max(1, round(fraction * num_clients)) clients for a round, sorted."""
    m = max(1, round(fraction * num_clients))
    if m >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng(derive_seed(seed, round_, 0x5E1EC7))
    return sorted(int(i) for i in rng.choice(num_clients, size=m, replace=False))


def weighted_mean(
    updates: list[dict[str, np.ndarray]], weights: list[float]
) -> dict[str, np.ndarray]:
    """Sum_k w_k u_k / sum_k w_k per tensor (float64 accumulation, float32 result)."""
    if not updates:
        raise ValueError("weighted_mean: no updates")
    if len(updates) != len(weights):
        raise ValueError("weighted_mean: one weight per update needed")
    # Python floats from the start: sum() over np.float32 weights stays float32 in NumPy 2
    # but becomes float64 in NumPy 1 (0 + np.float32), which changed the total.
    w64 = [float(w) for w in weights]
    total = math.fsum(w64)
    if total <= 0:
        raise ValueError("weighted_mean: weights must sum to a positive number")
    out = {}
    for name in updates[0]:
        acc = np.zeros(updates[0][name].shape, dtype=np.float64)
        for u, w in zip(updates, w64, strict=True):
            # float64 product: a Python float times a float32 array is float32 in both NumPys.
            acc += w * np.asarray(u[name], dtype=np.float64)
        out[name] = (acc / total).astype(np.float32)
    return out


@register_strategy("fedavg")
class FedAvgStrategy:
    """FedAvg over decoded differential updates with seeded partial participation."""

    def __init__(self, num_clients: int, fraction: float = 1.0, seed: int = 0) -> None:
        self.num_clients = num_clients
        self.fraction = fraction
        self.seed = seed

    def configure(self, round_: int) -> list[int]:
        """Clients taking part in round `round_` (1-based)."""
        return select_clients(self.num_clients, self.fraction, self.seed, round_)

    def aggregate(self, results: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
        """Mean update weighted by each client's number of local training samples."""
        return weighted_mean([u for u, _ in results], [n for _, n in results])
