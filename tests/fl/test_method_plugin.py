"""A method from an installed package: built with pip from a temporary folder, found through
the `fedbench.methods` entry-point group, listed by `fedbench fl --list-methods`, run by run_fl and
by the Snakemake DAG (a grid whose only method is the plugin's).

pip installs into a temporary --target folder put on sys.path (not into the shared venv, so
that concurrent test runs never see the plugin); importlib.metadata finds its dist-info there
exactly as in site-packages.
"""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from fltools import small_config, tiny_model_fn

PYPROJECT = """
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "fedbench-mypkg-test"
version = "0.1"

[project.entry-points."fedbench.methods"]
mine = "mypkg:MyMethod"
"""

MODULE = """
from dataclasses import dataclass

from fedbench.fl.compressors import build_compressor
from fedbench.fl.methods import Method


@dataclass
class MyOptions:
    gain: float = 1.0


class MyMethod(Method):
    name = "mine"
    description = "test plugin: fp32 updates"
    Options = MyOptions

    def build_compressor(self, template, downlink):
        return build_compressor("fp32", template)

    def error_bound(self, update, name):
        return 0.0
"""


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory) -> Path:
    """The plugin package pip-installed into a fresh --target folder."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    (src / "mypkg").mkdir(parents=True)
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "mypkg" / "__init__.py").write_text(textwrap.dedent(MODULE))
    target = root / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "--target", str(target), str(src)]
    pip = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot build the package offline: {pip.stderr[-500:]}")
    return target


def test_installed_method_is_registered_and_runs(
    plugin_site, tmp_path, synthetic_data, monkeypatch
):
    target = plugin_site
    monkeypatch.syspath_prepend(str(target))
    from fedbench.fl import methods

    try:
        methods.reload_entry_points()
        assert "mine" in methods.method_names()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), *sys.path])}
        out = subprocess.run(
            [sys.executable, "-m", "fedbench.cli", "fl", "--list-methods"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=True,
        ).stdout
        assert "mine: test plugin: fp32 updates" in out and "method.gain = 1.0" in out

        from fedbench.fl.loop import run_fl

        cfg = small_config(method={"name": "mine", "gain": 2.0}, train={"rounds": 1})
        assert cfg.method.options.gain == 2.0
        s = run_fl(cfg, tmp_path / "run", data=synthetic_data, model_fn=tiny_model_fn)
        assert s["method"] == "mine" and s["config"]["method"]["gain"] == 2.0
    finally:
        methods._REGISTRY.pop("mine", None)  # "uninstall": the target folder goes with tmp_path


@pytest.mark.slow
def test_installed_method_runs_through_the_dag(plugin_site, tmp_path, monkeypatch):
    """The DAG's method check and its fl_run job take the plugin's method with no edit."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow"))
    from wfhelpers import REPO, SHARED, run_snakemake

    if not (SHARED / "data").is_dir():
        pytest.skip("needs the offline data mirror")
    cfg = yaml.safe_load((REPO / "config" / "smoke.yaml").read_text())
    cfg.pop("codec", None)
    cfg["results"] = "results/plugin"
    cfg["figures"] = "results/plugin/figures"
    cfg["settings"] = {"bi": {"set": {"setting.direction": "bi"}}}
    cfg["methods"] = {"mine": {"set": {"method.gain": 3.0}}}
    cfg["fl"]["set"]["train.rounds"] = 1
    cfg["fl"]["grid"] = [
        {
            "datasets": ["pneumoniamnist"],
            "models": ["resnet20"],
            "settings": ["bi"],
            "methods": ["mine"],
        }
    ]
    config = tmp_path / "plugin.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run = "results/plugin/runs/pneumoniamnist/resnet20/bi/mine/base/seed0"
    args = [f"{run}/summary.json", "--cores", "1", "--configfile", str(config)]
    without = run_snakemake(["-n", *args], tmp_path)
    # Not installed: the DAG refuses the method before any job, naming it.
    assert without.returncode != 0
    assert "unknown method 'mine'" in without.stdout + without.stderr
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join([str(plugin_site), os.environ.get("PYTHONPATH", "")])
    )
    done = run_snakemake(args, tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    import json

    summary = json.loads((tmp_path / run / "summary.json").read_text())
    assert summary["method"] == "mine" and summary["config"]["method"]["gain"] == 3.0
    assert summary["compression_ratio"] == 1.0  # the plugin sends float32
