"""The fedbench ServerApp: `fedbench fl`'s round loop with the clients on Flower SuperNodes.

The server is a `FederatedRun` (the simulator's run: strategy, ledger, aggregation, server
compressor with error feedback, ADF fold, evaluation, checkpoints, metrics.csv and
summary.json) whose clients run elsewhere: `FlowerClients` sends each round's selected
clients what the ledger charged them (the broadcast bitstreams they missed, or a float32
model) and the round's lr, and receives their update bitstreams, which the server decodes
and aggregates exactly as the simulator does. So a deployment computes the simulator's
numbers by construction, and the bytes the ledger charges are the bytes carried: the
server checks, message by message, that the payload it packs has the charged length.

Each SuperNode hosts the fedbench clients k with k % num-partitions == its partition-id
and gets one message per round holding all of its selected clients. Replies are put in
the order of the selected clients before aggregation, so arrival order does not matter.

Faults (a SuperNode killed, a reply lost or late): the server waits `round-timeout`
seconds, then finishes the round with the replies it has. The clients that did not reply
are recorded in metrics.csv (`missing_clients`) and aggregation is over the others
(FedAvg weights renormalised over them); clients whose SuperNode is not connected at the
start of a round are missing without being sent anything. A missing client's state
(residual, optimizer state, model) is not trusted afterwards: when it is next selected
the server tells it to start from an empty state and, bidirectionally, sends it the
clients' model as float32 (a `snapshot`, charged); `reset_clients` records this. A round
in which no client replies stops the run (the checkpoint of the last full round stays);
running the same command again resumes from it, the clients' states starting empty as
above (they lived on the SuperNodes of the run that stopped).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedbench.fl.ledger import class_bytes
from fedbench.flower import common as C
from fedbench.flower.records import (
    fp32_bytes,
    record_of,
    records_wire_size,
    streams_of,
)

log = logging.getLogger("fedbench.fl")

# Columns metrics.csv has beyond `fedbench fl`'s (the figures read theirs by name).
FLOWER_COLUMNS = [
    "flower_bytes_down",  # serialized size of the round's messages to the SuperNodes
    "flower_bytes_up",  # ... and of their replies (records, arrays, chunks, headers)
    "missing_clients",  # selected clients that did not reply (space-separated ids)
    "reset_clients",  # clients that restarted from an empty state this round
    "round_wall_s",  # wall time of the round on the server
]


class RoundFailed(RuntimeError):
    """No selected client replied in a round: the run stops (resumable)."""


class _RecordingCompressor:
    """The server's downlink compressor, keeping each broadcast bitstream it encodes (the
    simulator only needs their lengths; a deployment sends them)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._round = 0
        self.bits: dict[int, bytes] = {}

    def set_context(self, *keys: int) -> None:
        """Pass on; the round is the second key (run seed, round, stream)."""
        self._round = int(keys[1]) if len(keys) > 1 else 0
        self._inner.set_context(*keys)

    def encode(self, update: dict[str, np.ndarray]) -> bytes:
        """Encode and keep the bitstream of this round's broadcast."""
        bits = self._inner.encode(update)
        self.bits[self._round] = bits
        return bits

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ReachableStrategy:
    """The run's strategy, selecting only clients whose SuperNode is connected."""

    def __init__(self, inner: Any, clients: FlowerClients) -> None:
        self._inner = inner
        self._clients = clients

    def configure(self, round_: int) -> list[int]:
        """The strategy's selection minus the unreachable clients (recorded as missing)."""
        selected = self._inner.configure(round_)
        reachable = self._clients.reachable(selected)
        self._clients.unreachable = [k for k in selected if k not in reachable]
        if not reachable:
            raise RoundFailed(
                f"round {round_}: no SuperNode hosts any of the selected clients {selected}"
            )
        return reachable

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _LostAwareDownlink:
    """The run's downlink charging rules, with the lost clients' snapshots (FlowerClients)."""

    def __init__(self, inner: Any, clients: FlowerClients) -> None:
        self._inner = inner
        self._clients = clients

    def deliver(self, ledger: Any, r: int, selected: list[int]) -> None:
        """Charge round r's downlink (FlowerClients.deliver)."""
        self._clients.deliver(self._inner, ledger, r, selected)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FlowerClients:
    """Client executor on a Flower Grid: the selected clients of a round, given the start
    model and lr, run on their SuperNodes; their replies come back in client order."""

    def __init__(self, grid: Any, run: Any, opts: C.FlowerOptions) -> None:
        self.grid = grid
        self.run = run
        self.opts = opts
        self.node_of_partition: dict[int, int] = {}
        self.partition_of_node: dict[int, int] = {}
        self.num_partitions = 0
        # per client: the round of the last broadcast it holds (bidirectional), clients
        # whose state is not trusted (missing once), clients to reset this round
        self.held: dict[int, int] = {}
        self.lost: set[int] = set()
        self.reset: set[int] = set()
        self.unreachable: list[int] = []
        self.initial = {k: v.detach().clone() for k, v in run.global_state.items()}
        self.extra = C.snapshot_extra(run)
        self.floats = [n for n, t in self.initial.items() if t.is_floating_point()]
        self.before: dict[int, int] = {}
        self.trained: dict[int, int] = {}  # per client: the last round it replied in
        self.last: dict[str, Any] = {}

    # ------------------------------------------------------------------ nodes

    def discover(self, wait_for: int = 0, timeout: float = 0.0) -> None:
        """Ask new SuperNodes which partition they serve; wait (up to `timeout` s) until
        `wait_for` partitions are served."""
        deadline = time.monotonic() + timeout
        while True:
            ids = [int(n) for n in self.grid.get_node_ids()]
            gone = set(self.partition_of_node) - set(ids)
            for n in gone:
                part = self.partition_of_node.pop(n)
                if self.node_of_partition.get(part) == n:
                    del self.node_of_partition[part]
            new = [n for n in ids if n not in self.partition_of_node]
            if new:
                self._query(new, min(60.0, max(timeout, 10.0)))
            # the SuperNodes say how many partitions there are: never wait for more
            want = min(wait_for, self.num_partitions) if self.num_partitions else wait_for
            if len(self.node_of_partition) >= want or time.monotonic() >= deadline:
                return
            time.sleep(1.0)

    def _query(self, nodes: list[int], timeout: float) -> None:
        """Query nodes for their partition-id and num-partitions."""
        from flwr.app import Message, RecordDict

        msgs = [Message(RecordDict(), dst_node_id=n, message_type=C.MSG_QUERY) for n in nodes]
        for rep in self.grid.send_and_receive(msgs, timeout=timeout):
            if rep.has_error():
                log.warning("SuperNode %s: query failed: %s", rep.metadata.src_node_id, rep.error)
                continue
            meta = rep.content[C.META]
            node, part = int(rep.metadata.src_node_id), int(meta["partition-id"])
            num = int(meta["num-partitions"])
            if self.num_partitions and num != self.num_partitions:
                raise RuntimeError(
                    f"SuperNode {node}: num-partitions={num}, others have {self.num_partitions}"
                )
            self.num_partitions = num
            self.partition_of_node[node] = part
            self.node_of_partition[part] = node  # the newest node of a partition serves it
            log.info("SuperNode %d serves partition %d of %d", node, part, num)

    def reachable(self, clients: Sequence[int]) -> list[int]:
        """The clients whose SuperNode is connected (after looking for new ones)."""
        self.discover()
        if not self.num_partitions:
            return []
        return [k for k in clients if k % self.num_partitions in self.node_of_partition]

    # ------------------------------------------------------------------ one round

    def deliver(self, downlink: Any, ledger: Any, r: int, selected: Sequence[int]) -> None:
        """Charge round r's downlink: lost clients restart empty and, bidirectionally, are
        charged a snapshot (the clients' model as float32) instead of the broadcasts they
        may have missed; the others as the simulator charges them."""
        self.reset = {k for k in selected if k in self.lost}
        rest = list(selected)
        if downlink.direction == "bi" and r > 1:
            for k in sorted(self.reset):
                ledger.charge(
                    r,
                    "down",
                    "snapshot",
                    "server",
                    [k],
                    4 * downlink.num_tx,
                    4 * downlink.num_tx_ref,
                    downlink.tx_classes,
                )
                downlink.synced[k] = r - 1
                self.held[k] = r - 1
            rest = [k for k in selected if k not in self.reset]
        if rest:
            downlink.deliver(ledger, r, rest)

    def close(self) -> None:
        """Nothing to release (the Grid belongs to Flower)."""

    def _charge_extra(self, r: int, selected: Sequence[int]) -> None:
        """Charge the folded, not transmitted tensors to each client getting a snapshot
        (snapshot_extra; its reference bytes are 0: plain FedAvg has no factors to fold)."""
        run = self.run
        snapped = sorted(
            {
                k
                for e in run.ledger.entries
                if e.round == r and e.kind == "snapshot" and e.fp32_bytes > 0
                for k in e.receivers
                if k in selected
            }
        )
        if not snapped:
            return
        sizes = {n: 4 * self.initial[n].numel() for n in self.extra}
        classes = class_bytes(sizes, run.classes)
        run.ledger.charge(r, "down", "snapshot", "server", snapped, sum(sizes.values()), 0, classes)

    def _payloads(self, r: int, selected: Sequence[int], start: dict) -> dict[int, list]:
        """What the ledger charged each client in round r, packed; lengths checked."""
        run = self.run
        if self.extra:
            self._charge_extra(r, selected)
        charged: dict[int, list] = {k: [] for k in selected}
        for e in run.ledger.entries:
            if e.round == r and e.direction == "down":
                for k in e.receivers:
                    if k in charged:
                        charged[k].append(e)
        template = list(run.template)
        self.before = {k: self.held.get(k, 0) for k in selected}
        out: dict[int, list] = {}
        for k in selected:
            streams: list[tuple[str, bytes]] = []
            for e in charged[k]:
                if e.kind == "initial":
                    part = [(C.INITIAL, fp32_bytes(self.initial, self.floats))]
                elif e.kind == "model":
                    part = [(C.MODEL, fp32_bytes(start, template))]
                elif e.kind == "snapshot" and e.fp32_bytes == 0:
                    part = [(C.SNAPSHOT_EXTRA, fp32_bytes(start, self.extra))]
                elif e.kind == "snapshot":
                    part = [(C.SNAPSHOT, fp32_bytes(start, template))]
                else:  # broadcast, catchup: the broadcasts after the rounds it missed
                    part = [
                        (C.BROADCAST.format(j), run.down.bits[j])
                        for j in range(self.held.get(k, 0) + 1, r)
                    ]
                n = sum(len(b) for _, b in part)
                if n != e.nbytes:
                    raise RuntimeError(
                        f"round {r}, client {k}: the {e.kind} payload is {n} bytes, the "
                        f"ledger charged {e.nbytes}"
                    )
                streams += part
            out[k] = streams
        if run.cfg.setting.direction == "bi" and r > 1:
            for k in selected:
                self.held[k] = r - 1
        # broadcasts no client can still need (all held past them) are dropped
        if run.cfg.setting.direction == "bi":
            keep = min([self.held.get(k, 0) for k in range(run.cfg.data.num_clients)])
            for j in [j for j in run.down.bits if j <= keep]:
                del run.down.bits[j]
        return out

    def run_round(
        self, r: int, selected: Sequence[int], start: dict[str, torch.Tensor], lr: float
    ) -> list[Any]:
        """Run the selected clients on their SuperNodes; the replies, in client order."""
        from flwr.app import ConfigRecord, Message, RecordDict

        from fedbench.fl.client import ClientResult, ClientState

        run = self.run
        t0 = time.perf_counter()
        payloads = self._payloads(r, selected, start)
        by_node: dict[int, list[int]] = {}
        for k in selected:
            node = self.node_of_partition.get(k % self.num_partitions)
            if node is not None:
                by_node.setdefault(node, []).append(k)
        msgs, down = [], 0
        for node, clients in by_node.items():
            content = RecordDict(
                {
                    C.META: ConfigRecord(
                        {
                            "round": r,
                            "lr": float(lr),
                            "config-key": self.opts.key,
                            "clients": clients,
                            "held": [self.before[k] for k in clients],
                            "trained": [self.trained.get(k, 0) for k in clients],
                            "reset": [k in self.reset for k in clients],
                        }
                    ),
                    **{C.DOWN.format(k): record_of(payloads[k]) for k in clients},
                }
            )
            down += records_wire_size(content)
            msgs.append(
                Message(content, dst_node_id=node, message_type=C.MSG_TRAIN, group_id=str(r))
            )
        replies: dict[int, ClientResult] = {}
        up = 0
        for rep in self.grid.send_and_receive(msgs, timeout=self.opts.round_timeout):
            node = int(rep.metadata.src_node_id)
            if rep.has_error():
                log.warning("round %d: SuperNode %d replied with an error: %s", r, node, rep.error)
                continue
            up += records_wire_size(rep.content)
            meta = rep.content[C.META]
            if int(meta["round"]) != r or meta["config-key"] != self.opts.key:
                log.warning("round %d: SuperNode %d: reply of another round or run", r, node)
                continue
            for i, k in enumerate(meta["clients"]):
                err = meta["errors"][i]
                if err:
                    if err.startswith("diverged:"):
                        from fedbench.fl.client import TrainingDiverged

                        raise TrainingDiverged(err.removeprefix("diverged: "))
                    log.warning("round %d, client %d: %s", r, k, err)
                    continue
                bits = dict(streams_of(rep.content[C.UP.format(k)]))[C.UPDATE]
                run.up.set_context(run.cfg.seed, r, k)
                replies[int(k)] = ClientResult(
                    int(k),
                    bits,
                    run.up.decode(bits),
                    float(meta["loss"][i]),
                    float(meta["train_s"][i]),
                    float(meta["code_s"][i]),
                    ClientState(),  # the client keeps its state on its SuperNode
                )
        missing = [k for k in selected if k not in replies]
        self.lost |= set(missing)
        self.lost -= set(replies)
        self.trained.update(dict.fromkeys(replies, r))
        self.last = {
            "flower_bytes_down": down,
            "flower_bytes_up": up,
            "missing_clients": " ".join(map(str, sorted(missing + self.unreachable))),
            "reset_clients": " ".join(map(str, sorted(self.reset))),
            "round_wall_s": time.perf_counter() - t0,
        }
        if missing:
            log.warning("round %d: no reply from clients %s", r, missing)
        if not replies:
            raise RoundFailed(f"round {r}: none of the selected clients {list(selected)} replied")
        return [replies[k] for k in selected if k in replies]


def _flower_run_class() -> type:
    """FederatedRun with its clients on Flower (defined lazily: the import is heavy)."""
    from fedbench.fl.loop import FederatedRun

    class FlowerRun(FederatedRun):
        """FederatedRun whose clients run on SuperNodes (see the module docstring)."""

        def __init__(self, cfg: Any, out: Any, *, grid: Any, flower: C.FlowerOptions, **kw: Any):
            super().__init__(cfg, out, **kw)
            self.down = _RecordingCompressor(self.down)
            self.clients = FlowerClients(grid, self, flower)
            self.strategy = _ReachableStrategy(self.strategy, self.clients)
            self.downlink = _LostAwareDownlink(self.downlink, self.clients)

        def step(self) -> dict[str, Any]:
            row = super().step()
            row.update(self.clients.last)
            missing = row["missing_clients"].split()
            row["num_clients"] = row["num_clients"] - len(
                [k for k in missing if int(k) not in self.clients.unreachable]
            )
            return row

        def write_outputs(self) -> None:
            from fedbench.fl.outputs import write_factors, write_ledger, write_metrics

            # the simulator's outputs (metrics, ledger, factors) plus Flower's own columns
            write_metrics(self.out, self.rows, tuple(FLOWER_COLUMNS))
            write_ledger(self.out, self.ledger)
            write_factors(self.out, self.rows)

        def summary(self) -> dict[str, Any]:
            out = super().summary()
            rows = self.rows
            missing = {r["round"]: r["missing_clients"] for r in rows if r.get("missing_clients")}
            out["runtime"] = "flower"
            out["flower"] = {
                "flower_bytes_down": int(sum(r.get("flower_bytes_down", 0) for r in rows)),
                "flower_bytes_up": int(sum(r.get("flower_bytes_up", 0) for r in rows)),
                "rounds_with_missing_clients": missing,
                "complete": not missing,
                "num_partitions": self.clients.num_partitions,
            }
            return out

    return FlowerRun


def run_server(grid: Any, run_config: dict[str, Any]) -> dict[str, Any] | None:
    """The ServerApp's work: run (or resume) the configured fedbench run on the Grid."""
    from fedbench.fl.checkpoint import CHECKPOINT
    from fedbench.fl.outputs import setup_logging, write_summary

    opts = C.FlowerOptions(run_config)
    out = opts.out
    if not out.is_absolute():
        raise ValueError(f"run config `out` must be an absolute path, got {str(out)!r}")
    out.mkdir(parents=True, exist_ok=True)
    handler = setup_logging(out)
    try:
        run = C.build_run(opts, out, _flower_run_class(), grid=grid, flower=opts)
        cfg = run.cfg
        resumed = False
        if opts.resume and (out / CHECKPOINT).is_file():
            # a checkpoint of another config is an error here, not silently moved aside
            resumed = run.load_checkpoint()
        if resumed:
            # the clients' states lived on the SuperNodes of the run that stopped
            run.clients.lost = set(range(cfg.data.num_clients))
            run.clients.held = {k: int(v) for k, v in run.downlink.synced.items()}
            log.info("resuming after round %d; the clients restart from empty states", run.round)
        wait = opts.num_nodes or cfg.data.num_clients
        run.clients.discover(wait_for=wait, timeout=opts.node_timeout)
        log.info("flower: %d of %d partitions served", len(run.clients.node_of_partition), wait)
        while run.round < cfg.train.rounds:
            t0 = time.perf_counter()
            row = run.step()
            run.elapsed += time.perf_counter() - t0
            key = run.primary_metric()
            log.info(
                "round %d: loss %.4f %s %.4f up %d down %d flower up %d down %d missing [%s]",
                *(row[c] for c in ("round", "train_loss")),
                key,
                *(row[c] for c in (key, "bytes_up", "bytes_down")),
                *(row[c] for c in ("flower_bytes_up", "flower_bytes_down", "missing_clients")),
            )
            if cfg.checkpoint:
                run.save_checkpoint()
            run.write_outputs()
        run.write_outputs()
        summary = run.summary()
        write_summary(out, summary)
        log.info(
            "done: %s %.4f, %d bytes, %.1f s",
            summary["metric"],
            summary["final_acc"] if summary["final_acc"] is not None else math.nan,
            summary["total_bytes"],
            summary["wall_s"],
        )
        return summary
    except Exception as exc:
        log.error("flower server: %s: %s", type(exc).__name__, exc)
        (Path(out) / "FAILED").write_text(f"{type(exc).__name__}: {exc}\n")
        raise
    finally:
        log.removeHandler(handler)
        handler.close()


def _make_app() -> Any:
    """The ServerApp object Flower loads (`fedbench.flower.server:app`)."""
    from flwr.serverapp import ServerApp

    app = ServerApp()

    @app.main()
    def main(grid: Any, context: Any) -> None:
        run_server(grid, dict(context.run_config))

    return app


app = _make_app()
