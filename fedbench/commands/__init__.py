"""fedbench.commands: one module per area, each with `register(subparsers)`."""

from __future__ import annotations

import argparse


def add_config_arguments(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """The run-config arguments every command that takes one shares: --config and --set."""
    p.add_argument(
        "--config", "-c", default=None, required=required, help="YAML file or preset name"
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key (dotted, repeatable; values parsed as YAML)",
    )
