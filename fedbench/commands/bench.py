"""`fedbench bench sim`: throughput of the FL simulator's local training (fedbench.bench.sim)."""

from __future__ import annotations

import argparse
import shlex
import sys

from fedbench.commands import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` command and its `sim` subcommand."""
    p = subparsers.add_parser("bench", help="benchmarks of the FL simulator")
    sub = p.add_subparsers(dest="bench_command", required=True, metavar="SUBCOMMAND")
    sim = sub.add_parser(
        "sim",
        help="local-training samples/s of the FL loop vs a plain loop, coding and eval time",
        description=(
            "Run a few rounds of a run config and compare the loop's local-training "
            "throughput with a plain training loop over the same batches; writes "
            "OUT/STEM.csv and OUT/STEM.json."
        ),
    )
    add_config_arguments(sim, required=True)
    sim.add_argument("--rounds", type=int, default=2, help="rounds to time (default 2)")
    sim.add_argument("--out", "-o", required=True, help="output folder")
    sim.add_argument("--stem", default="sim_bench", help="file name stem (default sim_bench)")
    sim.set_defaults(func=_run_sim)
    byt = sub.add_parser(
        "bytes",
        help="bytes per tensor class of one real update under each coding variant",
        description=(
            "Train one client for one round of a run config (data.num_clients=1, "
            "uncompressed), code that update with each variant of fedbench.bench.bytes "
            "(class QPs, non-weight sparsity, exact sparsity, codec mode) and write "
            "OUT/STEM.csv, OUT/STEM.md and OUT/STEM.json."
        ),
    )
    add_config_arguments(byt, required=True)
    byt.add_argument("--out", "-o", required=True, help="output folder")
    byt.add_argument("--stem", default="bytes_bench", help="file name stem (default bytes_bench)")
    byt.set_defaults(func=_run_bytes)


def _run_sim(args: argparse.Namespace) -> int:
    """Execute `fedbench bench sim`."""
    from pathlib import Path

    from fedbench.fl.config import ConfigError, load_config

    if args.rounds < 1:
        print(f"fedbench bench sim: --rounds must be >= 1, got {args.rounds}", file=sys.stderr)
        return 2
    try:
        cfg = load_config(args.config, list(args.overrides))
    except ConfigError as exc:
        print(f"fedbench bench sim: invalid config: {exc}", file=sys.stderr)
        return 2
    from fedbench.bench.sim import format_table, run_sim_bench, write_outputs

    # rebuilt from the parsed arguments: sys.argv is not ours when called as main(argv)
    words = ["fedbench", "bench", "sim", "--config", str(args.config)]
    for item in args.overrides:
        words += ["--set", item]
    words += ["--rounds", str(args.rounds), "--out", str(args.out), "--stem", args.stem]
    command = shlex.join(words)
    try:
        report = run_sim_bench(cfg, rounds=args.rounds, label=str(args.config), command=command)
    except ConfigError as exc:
        print(f"fedbench bench sim: invalid config: {exc}", file=sys.stderr)
        return 2
    csv_path, json_path = write_outputs(report, Path(args.out) / args.stem)
    print(format_table(report))
    print(f"wrote {csv_path} and {json_path}")
    return 0


def _run_bytes(args: argparse.Namespace) -> int:
    """Execute `fedbench bench bytes`."""
    from pathlib import Path

    from fedbench.fl.config import ConfigError, load_config

    try:
        cfg = load_config(args.config, list(args.overrides))
    except ConfigError as exc:
        print(f"fedbench bench bytes: invalid config: {exc}", file=sys.stderr)
        return 2
    from fedbench.bench.bytes import format_markdown, run_bytes_bench, write_outputs

    words = ["fedbench", "bench", "bytes", "--config", str(args.config)]
    for item in args.overrides:
        words += ["--set", item]
    words += ["--out", str(args.out), "--stem", args.stem]
    report = run_bytes_bench(cfg, command=shlex.join(words))
    paths = write_outputs(report, Path(args.out) / args.stem)
    print(format_markdown(report))
    print("wrote " + ", ".join(map(str, paths)))
    return 0
