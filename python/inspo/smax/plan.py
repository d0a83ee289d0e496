"""The compute plan of the SMAX protocol: measure what one run costs at each map's shape, then price the
full grid (inspo.smax.protocol, scale "full") in CPU-hours and in wall time on N cores.

    python -m inspo.smax.plan --maps 3m 2s3z 3s_vs_5z 5m_vs_6m 6h_vs_8z --iterations 200 --out plan.json

Measured per map, on one thread (torch and XLA), torch.compile off (the trainers' default), in CPU seconds of
this process (a shared machine's wall time measures its other jobs):
* each method's training iteration with the tuning seeds batched (3; the 5 report seeds priced at 5/3 of it,
  an upper bound as batching only gets cheaper per seed), from
  the trainer's own metrics rows (seconds between two log rows, after a warm-up: no compile, no mu fit);
  the shape, not the data, sets the cost, so the data are a small scripted dataset made here;
* the final evaluation: the final policy on 256 battles, greedy and stochastic (inspo.smax.results);
* MAPPO's behaviour training per update (8,192 environment steps) and the rollout of scripted battles
  per episode (the dataset tiers' generation, priced with them).
Then the grid: curves, tune and report runs of inspo.smax.protocol at the full scale, its budget taken as
`--budget` (the curves decide it; default the full max_steps, an upper bound), datasets at CFCQL's recipe.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

MEASURED_SEEDS = 3  # the protocol's tuning seeds, batched in one process; its 5 report seeds are priced as 5/3 of it


class CpuClock:
    """This process's CPU seconds at the steps the trainer reports (train_seeds' on_step): on a shared
    machine the wall time says how busy the others were, the CPU time what an iteration costs."""

    def __init__(self, start: int):
        self.start, self.marks = start, {}

    def __call__(self, step: int) -> None:
        if step >= self.start:
            self.marks[step] = time.process_time()

    def per_step(self) -> float:
        first, last = min(self.marks), max(self.marks)
        return (self.marks[last] - self.marks[first]) / (last - first)


def cpu_and_wall(function, *args, **kwargs) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    function(*args, **kwargs)
    return time.process_time() - cpu, time.perf_counter() - wall


def measure_map(map_name: str, iterations: int, root: Path, log) -> dict:
    from inspo.loop import train_seeds
    from inspo.smax.protocol import METHODS, SCALES, _steps_fields
    from inspo.smax.results import GridConfig, run_config, write_final_eval
    from inspo.smax.tiers import DataConfig, build_dataset, make_dataset

    result: dict = dict(map=map_name)
    quiet = dict(log=lambda message: None)
    scripted = DataConfig(map_name=map_name, tier="scripted", episodes=64, root=root)
    result["scripted_64_seconds"] = cpu_and_wall(make_dataset, scripted, **quiet)[0]  # with the compile
    bigger = replace(scripted, episodes=256)
    result["rollout_seconds_per_episode"] = cpu_and_wall(build_dataset, bigger, **quiet)[0] / 256
    grid = GridConfig(data_root=root)
    scale = SCALES["full"]
    warmup = max(10, iterations // 4)
    result["iteration_seconds"] = {}
    last_run = None
    seeds = MEASURED_SEEDS
    for method in METHODS:
        configs, dirs = [], []
        for seed in range(seeds):
            extra = dict(
                _steps_fields(method, iterations, scale),
                bc_steps=iterations if method == "bc" else 20,
                eval_every=0,
                eval_episodes=1,
                log_every=max(1, warmup),
                threads=1,
            )
            config = run_config(grid, map_name, "scripted", method, seed, extra)
            configs.append(config)
            dirs.append(root / "runs" / map_name / method / f"s{seeds}" / f"seed{seed}")
        clock = CpuClock(warmup)
        train_seeds(configs, dirs, progress=False, on_step=clock)
        per = clock.per_step()
        result["iteration_seconds"][f"{method}/{seeds}"] = per
        log(f"{map_name} {method} x{seeds} seeds: {per * 1000:.2f} ms per iteration")
        last_run = dirs[0]
    # 256 battles greedy + 256 stochastic, CPU seconds: the first with the compile, then warm
    result["final_eval_seconds"] = cpu_and_wall(write_final_eval, last_run, scale.final_episodes, 0)[0]
    result["final_eval_warm_seconds"] = cpu_and_wall(write_final_eval, last_run, scale.final_episodes, 0)[0]
    return result


def measure_mappo(map_name: str, log) -> float:
    """CPU seconds per MAPPO update (8,192 environment steps): the wall time between the checkpoints after
    updates 4 and 6 (2 -> 4 holds the compile of the evaluation at update 2) times the share of a core the
    process had over the run."""
    from inspo.smax.ippo import PPOConfig, train

    config = PPOConfig(map_name=map_name, total_env_steps=6 * 8192, checkpoint_every=2, eval_episodes=8)
    with tempfile.TemporaryDirectory() as directory:
        cpu, wall = time.process_time(), time.perf_counter()
        progress = train(config, Path(directory), log=lambda message: None)["progress"]
        share = (time.process_time() - cpu) / (time.perf_counter() - wall)  # of a core, over the whole run
    last, before = progress[-1], progress[-2]
    per = (last["seconds"] - before["seconds"]) / (last["update"] - before["update"]) * share
    log(f"{map_name} MAPPO: {per:.2f} s per update")
    return per


def grid_cost(measured: dict, budget: int, mappo: dict) -> dict:
    """CPU-seconds of the full protocol on one map (datasets apart), per phase, and the longest seed group."""
    from inspo.smax.protocol import SCALES, TEMPERATURES
    from inspo.smax.tiers import BEHAVIOUR_PRESETS, RECIPE_EPISODES

    scale = SCALES["full"]
    tiers = len(scale.tiers)
    per = measured["iteration_seconds"]
    evaluation = measured["final_eval_warm_seconds"]  # one seed's final evaluation
    battle = evaluation / (2 * scale.final_episodes)
    mu = per["bc/3"] * scale.mu_steps  # InSPO's behaviour fit, per run

    def group(method: str, seeds: int, steps: int, evals: float) -> float:
        fit = mu if method.startswith("inspo") else 0.0
        return (per[f"{method}/{MEASURED_SEEDS}"] * steps + fit) * seeds / MEASURED_SEEDS + evals

    curve_evals = (scale.max_steps // scale.eval_every) * 2 * scale.curve_episodes * battle * 3
    phases: dict[str, list[float]] = dict(curves=[], tune=[], report=[])
    for method, temperature in TEMPERATURES.items():
        values = 3 if temperature else 1
        for _ in range(tiers):
            phases["curves"].append(group(method, 3, scale.max_steps, curve_evals))
            phases["tune"] += [group(method, 3, budget, 3 * evaluation)] * values
            phases["report"].append(group(method, 5, budget, 5 * evaluation))
    steps = BEHAVIOUR_PRESETS.get(measured["map"], {}).get("total_env_steps", 2_000_000)
    updates = steps // 8192
    # MAPPO, then expert + medium + mixed rollouts, then the replay of training up to medium (at most all of it)
    dataset = updates * mappo[measured["map"]] * 2 + 3 * RECIPE_EPISODES * measured["rollout_seconds_per_episode"]
    return dict(
        phases={name: sum(groups) for name, groups in phases.items()},
        longest={name: max(groups) for name, groups in phases.items()},
        groups={name: len(groups) for name, groups in phases.items()},
        dataset=dataset,
        mappo_updates=updates,
    )


def wall_seconds(costs: list[dict], cores: int) -> float:
    """Wall time of the protocol on the maps of `costs` with `cores` one-thread slots: the datasets (one
    process per map), then each phase as one sweep over every map, at least its longest seed group."""

    def stage(total: float, longest: float) -> float:
        return max(total / cores, longest)

    datasets = stage(sum(c["dataset"] for c in costs), max(c["dataset"] for c in costs))
    return datasets + sum(
        stage(sum(c["phases"][p] for c in costs), max(c["longest"][p] for c in costs)) for p in costs[0]["phases"]
    )


def format_hours(seconds: float) -> str:
    hours = seconds / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} h"


def markdown(plan: dict) -> str:
    lines = [
        f"Measured {plan['date']} by `{plan['command']}` ({plan['machine']}; load average "
        f"{plan['load_average'][0]:.1f} at the end; one thread, compile off; CPU seconds of the process).",
        "",
        "| map | "
        + " | ".join(f"{m} ms/iteration" for m in plan["methods"])
        + " | final eval 2x256 battles (s) | MAPPO s/update |",
        "|---|" + "---|" * (len(plan["methods"]) + 2),
    ]
    for row in plan["maps"]:
        cells = [f"{row['iteration_seconds'][f'{m}/{MEASURED_SEEDS}'] * 1000:.1f}" for m in plan["methods"]]
        lines.append(
            f"| {row['map']} | " + " | ".join(cells) + f" | {row['final_eval_warm_seconds']:.1f} | "
            f"{plan['mappo'][row['map']]:.2f} |"
        )
    lines += [
        "",
        f"The full grid at budget {plan['budget']:,} steps (curves to {plan['max_steps']:,}), in CPU-hours:",
        "",
        "| map | datasets | curves | tune | report | total | wall of this map alone on 16 / 64 cores |",
        "|---|---|---|---|---|---|---|",
    ]
    costs = [row["cost"] for row in plan["maps"]]
    for row in plan["maps"]:
        cost = row["cost"]
        hours = [cost["dataset"] / 3600] + [cost["phases"][p] / 3600 for p in ("curves", "tune", "report")]
        walls = " / ".join(f"{wall_seconds([cost], n) / 3600:.1f} h" for n in (16, 64))
        lines.append(f"| {row['map']} | " + " | ".join(f"{h:.1f}" for h in hours) + f" | {sum(hours):.1f} | {walls} |")
    total = sum(c["dataset"] + sum(c["phases"].values()) for c in costs) / 3600
    walls = ", ".join(f"{format_hours(wall_seconds(costs, n))} on {n} cores" for n in (2, 16, 64, 256))
    lines += ["", f"All maps in one command: {total:.0f} CPU-hours; wall time {walls}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspo.smax.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "2s3z", "3s_vs_5z", "5m_vs_6m"])
    parser.add_argument("--iterations", type=int, default=200, help="training iterations timed per method")
    parser.add_argument("--budget", type=int, default=None, help="the grid's budget (default: the full max_steps)")
    parser.add_argument("--out", type=Path, default=Path("smax_plan.json"))
    parser.add_argument("--mappo-maps", nargs="*", default=None, help="maps whose MAPPO update is timed (default all)")
    parser.add_argument("--table-only", action="store_true", help="reprint the tables of an existing --out")
    args = parser.parse_args(argv)
    if args.table_only:
        print(markdown(json.loads(args.out.read_text())))
        return 0
    torch.set_num_threads(1)
    from inspo.results.report import machine_description
    from inspo.smax.protocol import METHODS, SCALES

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    budget = args.budget or SCALES["full"].max_steps
    mappo_maps = args.maps if args.mappo_maps is None else args.mappo_maps
    mappo = {name: measure_mappo(name, log) for name in mappo_maps}
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure_map(name, args.iterations, Path(directory), log) for name in args.maps]
    for row in rows:  # a map without its own MAPPO timing takes the largest measured one (an upper bound)
        mappo.setdefault(row["map"], max(mappo.values()))
        row["cost"] = grid_cost(row, budget, mappo)
    plan = dict(
        date=time.strftime("%Y-%m-%d"),
        command="python -m inspo.smax.plan " + " ".join(argv if argv is not None else sys.argv[1:]),
        machine=machine_description(),
        load_average=os.getloadavg(),  # > the cores: the machine was shared, and the times are upper bounds
        methods=list(METHODS),
        budget=budget,
        max_steps=SCALES["full"].max_steps,
        mappo=mappo,
        maps=rows,
    )
    args.out.write_text(json.dumps(plan, indent=1) + "\n")
    print(markdown(plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
