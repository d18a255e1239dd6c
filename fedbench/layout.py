"""The run-folder layout: where the workflow puts each FL run and how the plots read it back.

A run is the cell (dataset, model, setting, method, variant, seed); its folder is

    {results}/runs/{dataset}/{model}/{setting}/{method}/{variant}/seed{seed}/

The workflow (workflows/common.smk, workflows/fl.smk) builds the folders with `run_dir` and
`RUN_DIR_PATTERN`, the plots (fedbench/plots/runs.py) label runs with `parse_run_dir`: one
definition, so the two cannot drift apart.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import PurePath

# The labels of a run, outermost folder first.
RUN_LABELS = ("dataset", "model", "setting", "method", "variant", "seed")
# What each label may look like: one folder name; the seed a non-negative integer. The
# workflow's wildcard constraints are these, so a wildcard can never span two folders.
LABEL_PATTERNS = {label: r"[^/]+" for label in RUN_LABELS} | {"seed": r"\d+"}
# The cell's part of the path, as a Snakemake wildcard pattern (also names the job's log file).
CELL_PATTERN = "{dataset}/{model}/{setting}/{method}/{variant}/seed{seed}"
# The run folder below the results folder.
RUN_DIR_PATTERN = f"runs/{CELL_PATTERN}"

# Files `fedbench fl --out DIR` writes into a run folder.
METRICS = "metrics.csv"  # one row per round
SUMMARY = "summary.json"  # per-run totals and the resolved config
LEDGER = "ledger.csv"  # one row per message sent
RUN_LOG = "run.log"
# The files the figures and tables read, and so the ones the workflow declares as outputs.
RUN_FILES = (METRICS, SUMMARY)

# The cell pattern as a regular expression: parse_run_dir checks a path's tail against it.
_CELL_RE = re.compile(
    re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{LABEL_PATTERNS[m[1]]})", CELL_PATTERN)
)
_NAME = re.compile(LABEL_PATTERNS["dataset"])


class LayoutError(ValueError):
    """A path or key that does not fit the run-folder layout; the message says which and why."""


RunKey = tuple[str, str, str, str, str, int]


def _key_values(key: Sequence | Mapping) -> list:
    """The six label values of a key given as a sequence or a mapping of RUN_LABELS."""
    if isinstance(key, Mapping):
        missing = [label for label in RUN_LABELS if label not in key]
        if missing:
            raise LayoutError(f"run key {dict(key)} lacks {', '.join(missing)}")
        return [key[label] for label in RUN_LABELS]
    values = list(key)
    if len(values) != len(RUN_LABELS):
        raise LayoutError(
            f"run key {tuple(values)} has {len(values)} values, not {len(RUN_LABELS)} "
            f"({', '.join(RUN_LABELS)})"
        )
    return values


def run_dir(results: str | os.PathLike, key: Sequence | Mapping) -> str:
    """The run folder of a key (dataset, model, setting, method, variant, seed) under results."""
    values = _key_values(key)
    *names, seed = values
    for label, name in zip(RUN_LABELS, names, strict=False):
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name == "..":
            raise LayoutError(f"run {label} {name!r} is not a folder name")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise LayoutError(f"run seed {seed!r} is not a non-negative integer")
    return f"{os.fspath(results).rstrip('/')}/" + RUN_DIR_PATTERN.format(
        **dict(zip(RUN_LABELS, values, strict=True))
    )


def run_key(labels: Mapping) -> RunKey:
    """The key tuple of a labels mapping (as `parse_run_dir` returns)."""
    return tuple(_key_values(labels))  # type: ignore[return-value]


def parse_run_dir(path: str | os.PathLike) -> dict[str, str | int]:
    """The labels of a run folder, read from its last six parts ({dataset}/.../seed{seed}).

    The folders above them (normally {results}/runs) are not checked, so that a copied run tree
    keeps its labels. Raises LayoutError for a path that does not end in the layout.
    """
    tail = PurePath(path).parts[-len(RUN_LABELS) :]
    match = _CELL_RE.fullmatch("/".join(tail))
    if len(tail) < len(RUN_LABELS) or match is None or ".." in tail:
        raise LayoutError(f"run folder {os.fspath(path)!r} does not end in {CELL_PATTERN}")
    labels: dict[str, str | int] = dict(match.groupdict())
    labels["seed"] = int(labels["seed"])
    return labels
