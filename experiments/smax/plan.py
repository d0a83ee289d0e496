"""The compute plan of the SMAX protocol: measure what one run costs at each map's shape, then price the
full grid (experiments.smax.protocol, scale "full") in CPU-hours and in wall time on N cores.

    python -m experiments.smax.plan --maps 3m 2s3z 3s_vs_5z 5m_vs_6m 6h_vs_8z --iterations 200 --out plan.json

Measured per map, on one thread (torch and XLA), torch.compile off (the trainers' default), in CPU seconds of
this process (a shared machine's wall time measures its other jobs):
* each method's training iteration with the tuning seeds batched (3; the 5 report seeds priced at 5/3 of it,
  an upper bound as batching only gets cheaper per seed), from
  the trainer's own metrics rows (seconds between two log rows, after a warm-up: no compile, no mu fit);
  the shape, not the data, sets the cost, so the data are a small scripted dataset made here;
* the final evaluation: the final policy on 256 battles, greedy and stochastic (experiments.smax.results);
* MAPPO's behaviour training per update (8,192 environment steps) and the rollout of scripted battles
  per episode (the dataset tiers' generation, priced with them).
Then the grid: curves, tune and report runs of experiments.smax.protocol at the full scale, its budget taken as
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
    from experiments.smax.protocol import METHODS, SCALES, _steps_fields
    from experiments.smax.results import GridConfig, run_config, write_final_eval
    from inspo.loop import train_seeds
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


def protocol_cost(measured: dict, budget: int, mappo: dict, scale=None, methods=None) -> dict:
    """CPU-seconds of the protocol at `scale` (default full) with `methods` (default all) on one map, per
    phase, and the longest seed group; its datasets apart."""
    from experiments.smax.protocol import METHODS, SCALES, TEMPERATURES
    from inspo.smax.tiers import BEHAVIOUR_PRESETS, RECIPE_EPISODES

    scale = scale or SCALES["full"]
    per = measured["iteration_seconds"]
    evaluation = measured["final_eval_warm_seconds"]  # one seed's final evaluation
    battle = evaluation / (2 * scale.final_episodes)
    mu = per[f"bc/{MEASURED_SEEDS}"] * scale.mu_steps  # InSPO's behaviour fit, per run

    def group(method: str, seeds: int, steps: int, evals: float) -> float:
        fit = mu if method.startswith("inspo") else 0.0
        return (per[f"{method}/{MEASURED_SEEDS}"] * steps + fit) * seeds / MEASURED_SEEDS + evals

    curve_seeds, tune_seeds = len(scale.tuning_seeds), len(scale.tune_seed_list)
    curve_evals = (scale.max_steps // scale.eval_every) * 2 * scale.curve_episodes * battle * curve_seeds
    tuned = [t for t in scale.tiers if scale.tune_tiers is None or t in scale.tune_tiers]
    phases: dict[str, list[float]] = dict(curves=[], tune=[], report=[])
    for method in methods or METHODS:
        values = 3 if TEMPERATURES[method] else 1
        phases["curves"] += [group(method, curve_seeds, scale.max_steps, curve_evals)] * len(scale.curve_tier_list)
        phases["tune"] += [group(method, tune_seeds, budget, tune_seeds * evaluation)] * values * len(tuned)
        report_seeds = len(scale.report_seeds)
        phases["report"] += [group(method, report_seeds, budget, report_seeds * evaluation)] * len(scale.tiers)
    steps = BEHAVIOUR_PRESETS.get(measured["map"], {}).get("total_env_steps", 2_000_000)
    updates = steps // 8192
    # MAPPO, then the expert, medium and mixed rollouts and the medium-replay's (counted as many again: it is as
    # many episodes as training played until medium, which is not known before training)
    dataset = updates * mappo[measured["map"]] + 4 * RECIPE_EPISODES * measured["rollout_seconds_per_episode"]
    return dict(
        phases={name: sum(groups) for name, groups in phases.items()},
        longest={name: max(groups, default=0.0) for name, groups in phases.items()},
        groups={name: len(groups) for name, groups in phases.items()},
        dataset=dataset,
        mappo_updates=updates,
    )


def total_hours(costs: list[dict]) -> float:
    return sum(c["dataset"] + sum(c["phases"].values()) for c in costs) / 3600


# A campaign that does not fit its CPU-hours is cut in this order until it fits (the report's seeds, its tiers,
# the two required maps and the four required methods are never cut): InSPO exact; the optional map 3m; the
# tuning grid (tuned on the curve tiers only, the choice reused on the map's other tiers; then one tuning seed);
# only then the budget, stated as shorter than where the curves flattened.
OPTIONAL_METHODS = ("inspo-exact",)
OPTIONAL_MAPS = ("3m",)


def fit_campaign(rows: list[dict], mappo: dict, scale, maps, methods, budget: int, limit_hours: float) -> dict:
    """The campaign's cuts: the settings that fit `limit_hours` CPU-hours at `budget` and why each cut was
    made. `rows`: measure_map's results per map. Returns dict(maps, methods, cuts (the Scale fields to set),
    steps (one line per cut with the price before and after), hours)."""
    from dataclasses import replace as replace_fields

    measured = {row["map"]: row for row in rows}
    missing = [m for m in maps if m not in measured]
    if missing:
        raise ValueError(f"no measurement of {', '.join(missing)}: run the plan with --maps {' '.join(maps)}")
    maps, methods, cuts, steps = list(maps), list(methods), {}, []

    def price(current_scale, current_budget: int) -> float:
        capped = min(current_budget, current_scale.budget_cap or current_budget)
        return total_hours([protocol_cost(measured[m], capped, mappo, current_scale, methods) for m in maps])

    current = scale
    hours = price(current, budget)

    def cut(line: str) -> None:
        nonlocal hours
        after = price(current, budget)
        steps.append(f"{line}: {hours:.1f} -> {after:.1f} CPU-hours")
        hours = after

    for method in OPTIONAL_METHODS:
        if hours > limit_hours and method in methods:
            methods.remove(method)
            cut(f"dropped {method}")
    for name in OPTIONAL_MAPS:
        if hours > limit_hours and name in maps:
            maps.remove(name)
            cut(f"dropped map {name}")
    if hours > limit_hours and current.tune_tiers is None:
        current = replace_fields(current, tune_tiers=current.curve_tier_list)
        cuts["tune_tiers"] = list(current.curve_tier_list)
        cut(f"tuned on {' and '.join(current.curve_tier_list)} only, each choice reused on the map's other tiers")
    if hours > limit_hours and len(current.tune_seed_list) > 1:
        current = replace_fields(current, tune_seeds=current.tune_seed_list[:1])
        cuts["tune_seeds"] = list(current.tune_seed_list)
        cut(f"one tuning seed ({current.tune_seed_list[0]})")
    if hours > limit_hours:
        step = current.eval_every
        cap = max(
            (
                b
                for b in range(step, budget, step)
                if price(replace_fields(current, budget_cap=b), budget) <= limit_hours
            ),
            default=None,
        )
        if cap is None:
            raise ValueError(f"no budget fits {limit_hours} CPU-hours: the curves alone cost {hours:.1f}")
        current = replace_fields(current, budget_cap=cap)
        cuts["budget_cap"] = cap
        cut(f"budget capped at {cap:,} steps (priced at {budget:,})")
    return dict(maps=maps, methods=methods, cuts=cuts, steps=steps, hours=hours, budget=budget)


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
    return measured_table(plan) + "\n" + grid_table(plan)


def measured_table(plan: dict) -> str:
    """What one iteration of each method costs at each map's shape, and the final evaluation and MAPPO update."""
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
    return "\n".join(lines) + "\n"


def grid_table(plan: dict) -> str:
    """The full protocol's price per map and phase, and its wall time on N cores."""
    lines = [
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


def campaign_markdown(plan: dict, fit: dict, limit_hours: float) -> str:
    """The campaign's price per map and phase at the fitted settings, and the cuts that made it fit."""
    from experiments.smax.protocol import SCALES

    scale = SCALES[plan["campaign"]["scale"]]
    from dataclasses import replace as replace_fields

    cuts = {k: tuple(v) if isinstance(v, list) else v for k, v in fit["cuts"].items()}
    fitted = replace_fields(scale, **cuts)
    budget = min(fit["budget"], fitted.budget_cap or fit["budget"])
    lines = [
        f"The campaign at budget {budget:,} steps (curves to {scale.max_steps:,} on "
        f"{' and '.join(scale.curve_tier_list)}), methods {', '.join(fit['methods'])}, in CPU-hours:",
        "",
        "| map | datasets | curves | tune | report | total |",
        "|---|---|---|---|---|---|",
    ]
    rows = {row["map"]: row for row in plan["maps"]}
    for name in fit["maps"]:
        cost = protocol_cost(rows[name], budget, plan["mappo"], fitted, fit["methods"])
        hours = [cost["dataset"] / 3600] + [cost["phases"][p] / 3600 for p in ("curves", "tune", "report")]
        lines.append(f"| {name} | " + " | ".join(f"{h:.1f}" for h in hours) + f" | {sum(hours):.1f} |")
    lines += ["", f"Total {fit['hours']:.1f} CPU-hours against a limit of {limit_hours:g}."]
    if fit["steps"]:
        lines += ["", "Cut to fit, in the campaign's order:", ""] + [f"* {step}" for step in fit["steps"]]
    else:
        lines += ["", "Nothing was cut."]
    return "\n".join(lines) + "\n"


def cost_lines(protocol, summaries: dict, decisions: dict, plan: dict) -> list[str]:
    """A campaign's runs and CPU-hours per map and phase: what `plan` (its plan.json) priced, at the map's budget
    (the capped maximum until the curves decide it), beside what the run summaries measured (CPU time of each
    run's share of its seed group's process; wall time per run, summed)."""
    from experiments.smax.protocol import curve_runs, tune_runs
    from experiments.smax.results import ALGORITHM_TITLES
    from inspo.sweep.store import read_store

    scale, tiers = protocol.scale, list(protocol.scale.tiers)
    rows = {row["map"]: row for row in plan["maps"]}
    lines = [
        "| map | phase | runs planned | runs summarized | CPU-hours planned | CPU-hours measured | wall hours (per run, "
        "summed) |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = [0.0] * 4

    def row(map_name: str, phase: str, label: str, planned: int, price: float, summaries: dict) -> str:
        """One map and phase: its runs and CPU-hours planned and measured (added to the totals)."""
        runs = [s for (name, _), s in summaries.items() if name.split("/")[:2] == [phase, map_name]]
        cpu = sum(s["cost"].get("cpu_seconds") or 0.0 for s in runs) / 3600
        wall = sum(s["cost"].get("wall_seconds") or 0.0 for s in runs) / 3600
        for k, value in enumerate((planned, len(runs), price / 3600, cpu)):
            totals[k] += value
        return f"| {map_name} | {label} | {planned} | {len(runs)} | {price / 3600:.2f} | {cpu:.2f} | {wall:.2f} |"

    for map_name in protocol.maps:
        budget = decisions["maps"].get(map_name, {}).get("budget") or min(
            scale.max_steps, scale.budget_cap or scale.max_steps
        )
        price = protocol_cost(rows[map_name], budget, plan["mappo"], scale, list(protocol.methods))["phases"]
        planned = dict(
            curves=len(curve_runs(protocol, map_name, tiers)),
            tune=len(tune_runs(protocol, map_name, tiers, budget)),
            report=len(tiers) * len(protocol.methods) * len(scale.report_seeds),
        )
        for phase in ("curves", "tune", "report"):
            lines.append(row(map_name, phase, phase, planned[phase], price[phase], summaries))
    amendment = protocol.amendment
    if amendment is not None:  # its runs priced as the plan priced these methods, measured from its store
        amended = replace(protocol, methods=amendment.methods)
        redone = read_store(amendment.store) if amendment.store.is_dir() else {}
        titles = " and ".join(ALGORITHM_TITLES[m] for m in amendment.methods)
        for map_name in protocol.maps:
            budget = amendment.budgets[map_name]
            price = protocol_cost(rows[map_name], budget, plan["mappo"], scale, list(amendment.methods))["phases"]
            planned = dict(
                tune=len(tune_runs(amended, map_name, tiers, budget)),
                report=len(tiers) * len(amendment.methods) * len(scale.report_seeds),
            )
            for phase in ("tune", "report"):
                label = f"{phase}, amendment ({titles})"
                lines.append(row(map_name, phase, label, planned[phase], price[phase], redone))
    lines.append(f"| all | all | {totals[0]:.0f} | {totals[1]:.0f} | {totals[2]:.2f} | {totals[3]:.2f} | |")
    if amendment is not None:
        lines += [
            "",
            f"The campaign's own rows count {titles}'s runs at its first grid (curves, tune, and the report runs made "
            "before the amendment re-tuned it: fewer than planned); the amendment's rows, its re-tuning and report.",
        ]
    return lines


def write_smax_md(protocol, smax_md: Path) -> None:
    """The `smax-campaign-cost` region of SMAX.md (cost_lines) from the campaign's summaries, its plan.json and the
    decisions of protocol.out/protocol.json (written by experiments.smax.protocol.write_outputs)."""
    from experiments.results.report import fill_regions
    from experiments.smax.protocol import campaign_plan
    from inspo.sweep.store import read_store

    plan = campaign_plan(protocol)
    if plan is None:
        raise ValueError(
            f"--smax-md: no campaign plan at {protocol.store_root.parent / 'plan.json'} (it needs --campaign)"
        )
    decisions = json.loads((protocol.out / "protocol.json").read_text())
    table = "\n".join(cost_lines(protocol, read_store(protocol.store_root), decisions, plan)) + "\n"
    smax_md.write_text(fill_regions(smax_md.read_text(), {"smax-campaign-cost": table}, where=str(smax_md)))


def campaign_budget(path: Path, budget) -> tuple[int, str]:
    """The budget to price a campaign at: `budget` when given, else the curves' budget when the campaign's
    curves are all summarized, else the curves' max_steps (an upper bound)."""
    from experiments.smax.protocol import campaign_protocol, collect_curves, decide_budget
    from experiments.smax.results import GridConfig
    from inspo.sweep.store import read_store

    protocol = campaign_protocol(path, GridConfig(), Path("."))
    if budget is not None:
        return budget, "given"
    summaries = read_store(protocol.store_root) if protocol.store_root.is_dir() else {}
    try:
        worst = max(
            decide_budget(protocol, collect_curves(protocol, summaries, m, list(protocol.scale.tiers)))["curves_budget"]
            for m in protocol.maps
        )
        return worst, "where the curves flattened"
    except ValueError:
        return protocol.scale.max_steps, "the curves' max_steps: an upper bound until the curves have run"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.smax.plan", description=__doc__.split("\n")[0])
    parser.add_argument("--maps", nargs="+", default=["3m", "2s3z", "3s_vs_5z", "5m_vs_6m"])
    parser.add_argument("--iterations", type=int, default=200, help="training iterations timed per method")
    parser.add_argument("--budget", type=int, default=None, help="the grid's budget (default: the full max_steps)")
    parser.add_argument("--out", type=Path, default=Path("smax_plan.json"))
    parser.add_argument("--mappo-maps", nargs="*", default=None, help="maps whose MAPPO update is timed (default all)")
    parser.add_argument("--table-only", action="store_true", help="reprint the tables of an existing --out")
    campaign = parser.add_argument_group(
        "campaign (experiments.smax.protocol: a protocol sized to the CPU-hours at hand)"
    )
    campaign.add_argument(
        "--campaign", type=Path, default=None, help="price this campaign file (its maps, methods and scale)"
    )
    campaign.add_argument("--limit-hours", type=float, default=16.0, help="the campaign's CPU-hours (default 16)")
    campaign.add_argument("--write", action="store_true", help="write the cuts that fit into the campaign file")
    args = parser.parse_args(argv)
    if args.campaign is not None:
        from experiments.smax.protocol import load_campaign

        try:
            settings = load_campaign(args.campaign)
        except ValueError as error:
            print(f"python -m experiments.smax.plan: error: {error}", file=sys.stderr)
            return 2
        args.maps = list(dict.fromkeys(settings["maps"] + settings.get("optional_maps", [])))
    if args.table_only:
        plan = json.loads(args.out.read_text())
    else:
        plan = measure(args, argv)
        args.out.write_text(json.dumps(plan, indent=1) + "\n")
    if args.campaign is None:
        print(markdown(plan))
        return 0
    return price_campaign(args, plan, settings)


def measure(args, argv) -> dict:
    torch.set_num_threads(1)
    from experiments.results.report import machine_description
    from experiments.smax.protocol import METHODS, SCALES

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    budget = args.budget or SCALES["full"].max_steps
    mappo_maps = args.maps if args.mappo_maps is None else args.mappo_maps
    mappo = {name: measure_mappo(name, log) for name in mappo_maps}
    with tempfile.TemporaryDirectory() as directory:
        rows = [measure_map(name, args.iterations, Path(directory), log) for name in args.maps]
    for row in rows:  # a map without its own MAPPO timing takes the largest measured one (an upper bound)
        mappo.setdefault(row["map"], max(mappo.values()))
        row["cost"] = protocol_cost(row, budget, mappo)
    return dict(
        date=time.strftime("%Y-%m-%d"),
        command="python -m experiments.smax.plan " + " ".join(argv if argv is not None else sys.argv[1:]),
        machine=machine_description(),
        load_average=os.getloadavg(),  # > the cores: the machine was shared, and the times are upper bounds
        methods=list(METHODS),
        budget=budget,
        max_steps=SCALES["full"].max_steps,
        mappo=mappo,
        maps=rows,
    )


def price_campaign(args, plan: dict, settings: dict) -> int:
    """Fit the campaign to --limit-hours at its budget; print the price and the cuts; --write records them."""
    from experiments.smax.protocol import SCALES

    budget, why = campaign_budget(args.campaign, args.budget)
    scale = SCALES[settings["scale"]]
    maps = list(dict.fromkeys(settings["maps"] + settings.get("optional_maps", [])))
    methods = list(dict.fromkeys(settings["methods"] + settings.get("optional_methods", [])))
    fit = fit_campaign(plan["maps"], plan["mappo"], scale, maps, methods, budget, args.limit_hours)
    plan["campaign"] = dict(settings, datasets=None)
    print(measured_table(plan))
    print(f"budget {budget:,} steps ({why})\n")
    print(campaign_markdown(plan, fit, args.limit_hours))
    if args.write:
        written = json.loads(args.campaign.read_text())
        written.update(maps=fit["maps"], methods=fit["methods"], cuts=fit["cuts"])
        args.campaign.write_text(json.dumps(written, indent=1) + "\n")
        print(f"wrote the cuts into {args.campaign}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
