"""The tensor-dict API and the container: round trips, dtypes, settings, NNC bit-exactness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedbench.codec import (
    CodecConfig,
    SettingsError,
    api,
    container,
    decode,
    encode,
    encode_levels,
    step_size,
)

CONFORMANCE = Path(__file__).resolve().parents[2].parent / "shared" / "conformance"


def _model(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "conv.weight": rng.normal(0, 0.02, (8, 4, 3, 3)).astype(np.float32),
        "conv.bias": rng.normal(0, 0.05, 8).astype(np.float32),
        "fc.weight": rng.normal(0, 0.02, (10, 32)).astype(np.float64),
        "half.weight": rng.normal(0, 0.5, (6, 5)).astype(np.float16),
        "scalar": np.float32(0.75),
        "bn.num_batches_tracked": np.array(12345, dtype=np.int64),
        "mask": rng.random((5, 7)) < 0.3,
        "idx": rng.integers(-100, 100, (3, 9)).astype(np.int8),
        "u8": rng.integers(0, 256, 40).astype(np.uint8),
        "empty": np.zeros((0, 3), np.float32),
        "zeros": np.zeros((4, 6), np.float32),
    }


def _check_roundtrip(x: dict[str, np.ndarray], y: dict[str, np.ndarray], cfg: CodecConfig) -> None:
    assert list(y) == list(x)
    for name, a in x.items():
        a = np.asarray(a)
        b = y[name]
        assert b.dtype == a.dtype, name
        assert b.shape == a.shape, name
        if a.dtype.kind == "f":
            qp = cfg.qp if a.ndim >= 2 else cfg.nonweight_qp
            # The DQ trellis may pick the second-nearest level of a quantizer: error < 2 steps.
            tol = step_size(qp, cfg.qp_density) * (2.0 if cfg.dq and a.ndim >= 2 else 0.5)
            # float16 output adds its own rounding on top of the quantization error.
            tol += float(np.abs(a).max(initial=0.0)) * (1e-3 if a.dtype == np.float16 else 1e-6)
            err = np.abs(b.astype(np.float64) - a.astype(np.float64)).max(initial=0.0)
            assert err <= tol, (name, err, tol)
        else:
            assert np.array_equal(a, b), name


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
@pytest.mark.parametrize("dq", [False, True])
def test_roundtrip_mixed_model(mode: str, dq: bool) -> None:
    x = _model(np.random.default_rng(1))
    cfg = CodecConfig(mode=mode, dq=dq)
    _check_roundtrip(x, decode(encode(x, cfg)), cfg)


@pytest.mark.parametrize("scan_order", [1, 2, 3, 4])
@pytest.mark.parametrize("dq", [False, True])
def test_blocked_scans_with_entry_points(scan_order: int, dq: bool) -> None:
    rng = np.random.default_rng(scan_order)
    w = rng.normal(0, 0.02, (150, 27)).astype(np.float32)
    w[rng.random(150) < 0.3] = 0  # zero rows: row skipping is exercised too
    cfg = CodecConfig(mode="nnc", scan_order=scan_order, dq=dq, param_opt=True)
    data = encode({"w": w}, cfg)
    (entry,) = container.parse(data, max_elements=1 << 20)
    if scan_order == 1 and not dq:
        assert entry.entry_points, "several block rows must carry entry points"
    assert entry.row_skip == (not dq)  # the DQ + row skip + blocked scan quirk is avoided
    _check_roundtrip({"w": w}, decode(data), cfg)


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_reconstruction_is_exactly_dequantized_levels(mode: str) -> None:
    from fedbench.codec.quant import dequantize, quantize

    rng = np.random.default_rng(8)
    x = {
        "w": rng.normal(0, 0.02, (30, 40)).astype(np.float32),
        "b": rng.normal(0, 0.02, 30).astype(np.float32),
    }
    cfg = CodecConfig(mode=mode)
    y = decode(encode(x, cfg))
    assert np.array_equal(y["w"], dequantize(quantize(x["w"], cfg.qp), cfg.qp))
    assert np.array_equal(y["b"], dequantize(quantize(x["b"], cfg.nonweight_qp), cfg.nonweight_qp))


def test_header_records_settings() -> None:
    cfg = CodecConfig(mode="nnc", qp=-30, qp_density=3, nonweight_qp=-60, param_opt=True)
    x = {"w": np.ones((3, 4), np.float32) * 0.1, "b": np.ones(3, np.float32), "i": np.arange(5)}
    w, b, i = container.parse(encode(x, cfg), max_elements=100)
    assert (w.qp, w.qp_density, w.kind, w.param_opt) == (-30, 3, container.KIND_QUANTIZED, True)
    assert (b.qp, b.kind) == (-60, container.KIND_QUANTIZED)
    assert i.kind == container.KIND_LOSSLESS and i.dtype == "int64"


def test_qp_too_fine_is_coarsened_and_stored() -> None:
    x = {"big": np.array([[1e6, -2e6], [3.0, 4.0]], np.float32)}
    cfg = CodecConfig(mode="sparse", qp=-100)
    (e,) = container.parse(encode(x, cfg), max_elements=100)
    assert e.qp > -100
    y = decode(encode(x, cfg))
    assert np.abs(y["big"] - x["big"]).max() <= step_size(e.qp, 2) / 2


@pytest.mark.parametrize("mode", ["nnc", "sparse"])
def test_parallel_output_equals_serial(mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Force the thread pool even for these small tensors.
    monkeypatch.setattr(api, "_PARALLEL_MIN_ELEMENTS", 0)
    monkeypatch.setattr(api, "_PARALLEL_MIN_PER_ITEM", 0)
    rng = np.random.default_rng(5)
    x = {f"t{i}": rng.normal(0, 0.01, (64, 300)).astype(np.float32) for i in range(6)}
    x["t0"][rng.random(x["t0"].shape) < 0.99] = 0
    serial = encode(x, CodecConfig(mode=mode, num_threads=1, segment_elements=4096))
    parallel = encode(x, CodecConfig(mode=mode, num_threads=4, segment_elements=4096))
    assert serial == parallel
    a = decode(serial, num_threads=1)
    b = decode(serial, num_threads=4)
    assert all(np.array_equal(a[k], b[k]) for k in x)


def test_sparse_segments_roundtrip() -> None:
    rng = np.random.default_rng(6)
    w = rng.normal(0, 0.01, (100, 123)).astype(np.float32)
    w[rng.random(w.shape) < 0.9] = 0
    cfg = CodecConfig(mode="sparse", segment_elements=4096)
    data = encode({"w": w}, cfg)
    (e,) = container.parse(data, max_elements=1 << 20)
    assert len(e.segments) == 4 and e.segment_elements == 4096
    _check_roundtrip({"w": w}, decode(data), cfg)


def test_all_zero_sparse_tensor_has_no_payload() -> None:
    data = encode({"z": np.zeros((100, 100), np.float32)}, CodecConfig(mode="sparse"))
    (e,) = container.parse(data, max_elements=1 << 20)
    assert e.coder == container.CODER_EMPTY and e.payload_length == 0
    assert len(data) < 40


def test_torch_tensors_are_accepted() -> None:
    torch = pytest.importorskip("torch")
    t = {"w": torch.randn(4, 5) * 0.02, "n": torch.tensor(3)}
    y = decode(encode(t, CodecConfig(mode="sparse")))
    assert y["w"].dtype == np.float32 and y["n"].dtype == np.int64 and int(y["n"]) == 3


def test_import_does_not_pull_torch() -> None:
    code = "import sys, fedbench.codec; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def _payload(data: bytes, e: container.TensorEntry) -> bytes:
    return data[e.offset : e.offset + e.payload_length]


def test_nnc_payload_is_encode_levels_bytes() -> None:
    rng = np.random.default_rng(7)
    w = rng.normal(0, 0.02, (16, 8, 3, 3)).astype(np.float32)
    w[3] = 0
    cfg = CodecConfig(mode="nnc", param_opt=True)
    data = encode({"w": w, "i": np.arange(-5, 5, dtype=np.int16)}, cfg)
    ew, ei = container.parse(data, max_elements=1 << 20)
    lv = decode_levels_of(w, cfg)
    czl = (~lv.reshape(16, -1).any(axis=1)).astype(np.int32)
    ref = encode_levels(lv, param_opt_flag=1, rowSkipFlag=1, ChanZeroList=czl)
    assert _payload(data, ew) == ref
    assert _payload(data, ei) == encode_levels(np.arange(-5, 5, dtype=np.int32), param_opt_flag=1)


def decode_levels_of(w: np.ndarray, cfg: CodecConfig) -> np.ndarray:
    """URQ levels of w under cfg (what the container hands to the CABAC)."""
    from fedbench.codec.quant import quantize

    return quantize(w, cfg.qp, cfg.qp_density)


@pytest.mark.skipif(not (CONFORMANCE / "vectors.npz").exists(), reason="conformance set absent")
def test_nnc_payload_matches_conformance_vectors() -> None:
    vectors = np.load(CONFORMANCE / "vectors.npz")
    manifest = json.loads((CONFORMANCE / "manifest.json").read_text())
    checked = 0
    for v in manifest["vectors"]:
        args = v["settings"]["encode_args"]
        init = v["settings"]["encoder_init"]["args"]
        if v["category"] not in ("A", "B", "D", "E") or args.get("dq_flag") or not v["roundtrip"]:
            continue
        levels = vectors[f"{v['id']}_levels"]
        row_skip = bool(args.get("rowSkipFlag"))
        cfg = CodecConfig(
            mode="nnc",
            param_opt=bool(init["param_opt_flag"]),
            row_skip=row_skip,
            scan_order=int(args.get("scan_order", 0)),
        )
        data = encode({"levels": levels}, cfg)
        (e,) = container.parse(data, max_elements=1 << 24)
        if e.row_skip != row_skip:
            continue  # 1-D tensors never carry row skipping
        assert _payload(data, e) == vectors[f"{v['id']}_bytes"].tobytes(), v["name"]
        eps_key = f"{v['id']}_entry_points"
        if eps_key in vectors:
            assert e.entry_points == [int(x) for x in vectors[eps_key]], v["name"]
        assert np.array_equal(decode(data)["levels"], levels)
        checked += 1
    assert checked >= 10


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("mode", "zip"),
        ("qp", 1.5),
        ("qp", 10**6),
        ("qp_density", 9),
        ("nonweight_qp", "x"),
        ("dq", 1),
        ("lambda_scale", -1.0),
        ("lambda_scale", float("nan")),
        ("scan_order", 5),
        ("row_skip", None),
        ("cabac_unary_length", 0),
        ("num_threads", 0),
        ("segment_elements", 100),
        ("param_opt", "yes"),
    ],
)
def test_bad_settings_name_the_field(field: str, value: object) -> None:
    with pytest.raises(SettingsError, match=field):
        CodecConfig(**{field: value})


def test_default_config_is_valid_and_frozen() -> None:
    cfg = CodecConfig()
    with pytest.raises(AttributeError):
        cfg.qp = 3  # type: ignore[misc]
