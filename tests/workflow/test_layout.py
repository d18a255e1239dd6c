"""The run-folder layout (fedbench.layout): the folder of a key reads back as that key, paths
outside the layout are refused by name, and the workflow and the plots both use it."""

from __future__ import annotations

from pathlib import Path

import pytest
from wfhelpers import REPO

from fedbench.layout import (
    RUN_DIR_PATTERN,
    RUN_LABELS,
    LayoutError,
    parse_run_dir,
    run_dir,
    run_key,
)
from fedbench.plots.runs import run_labels

KEYS = [
    ("pneumoniamnist", "resnet20", "uni", "fp32", "base", 0),
    ("cifar10", "vgg11", "partial", "adf", "qp-38_sparsity0.9", 12),
    ("voc2012-seg", "mobilenet_v2", "bi", "stc", "sparsity0.99", 3),
]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("results", ["results", "results/smoke/", "/abs/out"])
def test_run_dir_round_trip(results: str, key: tuple) -> None:
    path = run_dir(results, key)
    assert path == f"{results.rstrip('/')}/runs/" + "/".join(map(str, key[:5])) + f"/seed{key[5]}"
    labels = parse_run_dir(path)
    assert list(labels) == list(RUN_LABELS) and run_key(labels) == key
    assert parse_run_dir(Path(path)) == labels
    assert run_dir(results, labels) == path  # a labels mapping is a key too


def test_pattern_is_the_snakemake_wildcard_form() -> None:
    key = dict(zip(RUN_LABELS, KEYS[1], strict=True))
    assert "results/" + RUN_DIR_PATTERN.format(**key) == run_dir("results", key)


@pytest.mark.parametrize(
    "path",
    [
        "results/runs/cifar10/vgg11/uni/adf/base",  # no seed folder
        "results/runs/cifar10/vgg11/uni/adf/base/seed",  # seed without a number
        "results/runs/cifar10/vgg11/uni/adf/base/seed-1",
        "results/runs/cifar10/vgg11/uni/adf/base/seed0/metrics.csv",  # a file, not the folder
        "uni/adf/base/seed0",  # too short
        "/vgg11/uni/adf/base/seed0",  # the root is not a data set
        "runs/x/../uni/adf/base/seed0",
    ],
)
def test_bad_run_dirs_are_refused(path: str) -> None:
    with pytest.raises(LayoutError, match=r"does not end in \{dataset\}/.*seed\{seed\}"):
        parse_run_dir(path)


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (("a/b", "m", "s", "x", "v", 0), "dataset 'a/b' is not a folder name"),
        (("d", "", "s", "x", "v", 0), "model '' is not a folder name"),
        (("d", "m", "s", "x", "..", 0), "variant '..' is not a folder name"),
        (("d", "m", "s", "x", "v", -1), "seed -1 is not a non-negative integer"),
        (("d", "m", "s", "x", "v", "0"), "seed '0' is not a non-negative integer"),
        (("d", "m", "s", "x", "v"), "has 5 values, not 6"),
        ({"dataset": "d"}, "lacks model, setting, method, variant, seed"),
    ],
)
def test_bad_keys_are_refused(key, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        run_dir("results", key)


def test_plots_label_runs_by_the_layout() -> None:
    path = Path(run_dir("out", KEYS[1]))
    assert run_labels(path, {}) == dict(zip(RUN_LABELS, KEYS[1], strict=True))
    # outside the layout, the run's own config names it
    config = {"data": {"name": "cifar10"}, "model": {"name": "vgg11"}, "method": {"name": "adf"}}
    labels = run_labels(Path("by_hand/adf_run"), {"config": config, "seed": 4})
    assert (labels["dataset"], labels["method"], labels["variant"], labels["seed"]) == (
        "cifar10",
        "adf",
        "base",
        4,
    )


def test_workflow_spells_the_layout_nowhere_else() -> None:
    """The folder pattern and the run file names live in fedbench/layout.py only."""
    for path in [
        REPO / "Snakefile",
        *sorted((REPO / "workflows").glob("*.smk")),
        REPO / "fedbench" / "plots" / "runs.py",
    ]:
        text = path.read_text()
        for spelled in ("/seed{", "seed{{", '"metrics.csv"', '"summary.json"', "parts[-6"):
            assert spelled not in text, f"{path.relative_to(REPO)} spells {spelled!r}"
