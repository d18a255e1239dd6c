"""The Snakemake DAG: every config dry-runs, the grid expands to every cell, bad configs fail
with a message that names the key, the profiles hold what the executors need."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from wfhelpers import REPO, dry_run_jobs, expected_cells, figure_stems, run_snakemake

CONFIGS = ("config.yaml", "smoke.yaml", "paper.yaml")


def _dry_run(config: str, tmp_path: Path, extra: list[str] | None = None):
    result = run_snakemake(
        ["-n", "--configfile", str(REPO / "config" / config), *(extra or [])], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return dry_run_jobs(result.stdout)


@pytest.mark.parametrize(
    "config",
    [
        "config.yaml",
        "smoke.yaml",
        pytest.param("paper.yaml", marks=pytest.mark.slow),
    ],
)
def test_dry_run_lists_every_cell(config: str, tmp_path: Path) -> None:
    jobs = _dry_run(config, tmp_path)
    counts = Counter(j["rule"] for j in jobs)
    want = expected_cells(REPO / "config" / config)
    fl = [j for j in jobs if j["rule"] == "fl_run"]
    assert counts["fl_run"] == len(want)
    # Every (data set, model, setting, method, seed) of the grid is a job, and nothing else.
    got = {(j["dataset"], j["model"], j["setting"], j["method"], int(j["seed"])) for j in fl}
    assert got == {(c[0], c[1], c[2], c[3], c[5]) for c in want}
    for rule in ("data_download", "data_prepare", "results_table", "all"):
        assert counts[rule] >= 1, rule
    cfg = yaml.safe_load((REPO / "config" / config).read_text())
    bench = cfg.get("codec", {}).get("bench") is not None
    # One `figure` job per figure file stem, and exactly the stems of the config's figures.
    stems = Counter(j["stem"] for j in jobs if j["rule"] == "figure")
    assert stems == Counter(figure_stems({c[0] for c in want}, bench)), stems
    if bench:
        assert counts["codec_bench"] == 1
    assert counts["codec_pytest_benchmark"] == (cfg["codec"].get("pytest_benchmark") is not None)


def test_committed_figures_do_not_shadow_the_runs(tmp_path: Path) -> None:
    """A fresh clone holds the reference figures and table: the FL jobs must still run."""
    import shutil
    import subprocess

    clone = tmp_path / "clone"
    if (REPO / ".git").exists():
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        # the working tree's committed-or-not reference outputs, as a user's checkout has them
        shutil.copytree(REPO / "figures", clone / "figures", dirs_exist_ok=True)
    else:
        shutil.copytree(REPO / "figures", clone / "figures")
    assert any((clone / "figures").glob("*.png")) and (clone / "figures" / "results_table.csv")
    result = run_snakemake(
        ["-n", "--configfile", str(REPO / "config" / "config.yaml")],
        clone,
        config={"results": "results", "figures": "figures"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = dry_run_jobs(result.stdout)
    want = expected_cells(REPO / "config" / "config.yaml")
    fl = {
        (j["dataset"], j["model"], j["setting"], j["method"], j["variant"], int(j["seed"]))
        for j in jobs
        if j["rule"] == "fl_run"
    }
    assert fl == want
    rules = Counter(j["rule"] for j in jobs)
    stems = {j["stem"] for j in jobs if j["rule"] == "figure"}
    assert rules["results_table"] == 1 and stems == set(figure_stems({c[0] for c in want}, True))


def test_figure_jobs_run_the_figure_commands(tmp_path: Path) -> None:
    """Each figure job draws its own figure from its own inputs, into {figures}/{stem}.*"""
    result = run_snakemake(
        ["-n", "-p", "--configfile", str(REPO / "config" / "smoke.yaml")], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    cmds = {}
    for block in result.stdout.split("\nrule figure:")[1:]:
        lines = [ln.strip() for ln in block.split("\n\n")[0].splitlines()]
        stem = next(ln for ln in lines if ln.startswith("wildcards:")).split("stem=")[1]
        cmds[stem] = (
            next(ln for ln in lines if ln.startswith("output:")),
            next(ln for ln in lines if ln.startswith("input:")),
            next(ln for ln in lines if "fedbench plots figures" in ln).removeprefix(
                "Shell command: "
            ),
        )
    assert set(cmds) == set(figure_stems({"pneumoniamnist"}, True))
    out, logs = "results/smoke/figures", "results/smoke/logs/figures"
    for stem, (output, inputs, cmd) in cmds.items():
        name = stem.removesuffix("_pneumoniamnist")
        assert output == f"output: {out}/{stem}.pdf, {out}/{stem}.png"
        assert cmd.endswith(f" --out {out} --only {name} > {logs}/{stem}.log 2>&1"), cmd
        if name.startswith("codec_"):
            codec = "results/smoke/codec/codec_bench.csv"
            assert cmd.startswith(f"fedbench plots figures --codec {codec} ")
            assert inputs.endswith("codec_bench.csv, results/smoke/codec/codec_bench.json")
        else:  # every run of smoke.yaml's one data set, two files each
            runs = cmd.split("--runs ")[1].split(" --out")[0].split()
            assert len(runs) == len(expected_cells(REPO / "config" / "smoke.yaml"))
            assert inputs.count("/metrics.csv") == inputs.count("/summary.json") == len(runs)


def test_figure_rule_claims_no_other_file(tmp_path: Path) -> None:
    """The stem wildcard matches only the config's figures: anything else has no rule."""
    smoke = str(REPO / "config" / "smoke.yaml")
    out = "results/smoke/figures"
    ok = run_snakemake(["-n", f"{out}/compression_ratio.pdf", "--configfile", smoke], tmp_path)
    assert ok.returncode == 0, ok.stderr[-3000:]
    for target in (
        f"{out}/accuracy_vs_round_cifar10.pdf",
        f"{out}/notes.pdf",
        f"{out}/sub/compression_ratio.png",
    ):
        # the target before --configfile, which takes every word after it
        result = run_snakemake(["-n", target, "--configfile", smoke], tmp_path)
        assert result.returncode != 0, target
        assert "MissingRuleException" in result.stdout + result.stderr


def test_figure_table_covers_every_figure() -> None:
    """The workflow draws every figure `fedbench plots figures --only` knows, no more."""
    from fedbench.plots.figures import ALL_FIGURES

    text = (REPO / "workflows" / "figures.smk").read_text()
    table = text.split("FIGURE_TABLE = {")[1].split("\n}")[0]
    assert sorted(re.findall(r'^    "(\w+)": Figure\(', table, re.MULTILINE)) == sorted(ALL_FIGURES)


def test_thread_count_reaches_the_run_config(tmp_path: Path) -> None:
    result = run_snakemake(
        ["-n", "-p", "--configfile", str(REPO / "config" / "config.yaml")], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if " fedbench fl " in ln]
    assert lines and all("OMP_NUM_THREADS=1 " in ln and "--set threads=1" in ln for ln in lines)


def test_default_config_covers_methods_and_directions() -> None:
    cells = expected_cells(REPO / "config" / "config.yaml")
    assert {c[0] for c in cells} == {"pneumoniamnist", "cifar10"}
    assert {"uni", "bi"} <= {c[2] for c in cells}
    assert {"fp32", "unscaled", "adf", "stc"} <= {c[3] for c in cells}
    # the frontier slice adds a few points of every other registered method
    from fedbench.fl.methods import method_names

    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    names = {(cfg["methods"][c[3]] or {}).get("name", c[3]) for c in cells}
    assert names == set(method_names())


def _print_dry_run(config: Path, tmp_path: Path) -> str:
    result = run_snakemake(["-n", "-p", "--configfile", str(config)], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:] + result.stdout[-3000:]
    return result.stdout


def test_default_dag_pretrains_then_runs_the_transfer_cell(tmp_path: Path) -> None:
    """CIFAR-10 -> PneumoniaMNIST: one pretrain job, and every transfer run starts from its
    checkpoint (an input of the job, and --set model.pretrained)."""
    out = _print_dry_run(REPO / "config" / "config.yaml", tmp_path)
    jobs = dry_run_jobs(out)
    pre = [j for j in jobs if j["rule"] == "pretrain"]
    assert [j["pretrain"] for j in pre] == ["cifar10-resnet20"]
    ckpt = "results/pretrain/cifar10-resnet20/model.pt"
    cmd = next(ln for ln in out.splitlines() if " fedbench pretrain " in ln)
    assert "--out results/pretrain/cifar10-resnet20 --epochs " in cmd
    assert "--set data.name=cifar10" in cmd and "--set model.name=resnet20" in cmd
    fl = [j for j in jobs if j["rule"] == "fl_run" and j["model"] == "resnet20-c10"]
    assert {j["dataset"] for j in fl} == {"pneumoniamnist"}
    # ADF against unscaled, bidirectional, paired seeds, two sparsities, BN frozen
    transfer = [j for j in fl if j["setting"] == "bi-bnfrozen"]
    # at the frontier slice's operating points (exact sparsity 0.99, 0.999)
    assert {j["method"] for j in transfer} == {"adf-exact", "unscaled-exact"}
    variants = {(j["method"], j["variant"]) for j in transfer}
    assert {v for m, v in variants if m == "adf-exact"} == {"sparsity0.99", "sparsity0.999"}
    # unscaled also at 0.98: its bytes reach ADF's, so they meet at equal bytes
    assert {v for m, v in variants if m == "unscaled-exact"} == {
        "sparsity0.98",
        "sparsity0.99",
        "sparsity0.999",
    }
    assert {j["seed"] for j in transfer} == {"0", "1", "2"}
    assert len(transfer) == 5 * 3
    # the BN-trained control and the partial updates of claim (2)
    assert {j["setting"] for j in fl} == {
        "bi-bnfrozen",
        "bi-full",
        "bi-factors",
        "bi-classifier",
        "bi-factors-classifier",
    }
    lines = [ln for ln in out.splitlines() if " fedbench fl " in ln and "/resnet20-c10/" in ln]
    assert len(lines) == len(fl)
    assert all(f"--set model.pretrained={ckpt}" in ln for ln in lines)
    frozen = [ln for ln in lines if "/bi-bnfrozen/" in ln]
    assert frozen and all("--set setting.regime=full-bn-frozen" in ln for ln in frozen)
    others = [ln for ln in out.splitlines() if " fedbench fl " in ln and "/resnet20-c10/" not in ln]
    assert others and not any("model.pretrained" in ln for ln in others)
    # the checkpoint is an input of each transfer job: snakemake orders them after pretrain
    blocks = out.split("\nrule fl_run:")[1:]
    inputs = [b.split("\n")[1] for b in blocks if "model=resnet20-c10" in b]
    assert len(inputs) == len(fl) and all(ckpt in ln for ln in inputs)


def test_pretrain_checkpoint_alone_is_a_target(tmp_path: Path) -> None:
    target = "results/pretrain/cifar10-resnet20/model.pt"
    result = run_snakemake(
        ["-n", target, "--configfile", str(REPO / "config" / "config.yaml")], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rules = Counter(j["rule"] for j in dry_run_jobs(result.stdout))
    assert rules == Counter({"data_download": 1, "data_prepare": 1, "pretrain": 1})


def test_paper_grid_spans_the_paper() -> None:
    cells = expected_cells(REPO / "config" / "paper.yaml")
    assert {"cifar10", "chestxray", "voc2012-seg"} <= {c[0] for c in cells}
    models = {c[1] for c in cells}
    assert any(m.startswith("resnet") for m in models)
    assert "mobilenet_v2" in models and any(m.startswith("vgg") for m in models)
    assert {"uni", "bi", "partial"} <= {c[2] for c in cells}
    assert {"fp32", "unscaled", "adf", "stc"} <= {c[3] for c in cells}
    assert len({c[5] for c in cells}) >= 3
    assert len({c[4] for c in cells if c[3] == "adf"}) >= 4  # a sparsity sweep


@pytest.mark.slow
def test_paper_dry_run_lists_imagenet_cells_for_every_data_set(tmp_path: Path) -> None:
    """The paper's setting: every data set has runs from ImageNet weights, ResNet-18 and
    VGG-16 without BN among them, over the fine-tuning regimes."""
    out = _print_dry_run(REPO / "config" / "paper.yaml", tmp_path)
    lines = [ln for ln in out.splitlines() if " fedbench fl " in ln]
    pre = [ln for ln in lines if "--set model.pretrained=imagenet" in ln]
    datasets = {ln.split("--set data.name=")[1].split()[0] for ln in lines}
    assert datasets == {"cifar10", "chestxray", "voc2012-seg"}
    for ds in datasets:
        here = [ln for ln in pre if f"--set data.name={ds} " in ln]
        assert {ln.split("--set model.name=")[1].split()[0] for ln in here} == {
            "resnet18",
            "vgg16",
        }, ds
        regimes = {ln.split("--set setting.regime=")[1].split()[0] for ln in here}
        assert {"full", "factors-classifier", "classifier"} <= regimes, ds
    vgg = [ln for ln in pre if "--set model.name=vgg16 " in ln]
    assert not any("regime=bn-classifier" in ln or "-frozen" in ln for ln in vgg)


@pytest.mark.slow
def test_paper_fl_jobs_ask_for_a_gpu(tmp_path: Path) -> None:
    jobs = _dry_run("paper.yaml", tmp_path)
    fl = [j for j in jobs if j["rule"] == "fl_run"]
    assert fl and all("gpu=1" in j["resources"] for j in fl)


def test_sets_reach_the_fl_command(tmp_path: Path) -> None:
    result = run_snakemake(
        ["-n", "-p", "--configfile", str(REPO / "config" / "smoke.yaml")], tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if " fedbench fl " in ln]
    assert len(lines) == len(expected_cells(REPO / "config" / "smoke.yaml"))
    sweep = [ln for ln in lines if "/sparsity0.99/" in ln]
    assert sweep and "--set method.sparsity=0.99" in sweep[0] and "method.name=adf" in sweep[0]
    assert all("--set data.root=data" in ln and "--set seed=0" in ln for ln in lines)


def _bad_config(tmp_path: Path, edit) -> Path:
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    edit(cfg)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["fl"]["set"].update({"train.rounds": -1}), "fl.set.train.rounds"),
        (lambda c: c["methods"].update({"mine": {"name": "bogus"}}), "methods.mine.name"),
        (lambda c: c["methods"].update({"bogus": {}}), "unknown method 'bogus'"),
        (lambda c: c["fl"]["grid"][0]["methods"].append("nosuch"), "methods.nosuch"),
        (lambda c: c.update({"rounds": 3}), "'rounds' was unexpected"),
        (lambda c: c["fl"].update({"seeds": [-1]}), "fl.seeds.0"),
        (lambda c: c["fl"]["set"].update({"seed": 3}), "fl.set"),
        (lambda c: c["datasets"]["pneumoniamnist"].update({"preset": "nope"}), "preset 'nope'"),
        (
            lambda c: c["fl"]["grid"].append({**c["fl"]["grid"][0], "set": {"train.rounds": 1}}),
            "again with different settings",
        ),
        (
            lambda c: c["models"].update({"resnet20": {"pretrain": "nope"}}),
            "models.resnet20.pretrain names 'nope'",
        ),
        (
            lambda c: c.update({"pretrain": {"p": {"dataset": "pneumoniamnist", "model": "x"}}}),
            "'epochs' is a required property",
        ),
        (
            lambda c: c.update(
                {"pretrain": {"p": {"dataset": "nosuch", "model": "resnet20", "epochs": 1}}}
            ),
            "datasets.nosuch",
        ),
        (
            lambda c: c.update(
                {
                    "pretrain": {"p": {"dataset": "pneumoniamnist", "model": "vgg11", "epochs": 1}},
                    "models": {"resnet20": {"pretrain": "p"}},
                }
            ),
            "pretrain.p trains vgg11",
        ),
        (
            lambda c: c["settings"]["uni"]["set"].update({"setting.regime": "frozen"}),
            "settings.uni.set.setting.regime",
        ),
    ],
)
def test_invalid_config_names_the_key(tmp_path: Path, edit, message: str) -> None:
    bad = _bad_config(tmp_path, edit)
    result = run_snakemake(["-n", "--configfile", str(bad)], tmp_path)
    assert result.returncode != 0
    assert message in result.stderr + result.stdout


def test_configfile_replaces_default_config(tmp_path: Path) -> None:
    # smoke.yaml has one data set; the default config's cifar10 must not leak into it.
    jobs = _dry_run("smoke.yaml", tmp_path)
    assert {j.get("dataset") for j in jobs if j["rule"] == "fl_run"} == {"pneumoniamnist"}


def test_profiles() -> None:
    local = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    for key in ("cores", "keep-going", "rerun-incomplete", "printshellcmds"):
        assert key in local
    slurm = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert slurm["executor"] == "slurm" and slurm["jobs"] >= 1
    for key in ("slurm_partition", "mem_mb", "runtime"):
        assert key in slurm["default-resources"]
    # GPU jobs: the fl rule's `gpu` resource is what the plugin turns into --gpus.
    assert "resources:\n        gpu=" in (REPO / "workflows" / "fl.smk").read_text()
