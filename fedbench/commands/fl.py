"""`fedbench fl`: run (or resume) one federated-learning experiment from a YAML config."""

from __future__ import annotations

import argparse
import sys

from fedbench.commands import add_config_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `fl` subcommand."""
    p = subparsers.add_parser(
        "fl",
        help="run a federated-learning experiment (compressed differential updates, ADF)",
        description=(
            "Run a federated-learning experiment. --config takes a YAML file or a packaged "
            "preset name (see --list-presets); --set overrides single keys (YAML values), "
            "e.g. --set method.name=adf --set setting.direction=bi. Rerunning the same "
            "command resumes from the last finished round in --out."
        ),
    )
    add_config_arguments(p)
    p.add_argument("--out", "-o", default=None, help="output folder (metrics.csv, summary.json)")
    p.add_argument(
        "--device",
        default=None,
        choices=("auto", "cpu", "cuda"),
        help="shortcut for --set device=...",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--fresh", action="store_true", help="ignore an existing checkpoint in --out and start over"
    )
    p.add_argument("--list-presets", action="store_true", help="print preset names and exit")
    p.add_argument(
        "--list-methods",
        action="store_true",
        help="print every registered method, its description and options, and exit",
    )
    p.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    """Execute `fedbench fl`."""
    from fedbench.fl.config import ConfigError, config_to_dict, list_presets, load_config

    if args.list_presets:
        print("\n".join(list_presets()))
        return 0
    if args.list_methods:
        print(_methods_text(), end="")
        return 0
    overrides = list(args.overrides)
    if args.device:
        overrides.append(f"device={args.device}")
    try:
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"fedbench fl: invalid config: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        import yaml

        print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False), end="")
        return 0
    if not args.out:
        print("fedbench fl: --out is required", file=sys.stderr)
        return 2
    from fedbench.data import DataError
    from fedbench.fl.client import TrainingDiverged
    from fedbench.fl.loop import run_fl
    from fedbench.models import PretrainedError

    try:
        summary = run_fl(cfg, args.out, progress=not args.no_progress, resume=not args.fresh)
    except ConfigError as exc:
        print(f"fedbench fl: invalid config: {exc}", file=sys.stderr)
        return 2
    except (TrainingDiverged, PretrainedError) as exc:
        print(f"fedbench fl: {exc}", file=sys.stderr)
        return 1
    except DataError as exc:
        print(
            f"fedbench fl: data set {cfg.data.name!r}: {exc}\n(in a run config the mirror "
            "is data.mirror, e.g. --set data.mirror=DIR; prepared caches go to data.root)",
            file=sys.stderr,
        )
        return 1
    if summary is not None:
        best = summary["best_acc"]
        chosen = (
            f"test at the best validation round {summary['best_round']}: {best:.4f}"
            if best is not None
            else "no validation split"
        )
        print(
            f"{summary['metric']} {summary['final_acc']:.4f} ({chosen}), "
            f"{summary['total_bytes'] / 1e6:.3f} MB sent, ratio "
            f"{summary['compression_ratio']:.1f}x vs fp32, {summary['wall_s']:.1f} s"
        )
    return 0


def _methods_text() -> str:
    """One line per registered method, then its own options with defaults."""
    import dataclasses

    from fedbench.fl.config import MethodConfig
    from fedbench.fl.methods import methods

    shared = {
        f.name: f.default
        for f in dataclasses.fields(MethodConfig)
        if f.name not in ("name", "options")
    }
    lines = []
    for name, cls in methods().items():
        lines.append(f"{name}: {cls.description or cls.__doc__ or ''}".rstrip())
        for opt, default in cls.option_defaults().items():
            lines.append(f"    method.{opt} = {default!r}")
    lines.append("shared by every method: " + ", ".join(f"{k}={v!r}" for k, v in shared.items()))
    return "\n".join(lines) + "\n"
