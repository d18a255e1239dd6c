"""The ledger of transmitted bytes: every message of a run passes through `Ledger.charge`.

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
