"""`python -m experiments.results`: every algorithm x environment x dataset x seed of docs/RESULTS.md, by one command.

    python -m experiments.results                    the full grid, 5 seeds (about an hour on 2 CPU cores)
    python -m experiments.results --quick            a CI-sized grid (fewer cells, steps and seeds; a few minutes)
    python -m experiments.results --only xor-c --seeds 2 --steps 100 --out runs/try --docs runs/try
    python -m experiments.results --address auto     the same on the Ray cluster this machine belongs to

The grid is a sweep (inspo.sweep) on Ray: each cell's seeds are one task, finished runs are reused (keyed by
their full config and the code version) and a lost or failed task is retried, so an interrupted reproduce
continues where it stopped. At the end the generated regions of RESULTS.md (tables, verdicts, plots; the
prose around them is hand-written; the SMAX protocol's region is `python -m experiments.smax`'s) and
results/*.png are rewritten under --docs (docs/ for the full grid; the run folder for --quick, so that a
CI-sized run never overwrites the committed results), and <out>/marl_eval.json holds every run in marl-eval's
layout.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from experiments.results.figures import make_figures
from experiments.results.grid import QUICK_SEEDS, SEEDS, build_grid, cell_config, grid_runs, train_command
from experiments.results.report import write_results_md
from experiments.results.scores import CellResult
from inspo.cli.sweep import add_ray_arguments, sweep_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="the CI-sized grid (fewer cells, steps, seeds)")
    parser.add_argument("--seeds", type=int, help=f"seeds 0..N-1 (default {SEEDS}, quick {QUICK_SEEDS})")
    parser.add_argument("--steps", type=int, help="training iterations of every run (default: per env, see STEPS)")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only cells whose key contains TEXT (repeatable: any of them)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a TrainConfig field in every run (repeatable)",
    )
    parser.add_argument("--out", help="run folders (default runs/reproduce, quick runs/reproduce-quick)")
    parser.add_argument("--docs", help="where RESULTS.md and results/*.png go (default docs/; quick: --out)")
    parser.add_argument("--list", action="store_true", help="print the cells and their commands, run nothing")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: write RESULTS.md and the plots from the runs already finished",
    )
    add_ray_arguments(parser)


def command_line(args: argparse.Namespace) -> str:
    """The `python -m experiments.results ...` invocation that reproduces `args` (where the runs ran is no part of it)."""
    words = ["python", "-m", "experiments.results"]
    if args.quick:
        words.append("--quick")
    for name in ("seeds", "steps", "out", "docs"):
        value = getattr(args, name)
        if value is not None:
            words += [f"--{name}", str(value)]
    for text in args.only:
        words += ["--only", text]
    for pair in args.overrides:
        words += ["--set", pair]
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    try:
        return reproduce(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"python -m experiments.results: error: {error}", file=sys.stderr)
        return 2


def reproduce(args: argparse.Namespace) -> int:
    from inspo.config import parse_overrides
    from inspo.dependencies import require
    from inspo.sweep.execute import code_version, finished_result, run_key
    from inspo.sweep.report import Entry, marl_eval_json
    from inspo.sweep.runner import ray_session, run_sweep

    if not args.list:  # before any run trains: the figures come last
        require("matplotlib", "python -m experiments.results (its figures)", "'inspo[plots]'")
    start = time.perf_counter()
    extra = parse_overrides(args.overrides)
    seeds = list(range(args.seeds if args.seeds is not None else QUICK_SEEDS if args.quick else SEEDS))
    if not seeds:
        raise ValueError("--seeds must be >= 1")
    out_root = Path(args.out or ("runs/reproduce-quick" if args.quick else "runs/reproduce"))
    docs = Path(args.docs or (out_root if args.quick else "docs"))
    cells = [c for c in build_grid() if (c.quick or not args.quick)]
    if args.only:
        cells = [c for c in cells if any(text in c.key for text in args.only)]
    if not cells:
        raise ValueError("no cell matches --only")
    runs = grid_runs(cells, seeds, args.quick, args.steps, extra, out_root)
    if args.list:
        for cell in cells:
            print(f"{cell.key}: {train_command(cell, cell_config(cell, 0, args.quick, args.steps, extra))}")
        print(f"{len(cells)} cells x {len(seeds)} seeds = {len(runs)} runs")
        return 0
    print(
        f"python -m experiments.results: {len(cells)} cells x {len(seeds)} seeds = {len(runs)} runs, run folders under {out_root}/",
        flush=True,
    )

    failures: list[str] = []
    if args.report_only:
        version = code_version()
        finished = {
            (run.name, run.seed): result
            for run in runs
            if (result := finished_result(run.out_dir, run_key(run.config, run.finish_spec, version)))
        }
    else:
        with ray_session(args.address, args.num_cpus):
            outcome = run_sweep(runs, **sweep_options(args))
            finished, failures = outcome.results, outcome.failures
    results = [
        CellResult(c, {seed: finished[(c.key, seed)] for seed in seeds if (c.key, seed) in finished}) for c in cells
    ]

    out_root.mkdir(parents=True, exist_ok=True)
    (out_root / "marl_eval.json").write_text(
        json.dumps(
            marl_eval_json(
                [
                    Entry(run.config, cell.task, cell.method, run.out_dir, finished[(run.name, run.seed)])
                    for cell in cells
                    for run in runs
                    if run.name == cell.key and (run.name, run.seed) in finished
                ]
            ),
            indent=1,
        )
        + "\n"
    )
    figure_dir = docs / "results"
    figures = [f"results/{name}" for name in make_figures(results, out_root, figure_dir)]
    figure_dir.mkdir(parents=True, exist_ok=True)
    (figure_dir / "configs.json").write_text(
        json.dumps(
            {f"{r.cell.key}/seed{seed}": run["config"] for r in results for seed, run in sorted(r.runs.items())},
            indent=1,
        )
        + "\n"
    )
    reused = sum(1 for result in finished.values() if result.get("reused"))
    notes = [
        f"Cells of the {'quick' if args.quick else 'full'} grid: {len(cells)}; runs: {len(runs)} "
        + (f"({len(finished)} finished)." if args.report_only else f"({reused} reused from an earlier invocation).")
    ]
    notes += [f"FAILED (not in the tables): {failure}" for failure in failures]
    missing = [run for run in runs if (run.name, run.seed) not in finished]
    if missing and not failures:
        notes.append(
            f"Not finished when these tables were written: {len(missing)} of {len(runs)} runs (seeds "
            f"{', '.join(map(str, sorted({run.seed for run in missing})))}); the *seeds* column gives each "
            "cell's count. Rerun the same command to complete them."
        )
    write_results_md(
        docs / "RESULTS.md",
        results,
        command=command_line(args),
        wall_seconds=None if args.report_only else time.perf_counter() - start,
        quick=args.quick,
        seeds=seeds,
        figures=figures,
        notes=notes,
    )
    print(f"wrote {docs / 'RESULTS.md'}, {out_root / 'marl_eval.json'} and {len(figures)} figures under {figure_dir}/")
    if failures:
        print(
            f"python -m experiments.results: {len(failures)} seed groups failed:\n  " + "\n  ".join(failures),
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.results", description=__doc__.split("\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
