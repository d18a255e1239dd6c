"""`fedbench <command>`: the one door the workflow uses; each area registers its own subcommands."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each module in fedbench.commands exposes `register(subparsers)`; it must import heavy
# libraries (torch, matplotlib) lazily, inside the command functions.
COMMAND_MODULES = ("bench", "codec", "data", "fl", "flower", "plots", "pretrain")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level argument parser with every area's subcommands."""
    parser = argparse.ArgumentParser(prog="fedbench", description=__doc__)
    from fedbench import __version__

    parser.add_argument("--version", action="version", version=f"fedbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"fedbench.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `fedbench` console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    rc = args.func(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
