"""Run the codec benchmark: sizes, entropy bounds and timings of every peer on every workload."""

from __future__ import annotations

import csv
import datetime as _dt
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.bench import peers as _peers
from fedbench.bench import workloads as _workloads

__all__ = ["COLUMNS", "BenchOptions", "format_table", "run_benchmark", "time_peer", "write_results"]

# The table's columns, in order (CSV header and JSON row keys).
COLUMNS: tuple[str, ...] = (
    "workload",
    "setting",
    "codec",
    "input",
    "threads",
    "num_tensors",
    "num_params",
    "nonzero_fraction",
    "float32_bytes",
    "bytes",
    "ratio",
    "h0_bytes",
    "bytes_over_h0",
    "encode_s",
    "decode_s",
    "encode_cpu_s",
    "decode_cpu_s",
    "encode_first_s",
    "decode_first_s",
    "jit_s",
    "encode_params_per_s",
    "decode_params_per_s",
    "encode_speedup_vs_nncodec",
    "decode_speedup_vs_nncodec",
    "encode_cpu_speedup_vs_nncodec",
    "decode_cpu_speedup_vs_nncodec",
    "repeats",
    "verified",
    "deterministic",
    "identical_to_nncodec",
    "note",
)


@dataclass
class BenchOptions:
    """Everything one benchmark run needs (the CLI maps its arguments onto this)."""

    workloads: Sequence[str] = ("A", "B90", "B99", "C")
    peers: Sequence[str] = _peers.ALL_PEER_NAMES
    settings: _peers.Settings = field(default_factory=_peers.Settings)
    repeats: int = 3
    gp_repeats: int = 1
    scale: float = 1.0
    c_size: str = "full"
    c_path: str | None = None
    identity_check: bool = True


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Call fn; return its result, wall seconds and process CPU seconds (all threads)."""
    c0 = time.process_time()
    t0 = time.perf_counter()
    res = fn()
    return res, time.perf_counter() - t0, time.process_time() - c0


def time_peer(peer: _peers.Peer, repeats: int) -> dict[str, Any]:
    """Time one peer: median of `repeats` encode+decode runs, after a warm-up if peer.warmup.

    Without a warm-up the first call is the first timed run. Wall and process CPU time are
    both recorded: on a shared machine CPU time is the steadier measure of the work done.
    """
    gc.collect()
    data, enc_first, enc_first_cpu = _timed(peer.encode)
    decoded, dec_first, dec_first_cpu = _timed(lambda: peer.decode(data))
    verified = bool(peer.verify(decoded))
    del decoded
    enc_t: list[float] = [] if peer.warmup else [enc_first]
    dec_t: list[float] = [] if peer.warmup else [dec_first]
    enc_c: list[float] = [] if peer.warmup else [enc_first_cpu]
    dec_c: list[float] = [] if peer.warmup else [dec_first_cpu]
    deterministic = True
    while len(enc_t) < repeats:
        gc.collect()
        again, wall, cpu = _timed(peer.encode)
        enc_t.append(wall)
        enc_c.append(cpu)
        deterministic &= again == data
        _, wall, cpu = _timed(lambda again=again: peer.decode(again))
        dec_t.append(wall)
        dec_c.append(cpu)
        del again
    enc_s = _median(enc_t) if enc_t else enc_first
    dec_s = _median(dec_t) if dec_t else dec_first
    jit_s = None
    if peer.jit and peer.warmup and enc_t:
        # First-call overhead (numba compile, or loading its on-disk cache) beyond a warm call.
        jit_s = max(0.0, enc_first - enc_s) + max(0.0, dec_first - dec_s)
    return {
        "bytes": len(data),
        "encode_s": enc_s,
        "decode_s": dec_s,
        "encode_cpu_s": _median(enc_c) if enc_c else enc_first_cpu,
        "decode_cpu_s": _median(dec_c) if dec_c else dec_first_cpu,
        "encode_first_s": enc_first,
        "decode_first_s": dec_first,
        "jit_s": jit_s,
        "verified": verified,
        "deterministic": deterministic,
        "repeats": len(enc_t),
    }


def _fill_speedups(rows: list[dict[str, Any]]) -> None:
    ref = {
        (r["workload"], r["setting"]): r
        for r in rows
        if r["codec"] == "nncodec" and r.get("encode_s") is not None
    }
    for r in rows:
        base = ref.get((r["workload"], r["setting"]))
        if base is None or r.get("encode_s") in (None, 0) or r.get("decode_s") in (None, 0):
            continue
        r["encode_speedup_vs_nncodec"] = base["encode_s"] / r["encode_s"]
        r["decode_speedup_vs_nncodec"] = base["decode_s"] / r["decode_s"]
        if r.get("encode_cpu_s") and r.get("decode_cpu_s"):
            r["encode_cpu_speedup_vs_nncodec"] = base["encode_cpu_s"] / r["encode_cpu_s"]
            r["decode_cpu_speedup_vs_nncodec"] = base["decode_cpu_s"] / r["decode_cpu_s"]


def run_benchmark(
    opts: BenchOptions, log: Callable[[str], None] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every (workload, peer) pair; return the table rows and the per-workload checks."""
    log = log or (lambda _msg: None)
    settings = opts.settings
    rows: list[dict[str, Any]] = []
    checks: dict[str, Any] = {}
    for wname in opts.workloads:
        t0 = time.perf_counter()
        tensors = _workloads.load_workload(
            wname, scale=opts.scale, c_path=opts.c_path, c_size=opts.c_size, log=log
        )
        n = _workloads.num_params(tensors)
        ref = _peers.make_reference(tensors, settings)
        log(
            f"[{wname}] {len(tensors)} tensors, {n} params, nonzero levels "
            f"{ref.nonzero_fraction:.4%}, H0 {ref.h0_bytes} B "
            f"(prepared in {time.perf_counter() - t0:.1f} s)"
        )
        identity: dict[str, Any] = {"identical": None, "reason": "not run"}
        if opts.identity_check and "nncodec" in opts.peers:
            try:
                identity = _peers.nncodec_identity_check(ref, settings)
            except Exception as exc:  # noqa: BLE001 - a failed check is reported, not fatal
                identity = {"identical": None, "reason": f"{type(exc).__name__}: {exc}"}
            log(f"[{wname}] NNC payload identity vs nncodec: {identity}")
        checks[wname] = {"nncodec_identity": identity}
        base = {
            "workload": wname,
            "setting": settings.label(),
            "num_tensors": len(tensors),
            "num_params": n,
            "nonzero_fraction": ref.nonzero_fraction,
            "float32_bytes": 4 * n,
            "h0_bytes": ref.h0_bytes,
        }
        for peer in _peers.make_peers(opts.peers, tensors, ref, settings):
            row: dict[str, Any] = {c: None for c in COLUMNS}
            row.update(base)
            row.update(codec=peer.name, input=peer.input_kind, threads=peer.threads)
            if peer.unavailable:
                row["note"] = f"skipped: {peer.unavailable}"
                log(f"[{wname}] {peer.name}: skipped ({peer.unavailable})")
                rows.append(row)
                continue
            reps = opts.repeats if peer.warmup else max(1, opts.gp_repeats)
            how = "after a warm-up" if peer.warmup else "no warm-up"
            log(f"[{wname}] {peer.name}: timing ({reps} runs, {how})...")
            try:
                row.update(time_peer(peer, reps))
            except Exception as exc:  # noqa: BLE001 - one failing peer must not end the run
                row["note"] = f"failed: {type(exc).__name__}: {exc}"
                row["verified"] = False
                log(f"[{wname}] {peer.name}: FAILED {type(exc).__name__}: {exc}")
                rows.append(row)
                continue
            row["ratio"] = row["float32_bytes"] / row["bytes"] if row["bytes"] else None
            if ref.h0_bytes:
                row["bytes_over_h0"] = row["bytes"] / ref.h0_bytes
            row["encode_params_per_s"] = n / row["encode_s"] if row["encode_s"] else None
            row["decode_params_per_s"] = n / row["decode_s"] if row["decode_s"] else None
            if peer.name.startswith("nnc") and peer.name != "nncodec":
                row["identical_to_nncodec"] = identity.get("identical")
            notes = [peer.note] if peer.note else []
            if peer.name == "nncodec" and identity.get("nncodec_header_bytes") is not None:
                notes.append(
                    f"NNR headers {identity['nncodec_header_bytes']} B over "
                    f"{identity['our_payload_bytes']} B CABAC payload (int-level stream)"
                )
            row["note"] = "; ".join(notes)
            rows.append(row)
            log(
                f"[{wname}] {peer.name}: {row['bytes']} B, enc {row['encode_s']:.3f} s, "
                f"dec {row['decode_s']:.3f} s, verified={row['verified']}"
            )
        del tensors, ref
    _fill_speedups(rows)
    return rows, checks


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    for mod in ("numba", "zstandard", "nncodec"):
        try:
            from importlib.metadata import version

            out[mod] = version(mod)
        except Exception:  # noqa: BLE001 - a missing package just has no version
            out[mod] = "absent"
    return out


def run_metadata(opts: BenchOptions, command: str = "") -> dict[str, Any]:
    """Describe the machine and settings of a run (for the JSON file)."""
    try:
        load = os.getloadavg()
    except OSError:
        load = (float("nan"),) * 3
    return {
        "date_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "loadavg_at_start": list(load),
        "platform": platform.platform(),
        "versions": _versions(),
        "workloads": list(opts.workloads),
        "peers": list(opts.peers),
        "settings": opts.settings.__dict__,
        "repeats": opts.repeats,
        "gp_repeats": opts.gp_repeats,
        "scale": opts.scale,
        "c_size": opts.c_size,
    }


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_results(
    rows: list[dict[str, Any]], meta: dict[str, Any], checks: dict[str, Any], stem: Path
) -> tuple[Path, Path]:
    """Write the table as <stem>.csv and <stem>.json (rows plus run metadata and checks)."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv_path = stem.with_suffix(".csv")
    json_path = stem.with_suffix(".json")
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS))
        w.writeheader()
        for r in rows:
            w.writerow({c: ("" if r.get(c) is None else _jsonable(r.get(c))) for c in COLUMNS})
    doc = {
        "meta": meta,
        "columns": list(COLUMNS),
        "rows": [{c: _jsonable(r.get(c)) for c in COLUMNS} for r in rows],
        "checks": checks,
    }
    with open(json_path, "w") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    return csv_path, json_path


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if kind == "int":
        return f"{int(v):,}"
    if kind == "s":
        return f"{v:.3f}"
    if kind == "x":
        return f"{v:.2f}"
    if kind == "mps":
        return f"{v / 1e6:.1f}"
    if kind == "bool":
        return "yes" if v else "NO"
    return str(v)


def format_table(rows: list[dict[str, Any]]) -> str:
    """Render the rows as a fixed-width text table for the terminal."""
    cols = [
        ("workload", "workload", "str"),
        ("codec", "codec", "str"),
        ("thr", "threads", "str"),
        ("bytes", "bytes", "int"),
        ("ratio", "ratio", "x"),
        ("B/H0", "bytes_over_h0", "x"),
        ("enc s", "encode_s", "s"),
        ("dec s", "decode_s", "s"),
        ("enc cpu", "encode_cpu_s", "s"),
        ("dec cpu", "decode_cpu_s", "s"),
        ("jit s", "jit_s", "s"),
        ("enc Mp/s", "encode_params_per_s", "mps"),
        ("dec Mp/s", "decode_params_per_s", "mps"),
        ("enc x ref", "encode_speedup_vs_nncodec", "x"),
        ("dec x ref", "decode_speedup_vs_nncodec", "x"),
        ("enc x ref cpu", "encode_cpu_speedup_vs_nncodec", "x"),
        ("dec x ref cpu", "decode_cpu_speedup_vs_nncodec", "x"),
        ("ok", "verified", "bool"),
        ("=nncodec", "identical_to_nncodec", "bool"),
    ]
    cells = [[h for h, _, _ in cols]]
    for r in rows:
        if str(r.get("note") or "").startswith("skipped"):
            cells.append([r["workload"], r["codec"]] + ["-"] * (len(cols) - 3) + ["skipped"])
            continue
        cells.append([_fmt(r.get(k), kind) for _, k, kind in cols])
    widths = [max(len(c[i]) for c in cells) for i in range(len(cols))]
    lines = []
    for j, c in enumerate(cells):
        lines.append(
            "  ".join(x.ljust(widths[i]) if i < 2 else x.rjust(widths[i]) for i, x in enumerate(c))
        )
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stderr_log(msg: str) -> None:
    """Progress logger: stderr, so stdout carries only the table."""
    print(msg, file=sys.stderr, flush=True)
