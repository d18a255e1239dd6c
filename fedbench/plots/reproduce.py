"""Check that each headline row's `command` reproduces the row's first seed (issue 10).

A headline row carries the command line of its first seed and that seed's final accuracy
and compression ratio. `check_rows` runs the command (from the current folder, as a user of
a clean checkout would) and compares: the ratio within `ratio_tol` (relative) and the
accuracy within `acc_tol` (absolute, fraction of 1).
"""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from fedbench.layout import SUMMARY

__all__ = ["check_rows", "read_headline", "run_command", "write_report"]

Runner = Callable[[list[str]], int]


def read_headline(path: str | Path, rows: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The headline CSV's rows (only those whose `row` is in `rows`, if given)."""
    keep = set(rows) if rows else None
    with open(path, newline="") as f:
        out = [r for r in csv.DictReader(f) if keep is None or r["row"] in keep]
    for r in out:
        if not r.get("command") or not r.get("first_acc") or not r.get("first_ratio"):
            raise ValueError(
                f"{path}: row {r['row']} {r['dataset']} {r['method']} has no command / "
                "first_acc / first_ratio (written by an older fedbench plots frontier?)"
            )
    return out


def run_command(argv: list[str]) -> int:
    """Run a `fedbench ...` command line with this Python (exit status)."""
    if argv and argv[0] == "fedbench":
        argv = [sys.executable, "-m", "fedbench", *argv[1:]]
    return subprocess.run(argv, check=False).returncode


def _with_out(command: str, out: Path) -> list[str]:
    words = shlex.split(command)
    if "--out" not in words:
        raise ValueError(f"command has no --out: {command}")
    words[words.index("--out") + 1] = str(out)
    return words


def check_rows(
    rows: Sequence[Mapping[str, Any]],
    out: str | Path,
    runner: Runner | None = None,
    acc_tol: float = 0.01,
    ratio_tol: float = 0.02,
) -> list[dict[str, Any]]:
    """Run each distinct row command into `out`/<n> and compare with the row's first seed
    (`runner`: run_command, looked up at call time)."""
    runner = runner or run_command
    results: list[dict[str, Any]] = []
    done: dict[str, dict[str, Any]] = {}
    for r in rows:
        cmd = r["command"]
        if cmd not in done:
            folder = Path(out) / str(len(done))
            rc = runner(_with_out(cmd, folder))
            summary = folder / SUMMARY
            got: dict[str, Any] = {"rc": rc, "folder": str(folder)}
            if rc == 0 and summary.is_file():
                s = json.loads(summary.read_text())
                got["acc"] = float(s["final_acc"])
                got["ratio"] = float(s["compression_ratio"])
            done[cmd] = got
        got = done[cmd]
        want_acc, want_ratio = float(r["first_acc"]), float(r["first_ratio"])
        res = {
            "row": r["row"],
            "dataset": r["dataset"],
            "method": r["method"],
            "knobs": r["knobs"],
            "command": cmd,
            "want_acc": want_acc,
            "want_ratio": want_ratio,
            **got,
        }
        if "acc" in got:
            res["acc_diff"] = got["acc"] - want_acc
            res["ratio_rel"] = got["ratio"] / want_ratio - 1.0
            res["ok"] = abs(res["acc_diff"]) <= acc_tol and abs(res["ratio_rel"]) <= ratio_tol
        else:
            res["ok"] = False
        results.append(res)
    return results


def write_report(results: Sequence[Mapping[str, Any]], path: str | Path) -> None:
    """A Markdown table of the checks."""
    lines = [
        "# Headline commands reproduced (first seed)",
        "",
        "| row | dataset | method | knobs | acc row / run | ratio row / run | ok |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        run = (
            f"{r['acc']:.4f}" if "acc" in r else f"failed (exit {r['rc']})",
            f"{r['ratio']:.1f}x ({100 * r['ratio_rel']:+.2f} %)" if "ratio" in r else "",
        )
        lines.append(
            f"| {r['row']} | {r['dataset']} | {r['method']} | {r['knobs']} "
            f"| {r['want_acc']:.4f} / {run[0]} | {r['want_ratio']:.1f}x / {run[1]} "
            f"| {'yes' if r['ok'] else 'NO'} |"
        )
    lines += ["", "Commands:", ""] + [f"- `{r['command']}`" for r in results]
    Path(path).write_text("\n".join(lines) + "\n")
