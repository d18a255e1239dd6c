"""Generated run folders and codec tables for the figure and table tests (never real results)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from plothelpers import ADF_SWEEP, CODEC_ROWS, MAJORITY, METHOD_RATIO


def write_run(
    root: Path,
    dataset: str,
    model: str,
    setting: str,
    method: str,
    variant: str,
    seed: int,
    rounds: int = 4,
    sparsity: float | None = 0.9,
    majority_acc: float | None = 0.625,
) -> Path:
    """Write one synthetic run folder in the workflow's layout; return its path."""
    path = root / dataset / model / setting / method / variant / f"seed{seed}"
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    ratio = METHOD_RATIO.get(method, 10.0) * (1 + 10 * (sparsity or 0) ** 4)
    if method != "fp32":  # seeds differ a little, so a mean over seeds is not any one seed's
        ratio *= 1 + 0.01 * seed
    fp32_round = 4.0e6
    r = np.arange(1, rounds + 1)
    # Accuracy falls with sparsity and differs per setting, so that sweep points stay apart.
    top = 0.4 - 0.15 * (sparsity or 0) ** 4 - (0.03 if setting == "bi" else 0.0)
    acc = 0.5 + top * (1 - np.exp(-r / 2)) + rng.normal(0, 0.01, rounds)
    bytes_round = fp32_round / ratio
    metrics = pd.DataFrame(
        {
            "round": r,
            "train_loss": 1.0 / r,
            "test_acc": acc,
            "bytes_up": bytes_round / 2,
            "bytes_down": bytes_round / 2,
            "bytes_total_cum": bytes_round * r,
            "fp32_bytes_cum": fp32_round * r,
            "update_sparsity": sparsity or 0.0,
            "train_s": 0.1,
            "code_s": 0.01,
        }
    )
    metrics.to_csv(path / "metrics.csv", index=False)
    summary = {
        "final_acc": float(acc[-1]),
        "best_acc": float(acc.max()),
        "total_bytes": float(bytes_round * rounds),
        "fp32_bytes": float(fp32_round * rounds),
        "compression_ratio": float(ratio),
        "rounds": rounds,
        "rounds_to_target": None,
        "majority_acc": majority_acc,
        # the ledger's split: weights take most, the rest spread over the other classes
        "bytes_by_class": {
            d: {
                "weight": int(bytes_round * rounds * 0.3) + seed,
                "bn_affine": 1000 * (seed + 1),
                "bn_stats": 2000,
                "bias": 10,
                "adf": 500 if method == "adf" else 0,
                "other": 0,
                "overhead": 300,
            }
            for d in ("up", "down")
        },
        "wall_s": 1.0,
        "seed": seed,
        "config": {
            "seed": seed,
            "data": {"name": dataset},
            "model": {"name": model},
            "setting": {"direction": "bi" if setting == "bi" else "uni", "partial": None},
            "method": {"name": method, "sparsity": sparsity, "qp": -32},
        },
        "versions": {},
        "device": "cpu",
    }
    (path / "summary.json").write_text(json.dumps(summary))
    return path


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    """Two data sets x two settings x four methods, a sparsity sweep for adf, two seeds."""
    root = tmp_path / "runs"
    for dataset in ("pneumoniamnist", "cifar10"):
        for setting in ("uni", "bi"):
            for method in ("fp32", "unscaled", "adf", "stc"):
                variants = {"base": 0.9}
                if method == "adf":
                    variants = ADF_SWEEP
                if method == "fp32":
                    variants = {"base": None}
                for variant, sp in variants.items():
                    for seed in (0, 1):
                        write_run(
                            root,
                            dataset,
                            "resnet20",
                            setting,
                            method,
                            variant,
                            seed,
                            sparsity=sp,
                            majority_acc=MAJORITY[dataset],
                        )
    return root


@pytest.fixture
def run_writer():
    """The synthetic run writer, for tests that build their own folders."""
    return write_run


@pytest.fixture
def codec_csv(tmp_path: Path) -> Path:
    """A codec benchmark table with the columns `fedbench codec bench` writes (no JSON)."""
    rows = []
    # Four workloads, as the default run: two rows of panels, where shared axes hid labels.
    for k, (workload, h0) in enumerate((("A", 8e6), ("B90", 1e6), ("B99", 2e5), ("C", 5e5))):
        for codec, over, speed, threads in CODEC_ROWS:
            speed *= 1 + k  # the workloads' throughputs differ, so panels cannot be swapped
            rows.append(
                {
                    "workload": workload,
                    "setting": "qp=-32 qpd=2 nwqp=-75 dq=0 po=0",
                    "codec": codec,
                    "input": "float32",
                    "threads": threads,
                    "num_tensors": 21,
                    "num_params": 11678912,
                    "nonzero_fraction": 0.5,
                    "float32_bytes": 4.67e7,
                    "bytes": h0 * over,
                    "ratio": 4.67e7 / (h0 * over),
                    "h0_bytes": h0,
                    "bytes_over_h0": over,
                    "encode_s": 1.0,
                    "decode_s": 1.0,
                    "encode_params_per_s": speed,
                    "decode_params_per_s": speed * 1.1,
                }
            )
    rows.append({"workload": "A", "codec": "zlib-9", "setting": rows[0]["setting"]})  # skipped
    path = tmp_path / "codec_bench.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Figures as drawn, by file stem: style.save is wrapped to keep each figure object."""
    from fedbench.plots import style

    figures: dict = {}
    real = style.save

    def save(fig, out_dir, stem):
        figures[stem] = fig
        return real(fig, out_dir, stem)

    monkeypatch.setattr(style, "save", save)
    return figures
