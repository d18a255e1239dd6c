"""Conformance runner: re-encode and decode DeepCABAC test vectors (vectors.npz + manifest.json).

Everything is driven by each vector's ``settings`` in the manifest (no special-casing of
ids or names), so any vector set built by the same generator can be checked:

- bytes: ``encode_levels`` on ``<i>_levels`` with the encoder's arguments must give exactly
  ``<i>_bytes`` (and the manifest's sha256 / byte_length), and the entry points the encoder
  derives must equal ``<i>_entry_points`` where stored;
- roundtrip: decoding (sequentially, and from ``<i>_entry_points`` where present) must give
  the levels, or ``<i>_decoded`` where the manifest says the reference does not round-trip;
  the entry points found by the sequential decoder must equal the stored ones;
- quant (optional, informative): where ``<i>_floats`` exist, ``fedbench.codec.quant.quantize_dq``
  (if that module is importable) must reproduce the levels.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedbench.codec.cabac import (
    decode_levels_with_entry_points,
    encode_levels,
    encode_levels_with_entry_points,
)

__all__ = ["ConformanceResult", "VectorResult", "format_report", "run_conformance"]


@dataclass
class VectorResult:
    """Outcome of one vector."""

    id: int
    name: str
    category: str
    bytes_ok: bool = False
    roundtrip_ok: bool = False
    quant_ok: bool | None = None  # None: not applicable or quant module absent
    num_bytes: int = 0
    messages: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Bytes and round trip both correct."""
        return self.bytes_ok and self.roundtrip_ok


@dataclass
class ConformanceResult:
    """Outcome of a whole vector set."""

    directory: str
    vectors: list[VectorResult]
    seconds: float
    quant_available: bool

    @property
    def num_passed(self) -> int:
        """Vectors whose bytes and round trip are correct."""
        return sum(v.passed for v in self.vectors)

    @property
    def passed(self) -> bool:
        """True when every vector passes (bytes and round trip) and the set is not empty."""
        return bool(self.vectors) and all(v.passed for v in self.vectors)

    @property
    def quant_failures(self) -> list[VectorResult]:
        """Vectors whose re-quantization was checked and did not match."""
        return [v for v in self.vectors if v.quant_ok is False]


def _resolve(args: dict[str, Any], npz: Any, skip: tuple[str, ...]) -> dict[str, Any]:
    """Replace npz key names by their arrays; dummy descriptions (e.g. HDSP off) become None."""
    out: dict[str, Any] = {}
    for k, x in args.items():
        if k in skip:
            continue
        if k == "WeightsBase":
            k = "baseWeights"
        if isinstance(x, str) and x in npz.files:
            x = npz[x]
        elif k in ("hdspHist", "ChanZeroList", "baseWeights") and isinstance(x, str):
            x = None  # a description of a dummy argument, never read
        out[k] = x
    return out


def _quant_module() -> Any:
    """fedbench.codec.quant if it can be imported (written by another part of the project)."""
    try:
        from fedbench.codec import quant
    except ImportError:
        return None
    return quant if hasattr(quant, "quantize_dq") else None


def _check_vector(v: dict[str, Any], npz: Any, quant: Any) -> VectorResult:
    """Run all checks of one vector."""
    vid = int(v["id"])
    res = VectorResult(id=vid, name=str(v.get("name", vid)), category=str(v.get("category", "?")))
    settings = v["settings"]
    levels = npz[f"{vid}_levels"]
    ref = npz[f"{vid}_bytes"].tobytes()
    res.num_bytes = len(ref)
    enc_args = {**settings["encoder_init"]["args"], **settings["encode_args"]}
    enc_args = _resolve(enc_args, npz, ("qindex",))
    # bytes
    try:
        data = encode_levels(levels, **enc_args)
        sha = hashlib.sha256(data).hexdigest()
        res.bytes_ok = data == ref
        if not res.bytes_ok:
            res.messages.append(f"bytes differ: got {len(data)} bytes, expected {len(ref)}")
        if "sha256" in v and sha != v["sha256"]:
            res.bytes_ok = False
            res.messages.append("sha256 differs from the manifest")
        if "byte_length" in v and len(data) != int(v["byte_length"]):
            res.bytes_ok = False
            res.messages.append("byte_length differs from the manifest")
        ep_key = f"{vid}_entry_points"
        if ep_key in npz.files:
            _, enc_eps = encode_levels_with_entry_points(levels, **enc_args)
            if not np.array_equal(enc_eps, npz[ep_key].astype(np.uint64)):
                res.bytes_ok = False
                res.messages.append(
                    "entry points derived by the encoder differ from the stored ones"
                )
    except Exception as exc:  # noqa: BLE001 - report, keep going with the other vectors
        res.messages.append(f"encode raised {type(exc).__name__}: {exc}")
    # round trip (always from the reference bytes)
    dec_args = {**settings["decoder_init"]["args"], **settings["decode_args"]}
    dec_args = _resolve(dec_args, npz, ("Weights",))
    expect_key = f"{vid}_decoded"
    expected = npz[expect_key] if expect_key in npz.files else levels
    ep_key = f"{vid}_entry_points"
    ref_eps = npz[ep_key] if ep_key in npz.files else np.zeros(0, np.uint64)
    try:
        ok = True
        dec, eps = decode_levels_with_entry_points(ref, levels.shape, **dec_args)
        if not np.array_equal(dec, expected):
            ok = False
            res.messages.append(
                f"sequential decode differs at {int(np.count_nonzero(dec != expected))} positions"
            )
        if not np.array_equal(eps.astype(np.uint64), ref_eps.astype(np.uint64)):
            ok = False
            res.messages.append("entry points differ from the stored ones")
        if ref_eps.size:
            for threads in (1, None):
                dec2, _ = decode_levels_with_entry_points(
                    ref, levels.shape, entry_points=ref_eps, num_threads=threads, **dec_args
                )
                if not np.array_equal(dec2, expected):
                    ok = False
                    res.messages.append(f"entry-point decode (threads={threads}) differs")
        if v.get("roundtrip") is False and expect_key not in npz.files:
            ok = False
            res.messages.append(f"roundtrip false but {expect_key} missing")
        res.roundtrip_ok = ok
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a failed vector
        res.messages.append(f"decode raised {type(exc).__name__}: {exc}")
    # optional re-quantization of DQ vectors
    fkey = f"{vid}_floats"
    q = v.get("quantization")
    if quant is not None and fkey in npz.files and q:
        try:
            qa = q["args"]
            lv = quant.quantize_dq(
                npz[fkey],
                int(q.get("qp_requested", qa["qp"])),
                qp_density=int(qa.get("qpDensity", 2)),
                lambda_scale=float(qa.get("lambdaScale", 0.0)),
                max_num_no_rem=int(qa.get("maxNumNoRem", 10)),
                scan_order=int(qa.get("scan_order", 0)),
                general_profile_idc=int(qa.get("general_profile_idc", 1)),
            )
            res.quant_ok = bool(np.array_equal(np.asarray(lv).reshape(levels.shape), levels))
            if not res.quant_ok:
                res.messages.append("quantize_dq does not reproduce the levels")
        except Exception as exc:  # noqa: BLE001 - the quant column is informative only
            res.quant_ok = False
            res.messages.append(f"quantize_dq raised {type(exc).__name__}: {exc}")
    return res


def run_conformance(directory: str | Path) -> ConformanceResult:
    """Check every vector of a conformance directory (vectors.npz + manifest.json)."""
    d = Path(directory)
    manifest = json.loads((d / "manifest.json").read_text())
    quant = _quant_module()
    t0 = time.perf_counter()
    results: list[VectorResult] = []
    with np.load(d / "vectors.npz") as npz:
        for v in manifest["vectors"]:
            try:
                results.append(_check_vector(v, npz, quant))
            except Exception as exc:  # noqa: BLE001 - malformed entry: report it as a failure
                r = VectorResult(
                    id=int(v.get("id", -1)),
                    name=str(v.get("name", "?")),
                    category=str(v.get("category", "?")),
                )
                r.messages.append(f"{type(exc).__name__}: {exc}")
                results.append(r)
    return ConformanceResult(str(d), results, time.perf_counter() - t0, quant is not None)


def _mark(x: bool | None) -> str:
    return "-" if x is None else ("ok" if x else "FAIL")


def format_report(result: ConformanceResult) -> str:
    """Per-category tables and a summary line."""
    lines: list[str] = [f"DeepCABAC conformance: {result.directory}"]
    cats = sorted({v.category for v in result.vectors})
    qcol = result.quant_available
    for cat in cats:
        rows = [v for v in result.vectors if v.category == cat]
        npass = sum(v.passed for v in rows)
        lines.append("")
        lines.append(f"category {cat}: {npass}/{len(rows)} pass")
        head = f"  {'id':>4}  {'name':<40} {'bytes':>7} {'bytes ok':>9} {'roundtrip ok':>13}"
        if qcol:
            head += f" {'quant ok':>9}"
        lines.append(head)
        for v in rows:
            line = (
                f"  {v.id:>4}  {v.name[:40]:<40} {v.num_bytes:>7} {_mark(v.bytes_ok):>9} "
                f"{_mark(v.roundtrip_ok):>13}"
            )
            if qcol:
                line += f" {_mark(v.quant_ok):>9}"
            lines.append(line)
            for msg in v.messages:
                lines.append(f"        ! {msg}")
    n = len(result.vectors)
    nb = sum(v.bytes_ok for v in result.vectors)
    nr = sum(v.roundtrip_ok for v in result.vectors)
    lines.append("")
    summary = f"summary: {result.num_passed}/{n} vectors pass (bytes {nb}/{n}, roundtrip {nr}/{n})"
    if qcol:
        checked = [v for v in result.vectors if v.quant_ok is not None]
        summary += f", quant {sum(bool(v.quant_ok) for v in checked)}/{len(checked)}"
    else:
        summary += ", quant not checked (fedbench.codec.quant absent)"
    summary += f" in {result.seconds:.2f} s -> {'PASS' if result.passed else 'FAIL'}"
    lines.append(summary)
    return "\n".join(lines)
