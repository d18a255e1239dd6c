"""A method from an installed package: built with pip from a temporary folder, found through
the `fedbench.methods` entry-point group, listed by `fedbench fl --list-methods`, run by run_fl.

pip installs into a temporary --target folder put on sys.path (not into the shared venv, so
that concurrent test runs never see the plugin); importlib.metadata finds its dist-info there
exactly as in site-packages.
"""

import os
import subprocess
import sys
import textwrap

import pytest
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


def test_installed_method_is_registered_and_runs(tmp_path, synthetic_data, monkeypatch):
    src = tmp_path / "src"
    (src / "mypkg").mkdir(parents=True)
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "mypkg" / "__init__.py").write_text(textwrap.dedent(MODULE))
    target = tmp_path / "site"
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    cmd += ["--no-index", "--target", str(target), str(src)]
    pip = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if pip.returncode != 0:
        pytest.skip(f"pip cannot build the package offline: {pip.stderr[-500:]}")
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
