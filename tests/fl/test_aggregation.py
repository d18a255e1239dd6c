"""FedAvg weighting and client selection."""

import numpy as np
import pytest

from fedbench.fl.aggregation import FedAvgStrategy, select_clients, weighted_mean


def test_weighted_mean_weights_by_sample_count():
    a = {"w": np.array([1.0, 2.0], np.float32)}
    b = {"w": np.array([3.0, -2.0], np.float32)}
    m = weighted_mean([a, b], [1, 3])
    np.testing.assert_allclose(m["w"], [(1 + 9) / 4, (2 - 6) / 4])
    assert m["w"].dtype == np.float32


def test_strategy_aggregate_equal_weights_is_plain_mean():
    rng = np.random.default_rng(0)
    ups = [{"a": rng.normal(size=(3, 2)).astype(np.float32)} for _ in range(5)]
    m = FedAvgStrategy(5).aggregate([(u, 7) for u in ups])
    np.testing.assert_allclose(m["a"], np.mean([u["a"] for u in ups], axis=0), rtol=1e-6)


def test_weighted_mean_rejects_bad_weights():
    with pytest.raises(ValueError):
        weighted_mean([{"a": np.zeros(1)}], [0])
    with pytest.raises(ValueError):
        weighted_mean([], [])


def test_select_clients_fraction_and_seed():
    s1 = select_clients(10, 0.3, seed=4, round_=2)
    assert len(s1) == 3 and s1 == sorted(set(s1))
    assert s1 == select_clients(10, 0.3, seed=4, round_=2)
    rounds = {tuple(select_clients(10, 0.3, seed=4, round_=r)) for r in range(1, 20)}
    assert len(rounds) > 1  # the choice changes between rounds
    assert select_clients(10, 1.0, 0, 1) == list(range(10))
    assert len(select_clients(10, 0.01, 0, 1)) == 1


def test_loop_builds_the_configured_strategy(synthetic_data, tmp_path):
    from fltools import small_config, tiny_model_fn

    from fedbench.fl import aggregation
    from fedbench.fl.loop import run_fl

    calls = []

    @aggregation.register_strategy("counting-fedavg")
    class Counting(aggregation.FedAvgStrategy):
        def aggregate(self, results):
            calls.append(len(results))
            return super().aggregate(results)

    try:
        cfg = small_config(strategy="counting-fedavg", train={"rounds": 2})
        s = run_fl(cfg, tmp_path, data=synthetic_data, model_fn=tiny_model_fn)
        assert calls == [4, 4] and s["config"]["strategy"] == "counting-fedavg"
    finally:
        aggregation._STRATEGIES.pop("counting-fedavg", None)
