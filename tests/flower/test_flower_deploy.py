"""fedbench on real Flower processes: a local deployment (SuperLink + 2 SuperNodes) and the
simulation runtime give `fedbench fl`'s numbers; a SuperNode killed mid-run is recorded
and replaced; no process outlives the deployment."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="flwr is not installed (pip install 'fedbench[flower]')")

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent / "fl")]

import flowertools as H  # noqa: E402

from fedbench.fl.config import config_to_dict  # noqa: E402
from fedbench.flower.deploy import Deployment, _own_processes, deploy, write_app  # noqa: E402

pytestmark = pytest.mark.slow


def _deploy(cfg, out: Path, **kw) -> dict:
    return deploy(
        config_to_dict(cfg),
        out,
        2,
        python_path=H.PYTHON_PATH,
        round_timeout=300,
        node_timeout=120,
        timeout=600,
        **H.HOOKS,
        **kw,
    )


@pytest.mark.parametrize(
    "name,direction", [("fp32", "uni"), ("unscaled", "bi"), ("adf", "bi"), ("stc", "bi")]
)
def test_deployment_gives_the_simulators_numbers(tmp_path, name, direction):
    """2 SuperNodes, 2 rounds: the same bytes and accuracy per round as `fedbench fl`."""
    cfg = H.make_config(name, direction, clients=2, rounds=2)
    summary = _deploy(cfg, tmp_path / "flower")
    H.assert_same_rounds(H.read_rows(tmp_path / "flower"), H.simulate(cfg, tmp_path / "sim"))
    assert summary["flower"]["complete"] is True
    assert summary["flower"]["flower_bytes_up"] > summary["bytes_up"]


def test_simulation_runtime_gives_the_simulators_numbers(tmp_path):
    """Flower's simulation runtime (Ray), 2 virtual SuperNodes: `fedbench fl`'s numbers."""
    cfg = H.make_config("stc", "bi", clients=2, rounds=2)
    _deploy(cfg, tmp_path / "flower", simulation=True)
    H.assert_same_rounds(H.read_rows(tmp_path / "flower"), H.simulate(cfg, tmp_path / "sim"))


def test_killed_supernodes_are_recorded_replaced_and_the_run_resumes(tmp_path):
    """SuperNode 1 is killed once round 1 is written: round 2 goes on without client 1
    (recorded), a new SuperNode for partition 1 joins, and in round 3 client 1 restarts
    from an empty state with a snapshot. Then both SuperNodes are killed: round 4 gets no
    reply and the run stops with round 3's checkpoint. A new deployment resumes it at round
    4 (every client restarting clean) and finishes. No process outlives a deployment."""
    cfg = H.make_config("stc", "bi", clients=2, rounds=4)
    out = tmp_path / "flower"
    config = config_to_dict(cfg)
    with Deployment(out, python_path=H.PYTHON_PATH) as dep:
        app = write_app(
            dep.home / "app",
            config,
            out,
            round_timeout=20,
            node_timeout=120,
            num_nodes=2,
            **H.HOOKS,
        )
        dep.start_superlink()
        dep.start_supernode(0, 2)
        dep.start_supernode(1, 2)
        done = []

        def faults() -> None:
            deadline = time.monotonic() + 500
            while time.monotonic() < deadline and len(done) < 2:
                rows = len(H.read_rows(out)) if (out / "metrics.csv").is_file() else 0
                if rows >= 1 and not done:
                    dep.kill("supernode-1")
                    dep.start_supernode(1, 2)  # its replacement
                    done.append(1)
                elif rows >= 3 and len(done) == 1:
                    dep.kill("supernode-0")
                    dep.kill("supernode-1")
                    done.append(3)
                time.sleep(0.2)

        watcher = threading.Thread(target=faults, daemon=True)
        watcher.start()
        dep.submit(app, timeout=600)
        watcher.join(timeout=5)
        home = dep.home
    assert done == [1, 3]
    assert _own_processes(home) == []
    assert "RoundFailed" in (out / "FAILED").read_text()
    rows = H.read_rows(out)
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["missing_clients"] == "1" and rows[1]["num_clients"] == "1"
    assert rows[2]["missing_clients"] == "" and rows[2]["reset_clients"] == "1"

    summary = _deploy(cfg, out)  # a fresh SuperLink and SuperNodes; resumes at round 4
    rows = H.read_rows(out)
    assert [r["round"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[3]["reset_clients"] == "0 1" and rows[3]["missing_clients"] == ""
    assert summary["rounds"] == 4
    assert summary["flower"]["complete"] is False
    assert summary["flower"]["rounds_with_missing_clients"] == {"2": "1"}
