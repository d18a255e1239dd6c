"""Claim (2)'s figures: the factors per layer over rounds (factors.npz) and partial updates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedbench.plots.factors import adf_factors_data, partial_update_data
from fedbench.plots.figures import make_figures
from fedbench.plots.runs import PlotInputError, load_runs


def _write_factors(run: Path, seed: int) -> dict[str, np.ndarray]:
    """factors.npz as the FL loop writes it: round [R], per tensor [R, C_out]."""
    rng = np.random.default_rng(seed)
    arrays = {
        "round": np.arange(1, 4),
        "conv1.adf_scale": np.exp2(rng.normal(0, 0.1, (3, 8)) * np.arange(1, 4)[:, None]),
        "layer1.0.conv1.adf_scale": np.exp2(rng.normal(0.2, 0.05, (3, 16))),
    }
    arrays = {k: v.astype(np.int64 if k == "round" else np.float32) for k, v in arrays.items()}
    np.savez_compressed(run / "factors.npz", **arrays)
    return arrays


def test_adf_factors_are_the_files_quantiles(tmp_path: Path, run_writer, drawn: dict) -> None:
    root = tmp_path / "runs"
    files = {}
    for seed in (0, 1):
        run = run_writer(root, "pneumoniamnist", "resnet20", "bi", "adf", "base", seed)
        files[seed] = _write_factors(run, seed)
    run_writer(root, "pneumoniamnist", "resnet20", "bi", "unscaled", "base", 0)  # no factors
    frame = adf_factors_data(load_runs([root]))
    assert set(frame["layer"]) == {"conv1", "layer1.0.conv1"}
    assert frame.groupby("layer")["depth"].first().to_dict() == {"conv1": 0, "layer1.0.conv1": 1}
    assert (frame["n_seeds"] == 2).all()
    for layer, tensor in (("conv1", "conv1.adf_scale"), ("layer1.0.conv1", None)):
        tensor = tensor or f"{layer}.adf_scale"
        got = frame[frame["layer"] == layer].sort_values("round")
        logs = [np.log2(files[s][tensor].astype(np.float64)) for s in (0, 1)]
        for col, q in (("q10", 0.1), ("q50", 0.5), ("q90", 0.9)):
            want = np.mean([np.quantile(x, q, axis=1) for x in logs], axis=0)
            np.testing.assert_allclose(got[col], want, rtol=1e-6)
        up = np.mean([np.mean(x > 0, axis=1) for x in logs], axis=0)
        np.testing.assert_allclose(got["up"], up)
    # enhanced filters of the second layer: its factors sit around 2^0.2
    assert frame[frame["layer"] == "layer1.0.conv1"]["up"].min() > 0.9

    make_figures([root], None, tmp_path / "f", only=["adf_factors"])
    fig = drawn["adf_factors_pneumoniamnist"]
    lines = {a.get_gid(): a for ax in fig.axes for a in ax.get_lines() if (a.get_gid() or "") != ""}
    line = lines["factors|pneumoniamnist|resnet20|bi|adf|base|conv1"]
    want = frame[frame["layer"] == "conv1"].sort_values("round")
    np.testing.assert_allclose(line.get_ydata(), want["q90"])
    np.testing.assert_array_equal(line.get_xdata(), [1, 2, 3])


def test_no_factors_is_a_clear_error_and_a_placeholder_figure(tmp_path, run_writer, drawn):
    root = tmp_path / "runs"
    run_writer(root, "cifar10", "resnet20", "bi", "adf", "base", 0)
    with pytest.raises(PlotInputError, match="no ADF run with a factors.npz"):
        adf_factors_data(load_runs([root]))
    written = make_figures([root], None, tmp_path / "f", only=["adf_factors", "partial_update"])
    assert {p.name for p in written} >= {"adf_factors_cifar10.pdf", "partial_update.png"}


def _set_regime(run: Path, regime: str | None, method: str | None = None) -> None:
    summary = json.loads((run / "summary.json").read_text())
    summary["config"]["setting"] = {"direction": "bi", "partial": None, "regime": regime}
    if method is not None:  # the registry name behind a workflow label
        summary["config"]["method"]["name"] = method
    (run / "summary.json").write_text(json.dumps(summary))


def test_partial_update_puts_each_regime_next_to_the_full_update(tmp_path, run_writer):
    root = tmp_path / "runs"
    for setting, regime in (("bi", None), ("bi-factors", "factors"), ("bi-clf", "classifier")):
        for seed in (0, 1):
            _set_regime(
                run_writer(root, "pneumoniamnist", "r20-c10", setting, "adf", "base", seed),
                regime,
            )
    # a workflow label of adf (its config names method adf) counts as ADF
    for seed in (0, 1):
        _set_regime(
            run_writer(root, "pneumoniamnist", "r20-c10", "bi-x", "adf-exact", "base", seed),
            "factors-classifier",
            method="adf",
        )
    # a model without partial runs is not drawn; unscaled runs are not ADF's partial updates
    run_writer(root, "pneumoniamnist", "resnet20", "bi", "adf", "base", 0)
    _set_regime(run_writer(root, "pneumoniamnist", "r20-c10", "bi-u", "unscaled", "base", 0), "x")
    frame = partial_update_data(load_runs([root]))
    assert set(frame["model"]) == {"r20-c10"}
    assert dict(frame.groupby("setting")["regime"].first()) == {
        "bi": "full",
        "bi-factors": "factors",
        "bi-clf": "classifier",
        "bi-x": "factors-classifier",
    }
    for setting in ("bi", "bi-factors"):
        metrics = [
            pd.read_csv(root / f"pneumoniamnist/r20-c10/{setting}/adf/base/seed{s}/metrics.csv")
            for s in (0, 1)
        ]
        got = frame[frame["setting"] == setting].sort_values("round")
        np.testing.assert_allclose(
            got["acc"], (metrics[0]["test_acc"] + metrics[1]["test_acc"]) / 2
        )
        np.testing.assert_allclose(
            got["mb"], (metrics[0]["bytes_total_cum"] + metrics[1]["bytes_total_cum"]) / 2e6
        )
