"""The frontier stage (workflows/frontier.smk): config/frontier.yaml sweeps every method's
rate knobs bidirectionally over >= 3 seeds, its runs are ordinary fl_run jobs under their own
results prefix, the frontier rule reads every run, and the default config keeps a slice."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml
from wfhelpers import REPO, dry_run_jobs, expected_cells, run_snakemake

from fedbench.fl.methods import method_names


def _dry(config: str, tmp_path: Path, *extra: str):
    result = run_snakemake(["-n", "-p", *extra, "--configfile", str(REPO / "config" / config)],
                           tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result.stdout, dry_run_jobs(result.stdout)


def _frontier_command(stdout: str) -> str:
    (block,) = stdout.split("\nrule frontier:")[1:]
    line = next(ln for ln in block.splitlines() if "fedbench plots frontier" in ln)
    return line.strip().removeprefix("Shell command: ")


def _method_of(cfg: dict, label: str) -> str:
    return (cfg["methods"].get(label) or {}).get("name", label)


@pytest.mark.slow
def test_frontier_config_sweeps_every_method_bidirectionally_with_three_seeds(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "frontier.yaml").read_text())
    stdout, jobs = _dry("frontier.yaml", tmp_path)
    want = expected_cells(REPO / "config" / "frontier.yaml")
    fl = [j for j in jobs if j["rule"] == "fl_run"]
    assert len(fl) == len(want)
    assert {j["setting"] for j in fl} == {"bi"}
    assert {j["dataset"] for j in fl} == {"pneumoniamnist", "cifar10"}
    # every registered method, each with >= 3 seeds per operating point
    assert {_method_of(cfg, j["method"]) for j in fl} == set(method_names())
    seeds = Counter((j["dataset"], j["method"], j["variant"]) for j in fl)
    assert min(seeds.values()) >= 3
    # sparsity reaches 0.999 and beyond, both coders, class knobs swept
    variants = {j["variant"] for j in fl}
    assert {"sparsity0.9999_codec_modennc", "sparsity0.9999_codec_modesparse"} <= variants
    assert any(j["method"].endswith("-classes") for j in fl)
    # the frontier rule: one job reading every run, writing the headline as configured
    assert Counter(j["rule"] for j in jobs)["frontier"] == 1
    cmd = _frontier_command(stdout)
    runs = cmd.split("--runs ")[1].split(" --out")[0].split()
    assert len(runs) == len(want)
    assert all(r.startswith("results/frontier/runs/") for r in runs)
    assert " --out figures/frontier --csv figures/headline.csv --md figures/headline.md " in cmd
    assert "--tolerance 0.01" in cmd


def test_default_config_keeps_a_frontier_slice(tmp_path):
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    stdout, jobs = _dry("config.yaml", tmp_path)
    fl = [j for j in jobs if j["rule"] == "fl_run"]
    bi = [j for j in fl if j["dataset"] == "pneumoniamnist" and j["setting"] == "bi"]
    # a few points of every method, bidirectional, 3 seeds each
    assert {_method_of(cfg, j["method"]) for j in bi} == set(method_names())
    points = Counter((j["method"], j["variant"]) for j in bi)
    assert min(points.values()) == 3
    assert len(points) <= 16  # a slice: the default DAG stays near an hour
    # with the transfer cell: 86 runs, about 55 min on 2 cores (README); near an hour
    assert len(fl) <= 90
    cmd = _frontier_command(stdout)
    assert len(cmd.split("--runs ")[1].split(" --out")[0].split()) == len(fl)
    assert "--csv figures/headline_slice.csv --md figures/headline_slice.md" in cmd


def test_no_frontier_section_no_frontier_job(tmp_path):
    _, jobs = _dry("smoke.yaml", tmp_path)
    assert "frontier" not in {j["rule"] for j in jobs}


def test_frontier_core_overlay_runs_a_subset_of_the_full_sweep(tmp_path):
    """config/frontier_core.yaml over config/frontier.yaml: 15 PneumoniaMNIST points x 3 seeds
    (5 for fp32 and the four broadcast points) and 3 CIFAR-10 points x 3 seeds, each run the
    same job (same folder) as in the full sweep, so the full sweep reuses it."""
    keys = ("dataset", "model", "setting", "method", "variant", "seed")

    def runs(jobs):
        return {tuple(j[k] for k in keys) for j in jobs if j["rule"] == "fl_run"}

    (tmp_path / "full").mkdir()
    (tmp_path / "core").mkdir()
    full = runs(_dry("frontier.yaml", tmp_path / "full")[1])
    configs = [str(REPO / "config" / name) for name in ("frontier.yaml", "frontier_core.yaml")]
    result = run_snakemake(["-n", "-p", "--configfile", *configs], tmp_path / "core")
    assert result.returncode == 0, result.stderr[-3000:]
    stdout = result.stdout
    core = runs(dry_run_jobs(stdout))
    assert len(core) == 64 and core <= full
    seeds = Counter(r[:5] for r in core)
    assert sorted(seeds.values()) == [3] * 13 + [5] * 5
    assert {(r[0], r[2]) for r in core} == {("pneumoniamnist", "bi"), ("cifar10", "bi")}
    cifar = {(r[3], r[4]) for r in core if r[0] == "cifar10"}
    assert cifar == {
        ("fp32", "base"),
        ("unscaled", "sparsity0.9"),
        ("unscaled", "sparsity0.99"),
    }
    cmd = _frontier_command(stdout)
    assert "--csv figures/headline_core.csv --md figures/headline_core.md" in cmd
