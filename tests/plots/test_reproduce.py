"""`fedbench plots reproduce`: a headline row's command against its first seed."""

from __future__ import annotations

import csv
import json
import shlex
from pathlib import Path

import pytest

from fedbench.cli import main
from fedbench.plots import reproduce
from fedbench.plots.frontier import HEADLINE_COLUMNS

CMD = "fedbench fl --config pneumonia_cpu --out runs/repro --set seed=0 --set method.sparsity=0.999"


def _row(kind: str = "best", command: str = CMD, acc: float = 0.80, ratio: float = 400.0):
    return {
        "row": kind,
        "dataset": "pneumoniamnist",
        "method": "unscaled",
        "knobs": "sparsity0.999",
        "command": command,
        "first_seed": "0",
        "first_acc": str(acc),
        "first_ratio": str(ratio),
    }


class FakeRunner:
    """Writes the summary a run would, with the given accuracy and ratio; counts calls."""

    def __init__(self, acc: float, ratio: float, rc: int = 0) -> None:
        self.acc, self.ratio, self.rc, self.calls = acc, ratio, rc, []

    def __call__(self, argv: list[str]) -> int:
        self.calls.append(argv)
        out = Path(argv[argv.index("--out") + 1])
        if self.rc == 0:
            out.mkdir(parents=True)
            summary = {"final_acc": self.acc, "compression_ratio": self.ratio}
            (out / "summary.json").write_text(json.dumps(summary))
        return self.rc


@pytest.mark.parametrize(
    ("acc", "ratio", "ok"),
    [
        (0.80, 400.0, True),
        (0.809, 407.9, True),  # inside 1 point and 2 %
        (0.789, 400.0, False),  # 1.1 points off
        (0.80, 409.0, False),  # 2.25 % off
    ],
)
def test_rows_are_checked_against_the_first_seed(tmp_path, acc, ratio, ok):
    run = FakeRunner(acc, ratio)
    (res,) = reproduce.check_rows([_row()], tmp_path / "repro", runner=run)
    assert res["ok"] is ok
    assert res["acc_diff"] == pytest.approx(acc - 0.80)
    assert res["ratio_rel"] == pytest.approx(ratio / 400.0 - 1)
    # the command ran as written, only its --out redirected
    words = shlex.split(CMD)
    words[words.index("--out") + 1] = str(tmp_path / "repro" / "0")
    assert run.calls == [words]


def test_a_command_shared_by_rows_runs_once_and_a_failed_run_is_not_ok(tmp_path):
    run = FakeRunner(0.80, 400.0)
    res = reproduce.check_rows([_row("best"), _row("best_nnc")], tmp_path, runner=run)
    assert len(run.calls) == 1 and [r["ok"] for r in res] == [True, True]
    failed = reproduce.check_rows([_row()], tmp_path / "f", runner=FakeRunner(0, 0, rc=3))
    assert failed[0]["ok"] is False and failed[0]["rc"] == 3
    reproduce.write_report(res + failed, tmp_path / "r.md")
    text = (tmp_path / "r.md").read_text()
    assert "| yes |" in text and "| NO |" in text and "failed (exit 3)" in text


def _csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=HEADLINE_COLUMNS, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)


def test_read_headline_selects_rows_and_refuses_an_old_table(tmp_path):
    _csv(tmp_path / "h.csv", [_row("method"), _row("best")])
    assert [r["row"] for r in reproduce.read_headline(tmp_path / "h.csv", ["best"])] == ["best"]
    _csv(tmp_path / "old.csv", [{**_row(), "first_acc": ""}])
    with pytest.raises(ValueError, match="first_acc"):
        reproduce.read_headline(tmp_path / "old.csv")


def test_cli_exit_status_follows_the_checks(tmp_path, monkeypatch, capsys):
    _csv(tmp_path / "h.csv", [_row()])
    monkeypatch.setattr(reproduce, "run_command", FakeRunner(0.70, 400.0))
    args = ["plots", "reproduce", "--csv", str(tmp_path / "h.csv"), "--out", str(tmp_path / "o")]
    assert main(args) == 1
    assert "BAD best" in capsys.readouterr().out
    monkeypatch.setattr(reproduce, "run_command", FakeRunner(0.80, 400.0))
    assert main([*args[:-1], str(tmp_path / "o2")]) == 0
    assert (tmp_path / "o2" / "reproduce.md").is_file()
    assert main([*args[:3], str(tmp_path / "h.csv"), "--rows", "nothing", "--out", "x"]) == 2
