"""`fedbench codec bench`: arguments and entry point (wired in by fedbench.commands.codec)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["add_bench_arguments", "main", "run_bench"]

_DEFAULT_OUT = "results/codec_bench"


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the codec benchmark's options to a (sub)parser."""
    from fedbench.bench.peers import ALL_PEER_NAMES
    from fedbench.bench.workloads import C_SIZES, WORKLOAD_NAMES

    parser.add_argument(
        "--workloads",
        type=_csv_list,
        default=list(WORKLOAD_NAMES),
        help=f"comma-separated subset of {','.join(WORKLOAD_NAMES)} (default: all)",
    )
    parser.add_argument(
        "--peers",
        type=_csv_list,
        default=list(ALL_PEER_NAMES),
        help=f"comma-separated codecs to compare, from {','.join(ALL_PEER_NAMES)} (default: all)",
    )
    parser.add_argument("--qp", type=int, default=-32, help="weight QP (default -32)")
    parser.add_argument("--qp-density", type=int, default=2, help="QP density (default 2)")
    parser.add_argument(
        "--nonweight-qp", type=int, default=-75, help="QP of 1-D tensors (default -75)"
    )
    parser.add_argument("--dq", action="store_true", help="dependent quantization on")
    parser.add_argument("--param-opt", action="store_true", help="CABAC parameter optimisation")
    parser.add_argument(
        "--row-skip",
        action="store_true",
        help="NNC row skipping for our NNC mode and nncodec (off by default, as in nncodec)",
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs after one warm-up (median reported)"
    )
    parser.add_argument(
        "--gp-repeats",
        type=int,
        default=1,
        help="timed runs of the general-purpose coders (no JIT, so no warm-up; default 1)",
    )
    parser.add_argument(
        "--zstd-level", type=int, default=19, help="zstd level for the zstd peer (default 19)"
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="shrink every workload to this fraction of its rows, in (0, 1] (default 1)",
    )
    parser.add_argument(
        "--c-size",
        choices=sorted(C_SIZES),
        default="full",
        help="which workload C fixture to train/load: full, or small for CI (default full)",
    )
    parser.add_argument("--c-path", default=None, help="workload C npz (default cache/bench/)")
    parser.add_argument(
        "--no-identity-check",
        dest="identity_check",
        action="store_false",
        help="skip the per-tensor byte comparison against nncodec",
    )
    parser.add_argument(
        "--out",
        default=_DEFAULT_OUT,
        help=f"output path stem; writes STEM.csv and STEM.json (default {_DEFAULT_OUT})",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return parser


def run_bench(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    """Run the benchmark from parsed arguments; print the table and write CSV + JSON."""
    from fedbench.bench import codec_bench
    from fedbench.bench.peers import ALL_PEER_NAMES, Settings
    from fedbench.bench.workloads import WORKLOAD_NAMES

    bad_w = [w for w in args.workloads if w not in WORKLOAD_NAMES]
    bad_p = [p for p in args.peers if p not in ALL_PEER_NAMES]
    if bad_w or bad_p or not (0 < args.scale <= 1) or args.repeats < 0:
        msg = []
        if bad_w:
            msg.append(f"unknown workload(s) {bad_w}; use {','.join(WORKLOAD_NAMES)}")
        if bad_p:
            msg.append(f"unknown peer(s) {bad_p}; use {','.join(ALL_PEER_NAMES)}")
        if not (0 < args.scale <= 1):
            msg.append(f"--scale must be in (0, 1], got {args.scale}")
        if args.repeats < 0:
            msg.append(f"--repeats must be >= 0, got {args.repeats}")
        print("fedbench codec bench: " + "; ".join(msg), file=sys.stderr)
        return 2
    opts = codec_bench.BenchOptions(
        workloads=args.workloads,
        peers=args.peers,
        settings=Settings(
            qp=args.qp,
            qp_density=args.qp_density,
            nonweight_qp=args.nonweight_qp,
            dq=args.dq,
            param_opt=args.param_opt,
            row_skip=args.row_skip,
            zstd_level=args.zstd_level,
        ),
        repeats=args.repeats,
        gp_repeats=args.gp_repeats,
        scale=args.scale,
        c_size=args.c_size,
        c_path=args.c_path,
        identity_check=args.identity_check,
    )
    log = None if args.quiet else codec_bench.stderr_log
    if argv is not None:
        command = " ".join(["fedbench", "codec", "bench", *argv])
    else:
        command = " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])
    meta = codec_bench.run_metadata(opts, command)
    rows, checks = codec_bench.run_benchmark(opts, log=log)
    try:
        meta["loadavg_at_end"] = list(os.getloadavg())
    except OSError:
        pass
    stem = Path(args.out)
    if stem.suffix in (".csv", ".json"):
        stem = stem.with_suffix("")
    csv_path, json_path = codec_bench.write_results(rows, meta, checks, stem)
    print(codec_bench.format_table(rows))
    print(f"\nwrote {csv_path} and {json_path}")
    failed = [r for r in rows if r.get("verified") is False]
    if failed:
        names = ", ".join(f"{r['workload']}/{r['codec']}" for r in failed)
        print(f"round trip NOT verified for: {names}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: `python -m fedbench.bench.cli [options]`."""
    parser = add_bench_arguments(
        argparse.ArgumentParser(prog="fedbench codec bench", description=__doc__)
    )
    argv = list(sys.argv[1:] if argv is None else argv)
    return run_bench(parser.parse_args(argv), argv)


if __name__ == "__main__":
    sys.exit(main())
