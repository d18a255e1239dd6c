"""`fedbench flower app` and the flwr-free core (these run without flwr installed)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from fedbench.cli import main
from fedbench.fl.config import config_to_dict, load_config


def test_app_folder_names_fedbench_components_and_carries_the_config(tmp_path):
    """The app's pyproject.toml: fedbench's ServerApp/ClientApp and the resolved config."""
    rc = main(
        [
            "flower",
            "app",
            "--config",
            "pneumonia_cpu",
            "--set",
            "method.name=stc",
            "--out",
            str(tmp_path / "out"),
            "--app",
            str(tmp_path / "app"),
            "--num-nodes",
            "3",
            "--round-timeout",
            "60",
        ]
    )
    assert rc == 0
    doc = tomllib.loads((tmp_path / "app" / "pyproject.toml").read_text())
    app = doc["tool"]["flwr"]["app"]
    assert app["components"] == {
        "serverapp": "fedbench.flower.server:app",
        "clientapp": "fedbench.flower.client:app",
    }
    run = app["config"]
    want = config_to_dict(load_config("pneumonia_cpu", ["method.name=stc"]))
    assert json.loads(run["fedbench-config"]) == want
    assert run["out"] == str((tmp_path / "out").resolve())
    assert (run["num-nodes"], run["round-timeout"], run["resume"]) == (3, 60.0, True)


def test_the_core_does_not_import_flwr():
    """fedbench, its CLI and the deployment driver load without flwr."""
    code = (
        "import sys, fedbench.cli, fedbench.fl.loop, fedbench.flower.deploy, "
        "fedbench.commands.flower; fedbench.cli.build_parser(); "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'flwr'], 'flwr imported'"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env=_env(root))


def _env(root: Path) -> dict:
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(root), env.get("PYTHONPATH")]))
    return env
