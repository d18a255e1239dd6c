"""pytest-benchmark speed measurements of the codec on the benchmark workloads.

Skipped in the normal test run (pyproject's addopts has --benchmark-skip). Run with

    pytest tests/benchmarks --benchmark-only --benchmark-json=results/bench.json

FEDBENCH_BENCH_SCALE (default 1.0) shrinks every workload (e.g. 0.05 for a quick look);
FEDBENCH_BENCH_ROUNDS (default 3) sets the timed rounds after one warm-up round.
Each result's extra_info holds the parameter count, the bytes and params/s at the median.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import os

import pytest

from fedbench.bench import workloads

SCALE = float(os.environ.get("FEDBENCH_BENCH_SCALE", "1.0"))
ROUNDS = int(os.environ.get("FEDBENCH_BENCH_ROUNDS", "3"))
WORKLOADS = ("A", "B90", "B99", "C")
MODES = ("nnc", "sparse")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("fedbench.codec.api") is None, reason="fedbench.codec not present"
)


@functools.cache
def _workload(name: str) -> dict:
    if name == "C":
        pytest.importorskip("torch")  # only needed when the C fixture must be generated
    return workloads.load_workload(name, scale=SCALE)


def _config(mode: str):
    from fedbench.codec import CodecConfig

    # The benchmark's settings: qp -32, no DQ, no parameter optimisation, no row skip (as the
    # nncodec reference run), all cores.
    return CodecConfig(mode=mode, qp=-32, dq=False, param_opt=False, row_skip=False)


def _record(benchmark, n: int, nbytes: int) -> None:
    med = benchmark.stats.stats.median
    benchmark.extra_info["params"] = n
    benchmark.extra_info["bytes"] = nbytes
    benchmark.extra_info["params_per_s"] = n / med if med > 0 else None
    benchmark.extra_info["scale"] = SCALE


@pytest.mark.benchmark(group="encode")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", WORKLOADS)
def test_encode(benchmark, name, mode):
    from fedbench.codec import encode

    tensors = _workload(name)
    cfg = _config(mode)
    data = benchmark.pedantic(encode, args=(tensors, cfg), rounds=ROUNDS, warmup_rounds=1)
    _record(benchmark, workloads.num_params(tensors), len(data))


@pytest.mark.benchmark(group="decode")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", WORKLOADS)
def test_decode(benchmark, name, mode):
    from fedbench.codec import decode, encode

    tensors = _workload(name)
    data = encode(tensors, _config(mode))
    out = benchmark.pedantic(decode, args=(data,), rounds=ROUNDS, warmup_rounds=1)
    assert set(out) == set(tensors)
    _record(benchmark, workloads.num_params(tensors), len(data))


def _nncodec():
    pytest.importorskip("nncodec")
    with contextlib.redirect_stdout(io.StringIO()):
        from nncodec import nnc
    return nnc


@pytest.mark.benchmark(group="encode")
@pytest.mark.parametrize("name", WORKLOADS)
def test_encode_nncodec_reference(benchmark, name):
    nnc = _nncodec()
    tensors = _workload(name)

    def run() -> bytes:
        with contextlib.redirect_stdout(io.StringIO()):
            return bytes(
                nnc.compress(
                    tensors,
                    bitstream_path=None,
                    qp=-32,
                    use_dq=False,
                    param_opt=False,
                    return_bitstream=True,
                    verbose=False,
                )
            )

    data = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    _record(benchmark, workloads.num_params(tensors), len(data))


@pytest.mark.benchmark(group="decode")
@pytest.mark.parametrize("name", WORKLOADS)
def test_decode_nncodec_reference(benchmark, name):
    nnc = _nncodec()
    tensors = _workload(name)
    with contextlib.redirect_stdout(io.StringIO()):
        data = bytes(
            nnc.compress(
                tensors,
                bitstream_path=None,
                qp=-32,
                use_dq=False,
                param_opt=False,
                return_bitstream=True,
                verbose=False,
            )
        )

    def run() -> dict:
        with contextlib.redirect_stdout(io.StringIO()):
            return nnc.decompress(bytearray(data), verbose=False)

    out = benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=1)
    assert set(out) == set(tensors)
    _record(benchmark, workloads.num_params(tensors), len(data))
