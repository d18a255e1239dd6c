"""Helpers for running the Snakemake workflow from tests (dry runs and the smoke run).

A plain module (not conftest.py): the test folders are not packages, so conftest names clash."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"


def snakemake_cmd() -> list[str]:
    """The snakemake executable of this environment."""
    exe = Path(sys.executable).parent / "snakemake"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "snakemake"]


def run_snakemake(
    args: list[str], workdir: Path, config: dict | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run snakemake on the repository's Snakefile with workdir as its working directory.

    Relative paths of the shipped configs (mirror, conformance) point outside the repository,
    so tests pass them as absolute paths through --config.
    """
    overrides = {
        "mirror": str(SHARED / "data") if (SHARED / "data").is_dir() else None,
        "conformance": str(SHARED / "conformance")
        if (SHARED / "conformance" / "manifest.json").is_file()
        else None,
        **(config or {}),
    }
    cmd = [
        *snakemake_cmd(),
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *args,
        "--config",
        *(f"{k}={'null' if v is None else v}" for k, v in overrides.items()),
    ]
    env = dict(os.environ)
    # Rules call `fedbench` and `python`: the ones of this environment.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        cmd, check=False, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )


def expected_cells(config_file: Path) -> set[tuple]:
    """(dataset, model, setting, method, variant, seed) of every run a config's grid defines."""
    cfg = yaml.safe_load(config_file.read_text())
    fl = cfg["fl"]
    cells = set()
    for block in fl["grid"]:
        for ds, mo, st, me in itertools.product(
            block["datasets"], block["models"], block["settings"], block["methods"]
        ):
            method = cfg["methods"].get(me) or {}
            sweep = block.get("sweep") or method.get("sweep") or {}
            # folder names as the workflow writes them, e.g. sparsity0.99_codec_modennc
            variants = [
                "_".join(
                    f"{k.split('.')[-1]}{v if isinstance(v, str) else json.dumps(v)}"
                    for k, v in zip(sweep, combo, strict=True)
                )
                for combo in itertools.product(*sweep.values())
            ] if sweep else ["base"]  # fmt: skip
            for variant in variants:
                for seed in block.get("seeds") or fl.get("seeds", [0]):
                    cells.add((ds, mo, st, me, variant, seed))
    return cells


def figure_stems(datasets: set[str], bench: bool) -> list[str]:
    """File stems of the figures a config gives: per data set, over all runs, of the codec."""
    stems = [
        f"{name}_{ds}"
        for ds in sorted(datasets)
        for name in ("accuracy_vs_round", "accuracy_vs_mb", "adf_factors")
    ]
    stems += ["compression_ratio", "sparsity_sweep", "bytes_by_class", "partial_update"]
    return stems + (["codec_throughput", "codec_entropy"] if bench else [])


def dry_run_jobs(stdout: str) -> list[dict[str, str]]:
    """The jobs a `snakemake -n` printout lists: rule name and wildcards."""
    jobs, current = [], None
    for line in stdout.splitlines():
        line = line.strip()
        if line.startswith("rule ") and line.endswith(":"):
            current = {"rule": line[5:-1]}
            jobs.append(current)
        elif current is not None and line.startswith("wildcards:"):
            for item in line[len("wildcards:") :].split(","):
                key, _, value = item.strip().partition("=")
                current[key] = value
        elif current is not None and line.startswith("resources:"):
            current["resources"] = line
    return jobs
