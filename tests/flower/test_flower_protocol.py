"""fedbench's ServerApp and ClientApp in one process, on a stand-in for Flower's Grid that
delivers the real Flower messages (records, arrays) to the ClientApp's handlers: the
protocol, the accounting, reply order and faults, fast. The real processes are in
test_flower_deploy.py."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("flwr", reason="flwr is not installed (pip install 'fedbench[flower]')")

from flwr.app import Message, RecordDict  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

HERE = Path(__file__).parent
sys.path[:0] = [str(HERE), str(HERE.parent / "fl")]

import flowertools as H  # noqa: E402

from fedbench.fl.config import config_to_dict  # noqa: E402
from fedbench.flower import client as flower_client  # noqa: E402
from fedbench.flower import server as flower_server  # noqa: E402
from fedbench.flower.records import (  # noqa: E402
    array_of,
    bytes_of,
    fp32_bytes,
    fp32_tensors,
    record_of,
    records_wire_size,
    streams_of,
)

SERVER_NODE = 1
HOOKS = {"data-fn": H.HOOKS["data_fn"], "model-fn": H.HOOKS["model_fn"]}


@pytest.fixture(autouse=True)
def _task_identity():
    """Flower stamps messages with the process's run and node ids; set them as its
    ServerApp process would."""
    old = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, SERVER_NODE, 1
    flower_client._HOSTS.clear()
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = old
    flower_client._HOSTS.clear()


class FakeGrid:
    """The Grid of a ServerApp, with SuperNodes `nodes` (node id -> partition) that run
    fedbench's ClientApp handlers in this process; replies come back in reverse order.
    `drop(round, node)` -> True loses that node's reply (a killed SuperNode)."""

    def __init__(self, nodes: dict[int, int], run_config: dict, drop=None) -> None:
        self.nodes = nodes
        self.run_config = run_config
        self.drop = drop or (lambda r, node: False)
        self.states = {n: RecordDict() for n in nodes}

    def get_node_ids(self):
        return list(self.nodes)

    def send_and_receive(self, messages, *, timeout=None):
        replies = []
        for msg in messages:
            node = msg.metadata.dst_node_id
            node_config = {"partition-id": self.nodes[node], "num-partitions": len(self.nodes)}
            if msg.metadata.message_type == "query":
                content = flower_client.handle_query(node_config)
            else:
                r = int(msg.metadata.group_id)
                # the SuperNode works (its state advances) even when its reply is lost
                content = flower_client.handle_train(
                    msg.content, self.run_config, self.states[node]
                )
                if self.drop(r, node):
                    continue
            TaskIdentity.node_id = node
            replies.append(Message(content, reply_to=msg))
            TaskIdentity.node_id = SERVER_NODE
        return list(reversed(replies))


def _cfg(name="stc", direction="bi", clients=2, rounds=2, **sections):
    return H.make_config(name, direction, clients, rounds, **sections)


def _run_config(cfg, out: Path, **extra) -> dict:
    return {
        "fedbench-config": json.dumps(config_to_dict(cfg), sort_keys=True),
        "out": str(out),
        "round-timeout": 5.0,
        "node-timeout": 0.0,
        **HOOKS,
        **extra,
    }


_rows = H.read_rows
_simulate = H.simulate
assert_same_rounds = H.assert_same_rounds


def test_bitstreams_travel_as_their_bytes():
    """A bitstream packed into a record comes back byte for byte; fp32 payloads are 4
    bytes per parameter; the wire size counts Flower's serialization on top."""
    import torch

    bits = bytes(range(256)) * 5 + b"\x00"
    rec = record_of([("update", bits), ("empty", b"")])
    assert streams_of(rec) == [("update", bits), ("empty", b"")]
    assert bytes_of(array_of(bits)) == bits
    state = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.ones(4)}
    data = fp32_bytes(state, ["a", "b"])
    assert len(data) == 4 * 10
    back = fp32_tensors(data, {"a": (2, 3), "b": (4,)}, state)
    assert all(torch.equal(back[n], state[n]) for n in state)
    size = records_wire_size(RecordDict({"up.0": rec}))
    assert size > len(bits)


@pytest.mark.parametrize(
    "method,direction,sections",
    [
        ("fp32", "uni", {}),
        ("unscaled", "bi", {}),
        ("adf", "bi", {}),
        # both sides fold the factors the clients decoded after each broadcast
        ("adf", "bi", {"method": {"adf_fold": True}}),
        ("stc", "bi", {}),
        ("stc", "uni", {"setting": {"initial_model": "charged"}}),
        # partial participation: catch-up broadcasts and a two-client SuperNode
        ("stc", "bi", {"train": {"client_fraction": 0.5}}),
        # BatchNorm statistics kept on the clients, every 2 rounds, exact sparsity
        (
            "unscaled",
            "bi",
            {
                "method": {"bn_stats": "local", "exact_sparsity": True},
                "train": {"bn_mode": "running"},
            },
        ),
        ("adf", "bi", {"method": {"bn_stats": "send", "bn_stats_every": 2, "bn_stats_qp": -8}}),
    ],
)
def test_server_and_clients_compute_the_simulators_numbers(tmp_path, method, direction, sections):
    """Flower messages in, Flower messages out: the same metrics.csv as `fedbench fl`."""
    clients = 4 if sections.get("train") else 2
    train = sections.pop("train", {})
    cfg = _cfg(method, direction, clients=clients, rounds=3, **sections)
    if train:
        raw = config_to_dict(cfg)
        raw["train"].update(train)
        from fedbench.fl.config import config_from_dict

        cfg = config_from_dict(raw)
    grid = FakeGrid({101: 0, 102: 1}, _run_config(cfg, tmp_path / "flower"))
    flower_server.run_server(grid, grid.run_config)
    flower_rows = _rows(tmp_path / "flower")
    assert_same_rounds(flower_rows, _simulate(cfg, tmp_path / "sim"))
    assert all(r["missing_clients"] == "" and r["reset_clients"] == "" for r in flower_rows)
    assert all(int(r["flower_bytes_up"]) > int(r["bytes_up"]) for r in flower_rows)
    summary = json.loads((tmp_path / "flower" / "summary.json").read_text())
    assert summary["flower"]["complete"] is True
    # the same factors.npz (claim 2's figure reads it) for runs with filter factors
    assert (tmp_path / "flower" / "factors.npz").is_file() == (method == "adf")
    if method == "adf":
        import numpy as np

        with (
            np.load(tmp_path / "flower" / "factors.npz") as a,
            np.load(tmp_path / "sim" / "factors.npz") as b,
        ):
            assert sorted(a.files) == sorted(b.files)
            assert all(np.array_equal(a[k], b[k]) for k in a.files)


def test_replies_are_put_in_client_order(tmp_path):
    """Replies arrive in any order; the round's results follow the selected clients."""
    cfg = _cfg("stc", "bi", clients=4, rounds=1)
    grid = FakeGrid({101: 0, 102: 1, 103: 2, 104: 3}, _run_config(cfg, tmp_path))
    run = flower_client.C.build_run(
        flower_client.C.FlowerOptions(grid.run_config),
        tmp_path,
        flower_server._flower_run_class(),
        grid=grid,
        flower=flower_client.C.FlowerOptions(grid.run_config),
    )
    run.clients.discover(wait_for=4)
    selected = [0, 1, 2, 3]
    run.downlink.deliver(run.ledger, 1, selected)
    results = run.clients.run_round(1, selected, run.global_state, 0.05)
    assert [r.client for r in results] == selected


def test_a_lost_reply_is_recorded_and_the_client_restarts_clean(tmp_path):
    """Client 1's reply of round 2 is lost: round 2 aggregates client 0 alone and says
    so; in round 3 client 1 restarts from an empty state with a (charged) snapshot."""
    cfg = _cfg("stc", "bi", clients=2, rounds=3)
    grid = FakeGrid(
        {101: 0, 102: 1}, _run_config(cfg, tmp_path), drop=lambda r, node: (r, node) == (2, 102)
    )
    flower_server.run_server(grid, grid.run_config)
    rows = _rows(tmp_path)
    assert [r["missing_clients"] for r in rows] == ["", "1", ""]
    assert [r["reset_clients"] for r in rows] == ["", "", "1"]
    assert [r["num_clients"] for r in rows] == ["2", "1", "2"]
    ledger = list(csv.DictReader(open(tmp_path / "ledger.csv")))
    snaps = [e for e in ledger if e["kind"] == "snapshot"]
    assert [(e["round"], e["receivers"]) for e in snaps] == [("3", "1")]
    # round 2's uplink charged only the reply that arrived
    ups = [e for e in ledger if e["direction"] == "up" and e["round"] == "2"]
    assert [e["sender"] for e in ups] == ["client0"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["flower"]["complete"] is False
    assert summary["flower"]["rounds_with_missing_clients"] == {"2": "1"}


def test_a_round_without_replies_stops_and_the_run_resumes(tmp_path):
    """No reply in round 2: the run stops with round 1's checkpoint; run again, it
    resumes at round 2 with every client restarting clean, and finishes."""
    cfg = _cfg("stc", "bi", clients=2, rounds=3)
    dead = FakeGrid({101: 0, 102: 1}, _run_config(cfg, tmp_path), drop=lambda r, node: r == 2)
    with pytest.raises(flower_server.RoundFailed):
        flower_server.run_server(dead, dead.run_config)
    assert (tmp_path / "FAILED").is_file()
    assert [r["round"] for r in _rows(tmp_path)] == ["1"]
    (tmp_path / "FAILED").unlink()
    healthy = FakeGrid({201: 0, 202: 1}, _run_config(cfg, tmp_path))
    flower_server.run_server(healthy, healthy.run_config)
    rows = _rows(tmp_path)
    assert [r["round"] for r in rows] == ["1", "2", "3"]
    assert [r["reset_clients"] for r in rows] == ["", "0 1", ""]
    assert json.loads((tmp_path / "summary.json").read_text())["rounds"] == 3


def test_a_snapshot_carries_the_folded_tensors_that_are_not_transmitted(tmp_path):
    """adf_fold with only weights transmitted folds into BatchNorm tensors that never
    travel: a client reset after a lost reply gets them with its snapshot (charged), and
    its model is then exactly the server's view of the clients' model."""
    import torch

    from fedbench.flower.common import STATE, FlowerOptions, build_run
    from fedbench.flower.records import load_blob

    cfg = _cfg(
        "adf", "bi", clients=2, rounds=3, method={"adf_fold": True, "include_nonweights": False}
    )
    grid = FakeGrid(
        {101: 0, 102: 1}, _run_config(cfg, tmp_path), drop=lambda r, node: (r, node) == (2, 102)
    )
    opts = FlowerOptions(grid.run_config)
    run = build_run(opts, tmp_path, flower_server._flower_run_class(), grid=grid, flower=opts)
    assert run.clients.extra, "the fold should touch tensors that are not transmitted"
    starts = {}
    run_round = run.clients.run_round

    def spy(r, selected, start, lr):
        starts[r] = {n: t.clone() for n, t in start.items()}
        return run_round(r, selected, start, lr)

    run.clients.run_round = spy
    run.clients.discover(wait_for=2)
    for _ in range(3):
        run.step()
    assert run.rows[2]["reset_clients"] == "1"
    view = load_blob(grid.states[102][STATE]["client1"])["view"]
    assert all(torch.equal(view[n], starts[3][n]) for n in starts[3])
    snaps = [e for e in run.ledger.entries if e.round == 3 and e.kind == "snapshot"]
    assert [(e.receivers, e.fp32_bytes > 0) for e in snaps] == [((1,), True), ((1,), False)]
    assert snaps[1].nbytes == 4 * sum(run.global_state[n].numel() for n in run.clients.extra)
