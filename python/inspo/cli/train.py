"""`inspo train`: one run, seeds batched in one process, the main job, or `--resume` of any of them.

inspo train                      the main job: XOR (c), M-NE imbalanced, Bridge optimal, then a table of scores
inspo train --env xor --dataset d --mode exact --seed 3 --set inspo.eta=0.5 --out runs/x
inspo train --env xor --dataset c --mode simultaneous --regime full-update
inspo train --config run.yaml --set lr=1e-3      a YAML / JSON file of config fields, --set on top
inspo train --out runs/x --resume [--steps N]    continue (or extend to N steps) the run in runs/x
inspo train --dataset-path DATA  a dataset-only run (any format and shapes; no evaluation)
inspo train --dataset-path DATA --env my_envs:make_env   ... evaluated in a user environment
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any, Optional

from inspo.config import (
    REGIMES,
    TrainConfig,
    fields_help,
    load_config_file,
    make_config,
    options_help,
    parse_overrides,
    task_name,
)
from inspo.dependencies import require

# the main job: (env, dataset, mode) with the env presets. Bridge trains in the exact mode (Algorithm 1): its
# fused runs find the optimal path in most seeds but not all, and which seeds fail moves with float rounding
# (docs/PERFORMANCE.md#less-work-per-iteration); the exact mode finds it in each
DEFAULT_JOB = (("xor", "c", "fused"), ("mne", "imbalanced", "fused"), ("bridge", "optimal", "exact"))
DEFAULT_JOB_OUT = "runs/default"
MAIN_JOB = "job.json"  # in the main job's folder: its overrides and seeds, what `--resume` continues it with


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train one run, or with no --env the main job (XOR c, M-NE imbalanced, Bridge optimal) and its table."
    )
    parser.epilog = fields_help() + "\n\n" + options_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--env",
        help="xor, mne, bridge (smax:<map> when installed), or a user environment "
        "module:factory; omit for the main job, or with --dataset-path for a "
        "dataset-only run (no evaluation)",
    )
    parser.add_argument("--dataset", help="dataset name of the env (default: the env preset's)")
    parser.add_argument(
        "--dataset-path",
        help="train on this dataset instead: a PyMARL .npy folder, an HDF5 file "
        "or an OG-MARL vault (see inspo data info)",
    )
    parser.add_argument(
        "--dataset-format", choices=("auto", "npy", "h5", "vault"), help="format of --dataset-path (default: detected)"
    )
    parser.add_argument(
        "--episode-limit",
        type=int,
        help="time limit of the dataset's episodes, for data that flags time-limit ends as "
        "terminal: an episode that ran this many steps was cut (bootstrapped)",
    )
    parser.add_argument("--algo", help="an algorithm of inspo.algorithms: inspo, bc, omiga, cfcql (default inspo)")
    parser.add_argument("--mode", choices=("fused", "exact", "simultaneous"), help="InSPO update mode")
    parser.add_argument(
        "--regime",
        choices=tuple(REGIMES),
        help="update regime (default one-step; see inspo.config.REGIMES and docs/ALGORITHM.md#update-regimes)",
    )
    parser.add_argument("--seed", type=int, help="seed of data, initialization and sampling (default 0)")
    parser.add_argument(
        "--seeds",
        type=parse_seeds,
        metavar="LIST",
        help="train these seeds batched in one process, e.g. 0-4 or 0,3,7: one run folder OUT/seedK each",
    )
    parser.add_argument(
        "--steps",
        type=int,
        help="training iterations (default: the env preset's; a preset's critic warm-up scales with them); "
        "--algo bc: its behaviour-cloning steps (bc_steps)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="a YAML or JSON file of TrainConfig fields (the same fields as --set, which wins)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any TrainConfig field, e.g. --set lr=1e-3, or an option of the env or algorithm "
        "as SECTION.FIELD, e.g. --set xor.variant=plain (repeatable; the options are listed below)",
    )
    parser.add_argument("--out", help="output folder (metrics, checkpoints, results); default under runs/")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out (default: the main job in runs/default) with its own config "
        "(--steps N: extend it to N steps)",
    )
    parser.add_argument(
        "--allow-dataset-change",
        action="store_true",
        help="with --resume: continue even though the dataset's files changed since the checkpoint",
    )
    parser.add_argument("--overwrite", action="store_true", help="delete the run already in --out and start over")
    parser.add_argument("--tensorboard", action="store_true", help="also write TensorBoard scalars")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from inspo.loop import train
    from inspo.runfolder import claim_run_folder

    if args.resume:
        return resume_run(args)
    if args.allow_dataset_change:
        raise ValueError("--allow-dataset-change goes with --resume (a fresh run records the dataset it trains on)")
    # lowest to highest precedence: the env preset (make_config), --config FILE, --set, the flags
    values = load_config_file(args.config) if args.config else {}
    values.update(parse_overrides(args.overrides))
    for name in (
        "env",
        "algo",
        "dataset",
        "dataset_path",
        "dataset_format",
        "episode_limit",
        "regime",
        "seed",
        "steps",
    ):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    if args.mode is not None:  # InSPO's update mode, an InSPO option (another algorithm's run refuses it)
        values["inspo.mode"] = args.mode
    if values.get("algo") == "bc" and args.steps is not None:  # BC's iterations are its behaviour-cloning steps
        values["bc_steps"] = values.pop("steps")  # (the flag wins over --set bc_steps, as flags do)
    if args.tensorboard:
        values["tensorboard"] = True
    if values.get("tensorboard"):
        require("tensorboard", "--tensorboard", "'inspo[tensorboard]'")
    if args.seeds is not None and args.seed is not None:
        raise ValueError("give --seed or --seeds, not both")
    if "env" not in values and values.get("dataset_path") is None:
        return run_default_job(args, values)
    # a dataset path without an env: a dataset-only run (trains and logs, evaluation skipped)
    env = values.pop("env", None if values.get("dataset_path") else "xor")
    if args.seeds is not None:
        configs = [make_config(env, **{**values, "seed": seed}) for seed in args.seeds]
        out = Path(args.out or default_out_dir(configs[0]).rsplit("-s", 1)[0])
        args.run_folder = out
        print_table(train_seed_folders(configs, [out / f"seed{seed}" for seed in args.seeds], args))
        print(f"run folders: {out}/seed{{{','.join(map(str, args.seeds))}}}")
        return 0
    config = make_config(env, **values)
    out = args.out or default_out_dir(config)
    claim_run_folder(out, overwrite=args.overwrite)
    args.run_folder = Path(out)
    results = train(config, out_dir=out, overwrite=args.overwrite, progress=not args.quiet)
    print_table([(config.algo, config, results)])
    print(f"run folder: {out}")
    return 0


def parse_seeds(text: str) -> list[int]:
    """ "0-4" -> [0, 1, 2, 3, 4]; "0,3,7" -> [0, 3, 7]."""
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


def train_seed_folders(
    configs: list[TrainConfig],
    folders: list[Path],
    args: argparse.Namespace,
    *,
    resume: bool = False,
    overwrite: Optional[bool] = None,
) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """Runs that differ only in their seed, batched (inspo.loop.train_seeds): the table rows. A fresh
    run's folder must be empty unless `overwrite` (default: --overwrite)."""
    from inspo.loop import train_seeds
    from inspo.runfolder import claim_run_folder

    overwrite = args.overwrite if overwrite is None else overwrite
    if not resume:
        for folder in folders:
            claim_run_folder(folder, overwrite=overwrite)
    results = train_seeds(
        configs,
        folders,
        resume=resume,
        overwrite=overwrite and not resume,
        allow_dataset_change=args.allow_dataset_change,
        progress=not args.quiet,
    )
    return [(config.algo, config, result) for config, result in zip(configs, results)]


def resume_run(args: argparse.Namespace) -> int:
    """--resume: continue the run in --out from its checkpoint with the checkpoint's config (--steps
    may extend it); a run killed before its first checkpoint starts over from its config.json. The
    main job's folder (runs/default, or --out holding job.json) continues every task of the main job."""
    from inspo.loop import train
    from inspo.runfolder import CHECKPOINT, CONFIG, load_checkpoint, read_run_config

    changed = [
        flag
        for flag, value in (
            ("--env", args.env),
            ("--dataset", args.dataset),
            ("--dataset-path", args.dataset_path),
            ("--dataset-format", args.dataset_format),
            ("--episode-limit", args.episode_limit),
            ("--algo", args.algo),
            ("--mode", args.mode),
            ("--regime", args.regime),
            ("--seed", args.seed),
            ("--seeds", args.seeds),
            ("--config", args.config),
            ("--set", args.overrides),
            ("--tensorboard", args.tensorboard),
            ("--overwrite", args.overwrite),
        )
        if value
    ]
    if changed:
        raise ValueError(
            f"--resume continues the run with its own config; only --steps can change it (got {', '.join(changed)})"
        )
    out = Path(args.out or DEFAULT_JOB_OUT)
    if (out / MAIN_JOB).is_file():
        return resume_default_job(args, out)
    if not args.out:
        raise ValueError(
            f"--resume needs --out, the folder of the run to continue (there is no main job in {DEFAULT_JOB_OUT} "
            "to continue)"
        )
    checkpoint_path = out / CHECKPOINT
    seed_folders = sorted(path.parent for path in out.glob("seed*/" + CHECKPOINT))
    if not checkpoint_path.exists() and not (out / CONFIG).is_file() and seed_folders:
        # a batched run (--seeds): its seeds resume together
        configs = [TrainConfig.from_dict(load_checkpoint(folder / CHECKPOINT)["config"]) for folder in seed_folders]
        if args.steps is not None:
            configs = [TrainConfig.from_dict({**config.to_dict(), "steps": args.steps}) for config in configs]
        args.run_folder = out
        print_table(train_seed_folders(configs, seed_folders, args, resume=True))
        return 0
    if checkpoint_path.exists():
        checkpoint = load_checkpoint(checkpoint_path)
        config = TrainConfig.from_dict(checkpoint["config"])
        step, resume = checkpoint["step"], True
        if checkpoint["algo"] == "bc":
            raise ValueError(f"the bc run in {out} has no iterations to resume; --overwrite reruns it")
        target = config.steps if args.steps is None else args.steps
        if target < step:
            raise ValueError(f"--steps {target} is below the {step} steps the run in {out} has trained")
        if step >= config.steps and target == step:
            raise ValueError(
                f"the run in {out} is finished ({step} of {config.steps} steps); "
                f"--resume --steps N (N > {step}) extends it"
            )
    elif (out / CONFIG).is_file():  # killed before its first checkpoint: nothing to keep but the config
        config, resume = read_run_config(out), False
    else:
        raise FileNotFoundError(f"no checkpoint (or config.json) to resume from in {out}")
    if args.steps is not None:
        config = TrainConfig.from_dict({**config.to_dict(), "steps": args.steps})
    args.run_folder = out
    results = train(
        config,
        out_dir=out,
        resume=resume,
        overwrite=not resume,  # a config.json alone: the run starts over
        allow_dataset_change=args.allow_dataset_change,
        progress=not args.quiet,
    )
    print_table([(config.algo, config, results)])
    return 0


def default_jobs(overrides: dict[str, Any], out_root: Path) -> list[tuple[TrainConfig, Path]]:
    """The main job's runs: (config, run folder) of each task of DEFAULT_JOB under `overrides`."""
    algo = overrides.get("algo", "inspo")
    sections = {env for env, _, _ in DEFAULT_JOB} | {algo}
    stray = sorted(name for name in overrides if "." in name and name.split(".")[0] not in sections)
    if stray:
        raise ValueError(f"{stray[0]}: the main job trains {', '.join(env for env, _, _ in DEFAULT_JOB)} with {algo}")

    def job_overrides(env: str) -> dict[str, Any]:  # an env's options go to that env's run only
        return {
            name: value for name, value in overrides.items() if name.split(".")[0] in (env, algo) or "." not in name
        }

    def job_mode(mode: str) -> dict[str, Any]:  # InSPO's mode of the task (another algorithm has none)
        return {"inspo.mode": mode} if algo == "inspo" else {}

    return [
        (make_config(env, dataset=dataset, **{**job_mode(mode), **job_overrides(env)}), out_root / f"{env}-{dataset}")
        for env, dataset, mode in DEFAULT_JOB
    ]


def run_default_job(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    from inspo.atomic import atomic_write_text
    from inspo.runfolder import claim_run_folder

    if "dataset" in overrides:
        raise ValueError("--dataset needs --env (the main job trains on its own datasets)")
    out_root = Path(args.out or DEFAULT_JOB_OUT)
    jobs = default_jobs(overrides, out_root)
    if (out_root / MAIN_JOB).is_file() and not args.overwrite:
        raise ValueError(
            f"the main job in {out_root} has run there before: inspo train{'' if args.out is None else ' --out ' + shlex.quote(str(out_root))}"
            " --resume continues it, --overwrite starts it over, or choose another --out"
        )
    for _, out in jobs:  # every folder before the first run trains
        claim_run_folder(out, overwrite=args.overwrite)
    out_root.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_root / MAIN_JOB, json.dumps({"overrides": overrides, "seeds": args.seeds}, indent=2) + "\n")
    args.run_folder = out_root
    rows = []
    for config, out in jobs:
        rows += train_task(config, out, args, fresh=True)
    print_table(rows)
    print(f"run folders under {out_root}/")
    return 0


def resume_default_job(args: argparse.Namespace, out_root: Path) -> int:
    """Continue the main job in `out_root`: its finished tasks are reported, the interrupted one resumes
    from its checkpoint, the ones not started yet train (with the job's overrides and seeds)."""
    try:
        job = json.loads((out_root / MAIN_JOB).read_text())
        overrides, seeds = dict(job["overrides"]), job["seeds"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{out_root / MAIN_JOB} cannot be read: {error}") from error
    if args.steps is not None:
        overrides["steps"] = args.steps
    args.seeds, args.run_folder = seeds, out_root
    rows = []
    for config, out in default_jobs(overrides, out_root):
        rows += train_task(config, out, args, fresh=False)
    print_table(rows)
    print(f"run folders under {out_root}/")
    return 0


def train_task(
    config: TrainConfig, out: Path, args: argparse.Namespace, *, fresh: bool
) -> list[tuple[str, TrainConfig, dict[str, Any]]]:
    """A task of the main job in `out` (with --seeds: its seeds batched, OUT/seedK): trained from the
    start when `fresh`; else each run continues where it stopped (finished: its results.json)."""
    from inspo.loop import train
    from inspo.runfolder import CHECKPOINT, RESULTS, load_checkpoint

    if args.seeds is not None:
        configs = [TrainConfig.from_dict({**config.to_dict(), "seed": seed}) for seed in args.seeds]
        folders = [out / f"seed{seed}" for seed in args.seeds]
    else:
        configs, folders = [config], [out]
    rows: list[Any] = [None] * len(configs)
    resumable, start = [], []
    for index, folder in enumerate(folders):
        checkpoint = None if fresh or not (folder / CHECKPOINT).is_file() else load_checkpoint(folder / CHECKPOINT)
        results = json.loads((folder / RESULTS).read_text()) if checkpoint and (folder / RESULTS).is_file() else {}
        if checkpoint is None:
            start.append(index)
        elif results.get("steps") == checkpoint["step"] and (args.steps is None or checkpoint["step"] >= args.steps):
            rows[index] = (checkpoint["algo"], TrainConfig.from_dict(checkpoint["config"]), results)
        else:
            resumable.append(index)
    for indices, resume in ((resumable, True), (start, False)):
        if not indices:
            continue
        # a fresh job's folders as --overwrite says; a continued job's unstarted runs start over cleanly
        overwrite = args.overwrite if fresh else not resume
        if args.seeds is None:  # one run
            results = train(
                config,
                out_dir=out,
                resume=resume,
                overwrite=overwrite,
                allow_dataset_change=args.allow_dataset_change,
                progress=not args.quiet,
            )
            trained = [(config.algo, config, results)]
        else:
            trained = train_seed_folders(
                [configs[i] for i in indices],
                [folders[i] for i in indices],
                args,
                resume=resume,
                overwrite=overwrite,
            )
        for i, row in zip(indices, trained):
            rows[i] = row
    return rows


def default_out_dir(config: TrainConfig) -> str:
    data = Path(config.dataset_path).name if config.dataset_path else config.dataset
    env = "dataset" if config.env is None else config.env.replace(":", "-")
    method = f"{config.algo}-{config.inspo.mode}" if config.algo == "inspo" else config.algo
    return f"runs/{env}-{data}-{method}-s{config.seed}"


def print_table(rows: list[tuple[str, TrainConfig, dict[str, Any]]]) -> None:
    """One line per run: task, algorithm and mode, seed, time (results["seconds"]; None: not a training,
    shown as -), then the env's summary scores."""
    from inspo.envs import make_env

    header = f"{'task':<26} {'algo':<30} {'seed':>4} {'time':>7}  scores"
    lines = [header, "-" * (len(header) + 50)]
    for algo, config, results in rows:
        env = make_env(config) if config.env is not None else None
        task = task_name(config)
        if config.env == "xor":
            task += f" ({config.env_options.variant})"
        method = f"{algo} {config.inspo.mode}" if algo == "inspo" else algo
        if config.regime != "one-step":
            method += f" ({config.regime})"
        scores = results["scores"]
        columns = getattr(env, "score_columns", None) or tuple((key, key) for key in scores)  # user envs may not say
        shown = " | ".join(f"{title} {scores[key]:.3f}" for key, title in columns if key in scores)
        if env is None:
            shown = "evaluation skipped: no environment (--env NAME or --env module:factory)"
        seconds = "-" if results["seconds"] is None else f"{results['seconds']:.1f}s"
        lines.append(f"{task:<26} {method:<30} {config.seed:>4} {seconds:>7}  {shown}")
    print("\n".join(lines))
