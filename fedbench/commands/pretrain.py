"""`fedbench pretrain`: central training on a source data set, the start of a transfer run."""

from __future__ import annotations

import argparse
import sys

from fedbench.commands import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `pretrain` subcommand."""
    p = subparsers.add_parser(
        "pretrain",
        help="train a model centrally on a source data set (checkpoint for transfer FL runs)",
        description=(
            "Train the run config's model centrally on its data set (all training samples, "
            "one client) for --epochs passes; writes OUT/model.pt and OUT/pretrain.json "
            "(metrics, sha256). FL runs on another data set start from it with "
            "--set model.pretrained=OUT/model.pt."
        ),
    )
    add_config_arguments(p)
    p.add_argument("--out", "-o", required=True, help="output folder")
    p.add_argument("--epochs", type=int, default=10, help="passes over the source data (10)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Execute `fedbench pretrain`."""
    from fedbench.data import DataError
    from fedbench.fl.config import ConfigError, load_config
    from fedbench.models import PretrainedError
    from fedbench.pretrain import pretrain

    try:
        cfg = load_config(args.config, args.overrides)
        report = pretrain(cfg, args.out, args.epochs)
    except ConfigError as exc:
        print(f"fedbench pretrain: invalid config: {exc}", file=sys.stderr)
        return 2
    except (DataError, PretrainedError) as exc:
        print(f"fedbench pretrain: {exc}", file=sys.stderr)
        return 1
    print(
        f"{report['source']} {report['model']}: {report['metric']} {report['final_test']:.4f} "
        f"after {report['epochs']} epochs, {args.out}/model.pt sha256 {report['sha256'][:16]}"
    )
    return 0
