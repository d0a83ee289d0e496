"""`inspo data`: look at, convert and make datasets.

    inspo data info PATH                          # any format: checked as training checks it; sizes, ends,
                                                  # returns, Joint SACo (--histogram PNG: the returns)
    inspo data info PATH --episode-limit 50       # ... with time-limit ends decided by the limit
    inspo data convert SRC DST --to h5            # npy | h5 | vault, lossless

SMAX datasets (the `smax` extra; no JAX is imported before one of these runs):

    inspo data make --env smax:3m --tier expert            # trains the behaviour policy first if needed
    inspo data make --env smax:3m --tier all               # expert, medium, medium-replay, mixed (one training)
    inspo data make --env smax:3m --tier scripted --eps 0.2 --episodes 500
    inspo data behaviour --env smax:2s3z --seed 1          # only train (and checkpoint) the behaviour policy
    inspo data behaviour --env smax:2s3z --export DIR      # ... and copy what the tiers need to DIR (to commit)
    inspo data make --env smax:2s3z --tier all --behaviour DIR   # the tiers from an exported run: no training
    inspo data check ~/.cache/inspo/smax/3m/seed0/expert  # verify a dataset against its card
    inspo data summary                                     # a table of every dataset card under the root
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
SMAX_COMMANDS = ("make", "behaviour", "summary", "check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(
        dest="data_command", required=True, metavar="{info,convert," + ",".join(SMAX_COMMANDS) + "}"
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

    def common(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--env", required=True, help="smax:<map>, e.g. smax:3m, smax:2s3z, smax:5m_vs_6m")
        sub.add_argument("--seed", type=int, default=0, help="seed of the behaviour training and the rollouts")
        sub.add_argument(
            "--root", type=Path, default=None, help="data root (default $INSPO_DATA/smax or ~/.cache/inspo/smax)"
        )
        sub.add_argument(
            "--algorithm",
            choices=("mappo", "ippo"),
            default="mappo",
            help="behaviour learner: MAPPO (critic sees the state) or IPPO (critic sees the obs)",
        )
        sub.add_argument(
            "--behaviour-steps",
            type=int,
            default=None,
            help="environment steps of behaviour training (default: the map preset)",
        )
        sub.add_argument("--num-envs", type=int, default=None, help="battles per PPO rollout")
        sub.add_argument("--checkpoint-every", type=int, default=None, help="PPO updates between checkpoints")

    make = commands.add_parser("make", help="generate a dataset tier (episode-buffer directory + card)")
    common(make)
    make.add_argument(
        "--tier", required=True, help="expert, medium, medium-replay, mixed, scripted, or all (the four trained tiers)"
    )
    make.add_argument(
        "--episodes",
        type=int,
        default=None,
        help="episodes per dataset (default 5,000: CFCQL's recipe, inspo.smax.tiers.RECIPE_EPISODES; mixed: half "
        "medium, half expert)",
    )
    make.add_argument(
        "--replay-episodes",
        type=int,
        default=None,
        help="cap on medium-replay episodes, drawn uniformly (default: all of training until medium, the recipe)",
    )
    make.add_argument("--eps", type=float, default=0.2, help="scripted tier: random-action probability")
    make.add_argument("--out", type=Path, default=None, help="dataset directory (default <root>/<map>/seed<S>/<tier>)")
    make.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    make.add_argument(
        "--behaviour",
        type=Path,
        default=None,
        help="a finished behaviour run folder (e.g. one written by `inspo data behaviour --export`) to roll out "
        "instead of training one",
    )

    behaviour = commands.add_parser("behaviour", help="train and checkpoint the behaviour policy only")
    common(behaviour)
    behaviour.add_argument(
        "--export",
        type=Path,
        default=None,
        help="then copy what the trained tiers need (config, progress, the checkpoints they roll out) to this "
        "folder: small enough to commit, and `data make --behaviour` regenerates the tiers from it",
    )

    summary = commands.add_parser("summary", help="a markdown table of every dataset card under the data root")
    summary.add_argument("--root", type=Path, default=None, help="data root (default as for make)")

    check = commands.add_parser("check", help="verify a dataset against its card; print the card summary")
    check.add_argument("path", type=Path)
    check.add_argument("--hashes", action="store_true", help="also compare the sha256 of every array file")


def run(args: argparse.Namespace) -> int:
    if args.data_command not in ("info", "convert"):
        return run_smax(args)
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


def _data_config(args, tier: str):
    from inspo.smax import map_from_env_name
    from inspo.smax.tiers import DEFAULT_ROOT, DataConfig, behaviour_config

    map_name = map_from_env_name(args.env)
    behaviour = behaviour_config(
        map_name,
        args.seed,
        total_env_steps=args.behaviour_steps,
        num_envs=args.num_envs,
        checkpoint_every=args.checkpoint_every,
        critic="global" if args.algorithm == "mappo" else "local",
    )
    extra = {}
    if args.data_command == "make":
        extra = dict(
            replay_episodes=args.replay_episodes,
            eps=args.eps,
            out=args.out,
            overwrite=args.overwrite,
            behaviour_source=args.behaviour,
        )
        if args.behaviour is not None:  # the run's own config, whatever the map preset says today
            from inspo.smax.ippo import is_complete, read_config

            if not is_complete(args.behaviour):
                raise ValueError(f"--behaviour {args.behaviour}: not a finished behaviour run (no final.json)")
            behaviour = read_config(args.behaviour)
            if behaviour.map_name != map_name or behaviour.seed != args.seed:
                raise ValueError(
                    f"--behaviour {args.behaviour}: a run of {behaviour.map_name} seed {behaviour.seed}, not of "
                    f"{map_name} seed {args.seed}"
                )
        if args.episodes is not None:
            extra["episodes"] = args.episodes
    return DataConfig(
        map_name=map_name, tier=tier, seed=args.seed, root=args.root or DEFAULT_ROOT, behaviour=behaviour, **extra
    ).validate()


def run_smax(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except ModuleNotFoundError as error:  # no jaxmarl: say how to install it, no traceback
        print(f"inspo data: {error}", file=sys.stderr)
        return 2
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"inspo data {args.data_command}: error: {error}", file=sys.stderr)
        return 2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _run(args: argparse.Namespace) -> int:
    log = _log
    if args.data_command == "check":
        from inspo.data.buffer import DatasetError
        from inspo.data.card import load_dataset

        try:
            _, meta = load_dataset(args.path, hashes=args.hashes)
        except DatasetError as error:
            log(f"dataset check failed: {error}")
            return 1
        card = meta["card"]
        keys = ("env", "tier", "seed", "episodes", "transitions", "return_mean", "return_std", "win_rate", "generator")
        print(json.dumps({key: card[key] for key in keys}, indent=2))
        return 0

    if args.data_command == "summary":
        from inspo.data.card import summary_table
        from inspo.smax.tiers import DEFAULT_ROOT

        print(summary_table(Path(args.root or DEFAULT_ROOT).expanduser()))
        return 0

    from inspo.smax.tiers import TIERS, TRAINED_TIERS, ensure_behaviour, export_behaviour, make_dataset

    if args.data_command == "behaviour":
        config = _data_config(args, "expert")
        directory = ensure_behaviour(config, log)
        if args.export is not None:
            names = export_behaviour(directory, args.export, config.medium_fraction)
            log(f"exported {len(names)} files of {directory} to {args.export}")
        return 0
    tiers = TRAINED_TIERS if args.tier == "all" else (args.tier,)
    if any(tier not in TIERS for tier in tiers):
        raise ValueError(f"--tier: expected one of {TIERS} or all, got {args.tier!r}")
    if args.out is not None and len(tiers) > 1:
        raise ValueError("--out names one dataset directory; use --root with --tier all")
    for tier in tiers:
        print(make_dataset(_data_config(args, tier), log))
    return 0
