"""The ledger of transmitted bytes (`Ledger.charge`) and the downlink charging rules (`Downlink`).

One entry per message (one payload sent to one or more receivers): round, direction (up or
down), kind, sender, receivers, the payload's length and its split over tensor classes, and
the bytes uncompressed FedAvg (the fp32 reference) sends for the same message. Bytes charged
are payload length x number of receivers, for the method and the reference alike, so the
two cannot drift apart: every per-round and per-run total in metrics.csv and summary.json is
a sum over these entries.

Tensor classes: weight (conv/linear weights, ndim >= 2), bn_affine (BatchNorm weight and
bias), bn_stats (BatchNorm running statistics), bias (other biases), adf (filter factors),
other (any other float tensor), overhead (container headers, lengths, CRCs: bytes of a
payload not attributable to one tensor).

A round r is: broadcast (the server's model to the round's selected clients), local
training, upload, aggregation. What each message costs, for the method and for what
uncompressed FedAvg (the fp32 reference) sends for the same message:

- uplink: len() of each selected client's bitstream; reference: 4 bytes per transmitted
  parameter of the same architecture without filter factors.
- initial model (round 1's broadcast): free by default (a shared seed or public checkpoint
  gives it); `setting.initial_model: charged` charges the full float32 model once to each
  client when it is first selected, for the method and the reference alike.
- downlink from round 2 on, unidirectional: the full float32 model (4 bytes per transmitted
  parameter) to each selected client; reference likewise (without factors).
- downlink from round 2 on, bidirectional: after aggregating round r the server codes one
  broadcast (mean update + server residual). A client receives, when it is next selected,
  every broadcast it has missed (catch-up, so partial participation stays in sync), or the
  clients' current model as float32 when that is smaller; it is charged then. The reference
  sends each selected client the float32 model. The broadcast after the last round is
  computed (the clients' model of the last round is evaluated on it) but never charged:
  no training uses it.
- compression_ratio = fp32 bytes / bytes charged, over the same rounds and clients.

The downlink rules live in `Downlink.deliver`; the uplink is charged by the round loop.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from torch import nn

from fedbench.fl.compressors import OVERHEAD

__all__ = [
    "CLASSES",
    "DIRECTIONS",
    "SERVER",
    "Downlink",
    "Ledger",
    "Transmission",
    "class_bytes",
    "tensor_classes",
]

CLASSES = ("weight", "bn_affine", "bn_stats", "bias", "adf", "other", "overhead")
DIRECTIONS = ("up", "down")
# Message kinds: update (client -> server), broadcast (server -> clients, one round's
# compressed update), catchup (several missed broadcasts sent together), snapshot (the
# clients' current model as float32, when cheaper than the missed broadcasts), model (the
# full-precision model, unidirectional downlink), initial (the initial model's delivery).
KINDS = ("update", "broadcast", "catchup", "snapshot", "model", "initial")
SERVER = -1  # the server's id in ledger receivers


def tensor_classes(model: nn.Module, names: Iterable[str]) -> dict[str, str]:
    """Class of each named state tensor of `model` (see the module docstring)."""
    owner: dict[str, nn.Module] = {}
    for mname, module in model.named_modules():
        for local, _ in list(module.named_parameters(recurse=False)) + list(
            module.named_buffers(recurse=False)
        ):
            owner[f"{mname}.{local}" if mname else local] = module
    state = model.state_dict()
    out = {}
    for n in names:
        leaf = n.rsplit(".", 1)[-1]
        if leaf == "adf_scale":
            out[n] = "adf"
        elif isinstance(owner.get(n), nn.modules.batchnorm._BatchNorm):
            out[n] = "bn_stats" if leaf.startswith("running_") else "bn_affine"
        elif leaf == "bias":
            out[n] = "bias"
        elif leaf == "weight" and state[n].dim() >= 2:
            out[n] = "weight"
        else:
            out[n] = "other"
    return out


def class_bytes(per_tensor: Mapping[str, int], classes: Mapping[str, str]) -> dict[str, int]:
    """Sum per-tensor byte counts (with the OVERHEAD key) into per-class counts."""
    out = dict.fromkeys(CLASSES, 0)
    for name, n in per_tensor.items():
        out["overhead" if name == OVERHEAD else classes[name]] += int(n)
    return out


@dataclass
class Transmission:
    """One message: a payload of `nbytes` from `sender` to each of `receivers`."""

    round: int
    direction: str
    kind: str
    sender: str
    receivers: tuple[int, ...]
    nbytes: int
    fp32_bytes: int
    classes: dict[str, int] = field(default_factory=dict)

    @property
    def charged(self) -> int:
        """Bytes charged: payload length times receivers."""
        return self.nbytes * len(self.receivers)

    @property
    def fp32_charged(self) -> int:
        """What uncompressed FedAvg is charged for the same message."""
        return self.fp32_bytes * len(self.receivers)


class Ledger:
    """Every transmission of a run, with per-round and per-run sums."""

    def __init__(self) -> None:
        self.entries: list[Transmission] = []

    def charge(
        self,
        round_: int,
        direction: str,
        kind: str,
        sender: str,
        receivers: Iterable[int],
        nbytes: int,
        fp32_bytes: int,
        classes: Mapping[str, int] | None = None,
    ) -> Transmission:
        """Record one message; `classes` splits `nbytes` per tensor class (must add up)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"ledger: direction must be one of {DIRECTIONS}, got {direction!r}")
        if kind not in KINDS:
            raise ValueError(f"ledger: kind must be one of {KINDS}, got {kind!r}")
        receivers = tuple(int(r) for r in receivers)
        if not receivers:
            raise ValueError("ledger: a message needs at least one receiver")
        if nbytes < 0 or fp32_bytes < 0:
            raise ValueError("ledger: byte counts must be >= 0")
        cls = dict.fromkeys(CLASSES, 0)
        if classes is not None:
            unknown = set(classes) - set(CLASSES)
            if unknown:
                raise ValueError(f"ledger: unknown tensor classes {sorted(unknown)}")
            cls.update({k: int(v) for k, v in classes.items()})
            if sum(cls.values()) != nbytes:
                raise ValueError(
                    f"ledger: class bytes add up to {sum(cls.values())}, payload is {nbytes}"
                )
        else:
            cls["overhead"] = int(nbytes)
        entry = Transmission(
            int(round_), direction, kind, sender, receivers, int(nbytes), int(fp32_bytes), cls
        )
        self.entries.append(entry)
        return entry

    def totals(self, round_: int | None = None) -> dict[str, int]:
        """Charged bytes up/down and the fp32 reference's, for one round or the whole run."""
        out = {"bytes_up": 0, "bytes_down": 0, "fp32_up": 0, "fp32_down": 0}
        for e in self.entries:
            if round_ is not None and e.round != round_:
                continue
            out[f"bytes_{e.direction}"] += e.charged
            out[f"fp32_{e.direction}"] += e.fp32_charged
        return out

    def by_class(self, round_: int | None = None) -> dict[str, dict[str, int]]:
        """Charged bytes per direction and tensor class, for one round or the whole run."""
        out = {d: dict.fromkeys(CLASSES, 0) for d in DIRECTIONS}
        for e in self.entries:
            if round_ is not None and e.round != round_:
                continue
            for c, n in e.classes.items():
                out[e.direction][c] += n * len(e.receivers)
        return out

    def to_state(self) -> list[dict[str, Any]]:
        """Plain data (lists, dicts, ints, strings) for checkpoints."""
        return [{**asdict(e), "receivers": list(e.receivers)} for e in self.entries]

    @classmethod
    def from_state(cls, state: list[dict[str, Any]]) -> Ledger:
        """Inverse of to_state."""
        led = cls()
        for d in state:
            led.entries.append(Transmission(**{**d, "receivers": tuple(d["receivers"])}))
        return led

    def to_csv(self) -> str:
        """One row per message (receivers space-separated), classes as columns."""
        buf = io.StringIO()
        cols = [
            "round",
            "direction",
            "kind",
            "sender",
            "receivers",
            "nbytes",
            "fp32_bytes",
            "charged",
            "fp32_charged",
            *(f"bytes_{c}" for c in CLASSES),
        ]
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(cols)
        for e in self.entries:
            w.writerow(
                [
                    e.round,
                    e.direction,
                    e.kind,
                    e.sender,
                    " ".join(map(str, e.receivers)),
                    e.nbytes,
                    e.fp32_bytes,
                    e.charged,
                    e.fp32_charged,
                    *(e.classes.get(c, 0) for c in CLASSES),
                ]
            )
        return buf.getvalue()


class Downlink:
    """The downlink charging rules (module docstring) and the per-client state they need.

    Sizes: `num_tx` / `num_tx_ref` transmitted parameters of the method / of the reference
    (without factors), `model_params` / `model_params_ref` all float parameters of each;
    `tx_classes` / `full_classes` the float32 bytes of the transmitted tensors / of the
    whole model per tensor class.
    """

    def __init__(
        self,
        direction: str,
        initial_model: str,
        *,
        num_tx: int,
        num_tx_ref: int,
        model_params: int,
        model_params_ref: int,
        tx_classes: dict[str, int],
        full_classes: dict[str, int],
    ) -> None:
        self.direction = direction
        self.initial_model = initial_model
        self.num_tx = num_tx
        self.num_tx_ref = num_tx_ref
        self.model_params = model_params
        self.model_params_ref = model_params_ref
        self.tx_classes = tx_classes
        self.full_classes = full_classes
        # Bidirectional: (bytes, class bytes) of the broadcast after each round (index r-1),
        # and per client the last round whose broadcast it has received (0: initial model).
        self.broadcasts: list[tuple[int, dict[str, int]]] = []
        self.synced: dict[int, int] = {}
        self.initialised: set[int] = set()

    def record_broadcast(self, nbytes: int, classes: dict[str, int]) -> None:
        """Note the broadcast coded after the current round (charged when delivered)."""
        self.broadcasts.append((nbytes, classes))

    def deliver(self, ledger: Ledger, r: int, selected: list[int]) -> None:
        """Charge round r's broadcast to the selected clients."""
        if self.initial_model == "charged":
            new = [k for k in selected if k not in self.initialised]
            if new:
                ledger.charge(
                    r,
                    "down",
                    "initial",
                    "server",
                    new,
                    4 * self.model_params,
                    4 * self.model_params_ref,
                    self.full_classes,
                )
        self.initialised.update(selected)
        if r == 1:
            return  # round 1 trains from the initial model
        ref = 4 * self.num_tx_ref
        if self.direction == "uni":
            ledger.charge(
                r, "down", "model", "server", selected, 4 * self.num_tx, ref, self.tx_classes
            )
            return
        groups: dict[int, list[int]] = {}
        for k in selected:
            groups.setdefault(self.synced.get(k, 0), []).append(k)
        for last, clients in sorted(groups.items()):
            missed = self.broadcasts[last : r - 1]
            nbytes = sum(n for n, _ in missed)
            if nbytes > 4 * self.num_tx:
                # the clients' current model as float32 reproduces `view` exactly
                kind, nbytes, classes = "snapshot", 4 * self.num_tx, self.tx_classes
            else:
                kind = "broadcast" if len(missed) == 1 else "catchup"
                classes = dict.fromkeys(CLASSES, 0)
                for _, c in missed:
                    for key, v in c.items():
                        classes[key] += v
            ledger.charge(r, "down", kind, "server", clients, nbytes, ref, classes)
            for k in clients:
                self.synced[k] = r - 1

    def to_state(self) -> dict[str, Any]:
        """Plain data for checkpoints."""
        return {
            "broadcasts": [[n, dict(c)] for n, c in self.broadcasts],
            "synced": {int(k): int(v) for k, v in self.synced.items()},
            "initialised": sorted(int(k) for k in self.initialised),
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Inverse of to_state."""
        self.broadcasts = [(int(n), dict(c)) for n, c in state["broadcasts"]]
        self.synced = {int(k): int(v) for k, v in state["synced"].items()}
        self.initialised = set(state["initialised"])
