"""The frontier figure, headline table and equal-bytes comparison, from synthetic summaries
(numbers follow from the inputs; never real runs)."""

from __future__ import annotations

import csv
import json
import math
import shlex
from pathlib import Path

import numpy as np
import pytest

from fedbench.fl.config import config_to_dict, load_config
from fedbench.plots import frontier
from fedbench.plots.compare import (
    bytes_to_reach,
    interpolate_at_bytes,
    matched_bytes,
    paired_bytes_to_reach,
    paired_difference,
    paired_equal_bytes,
)

# ------------------------------------------------------------------ equal bytes


def test_interpolation_is_linear_in_log_bytes():
    assert interpolate_at_bytes([(10, 0.0), (1000, 1.0)], 100) == pytest.approx(0.5)
    assert math.isnan(interpolate_at_bytes([(10, 0.0), (1000, 1.0)], 5000))
    assert matched_bytes([[(1e3, 0), (1e5, 1)], [(1e2, 0), (1e4, 1)]]) == pytest.approx(10**3.5)


def test_paired_equal_bytes_by_hand():
    a = {
        0: [(1e3, 0.8), (1e5, 0.9)],  # 0.85 at 1e4
        1: [(1e3, 0.6), (1e5, 1.0)],  # 0.80
        2: [(1e5, 0.9), (1e3, 0.9)],  # 0.90 (order of points does not matter)
        3: [(1e3, 0.5), (1e5, 0.5)],  # no seed 3 of B: not paired
    }
    b = {
        0: [(1e3, 0.7), (1e5, 0.8)],  # 0.75 -> diff 0.1
        1: [(1e3, 0.7), (1e5, 0.7)],  # 0.70 -> diff 0.1
        2: [(1e3, 0.4), (1e5, 0.6)],  # 0.50 -> diff 0.4
    }
    r = paired_equal_bytes(a, b)
    assert r["bytes"] == pytest.approx(1e4)
    assert r["n"] == 3
    assert r["diffs"] == pytest.approx({0: 0.1, 1: 0.1, 2: 0.4})
    assert r["mean"] == pytest.approx(0.2)
    sd = math.sqrt(0.03)
    assert r["sd"] == pytest.approx(sd)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 df)
    assert (r["lo"], r["hi"]) == pytest.approx((0.2 - half, 0.2 + half))
    # at a given byte count; a seed whose curve does not reach it is left out
    r = paired_equal_bytes(a, {**b, 1: [(1e3, 0.7), (2e3, 0.7)]}, nbytes=1e3)
    assert r["n"] == 3 and r["mean"] == pytest.approx((0.1 - 0.1 + 0.5) / 3)
    r = paired_equal_bytes(a, {**b, 1: [(1e3, 0.7), (2e3, 0.7)]}, nbytes=1e5)
    assert r["n"] == 2 and r["diffs"] == pytest.approx({0: 0.1, 2: 0.3})


def test_paired_equal_bytes_matches_one_point_curves_per_seed():
    # one operating point of A per seed, its bytes varying by seed: no byte range is common
    # to every seed, but each seed's A point lies inside that seed's B curve
    a = {0: [(2e3, 0.8)], 1: [(4e3, 0.7)], 2: [(8e3, 0.9)], 3: [(5e5, 0.9)]}
    b = {s: [(1e3, 0.5), (1e4, 0.6)] for s in range(4)}
    r = paired_equal_bytes(a, b)
    # seed 3's A point is outside its B curve: left out
    assert r["per_seed_bytes"] == pytest.approx({0: 2e3, 1: 4e3, 2: 8e3})
    assert r["bytes"] == pytest.approx(4e3)  # geometric mean
    b_at = {s: 0.5 + 0.1 * math.log10(x / 1e3) for s, x in ((0, 2e3), (1, 4e3), (2, 8e3))}
    assert r["diffs"] == pytest.approx({0: 0.8 - b_at[0], 1: 0.7 - b_at[1], 2: 0.9 - b_at[2]})
    assert r["n"] == 3
    # a common range keeps one common byte count
    assert paired_equal_bytes(b, b)["per_seed_bytes"] is None


def test_paired_equal_bytes_refuses_curves_without_a_common_range():
    with pytest.raises(ValueError, match="no byte range"):
        paired_equal_bytes({0: [(1, 0.5), (10, 0.6)]}, {0: [(100, 0.5), (1000, 0.6)]})
    with pytest.raises(ValueError, match="no seed"):
        paired_equal_bytes({0: [(1, 0.5)]}, {1: [(1, 0.5)]})


def test_bytes_to_reach_by_hand():
    curve = [(1e5, 0.9), (1e3, 0.5)]  # order does not matter; linear in log bytes
    assert bytes_to_reach(curve, 0.7) == pytest.approx(1e4)
    assert bytes_to_reach(curve, 0.4) == pytest.approx(1e3)  # first point: an upper bound
    assert math.isnan(bytes_to_reach(curve, 0.95))
    # a dip: the first crossing counts
    assert bytes_to_reach([(1e2, 0.8), (1e4, 0.6), (1e6, 0.9)], 0.75) == pytest.approx(1e2)
    assert bytes_to_reach([(1e2, 0.5), (1e4, 0.6), (1e6, 0.9)], 0.75) == pytest.approx(1e5)


def test_paired_bytes_to_reach_by_hand():
    a = {0: [(1e3, 0.5), (1e5, 0.9)], 1: [(1e3, 0.5), (1e5, 0.7)], 2: [(1e3, 0.6), (1e5, 0.8)]}
    b = {0: [(1e4, 0.5), (1e6, 0.9)], 1: [(1e4, 0.5), (1e6, 0.7)], 2: [(1e4, 0.7), (1e6, 0.7)]}
    r = paired_bytes_to_reach(a, b)
    # the smallest maximum over both methods and seeds: 0.7; A reaches it at 1e4 (seed 0),
    # 1e5 (seed 1), 10^4 (seed 2); B at 1e5, 1e6, 1e4 (its first point)
    assert r["target"] == pytest.approx(0.7)
    assert r["ratios"] == pytest.approx({0: 0.1, 1: 0.1, 2: 1.0})
    logs = [math.log(0.1), math.log(0.1), 0.0]
    mean = sum(logs) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 df)
    assert r["ratio"] == pytest.approx(math.exp(mean))
    assert (r["lo"], r["hi"]) == pytest.approx((math.exp(mean - half), math.exp(mean + half)))
    assert r["bytes_a"] == pytest.approx((1e4 + 1e5 + 1e4) / 3)
    with pytest.raises(ValueError, match="no seed"):
        paired_bytes_to_reach({0: [(1, 0.5)]}, {1: [(1, 0.5)]})


# ------------------------------------------------------------------ frontier

# (label, method, variant, sets, ratio, accuracies of seeds 0..2)
FP32_BYTES = 4.0e8
POINTS = [
    ("fp32", "fp32", "base", [], 1.0, [0.88, 0.90, 0.86]),
    ("unscaled", "unscaled", "sparsity0.9", ["method.sparsity=0.9"], 50, [0.875, 0.88, 0.885]),
    ("unscaled", "unscaled", "sparsity0.99", ["method.sparsity=0.99"], 200, [0.87, 0.875, 0.88]),
    ("unscaled", "unscaled", "sparsity0.999", ["method.sparsity=0.999"], 500, [0.84, 0.85, 0.86]),
    ("adf", "adf", "sparsity0.99", ["method.sparsity=0.99"], 100, [0.88, 0.89, 0.90]),
    (
        "adf-sparse",
        "adf",
        "sparsity0.99",
        ["method.sparsity=0.99", "method.codec_mode=sparse"],
        300,
        [0.871, 0.872, 0.873],
    ),
    ("stc", "stc", "sparsity0.999", ["method.sparsity=0.999"], 1000, [0.80, 0.81, 0.82]),
]


def _write(root: Path) -> list[Path]:
    dirs = []
    for label, method, variant, sets, ratio, accs in POINTS:
        for seed, acc in enumerate(accs):
            cfg = load_config(
                "pneumonia_cpu",
                [f"method.name={method}", "setting.direction=bi", f"seed={seed}", *sets],
            )
            d = root / "pneumoniamnist" / "resnet20" / "bi" / label / variant / f"seed{seed}"
            d.mkdir(parents=True)
            summary = {
                "final_acc": acc,
                # the clients' model 1 point below the server's (only reported, not ruled on)
                "final_acc_clients": acc - 0.01,
                "total_bytes": FP32_BYTES / ratio,
                "compression_ratio": ratio,
                "mean_update_sparsity": cfg.method.sparsity if method != "fp32" else 0.0,
                # 3/4 weights, 1/4 headers, split over the two directions
                "bytes_by_class": {
                    "up": {
                        "weight": 0.5 * FP32_BYTES / ratio,
                        "overhead": 0.25 * FP32_BYTES / ratio,
                    },
                    "down": {"weight": 0.25 * FP32_BYTES / ratio},
                },
                "config": config_to_dict(cfg),
            }
            (d / "summary.json").write_text(json.dumps(summary))
            dirs.append(d)
    return dirs


def test_operating_points_average_the_seeds(tmp_path):
    pts = frontier.operating_points(frontier.load_points(_write(tmp_path)))
    by = {(p["label"], p["variant"]): p for p in pts}
    assert len(pts) == len(POINTS)
    fp = by["fp32", "base"]
    assert fp["acc_mean"] == pytest.approx(0.88) and fp["acc_sd"] == pytest.approx(0.02)
    assert fp["clients_acc_mean"] == pytest.approx(0.87)
    assert fp["clients_acc_sd"] == pytest.approx(0.02)
    assert by["adf-sparse", "sparsity0.99"]["method"] == "adf"
    assert by["adf-sparse", "sparsity0.99"]["coder"] == "sparse"
    assert by["unscaled", "sparsity0.9"]["coder"] == "nnc"
    assert by["stc", "sparsity0.999"]["coder"] == "stc"
    assert by["unscaled", "sparsity0.99"]["total_bytes_mean"] == pytest.approx(FP32_BYTES / 200)


def test_pareto_front_by_hand():
    pts = [
        {"total_bytes_mean": 10, "acc_mean": 0.5},
        {"total_bytes_mean": 20, "acc_mean": 0.4},  # beaten by the first
        {"total_bytes_mean": 30, "acc_mean": 0.7},
        {"total_bytes_mean": 5, "acc_mean": 0.3},
        {"total_bytes_mean": 30, "acc_mean": 0.6},  # same bytes, lower accuracy
    ]
    assert frontier.pareto_front(pts) == [3, 0, 2]


def test_headline_rows_follow_the_one_point_rule(tmp_path):
    pts = frontier.operating_points(frontier.load_points(_write(tmp_path)))
    rows = frontier.headline_rows(pts, tolerance=0.01)
    got = {(r["row"], r["method"]): (r["knobs"], r["ratio_mean"]) for r in rows}
    # fp32 mean 0.88: 0.87 and above qualify; unscaled s0.999 (0.85) and stc (0.81) do not
    assert got == {
        ("method", "fp32"): ("base", 1.0),
        ("method", "adf"): ("adf-sparse:sparsity0.99", 300),
        ("method", "unscaled"): ("sparsity0.99", 200),
        ("best", "adf"): ("adf-sparse:sparsity0.99", 300),
        ("best_nnc", "unscaled"): ("sparsity0.99", 200),
    }
    assert all(r["paper_ratio"] == 377 and r["seeds"] == 3 for r in rows)
    assert all(r["fp32_acc_mean"] == pytest.approx(0.88) for r in rows)
    # nominal and measured sparsity beside each other; none for fp32, which has no knob
    fp32 = next(r for r in rows if r["method"] == "fp32")
    assert math.isnan(fp32["sparsity_nominal"])
    best = next(r for r in rows if r["row"] == "best")
    assert best["sparsity_nominal"] == pytest.approx(best["sparsity_measured"]) == 0.99


def test_headline_command_reproduces_the_first_seed_config(tmp_path):
    pts = frontier.operating_points(frontier.load_points(_write(tmp_path)))
    row = next(r for r in frontier.headline_rows(pts) if r["row"] == "best")
    words = shlex.split(row["command"])
    assert words[:3] == ["fedbench", "fl", "--config"] and "seed=0" in words
    # what `fedbench plots reproduce` compares the command's run with: seed 0's own numbers
    assert (row["first_seed"], row["first_acc"], row["first_ratio"]) == (0, 0.871, 300)
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    cfg = load_config(words[3], sets)
    want = load_config(
        "pneumonia_cpu",
        ["method.name=adf", "setting.direction=bi", "seed=0", "method.sparsity=0.99"]
        + ["method.codec_mode=sparse"],
    )
    assert config_to_dict(cfg) == config_to_dict(want)


def test_equal_bytes_notes_pair_adf_and_unscaled_by_seed(tmp_path):
    raw = frontier.load_points(_write(tmp_path))
    (note,) = frontier.equal_bytes_notes(raw)
    # adf per seed: (4e8/300, a_s), (4e8/100, b_s); unscaled: 50, 200, 500 -> common range
    # [4e8/300, 4e8/100], matched at 4e8/sqrt(3e4): the middle of both adf points in log
    assert note["bytes"] == pytest.approx(4e8 / math.sqrt(3e4))
    assert note["n"] == 3
    assert note["dataset"] == "pneumoniamnist" and note["a"] == "adf"
    for s, d in note["diffs"].items():
        adf = (POINTS[4][5][s] + POINTS[5][5][s]) / 2
        # unscaled between its 200x and 100x... its points at 50x, 200x: interpolate in log
        x = math.log(note["bytes"])
        x0, x1 = math.log(4e8 / 200), math.log(4e8 / 50)
        y0, y1 = POINTS[2][5][s], POINTS[1][5][s]
        uns = y0 + (y1 - y0) * (x - x0) / (x1 - x0)
        assert d == pytest.approx(adf - uns)


def test_frontier_command_writes_figures_and_tables(tmp_path):
    from fedbench.cli import main

    _write(tmp_path / "runs")
    out = tmp_path / "fig"
    rc = main(
        ["plots", "frontier", "--runs", str(tmp_path / "runs"), "--out", str(out)]
        + ["--csv", str(out / "headline.csv"), "--md", str(out / "headline.md")]
    )
    assert rc == 0
    assert (out / "frontier_pneumoniamnist.png").stat().st_size > 0
    assert (out / "frontier_pneumoniamnist.pdf").stat().st_size > 0
    with open(out / "headline.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == frontier.HEADLINE_COLUMNS
    md = (out / "headline.md").read_text()
    assert "377x" in md and "equal-bytes" in md and "n = 3 seeds" in md
    # claim (3): bytes each needs for the accuracy both reach on every seed: the smallest
    # per-seed maximum, unscaled's seed 0 (0.875 at 50x)
    from fedbench.plots.runs import find_run_dirs

    (reach,) = frontier.bytes_to_reach_notes(
        frontier.load_points(find_run_dirs([tmp_path / "runs"]))
    )
    assert reach["target"] == pytest.approx(0.875) and reach["n"] == 3
    # unscaled reaches it at 50x (seed 0), 200x (seed 1), 3/4 of the way from 500x to 200x
    # in log bytes (seed 2: 0.86 -> 0.88)
    seed2 = FP32_BYTES / 500 * 2.5**0.75
    assert reach["bytes_b"] == pytest.approx((FP32_BYTES / 50 + FP32_BYTES / 200 + seed2) / 3)
    assert "bytes to reach the same accuracy" in md and "to reach 0.8750, adf needs" in md
    # fp32 has no sparsity knob: an empty cell; the sparsifying rows show nominal/measured
    # what limits the best row: 300x is 1.3x short of 377x, its bytes 75 % weights
    assert "300x is 1.3x short of the paper's 377x; its bytes: weight 75 %, overhead 25 %" in md
    assert "| 377x |  |" in md and "| 0.99/0.99 |" in md and "nan" not in md
    # the clients' model beside the server's (fp32: 0.87 +- 0.02, one point below)
    assert "| 0.8800 +- 0.0200 | 0.8700 +- 0.0200 |" in md
    assert float(rows[0]["clients_acc_mean"]) == pytest.approx(float(rows[0]["acc_mean"]) - 0.01)


def test_equal_bytes_notes_say_when_ranges_do_not_meet(tmp_path):
    """Both methods ran but their byte ranges are disjoint: a note says so (no silent gap)."""
    base = {"dataset": "d", "model": "m", "setting": "s", "seed": 0}
    raw = [
        {**base, "method": m, "label": m, "variant": v, "total_bytes": b, "acc": a}
        for m, v, b, a in [
            ("adf", "s1", 1e3, 0.5),
            ("adf", "s2", 2e3, 0.6),
            ("unscaled", "s1", 1e5, 0.5),
            ("unscaled", "s2", 2e5, 0.6),
        ]
    ]
    (note,) = frontier.equal_bytes_notes(raw)
    assert "no byte range" in note["error"]
    md = tmp_path / "h.md"
    frontier.write_headline([], [note], tmp_path / "h.csv", md)
    assert "d m s: adf - unscaled: not compared (the curves share no byte range" in md.read_text()


def test_paired_notes_leave_out_seeds_missing_a_point():
    """Extra seeds of one point per method (5 seeds where the sweep has 3) must not pair a
    one-point curve against another seed's sweep: only seeds with every point are paired."""
    base = {"dataset": "d", "model": "m", "setting": "s"}

    def pt(method, label, variant, seed, nbytes, acc):
        return {**base, "method": method, "label": label, "variant": variant, "seed": seed,
                "total_bytes": nbytes, "acc": acc}  # fmt: skip

    raw = []
    for s in (0, 1, 2):
        raw += [pt("adf", "adf", "a", s, 1e3, 0.70 + s / 100),
                pt("adf", "adf", "b", s, 1e5, 0.90),
                pt("unscaled", "unscaled", "a", s, 1e3, 0.60),
                pt("unscaled", "unscaled", "b", s, 1e5, 0.80)]  # fmt: skip
    # one more point per method (another label) with seeds 0-4; seeds 3 and 4 ran only it,
    # far apart in bytes: paired, they would leave the curves no common byte range
    for s in (0, 1, 2, 3, 4):
        raw += [pt("adf", "adf-down", "d", s, 5e4, 0.85),
                pt("unscaled", "unscaled-down", "d", s, 2e3, 0.65)]  # fmt: skip
    (note,) = frontier.equal_bytes_notes(raw)
    assert "error" not in note
    assert note["n"] == 3 and sorted(note["diffs"]) == [0, 1, 2]
    assert note["bytes"] == pytest.approx(1e4)  # the middle of [1e3, 1e5] in log bytes
    t_adf, t_uns = math.log(10) / math.log(50), math.log(5) / math.log(50)
    for s, d in note["diffs"].items():
        adf = 0.70 + s / 100 + (0.85 - 0.70 - s / 100) * t_adf
        assert d == pytest.approx(adf - (0.65 + 0.15 * t_uns))
    (reach,) = frontier.bytes_to_reach_notes(raw)
    assert reach["n"] == 3 and sorted(reach["ratios"]) == [0, 1, 2]


def test_headline_rows_carry_the_paired_difference_to_fp32(tmp_path):
    """best (adf-sparse, 300x) minus fp32, seed by seed: -0.009, -0.028, +0.013."""
    raw = frontier.load_points(_write(tmp_path / "runs"))
    rows = frontier.headline_rows(frontier.operating_points(raw))
    best = next(r for r in rows if r["row"] == "best")
    d = [0.871 - 0.88, 0.872 - 0.90, 0.873 - 0.86]
    mean, sd = sum(d) / 3, float(np.std(d, ddof=1))
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 df)
    assert best["fp32_diff_n"] == 3
    assert best["fp32_diff_mean"] == pytest.approx(mean)
    assert (best["fp32_diff_lo"], best["fp32_diff_hi"]) == pytest.approx((mean - half, mean + half))
    # only the seeds both ran are paired
    assert paired_difference({0: 0.5, 1: 0.7, 2: 0.1}, {1: 0.6, 2: 0.2})["n"] == 2
    md = tmp_path / "h.md"
    frontier.write_headline(rows, [], tmp_path / "h.csv", md)
    assert f"against fp32 paired by seed {100 * mean:+.2f} points, 95 % CI" in md.read_text()


def test_headline_lists_every_operating_point(tmp_path):
    """The headline's last section: every point of the cell by ratio, with its paired
    difference to fp32 (fp32's own cell empty), so that a table of the whole frontier comes
    from the command."""
    raw = frontier.load_points(_write(tmp_path / "runs"))
    points = frontier.operating_points(raw)
    rows = frontier.point_rows(points)
    assert [r["ratio_mean"] for r in rows] == sorted(p[4] for p in POINTS)
    assert {r["row"] for r in rows} == {"point"}
    md = tmp_path / "h.md"
    frontier.write_headline([], [], tmp_path / "h.csv", md, points=rows)
    section = md.read_text().split("## All operating points")[1]
    lines = [ln for ln in section.splitlines() if ln.startswith("| pneumoniamnist")]
    assert len(lines) == len(POINTS)
    # fp32 first (1x), no paired cell; stc last (1000x): 0.80/0.81/0.82 - 0.88/0.90/0.86
    assert "| fp32 | base | fp32 | 3 | 0.8800 +- 0.0200 | 0.8700 +- 0.0200 |  |" in lines[0]
    d = [0.80 - 0.88, 0.81 - 0.90, 0.82 - 0.86]
    assert f"| {100 * sum(d) / 3:+.2f} [" in lines[-1] and "| 1000x |" in lines[-1]
