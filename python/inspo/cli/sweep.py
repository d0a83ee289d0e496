"""`inspo sweep SPEC`: run a sweep spec (JSON or YAML, see inspo.sweep.spec) on Ray.

    inspo sweep sweeps/xor-eta.yaml                       Ray on this machine (started and stopped here)
    inspo sweep sweeps/xor-eta.yaml --address auto        join the cluster this machine belongs to
    inspo sweep sweeps/xor-eta.yaml --address 10.0.0.5:6379 --cpus-per-run 2 --gpus-per-run 1

Writes the run folders, <out>/marl_eval.json and <out>/summary.md, and prints the summary.
"""

from __future__ import annotations

import argparse
import sys

from inspo.sweep.spec import load_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="the sweep spec: a .json, .yaml or .yml file")
    add_ray_arguments(parser)
    parser.add_argument("--list", action="store_true", help="print the runs and their folders, run nothing")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of every command that runs a sweep (inspo sweep, python -m experiments.results)."""
    parser.add_argument("--address", help="a Ray cluster to join: auto or HOST:PORT (default: start Ray here)")
    parser.add_argument(
        "--cpus-per-run", type=float, default=1.0, help="CPUs of each run (its torch threads; default 1)"
    )
    parser.add_argument(
        "--gpus-per-run",
        type=float,
        default=0.0,
        help="GPUs of each run (> 0: the runs train on device cuda; default 0)",
    )
    parser.add_argument(
        "--num-cpus",
        type=int,
        help="CPUs of the Ray started here (default: all of this machine's; ignored with --address)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="times a failed or lost seed group is tried again (default 2)"
    )
    parser.add_argument(
        "--seeds-per-process",
        type=positive_int,
        help="train at most this many of a config's seeds batched in one process (default: all of them; 1: a "
        "process per seed, faster per seed on a CPU at large batches, docs/PERFORMANCE.md)",
    )


def sweep_options(args: argparse.Namespace) -> dict:
    return dict(
        address=args.address,
        cpus_per_run=args.cpus_per_run,
        gpus_per_run=args.gpus_per_run,
        num_cpus=args.num_cpus,
        retries=args.retries,
        seeds_per_process=args.seeds_per_process,
    )


def run(args: argparse.Namespace) -> int:
    from inspo.sweep.report import Entry, write_outputs
    from inspo.sweep.runner import run_sweep

    try:
        name, out, runs = load_spec(args.spec)
        if args.list:
            for run in runs:
                print(f"{run.name} seed {run.seed}: {run.out_dir}")
            print(f"{len(runs)} runs")
            return 0
        print(f"inspo sweep {name}: {len(runs)} runs, run folders under {out}/", flush=True)
        outcome = run_sweep(runs, **sweep_options(args))
    except (ValueError, FileNotFoundError) as error:
        print(f"inspo sweep: error: {error}", file=sys.stderr)
        return 2
    entries = [
        Entry(run.config, task_name(run.config), run.name, run.out_dir, outcome.results[(run.name, run.seed)])
        for run in runs
        if (run.name, run.seed) in outcome.results
    ]
    if entries:
        marl_eval, summary = write_outputs(out, entries, title=f"Sweep {name}")
        print(summary.read_text())
        print(f"wrote {summary} and {marl_eval}")
    if outcome.failures:
        print(
            f"inspo sweep: {len(outcome.failures)} seed groups failed:\n  " + "\n  ".join(outcome.failures),
            file=sys.stderr,
        )
        return 1
    return 0


def task_name(config) -> str:
    """A run's task: its dataset (folder or name), and the payoff variant on XOR."""
    from pathlib import Path

    task = Path(config.dataset_path).name if config.dataset_path else config.dataset
    return f"{task} ({config.env_options.variant})" if config.env == "xor" else task
