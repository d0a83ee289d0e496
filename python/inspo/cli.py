"""The `inspo` command line.

    inspo train                      the main job: XOR (c), M-NE imbalanced, Bridge optimal (fused mode),
                                     then a table of scores
    inspo train --env xor --dataset d --mode exact --seed 3 --set eta=0.5 --out runs/x
    inspo train --env xor --dataset c --mode simultaneous --regime full-update
    inspo train --out runs/x --resume
    inspo eval runs/x                evaluate a checkpoint (a run folder or a checkpoint.pt)
    inspo bench | reproduce | data   provided by optional modules (benchmarks, results, SMAX datasets)
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

from inspo.config import REGIMES, TrainConfig, make_config, parse_overrides

# subcommands implemented elsewhere: name -> (module exposing add_arguments(parser) and run(args), help)
LAZY_COMMANDS = {
    "bench": ("inspo.bench.cli", "benchmark the fused ops against the reference"),
    "reproduce": ("inspo.reproduce", "rerun the results of the docs (seeds, spread, figures)"),
    "data": ("inspo.smax.cli", "generate or convert SMAX datasets"),
}
# the main job: (env, dataset) trained in fused mode with the env presets
DEFAULT_JOB = (("xor", "c"), ("mne", "imbalanced"), ("bridge", "optimal"))


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LAZY_COMMANDS:
        return run_lazy_command(argv[0], argv[1:])
    args = build_parser().parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"inspo {args.command}: error: {error}", file=sys.stderr)
        return 2


def run_lazy_command(name: str, argv: list[str]) -> int:
    module_name, help_text = LAZY_COMMANDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            print(f"inspo {name}: this feature is not installed (no module {module_name})", file=sys.stderr)
            return 2
        raise
    parser = argparse.ArgumentParser(prog=f"inspo {name}", description=help_text)
    module.add_arguments(parser)
    return int(module.run(parser.parse_args(argv)) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="inspo", description="In-Sample Sequential Policy Optimization")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    train = commands.add_parser("train", help="train (no arguments: the main job and its table)",
                                description="Train one run, or with no --env the main job "
                                            "(XOR c, M-NE imbalanced, Bridge optimal) and its table.")
    train.add_argument("--env", help="xor, mne, bridge (smax:<map> when installed); omit for the main job")
    train.add_argument("--dataset", help="dataset name of the env (default: the env preset's)")
    train.add_argument("--dataset-path", help="train on an EPyMARL episode-buffer directory instead")
    train.add_argument("--algo", default="inspo", help="trainer from inspo.algos (inspo, bc, ...)")
    train.add_argument("--mode", choices=("fused", "exact", "simultaneous"), help="InSPO update mode")
    train.add_argument("--regime", choices=tuple(REGIMES),
                       help="update regime of spec section 5 (default one-step; see inspo.config.REGIMES)")
    train.add_argument("--seed", type=int, help="seed of data, initialization and sampling (default 0)")
    train.add_argument("--seeds", type=parse_seeds, metavar="LIST",
                       help="train these seeds batched in one process, e.g. 0-4 or 0,3,7: one run folder "
                            "OUT/seedK each")
    train.add_argument("--steps", type=int, help="training iterations (default: the env preset's)")
    train.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override any TrainConfig field, e.g. --set eta=0.5 (repeatable)")
    train.add_argument("--out", help="output folder (metrics, checkpoints, results); default under runs/")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    train.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=cmd_train)

    evaluate = commands.add_parser("eval", help="evaluate a checkpoint")
    evaluate.add_argument("checkpoint", help="a run folder or its checkpoint.pt")
    evaluate.add_argument("--episodes", type=int, help="evaluation episodes (default: the run's)")
    evaluate.add_argument("--seed", type=int, default=0, help="seed of the evaluation rollouts")
    evaluate.add_argument("--json", action="store_true", help="print the scores as JSON")
    evaluate.set_defaults(handler=cmd_eval)

    for name, (_, help_text) in LAZY_COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def cmd_train(args: argparse.Namespace) -> int:
    from inspo.algos import get_trainer

    overrides = parse_overrides(args.overrides)
    for name in ("mode", "regime", "seed", "steps"):
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    if args.tensorboard:
        overrides["tensorboard"] = True
    if args.seeds is not None and args.seed is not None:
        raise ValueError("give --seed or --seeds, not both")
    if args.resume:
        if not args.out:
            raise ValueError("--resume needs --out, the folder of the run to continue")
        import torch

        checkpoint_path = Path(args.out) / "checkpoint.pt"
        seed_folders = sorted(Path(args.out).glob("seed*/checkpoint.pt"))
        if not checkpoint_path.is_file() and seed_folders:  # a batched run (--seeds): resume its seeds together
            return resume_seeds([path.parent for path in seed_folders], args)
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {checkpoint_path}")
        payload = torch.load(checkpoint_path, weights_only=False)
        config = TrainConfig.from_dict(payload["config"])
        results = get_trainer(payload["algo"])(config, out_dir=args.out, resume=True, progress=not args.quiet)
        print_table([(payload["algo"], config, results)])
        return 0
    if args.env is None and args.dataset_path is None:
        return run_default_job(args, overrides)
    env = args.env or "xor"
    if args.dataset:
        overrides["dataset"] = args.dataset
    if args.dataset_path:
        overrides["dataset_path"] = args.dataset_path
    if args.seeds is not None:
        return train_seed_batch(env, args, overrides)
    config = make_config(env, algo=args.algo, **overrides)
    out = args.out or default_out_dir(config)
    results = get_trainer(args.algo)(config, out_dir=out, progress=not args.quiet)
    print_table([(args.algo, config, results)])
    print(f"run folder: {out}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """"0-4" -> [0, 1, 2, 3, 4]; "0,3,7" -> [0, 3, 7]."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, dash, last = part.strip().partition("-")
            seeds += list(range(int(first), int(last if dash else first) + 1))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0-4 or 0,3,7, got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct seeds >= 0, like 0-4 or 0,3,7, got {text!r}")
    return seeds


def train_seed_batch(env: str, args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from inspo.loop import train_seeds

    configs = [make_config(env, algo=args.algo, **{**overrides, "seed": seed}) for seed in args.seeds]
    out = Path(args.out or default_out_dir(configs[0]).rsplit("-s", 1)[0])
    results = train_seeds(configs, [out / f"seed{seed}" for seed in args.seeds], progress=not args.quiet)
    print_table([(args.algo, config, result) for config, result in zip(configs, results)])
    print(f"run folders: {out}/seed{{{','.join(map(str, args.seeds))}}}")
    return 0


def resume_seeds(folders: list[Path], args: argparse.Namespace) -> int:
    import torch

    from inspo.loop import train_seeds

    configs = [TrainConfig.from_dict(torch.load(folder / "checkpoint.pt", weights_only=False)["config"])
               for folder in folders]
    results = train_seeds(configs, folders, resume=True, progress=not args.quiet)
    print_table([(config.algo, config, result) for config, result in zip(configs, results)])
    return 0


def run_default_job(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from inspo.algos import get_trainer

    out_root = Path(args.out or "runs/default")
    rows = []
    for env, dataset in DEFAULT_JOB:
        if args.seeds is not None:  # the seeds of each task batched: OUT/TASK/seedK
            from inspo.loop import train_seeds

            configs = [make_config(env, dataset=dataset, algo=args.algo, **{"mode": "fused", **overrides, "seed": seed})
                       for seed in args.seeds]
            folders = [out_root / f"{env}-{dataset}" / f"seed{seed}" for seed in args.seeds]
            rows += [(args.algo, c, r) for c, r in zip(configs, train_seeds(configs, folders, progress=not args.quiet))]
            continue
        config = make_config(env, dataset=dataset, **{"mode": "fused", **overrides})
        results = get_trainer(args.algo)(config, out_dir=out_root / f"{env}-{dataset}", progress=not args.quiet)
        rows.append((args.algo, config, results))
    print_table(rows)
    print(f"run folders under {out_root}/")
    return 0


def default_out_dir(config: TrainConfig) -> str:
    data = Path(config.dataset_path).name if config.dataset_path else config.dataset
    return f"runs/{config.env.replace(':', '-')}-{data}-{config.algo}-{config.mode}-s{config.seed}"


def print_table(rows: list[tuple[str, TrainConfig, dict[str, Any]]]) -> None:
    """One line per run: task, algorithm and mode, seed, time, then the env's summary scores."""
    from inspo.envs import make_env

    header = f"{'task':<26} {'algo':<30} {'seed':>4} {'time':>7}  scores"
    lines = [header, "-" * (len(header) + 50)]
    for algo, config, results in rows:
        env = make_env(config)
        task = f"{config.env}/{Path(config.dataset_path).name if config.dataset_path else config.dataset}"
        if config.env == "xor":
            task += f" ({config.xor_variant})"
        method = f"{algo} {config.mode}" if algo == "inspo" else algo
        if config.regime != "one-step":
            method += f" ({config.regime})"
        scores = results["scores"]
        shown = " | ".join(f"{title} {scores[key]:.3f}" for key, title in env.score_columns if key in scores)
        lines.append(f"{task:<26} {method:<30} {config.seed:>4} {results['seconds']:>6.1f}s  {shown}")
    print("\n".join(lines))


def cmd_eval(args: argparse.Namespace) -> int:
    import torch

    from inspo.bc import make_policy_net, policy_fn
    from inspo.envs import make_env
    from inspo.run import eval_generator

    path = Path(args.checkpoint)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, weights_only=False)
    config = TrainConfig.from_dict(payload["config"])
    env = make_env(config)
    actor = make_policy_net(config, env.n_agents, env.obs_dim, env.n_actions)
    actor.load_state_dict(policy_state(payload))
    episodes = args.episodes or config.eval_episodes
    config.seed = args.seed
    scores = env.evaluate(policy_fn(actor), episodes=episodes, generator=eval_generator(config, payload["step"]))
    if args.json:
        print(json.dumps(scores, indent=2))
    else:
        print_table([(payload.get("algo", "?"), config, {"scores": scores, "seconds": 0.0})])
        print("\n".join(f"  {key}: {value:.4f}" for key, value in scores.items()))
    return 0


def policy_state(payload: dict[str, Any]) -> dict[str, Any]:
    """The policy network of a checkpoint (every algorithm saves it as "actor")."""
    if "actor" not in payload:
        raise ValueError(f"checkpoint holds no policy (keys: {sorted(payload)})")
    return payload["actor"]


if __name__ == "__main__":
    sys.exit(main())
