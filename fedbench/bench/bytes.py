"""`fedbench bench bytes`: where the bytes of one real update go, per coding variant.

One client (data.num_clients is set to 1) trains one round of the run config from the
initial model, uncompressed (method fp32), so that the global model's change is exactly the
client's update. That update is then coded by each variant (a compressor name and options on
top of the run config's shared method keys) and decoded; per variant: total bytes, the ratio
to float32, bytes per tensor class (fedbench.fl.ledger classes, from the model), the
measured sparsity of the weight tensors and the relative error ||u - decoded|| / ||u|| per
class (the part error feedback carries to the next round). Outputs STEM.csv, STEM.md and
STEM.json (rows, config, command).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.fl.config import MethodConfig, RunConfig, config_from_dict, config_to_dict

__all__ = ["VARIANTS", "format_markdown", "measure_update", "run_bytes_bench", "write_outputs"]


# label -> (compressor, options over the run config's shared method keys).
def _dc(sparsity: float, **options: Any) -> tuple[str, dict[str, Any]]:
    return "deepcabac", {"sparsity": sparsity, **options}


# The class QPs chosen as defaults from this table (see README, "Coding each tensor class").
CLASSES_QP = {"bn_affine_qp": -32, "bias_qp": -32, "bn_stats_qp": -16}

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # issue 10's table: non-weights at the old fine QP -75 (and -38 in sparse mode)
    "s0.9 nnc nw-75": _dc(0.9),
    "s0.99 nnc nw-75": _dc(0.99),
    "s0.999 nnc nw-75": _dc(0.999),
    "s0.999 sparse nw-38": _dc(0.999, codec_mode="sparse", nonweight_qp=-38),
    # one class knob at a time
    "s0.999 nnc nw-48": _dc(0.999, nonweight_qp=-48),
    "s0.999 nnc nw-40": _dc(0.999, nonweight_qp=-40),
    "s0.999 nnc nw-32": _dc(0.999, nonweight_qp=-32),
    "s0.999 nnc nw-24": _dc(0.999, nonweight_qp=-24),
    "s0.999 nnc stats-24": _dc(0.999, bn_stats_qp=-24),
    "s0.999 nnc stats-16": _dc(0.999, bn_stats_qp=-16),
    "s0.999 nnc stats-8": _dc(0.999, bn_stats_qp=-8),
    "s0.999 nnc affine-32": _dc(0.999, bn_affine_qp=-32, bias_qp=-32),
    "s0.999 nnc affine-24": _dc(0.999, bn_affine_qp=-24, bias_qp=-24),
    # the chosen class QPs, then non-weight sparsity and the sparse mode on top
    "s0.999 nnc classes": _dc(0.999, **CLASSES_QP),
    "s0.999 nnc classes nws0.5": _dc(0.999, **CLASSES_QP, nonweight_sparsity=0.5),
    "s0.999 nnc classes nws0.9": _dc(0.999, **CLASSES_QP, nonweight_sparsity=0.9),
    "s0.999 sparse classes": _dc(0.999, codec_mode="sparse", **CLASSES_QP),
    "s0.999 sparse classes nws0.9": _dc(
        0.999, codec_mode="sparse", **CLASSES_QP, nonweight_sparsity=0.9
    ),
    "s0.9 nnc classes": _dc(0.9, **CLASSES_QP),
    "s0.99 nnc classes": _dc(0.99, **CLASSES_QP),
    # exact sparsity: at a coarse weight QP, plain sparsify-then-quantize zeroes more
    "s0.9 qp-16 classes": _dc(0.9, qp=-16, **CLASSES_QP),
    "s0.9 qp-16 exact classes": _dc(0.9, qp=-16, exact_sparsity=True, **CLASSES_QP),
    "s0.99 qp-16 classes": _dc(0.99, qp=-16, **CLASSES_QP),
    "s0.99 qp-16 exact classes": _dc(0.99, qp=-16, exact_sparsity=True, **CLASSES_QP),
    "stc s0.999": ("stc", {"sparsity": 0.999}),
    "topk-fp16 s0.999": ("topk-fp16", {"sparsity": 0.999}),
}

NONWEIGHT = ("bn_affine", "bn_stats", "bias", "other")
_SHARED_KEYS = tuple(f.name for f in dataclasses.fields(MethodConfig) if f.name != "options")


def measure_update(
    cfg: RunConfig, data: Any = None, model_fn: Any = None
) -> tuple[dict[str, np.ndarray], Any, dict[str, str]]:
    """(update, template, tensor classes) of one client's first round under `cfg`
    (`data`, `model_fn`: as for FederatedRun; None = the config's)."""
    import torch

    from fedbench.fl.ledger import tensor_classes
    from fedbench.fl.loop import FederatedRun

    raw = config_to_dict(cfg)
    raw["data"]["num_clients"] = 1
    raw["train"].update(rounds=1, client_fraction=1.0)
    raw["setting"]["direction"] = "uni"
    raw["checkpoint"] = False
    # fp32 keeps only the shared method keys (the run's method options belong to its method)
    shared = {k: v for k, v in raw["method"].items() if k in _SHARED_KEYS}
    # every class is measured as if sent, the running statistics too (the default, auto,
    # recalibrates them under batch statistics and sends none)
    raw["method"] = {**shared, "name": "fp32", "bn_stats": "send"}
    cfg = config_from_dict(raw)
    with tempfile.TemporaryDirectory() as tmp:
        run = FederatedRun(cfg, tmp, data=data, model_fn=model_fn)
        before = {n: t.detach().clone() for n, t in run.global_state.items()}
        run.step()
        # fp32 and one client of weight 1: the model's change is the client's update
        update = {
            n: (run.global_state[n] - before[n]).detach().cpu().numpy().astype(np.float32)
            for n in run.template
        }
        classes = tensor_classes(run.model, list(run.template))
        template = run.template
        del run
        torch.set_num_threads(cfg.threads)
    return update, template, classes


def _code(
    update: dict[str, np.ndarray],
    template: Any,
    classes: dict[str, str],
    compressor: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """One variant's row: bytes per class, measured sparsity, relative error per class."""
    from fedbench.fl.compressors import build_compressor
    from fedbench.fl.ledger import CLASSES, class_bytes

    comp = build_compressor(compressor, template, **options)
    bits = comp.encode(update)
    dec = comp.decode(bits)
    per_class = class_bytes(comp.tensor_bytes(bits), classes)
    weights = [n for n, c in classes.items() if c == "weight"]
    zeros = sum(int(np.count_nonzero(dec[n] == 0)) for n in weights)
    size = sum(update[n].size for n in weights)
    params = sum(u.size for u in update.values())
    row: dict[str, Any] = {
        "compressor": compressor,
        "codec_mode": options.get("codec_mode", "nnc") if compressor == "deepcabac" else "",
        "sparsity": options.get("sparsity", 0.0),
        "measured_sparsity": zeros / max(size, 1),
        "total_bytes": len(bits),
        "ratio": 4 * params / len(bits),
        "nonweight_bytes": sum(per_class[c] for c in NONWEIGHT),
    }
    row["nonweight_share"] = row["nonweight_bytes"] / len(bits)
    for c in CLASSES:
        row[f"bytes_{c}"] = per_class[c]
    for c in CLASSES:
        if c == "overhead":
            continue
        names = [n for n, k in classes.items() if k == c]
        if not names:
            row[f"relerr_{c}"] = float("nan")
            continue
        num = math.sqrt(sum(float(((update[n] - dec[n]) ** 2).sum()) for n in names))
        den = math.sqrt(sum(float((update[n] ** 2).sum()) for n in names))
        row[f"relerr_{c}"] = num / den if den else 0.0
    return row


def run_bytes_bench(
    cfg: RunConfig,
    variants: dict[str, tuple[str, dict[str, Any]]] | None = None,
    command: str = "",
    data: Any = None,
    model_fn: Any = None,
) -> dict[str, Any]:
    """Train one update under `cfg`, code it with each variant; the report (rows, config)."""
    from fedbench.fl.methods import shared_compressor_options

    update, template, classes = measure_update(cfg, data, model_fn)
    base = shared_compressor_options(cfg, downlink=False)
    # each variant states its class QPs: none = the old single nonweight_qp
    base.update(bn_affine_qp=None, bn_stats_qp=None, bias_qp=None)
    rows = []
    for label, (compressor, options) in (variants or VARIANTS).items():
        row = _code(update, template, classes, compressor, {**base, **options})
        rows.append({"variant": label, **row})
    counts = {c: 0 for c in set(classes.values())}
    for n, c in classes.items():
        counts[c] += int(update[n].size)
    return {
        "rows": rows,
        "params_by_class": counts,
        "params": int(sum(counts.values())),
        "base_options": {k: v for k, v in base.items() if k != "num_threads"},
        "config": config_to_dict(cfg),
        "command": command,
    }


def format_markdown(report: dict[str, Any]) -> str:
    """The byte table as Markdown (one row per variant)."""
    head = (
        "| variant | coder | nominal s | measured s | total B | ratio | weight B "
        "| non-weight B (share) | bn_stats B | bn_affine B | bias B | overhead B "
        "| rel.err weight | rel.err bn_stats | rel.err bn_affine |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: | ---: | ---: |\n"
    )
    lines = []
    for r in report["rows"]:
        coder = r["codec_mode"] or r["compressor"]
        lines.append(
            f"| {r['variant']} | {coder} | {r['sparsity']:g} | {r['measured_sparsity']:.4f} "
            f"| {r['total_bytes']:,} | {r['ratio']:.0f}x | {r['bytes_weight']:,} "
            f"| {r['nonweight_bytes']:,} ({100 * r['nonweight_share']:.0f} %) "
            f"| {r['bytes_bn_stats']:,} | {r['bytes_bn_affine']:,} | {r['bytes_bias']:,} "
            f"| {r['bytes_overhead']:,} | {r['relerr_weight']:.3f} "
            f"| {r['relerr_bn_stats']:.3f} | {r['relerr_bn_affine']:.3f} |"
        )
    return head + "\n".join(lines) + "\n"


def write_outputs(report: dict[str, Any], stem: Path) -> tuple[Path, Path, Path]:
    """STEM.csv, STEM.md and STEM.json."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    rows = report["rows"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    paths = (stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".json"))
    paths[0].write_text(buf.getvalue())
    paths[1].write_text(format_markdown(report))
    paths[2].write_text(json.dumps(report, indent=1, default=str) + "\n")
    return paths
