"""`fedbench flower`: run a fedbench config on Flower (deployment, simulation, app folder)."""

from __future__ import annotations

import argparse
import sys

from fedbench.commands import add_config_arguments


def _common(p: argparse.ArgumentParser, nodes: bool = True) -> None:
    """Arguments every `fedbench flower` subcommand takes."""
    add_config_arguments(p)
    p.add_argument("--out", "-o", required=True, help="output folder (metrics.csv, summary.json)")
    if nodes:
        p.add_argument(
            "--nodes",
            "-n",
            type=int,
            required=True,
            help="SuperNodes; node p hosts the clients k with k %% nodes == p",
        )
    p.add_argument(
        "--round-timeout",
        type=float,
        default=3600.0,
        help="seconds to wait for a round's replies before going on without the missing "
        "clients (default 3600)",
    )
    p.add_argument(
        "--node-timeout",
        type=float,
        default=300.0,
        help="seconds the server waits for the SuperNodes to connect (default 300)",
    )
    p.add_argument("--data-fn", default="", help="module:function giving the data (advanced)")
    p.add_argument("--model-fn", default="", help="module:function building the model (advanced)")
    p.add_argument(
        "--fresh", action="store_true", help="ignore a checkpoint in --out and start over"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `flower` subcommand and its own subcommands."""
    p = subparsers.add_parser(
        "flower",
        help="run a fedbench config on Flower (needs the flower extra)",
        description=(
            "Run a fedbench run config on Flower with the same data split, model, method and "
            "accounting as `fedbench fl` (pip install 'fedbench[flower]')."
        ),
    )
    sub = p.add_subparsers(dest="flower_command", required=True, metavar="SUBCOMMAND")
    run = sub.add_parser(
        "run",
        help="local deployment: a SuperLink and N SuperNodes as separate processes",
        description="Start a SuperLink and --nodes SuperNodes on localhost, run the config, "
        "collect the outputs in --out and stop the processes. Rerunning resumes.",
    )
    _common(run)
    run.add_argument("--timeout", type=float, default=None, help="give up after this many s")
    run.set_defaults(func=_run, simulation=False)
    sim = sub.add_parser(
        "simulate",
        help="Flower's simulation runtime (Ray backend), --nodes virtual SuperNodes",
    )
    _common(sim)
    sim.add_argument("--timeout", type=float, default=None, help="give up after this many s")
    sim.add_argument(
        "--num-cpus", type=int, default=1, help="CPUs per simulated ClientApp (default 1)"
    )
    sim.set_defaults(func=_run, simulation=True)
    app = sub.add_parser(
        "app",
        help="write the Flower app folder for `flwr run APP_DIR <superlink>` (any deployment)",
    )
    _common(app, nodes=False)
    app.add_argument("--app", required=True, help="folder to write the app (pyproject.toml) to")
    app.add_argument(
        "--num-nodes", type=int, default=0, help="SuperNodes to wait for (0: one per client)"
    )
    app.set_defaults(func=_app)


def _load(args: argparse.Namespace, absolute: bool = True) -> dict | None:
    """The resolved config as a dict, or None after printing why it is invalid.

    `absolute`: relative data and checkpoint paths are made absolute (from here), since the
    Flower processes may run elsewhere than this working directory."""
    from pathlib import Path

    from fedbench.fl.config import ConfigError, config_to_dict, load_config

    try:
        config = config_to_dict(load_config(args.config, list(args.overrides)))
    except ConfigError as exc:
        print(f"fedbench flower: invalid config: {exc}", file=sys.stderr)
        return None
    if absolute:
        for section, key in (("data", "root"), ("data", "mirror"), ("model", "pretrained")):
            value = config.get(section, {}).get(key)
            if isinstance(value, str) and value not in ("imagenet",) and "://" not in value:
                config[section][key] = str(Path(value).resolve())
    return config


def _run(args: argparse.Namespace) -> int:
    """Execute `fedbench flower run` / `fedbench flower simulate`."""
    from fedbench.flower.deploy import DeploymentError, deploy

    config = _load(args)
    if config is None:
        return 2
    if args.nodes < 1:
        print("fedbench flower: --nodes must be at least 1", file=sys.stderr)
        return 2
    try:
        s = deploy(
            config,
            args.out,
            args.nodes,
            simulation=args.simulation,
            data_fn=args.data_fn,
            model_fn=args.model_fn,
            round_timeout=args.round_timeout,
            node_timeout=args.node_timeout,
            timeout=args.timeout,
            resume=not args.fresh,
            num_cpus=getattr(args, "num_cpus", 1),
        )
    except DeploymentError as exc:
        print(f"fedbench flower: {exc}", file=sys.stderr)
        return 1
    missing = s["flower"]["rounds_with_missing_clients"]
    print(
        f"{s['metric']} {s['final_acc']:.4f}, {s['total_bytes'] / 1e6:.3f} MB sent "
        f"(Flower messages: {s['flower']['flower_bytes_down'] / 1e6:.3f} MB down, "
        f"{s['flower']['flower_bytes_up'] / 1e6:.3f} MB up), {s['wall_s']:.1f} s"
        + (f"; rounds with missing clients: {missing}" if missing else "")
    )
    return 0


def _app(args: argparse.Namespace) -> int:
    """Execute `fedbench flower app`."""
    from fedbench.flower.deploy import write_app

    # another machine's paths are its own: kept as written
    config = _load(args, absolute=False)
    if config is None:
        return 2
    path = write_app(
        args.app,
        config,
        args.out,
        data_fn=args.data_fn,
        model_fn=args.model_fn,
        round_timeout=args.round_timeout,
        node_timeout=args.node_timeout,
        num_nodes=args.num_nodes,
        resume=not args.fresh,
    )
    print(f"wrote {path / 'pyproject.toml'}; run it with: flwr run {path} <superlink-connection>")
    return 0
