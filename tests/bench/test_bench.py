"""Fast tests of the codec benchmark: workloads, peers and the `codec bench` command."""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from fedbench.bench import codec_bench, peers, workloads
from fedbench.bench.cli import main as bench_main

HAVE_CODEC = all(
    importlib.util.find_spec(f"fedbench.codec.{m}") is not None for m in ("cabac", "config")
)
CIFAR_TAR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


# ----------------------------------------------------------------------------- workloads


def test_resnet18_param_count_and_a_shapes():
    assert workloads.RESNET18_NUM_PARAMS == 11_678_912
    assert len(workloads.RESNET18_WEIGHT_SHAPES) == 21
    a = workloads.gaussian_weights()
    assert [(k, v.shape) for k, v in a.items()] == list(workloads.RESNET18_WEIGHT_SHAPES)
    assert workloads.num_params(a) == 11_678_912
    assert all(v.dtype == np.float32 and v.flags.c_contiguous for v in a.values())
    assert abs(float(a["fc.weight"].std()) - 0.02) < 2e-4


def test_resnet18_shapes_match_torchvision():
    tv = pytest.importorskip("torchvision")
    model = tv.models.resnet18()
    shapes = [
        (k, tuple(v.shape))
        for k, v in model.state_dict().items()
        if k.endswith("weight") and v.ndim > 1
    ]
    assert shapes == [(k, tuple(s)) for k, s in workloads.RESNET18_WEIGHT_SHAPES]


def test_workloads_are_seeded_and_scaled_slices():
    a1 = workloads.gaussian_weights(scale=0.05)
    a2 = workloads.gaussian_weights(scale=0.05)
    other = workloads.gaussian_weights(scale=0.05, seed=1)
    assert all(np.array_equal(a1[k], a2[k]) for k in a1)
    assert not np.array_equal(a1["conv1.weight"], other["conv1.weight"])
    big = workloads.gaussian_weights(scale=0.2)
    for k, v in a1.items():
        assert v.shape[1:] == big[k].shape[1:]
        assert v.shape[0] == max(1, math.ceil(big[k].shape[0] / 0.2 * 0.05 - 1e-9))
        np.testing.assert_array_equal(v, big[k][: v.shape[0]])
    b = workloads.sparse_update(0.99, scale=0.05)
    assert all(
        np.array_equal(b[k], v) for k, v in workloads.sparse_update(0.99, scale=0.05).items()
    )


@pytest.mark.parametrize(("name", "zero_fraction"), [("B90", 0.90), ("B99", 0.99)])
def test_sparse_update_density(name, zero_fraction):
    b = workloads.load_workload(name, scale=0.1)
    n = workloads.num_params(b)
    zeros = sum(int(np.count_nonzero(v == 0)) for v in b.values())
    # Bernoulli masking: within 5 standard deviations of the requested fraction.
    sd = math.sqrt(zero_fraction * (1 - zero_fraction) / n)
    assert abs(zeros / n - zero_fraction) < 5 * sd
    nz = np.concatenate([v[v != 0] for v in b.values()])
    assert abs(float(nz.std()) - 1e-3) < 5e-5


def test_scale_shrinks_every_tensor_proportionally():
    a = workloads.gaussian_weights(scale=0.01)
    assert len(a) == 21
    assert 0.009 < workloads.num_params(a) / workloads.RESNET18_NUM_PARAMS < 0.012


@pytest.mark.parametrize("scale", [0.0, -0.5, 1.5, float("nan")])
def test_bad_scale_is_rejected(scale):
    with pytest.raises(workloads.WorkloadError, match="scale"):
        workloads.gaussian_weights(scale=scale)


def test_unknown_workload_is_rejected():
    with pytest.raises(workloads.WorkloadError, match="unknown workload"):
        workloads.load_workload("D")


def test_workload_c_small_is_generated_and_cached(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("PIL")
    if not CIFAR_TAR.is_file():
        pytest.skip("no offline CIFAR-10 archive")
    path = tmp_path / "c.npz"
    c = workloads.workload_c(path, size="small")
    assert path.is_file()
    assert c["conv1.weight"].shape == (16, 3, 3, 3)
    assert c["fc.weight"].shape == (10, 64)
    assert workloads.num_params(c) == 272_474  # ResNet-20 (option-B shortcuts) parameters
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in c.values())
    # A second load reads the cached file (no regeneration) and scaling slices it.
    mtime = path.stat().st_mtime_ns
    half = workloads.workload_c(path, size="small", scale=0.5, regenerate=False)
    assert path.stat().st_mtime_ns == mtime
    assert half["conv1.weight"].shape == (8, 3, 3, 3)
    np.testing.assert_array_equal(half["fc.weight"], c["fc.weight"][:5])


def test_missing_workload_c_without_regeneration_raises(tmp_path):
    with pytest.raises(workloads.WorkloadError, match="missing"):
        workloads.workload_c(tmp_path / "absent.npz", regenerate=False)


# ----------------------------------------------------------------------------- peers


def test_smallest_int_dtype():
    assert peers.smallest_int_dtype({"a": np.array([-128, 127])}) == np.int8
    assert peers.smallest_int_dtype({"a": np.array([0]), "b": np.array([128])}) == np.int16
    assert peers.smallest_int_dtype({"a": np.array([-40000])}) == np.int32


def test_general_purpose_peers_round_trip_levels():
    tensors = workloads.sparse_update(0.9, scale=0.01)
    ref = peers.make_reference(tensors, peers.Settings())
    made = peers.make_peers(list(peers.GP_PEERS), tensors, ref, peers.Settings())
    available = [p for p in made if p.unavailable is None]
    assert {p.name.split("-")[0] for p in available} >= {"zlib", "lzma", "bz2"}
    for p in available:
        data = p.encode()
        assert isinstance(data, bytes)
        assert p.verify(p.decode(data)), p.name
    # int32 and smallest-dtype rows for each coder; the levels here fit in int8.
    assert any(p.input_kind == "levels:int8" for p in available)
    assert any(p.input_kind == "levels:int32" for p in available)


def test_gp_verify_detects_corruption():
    tensors = workloads.gaussian_weights(scale=0.01)
    ref = peers.make_reference(tensors, peers.Settings())
    zl = next(p for p in peers.make_peers(["zlib"], tensors, ref, peers.Settings()))
    decoded = zl.decode(zl.encode())
    decoded["fc.weight"] = decoded["fc.weight"].copy()
    decoded["fc.weight"].flat[0] += 1
    assert not zl.verify(decoded)


def test_nncodec_peer_skipped_cleanly_when_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncodec", None)  # makes `import nncodec` fail
    tensors = workloads.gaussian_weights(scale=0.01)
    ref = peers.make_reference(tensors, peers.Settings())
    (p,) = peers.make_peers(["nncodec"], tensors, ref, peers.Settings())
    assert p.unavailable and "nncodec" in p.unavailable
    rows, checks = codec_bench.run_benchmark(
        codec_bench.BenchOptions(workloads=["A"], peers=["nncodec", "zlib"], repeats=0, scale=0.01)
    )
    skipped = [r for r in rows if r["codec"] == "nncodec"]
    assert len(skipped) == 1 and skipped[0]["note"].startswith("skipped")
    assert skipped[0]["bytes"] is None
    assert all(r["verified"] for r in rows if r["codec"] != "nncodec")
    assert checks["A"]["nncodec_identity"]["identical"] is None


def test_unknown_peer_is_rejected():
    with pytest.raises(ValueError, match="unknown peer"):
        peers.make_peers(["gzip"], {}, None, peers.Settings())  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the command


def _read_outputs(stem: Path) -> tuple[list[dict], dict]:
    with open(stem.with_suffix(".csv"), newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames or ()) == codec_bench.COLUMNS
        csv_rows = list(reader)
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert tuple(doc["columns"]) == codec_bench.COLUMNS
    assert len(doc["rows"]) == len(csv_rows)
    return csv_rows, doc


def test_bench_command_writes_csv_and_json(tmp_path, capsys):
    stem = tmp_path / "out" / "codec_bench"
    peer_list = "nnc,nnc-1t,sparse,zlib,lzma,bz2,zstd"
    rc = bench_main(
        [
            "--scale",
            "0.01",
            "--workloads",
            "A,B90,B99",
            "--repeats",
            "1",
            "--peers",
            peer_list,
            "--out",
            str(stem),
            "--quiet",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "codec" in out and "wrote" in out
    csv_rows, doc = _read_outputs(stem)
    assert doc["meta"]["settings"]["qp"] == -32
    assert doc["meta"]["command"].startswith("fedbench codec bench")
    rows = doc["rows"]
    assert {r["workload"] for r in rows} == {"A", "B90", "B99"}
    done = [r for r in rows if not str(r["note"] or "").startswith("skipped")]
    assert done, "every peer was skipped"
    for r in done:
        assert r["verified"] is True, r
        assert r["deterministic"] is True, r
        assert r["bytes"] > 0 and r["ratio"] == pytest.approx(r["float32_bytes"] / r["bytes"])
        assert r["encode_s"] > 0 and r["decode_s"] > 0
        assert r["encode_cpu_s"] >= 0 and r["decode_cpu_s"] >= 0
        assert r["encode_params_per_s"] == pytest.approx(r["num_params"] / r["encode_s"])
        assert r["h0_bytes"] is not None and r["h0_bytes"] > 0
        assert r["repeats"] == 1
    codecs = {r["codec"] for r in done}
    if HAVE_CODEC:
        assert {"nnc", "nnc-1t", "sparse"} <= codecs
        assert all(r["jit_s"] is not None for r in done if r["codec"] in {"nnc", "sparse"})
        one = [r for r in done if r["codec"] == "nnc-1t"]
        assert all(r["threads"] == 1 for r in one)
    # The CSV holds the same table.
    assert [r["codec"] for r in csv_rows] == [r["codec"] for r in rows]


@pytest.mark.skipif(not HAVE_CODEC, reason="fedbench.codec.cabac/config not present yet")
def test_bench_nnc_matches_nncodec_bytes(tmp_path):
    pytest.importorskip("nncodec")
    stem = tmp_path / "cb"
    rc = bench_main(
        [
            "--scale",
            "0.01",
            "--workloads",
            "B90",
            "--repeats",
            "0",
            "--peers",
            "nnc,nncodec",
            "--out",
            str(stem),
            "--quiet",
        ]
    )
    _, doc = _read_outputs(stem)
    ident = doc["checks"]["B90"]["nncodec_identity"]
    assert ident["identical"] is True, ident
    assert ident["nncodec_header_bytes"] > 0
    by = {r["codec"]: r for r in doc["rows"]}
    assert by["nncodec"]["verified"] is True
    assert by["nnc"]["identical_to_nncodec"] is True
    assert by["nnc"]["encode_speedup_vs_nncodec"] is not None
    assert by["nnc"]["decode_cpu_speedup_vs_nncodec"] is not None
    assert rc == 0


def test_bench_command_rejects_bad_arguments(capsys):
    assert bench_main(["--workloads", "A,Z", "--quiet"]) == 2
    assert bench_main(["--peers", "gzip", "--quiet"]) == 2
    assert bench_main(["--scale", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown workload" in err and "unknown peer" in err and "--scale" in err


def test_fedbench_codec_bench_subcommand(tmp_path):
    from fedbench.cli import build_parser, main

    try:
        build_parser().parse_args(["codec", "bench", "--help"])
    except SystemExit as exc:  # argparse exits after printing the help
        if exc.code != 0:
            pytest.skip("`fedbench codec bench` is not wired in yet")
    stem = tmp_path / "cb"
    rc = main(
        [
            "codec",
            "bench",
            "--scale",
            "0.01",
            "--workloads",
            "B99",
            "--peers",
            "bz2",
            "--repeats",
            "1",
            "--out",
            str(stem) + ".csv",
            "--quiet",
        ]
    )
    assert rc == 0
    _, doc = _read_outputs(stem)
    assert [r["codec"] for r in doc["rows"]] == ["bz2-9/int32", "bz2-9/min:int8"]
    assert all(r["verified"] for r in doc["rows"])
