"""`fedbench codec ...`: DeepCABAC conformance check and the codec benchmark."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `codec` command and its subcommands to the top-level parser."""
    p = subparsers.add_parser("codec", help="codec: conformance vectors, benchmark")
    sub = p.add_subparsers(dest="codec_command", required=True, metavar="SUBCOMMAND")

    conf = sub.add_parser(
        "conformance",
        help="re-encode/decode DeepCABAC test vectors (vectors.npz + manifest.json) bit-exactly",
    )
    conf.add_argument("directory", metavar="DIR", help="folder with vectors.npz and manifest.json")
    conf.add_argument(
        "--strict-quant",
        action="store_true",
        help="also fail when quantize_dq does not reproduce the DQ levels",
    )
    conf.set_defaults(func=_cmd_conformance)

    from fedbench.bench.cli import add_bench_arguments, run_bench

    bench = sub.add_parser("bench", help="benchmark the codec against its peers")
    add_bench_arguments(bench)
    bench.set_defaults(func=lambda args: run_bench(args))


def _cmd_conformance(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fedbench.codec.conformance import format_report, run_conformance

    d = Path(args.directory)
    if not (d / "manifest.json").is_file() or not (d / "vectors.npz").is_file():
        print(
            f"fedbench codec conformance: error: {d} has no manifest.json/vectors.npz",
            file=sys.stderr,
        )
        return 2
    result = run_conformance(d)
    print(format_report(result))
    ok = result.passed and not (args.strict_quant and result.quant_failures)
    return 0 if ok else 1
