"""``inspo data``: look at, convert and make datasets.

    inspo data info PATH                          # any format: checked as training checks it; sizes, ends,
                                                  # returns, Joint SACo (--histogram PNG: the returns)
    inspo data info PATH --episode-limit 50       # ... with time-limit ends decided by the limit
    inspo data convert SRC DST --to h5            # npy | h5 | vault, lossless
    inspo data make --env smax:3m --tier expert   # SMAX datasets (inspo.smax.cli: make, behaviour, summary, check)

The registering CLI calls ``add_arguments(parser)`` on its ``data`` subparser and ``run(args)``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from inspo.data.buffer import DatasetError
from inspo.data.formats import FORMATS

FORMAT_CHOICES = ("auto", *FORMATS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from inspo.smax import cli as smax_cli

    commands = parser.add_subparsers(
        dest="data_command", required=True, metavar="{info,convert," + ",".join(smax_cli.COMMANDS) + "}"
    )

    def source(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "--dataset-format", choices=FORMAT_CHOICES, default="auto", help="format of the dataset (default: detected)"
        )
        sub.add_argument(
            "--episode-limit",
            type=int,
            default=None,
            help="time limit of the episodes: an episode that ran this many steps was cut there "
            "(truncated, bootstrapped) even if flagged terminated; for data that does not "
            "store truncations apart",
        )

    info = commands.add_parser("info", help="what a dataset holds (any format)")
    info.add_argument("path", type=Path)
    source(info)
    info.add_argument(
        "--histogram", type=Path, default=None, metavar="PNG", help="write a histogram of the episode returns here"
    )
    info.add_argument("--json", action="store_true", help="print the summary as JSON")

    convert = commands.add_parser("convert", help="convert a dataset to another format, losslessly")
    convert.add_argument("source", type=Path)
    convert.add_argument("destination", type=Path)
    convert.add_argument("--to", choices=FORMATS, required=True, help="format written")
    source(convert)
    convert.add_argument("--overwrite", action="store_true", help="replace an existing destination")
    smax_cli.add_commands(commands)


def run(args: argparse.Namespace) -> int:
    if args.data_command not in ("info", "convert"):
        from inspo.smax import cli as smax_cli

        return smax_cli.run(args)
    try:
        return _info(args) if args.data_command == "info" else _convert(args)
    except (DatasetError, ValueError, FileExistsError, ModuleNotFoundError) as error:
        print(f"inspo data {args.data_command}: error: {error}", file=sys.stderr)
        return 2


def _check_limit(limit) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"--episode-limit must be >= 1, got {limit}")


def _info(args: argparse.Namespace) -> int:
    from inspo.data.formats import build_store, read_dataset
    from inspo.data.summary import summarize, write_histogram

    _check_limit(args.episode_limit)
    dataset = read_dataset(args.path, args.dataset_format)
    # the checks training makes (flags, actions under the masks, finite values, the reward bound), in one
    # pass over the files that keeps only the actions and rewards in memory
    build_store(dataset, mapped=True, episode_limit=args.episode_limit)
    summary = summarize(dataset, args.episode_limit)
    histogram = None if args.histogram is None else write_histogram(summary, args.histogram)
    if args.json:
        print(json.dumps({**summary.to_dict(), "histogram": None if histogram is None else str(histogram)}, indent=2))
    else:
        print("\n".join(summary.lines()))
        if histogram is not None:
            print(f"histogram     {histogram}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from inspo.data.formats import read_dataset, write_dataset

    _check_limit(args.episode_limit)
    destination = args.destination
    if destination.exists():
        if not args.overwrite:
            raise FileExistsError(f"{destination} exists; pass --overwrite to replace it")
    dataset = read_dataset(args.source, args.dataset_format)
    if destination.resolve() == Path(dataset.path).resolve():
        raise ValueError("the destination is the source")
    if destination.exists():
        shutil.rmtree(destination) if destination.is_dir() else destination.unlink()
    try:
        write_dataset(
            destination,
            dataset.arrays,
            dataset.meta,
            args.to,
            episode_limit=args.episode_limit,
            log=lambda message: print(message, file=sys.stderr),
        )
    except DatasetError as error:
        raise dataset.error(error) from error
    print(f"{args.source} ({dataset.format}) -> {destination} ({args.to})")
    return 0
