"""`fedbench data ...`: list, download, prepare and inspect data sets."""

from __future__ import annotations

import argparse
import json
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `data` command and its subcommands to the top-level parser."""
    p = subparsers.add_parser("data", help="data sets: list, download, prepare, info")
    sub = p.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    ls = sub.add_parser("list", help="list the registered data sets")
    ls.set_defaults(func=_cmd_list)

    dl = sub.add_parser("download", help="fetch and verify a data set's source into --root")
    dl.add_argument("name", metavar="NAME", help="data set name (see `fedbench data list`)")
    dl.add_argument("--root", required=True, help="folder for the raw source files")
    dl.add_argument(
        "--mirror", default=None, help="folder holding pre-downloaded files (replaces the network)"
    )
    dl.set_defaults(func=_cmd_download)

    pr = sub.add_parser("prepare", help="turn a data set's source into one prepared .npz")
    pr.add_argument("name", metavar="NAME", help="data set name (see `fedbench data list`)")
    pr.add_argument("--root", required=True, help="folder for the raw source files")
    pr.add_argument("--out", required=True, help="prepared .npz file to write")
    pr.add_argument(
        "--mirror", default=None, help="folder holding pre-downloaded files (replaces the network)"
    )
    pr.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="side of the square images (default: the data set's own)",
    )
    pr.add_argument(
        "--channels",
        type=int,
        choices=(1, 3),
        default=None,
        help="store 1 (grey) or 3 (RGB) channels (default: the data set's own)",
    )
    pr.add_argument("--force", action="store_true", help="rebuild even if up to date")
    pr.set_defaults(func=_cmd_prepare)

    info = sub.add_parser("info", help="print the meta of a prepared .npz as JSON")
    info.add_argument("file")
    info.set_defaults(func=_cmd_info)


def _fail(exc: Exception) -> int:
    print(f"fedbench data: error: {exc}", file=sys.stderr)
    return 2


def _cmd_list(args: argparse.Namespace) -> int:
    from fedbench.data import DATASETS

    for name in sorted(DATASETS):
        s = DATASETS[name]
        print(f"{name:16s} {s.task:15s} {s.num_classes:3d} classes  {s.description}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from fedbench.data import DataError, download

    try:
        path = download(args.name, args.root, mirror=args.mirror)
    except DataError as exc:
        return _fail(exc)
    print(path)
    return 0


def _cmd_prepare(args: argparse.Namespace) -> int:
    from fedbench.data import DataError, prepare, read_meta

    t0 = time.perf_counter()
    try:
        out = prepare(
            args.name,
            args.root,
            args.out,
            mirror=args.mirror,
            image_size=args.image_size,
            channels=args.channels,
            force=args.force,
        )
        meta = read_meta(out)
    except (DataError, ValueError) as exc:
        return _fail(exc)
    counts = ", ".join(f"{k} {v}" for k, v in meta["counts"].items())
    print(
        f"{out}: {meta['name']} {meta['task']} {meta['image_size']}px "
        f"{meta['channels']}ch ({counts}) in {time.perf_counter() - t0:.1f} s"
    )
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from fedbench.data import DataError, read_meta

    try:
        print(json.dumps(read_meta(args.file), indent=2))
    except DataError as exc:
        return _fail(exc)
    return 0
