"""The SMAX evaluation protocol (OG-MARL's "Dispelling the Mirage", Formanek et al., 2024, as the anchor):
one resumable command, three phases, every run a sweep run (inspo.sweep) reused once finished.

    python -m inspo.smax.results --protocol --maps 3m 2s3z 3s_vs_5z 5m_vs_6m --scale full --address auto

1. **curves**: every method (InSPO fused, InSPO exact, CFCQL, OMIGA, BC) at the middle value of its
   temperature sweep, on the tuning seeds, `max_steps` gradient steps, evaluated every `eval_every`
   steps on `curve_episodes` battles. **Budget rule** (per map): for each method and tier, the IQM over
   the tuning seeds of the evaluation return at each step is its curve; the method's budget is the
   smallest evaluated step from which the curve stays within `tolerance` (absolute, in return units)
   of its final value; the map's budget is the largest over methods and tiers. A budget equal to
   `max_steps` means some curve had not flattened: the protocol says so (raise --max-steps).
2. **tune**: every method x the three values of its main temperature (`TEMPERATURES`; BC has none: one
   run) x the tuning seeds, at the map's budget; the final policy on `final_episodes` battles.
   **Selection rule** (per map and tier): the value whose tuning-seed IQM of the final return (the mean
   of the greedy and the stochastic return, per seed) is highest; ties go to the middle value, then to
   the smaller one.
3. **report**: the selected value of every method, map and tier on the fresh report seeds at the budget,
   the final policy (never the best checkpoint) on `final_episodes` battles, greedy and stochastic on
   the same battles: win rate and return as IQM [95% stratified-bootstrap CI] (rliable,
   inspo.sweep.stats) beside mean ± std, per tier and aggregated over a map's tiers.

Run folders: <out>/<phase>/<map>/<tier>/<method>[/<field>=<value>]/seed<k>. Written beside them:
protocol.json (budgets, per-method budgets, selections with their scores), marl_eval.json (the report
runs, marl-eval's layout), protocol.md (the markdown of RESULTS.md's `smax-protocol` region) and
curves_<map>.png (the learning curves with the budget marked).
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from inspo.smax.results import (
    ALGORITHM_TITLES,
    ALGORITHMS,
    FINAL_SEED_OFFSET,
    GridConfig,
    dataset_dir,
    run_config,
    run_record,
)

PHASES = ("curves", "tune", "report")
METHODS = ("inspo-fused", "inspo-exact", "cfcql", "omiga", "bc")
# The main temperature of each method and the three values every method is tuned over. The middle value
# is the SMAX preset's (inspo.config.PRESETS["smax"]) and the one the curves are drawn at. InSPO's alpha
# and OMIGA's alpha weight exp(advantage / alpha): a factor 3 either side. CFCQL's alpha weights a
# penalty whose official SMAC values span 0.1-50 (its README's table): a factor 10.
TEMPERATURES: dict[str, Optional[tuple[str, tuple[float, float, float]]]] = {
    "inspo-fused": ("alpha", (0.03, 0.1, 0.3)),
    "inspo-exact": ("alpha", (0.03, 0.1, 0.3)),
    "cfcql": ("cfcql.alpha", (0.01, 0.1, 1.0)),
    "omiga": ("omiga.alpha", (0.3, 1.0, 3.0)),
    "bc": None,  # no temperature: BC runs once per tier
}
CURVE_METRIC = "stochastic_return"  # greedy play saturates on SMAX (docs/SMAX.md): the policy itself moves more


@dataclass(frozen=True)
class Scale:
    """The protocol's sizes. `full` is the protocol; `tiny` proves the pipeline and converges nothing."""

    name: str
    max_steps: int  # gradient steps of the curve runs
    eval_every: int  # evaluation interval of the curve runs
    curve_episodes: int  # battles per evaluation of the curve runs
    tuning_seeds: tuple[int, ...]
    report_seeds: tuple[int, ...]
    final_episodes: int  # battles of the final evaluation (tune and report), greedy and stochastic
    tolerance: float  # the budget rule's band around the final value, in return units (SMAX returns: 0-2)
    mu_steps: int  # BC steps of the behaviour model mu (InSPO) before the budgeted steps
    tiers: tuple[str, ...] = ("expert", "medium", "medium-replay", "mixed")

    @property
    def converged(self) -> bool:
        return self.name == "full"


SCALES = {
    "full": Scale(
        "full",
        max_steps=20_000,
        eval_every=1_000,
        curve_episodes=32,
        tuning_seeds=(100, 101, 102),
        report_seeds=(0, 1, 2, 3, 4),
        final_episodes=256,
        tolerance=0.05,
        mu_steps=1_500,
    ),
    "tiny": Scale(
        "tiny",
        max_steps=200,
        eval_every=50,
        curve_episodes=8,
        tuning_seeds=(100,),
        report_seeds=(0, 1),
        final_episodes=32,
        tolerance=0.05,
        mu_steps=200,
        tiers=("medium",),
    ),
}
TINY_LABEL = "**TINY, NOT CONVERGED**: a proof of the pipeline (`--scale tiny`), not a result."


@dataclass
class Protocol:
    maps: tuple[str, ...] = ("3m",)
    methods: tuple[str, ...] = METHODS
    scale: Scale = SCALES["full"]
    out: Path = Path("runs/smax-protocol")
    grid: GridConfig = field(default_factory=GridConfig)  # data root and seed, extra TrainConfig overrides

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in TEMPERATURES]
        if unknown:
            raise ValueError(f"--methods: unknown method {unknown[0]!r}; methods: {', '.join(METHODS)}")


# ---- the rules (pure functions of scores; tests/test_smax_protocol.py checks them on made-up numbers)


def iqm(values: Sequence[float]) -> float:
    """The interquartile mean of seeds (rliable's, through inspo.sweep.stats)."""
    from inspo.sweep.stats import iqm_point

    return iqm_point(values)


def flat_from(steps: Sequence[int], curve: Sequence[float], tolerance: float) -> int:
    """The smallest evaluated step from which `curve` stays within `tolerance` of its final value."""
    final = curve[-1]
    budget = steps[-1]
    for step, value in zip(reversed(steps), reversed(curve)):
        if abs(value - final) > tolerance:
            break
        budget = step
    return int(budget)


def choose_budget(curves: dict[str, tuple[Sequence[int], np.ndarray]], tolerance: float) -> tuple[int, dict]:
    """The budget rule. `curves`: name -> (evaluated steps, scores of shape (seeds, steps)). Returns the
    largest per-curve budget and the per-curve budgets (the IQM over seeds of each step's scores must stay
    within `tolerance` of the last one from that step on)."""
    if not curves:
        raise ValueError("no learning curves to choose a budget from (did the curves phase run?)")
    per_curve = {}
    for name, (steps, scores) in curves.items():
        scores = np.asarray(scores, float)
        if scores.ndim != 2 or scores.shape[1] != len(steps) or not len(steps):
            raise ValueError(f"curve {name}: scores must be (seeds, {len(steps)} steps), got {scores.shape}")
        per_curve[name] = flat_from(list(steps), [iqm(scores[:, k]) for k in range(len(steps))], tolerance)
    return max(per_curve.values()), per_curve


def select_value(scores: dict[float, Sequence[float]], middle: Optional[float] = None) -> tuple[float, dict]:
    """The selection rule: the value whose seeds' IQM is highest; ties go to the value closest to `middle`
    (in log scale), then to the smaller value. Returns (value, IQM per value)."""
    if not scores:
        raise ValueError("no tuning runs to select a value from (did the tune phase run?)")
    point = {value: iqm(list(seeds)) for value, seeds in scores.items()}
    best = max(point.values())
    tied = [value for value, score in point.items() if math.isclose(score, best, rel_tol=0, abs_tol=1e-12)]

    def distance(value: float) -> float:
        return abs(math.log(value) - math.log(middle)) if middle and value > 0 else 0.0

    return min(tied, key=lambda value: (distance(value), value)), point


def tuning_score(final: dict) -> float:
    """One tuning run's score: the mean of its final greedy and stochastic returns."""
    return 0.5 * (float(np.mean(final["greedy_return"])) + float(np.mean(final["stochastic_return"])))


# ---- the runs of each phase


def _folder(protocol: Protocol, phase: str, map_name: str, tier: str, method: str, value=None) -> Path:
    base = protocol.out / phase / map_name / tier / method
    return base / f"{TEMPERATURES[method][0]}={value:g}" if value is not None else base


def _steps_fields(method: str, steps: int, scale: Scale) -> dict:
    """`steps` budgeted gradient steps: BC's are bc_steps, the others' are iterations after mu's fit."""
    if ALGORITHMS[method][0] == "bc":
        return dict(bc_steps=steps, steps=steps)
    return dict(steps=steps, bc_steps=scale.mu_steps)


def _run(protocol: Protocol, phase, map_name, tier, method, seed, extra, value=None, final=True):
    from inspo.sweep.spec import Run

    name = "/".join(str(p) for p in (phase, map_name, tier, method) if p) + (f"/{value:g}" if value is not None else "")
    finish = (
        (
            "inspo.smax.results:write_final_eval",
            (("episodes", protocol.scale.final_episodes), ("seed_offset", FINAL_SEED_OFFSET)),
        )
        if final
        else None
    )
    return Run(
        name,
        run_config(protocol.grid, map_name, tier, method, seed, extra),
        _folder(protocol, phase, map_name, tier, method, value) / f"seed{seed}",
        finish=finish,
    )


def _tiers(protocol: Protocol, map_name: str, log) -> list[str]:
    tiers = []
    for tier in protocol.scale.tiers:
        if (dataset_dir(protocol.grid, map_name, tier) / "meta.json").is_file():
            tiers.append(tier)
        else:
            log(
                f"skip {map_name}/{tier}: no dataset at {dataset_dir(protocol.grid, map_name, tier)} "
                f"(inspo data make --env smax:{map_name} --tier {tier})"
            )
    return tiers


def middle_value(method: str) -> Optional[float]:
    temperature = TEMPERATURES[method]
    return temperature[1][1] if temperature else None


def _temperature_fields(method: str, value: Optional[float]) -> dict:
    return {TEMPERATURES[method][0]: value} if value is not None else {}


def curve_runs(protocol: Protocol, map_name: str, tiers: list[str]) -> list:
    scale = protocol.scale
    runs = []
    for tier in tiers:
        for method in protocol.methods:
            extra = dict(
                _steps_fields(method, scale.max_steps, scale),
                **_temperature_fields(method, middle_value(method)),
                eval_every=scale.eval_every,
                eval_episodes=scale.curve_episodes,
            )
            runs += [
                _run(protocol, "curves", map_name, tier, method, s, extra, final=False) for s in scale.tuning_seeds
            ]
    return runs


def tune_runs(protocol: Protocol, map_name: str, tiers: list[str], budget: int) -> list:
    scale = protocol.scale
    runs = []
    for tier in tiers:
        for method in protocol.methods:
            values = TEMPERATURES[method][1] if TEMPERATURES[method] else (None,)
            for value in values:
                extra = dict(_steps_fields(method, budget, scale), **_temperature_fields(method, value), eval_every=0)
                runs += [
                    _run(protocol, "tune", map_name, tier, method, s, extra, value=value) for s in scale.tuning_seeds
                ]
    return runs


def report_runs(protocol: Protocol, map_name: str, tiers: list[str], budget: int, selected: dict) -> list:
    scale = protocol.scale
    runs = []
    for tier in tiers:
        for method in protocol.methods:
            value = selected[f"{tier}/{method}"]["value"]
            extra = dict(_steps_fields(method, budget, scale), **_temperature_fields(method, value), eval_every=0)
            runs += [_run(protocol, "report", map_name, tier, method, s, extra) for s in scale.report_seeds]
    return runs


# ---- reading the phases' results


def read_curve(run_dir: Path, metric: str = CURVE_METRIC) -> tuple[list[int], list[float]]:
    """(steps, scores) of a run's evaluations during training (its eval.jsonl; the last row is the end)."""
    lines = (run_dir / "eval.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines if line.strip()]
    return [int(row["step"]) for row in rows], [float(row[metric]) for row in rows]


def collect_curves(protocol: Protocol, map_name: str, tiers: list[str]) -> dict:
    """tier/method -> (steps, scores (tuning seeds, steps)) of the finished curve runs."""
    curves = {}
    for tier in tiers:
        for method in protocol.methods:
            read = [
                read_curve(_folder(protocol, "curves", map_name, tier, method) / f"seed{s}")
                for s in protocol.scale.tuning_seeds
            ]
            steps = read[0][0]
            if any(r[0] != steps for r in read):
                raise ValueError(f"{map_name}/{tier}/{method}: the curve runs were evaluated at different steps")
            curves[f"{tier}/{method}"] = (steps, np.array([r[1] for r in read]))
    return curves


def _final(run_dir: Path) -> dict:
    return json.loads((run_dir / "final_eval.json").read_text())


def select_values(protocol: Protocol, map_name: str, tiers: list[str]) -> dict:
    """tier/method -> {value, scores (IQM per value)} by the selection rule on the tune runs."""
    selected = {}
    for tier in tiers:
        for method in protocol.methods:
            if TEMPERATURES[method] is None:
                selected[f"{tier}/{method}"] = dict(field=None, value=None, scores={})
                continue
            name, values = TEMPERATURES[method]
            scores = {
                value: [
                    tuning_score(_final(_folder(protocol, "tune", map_name, tier, method, value) / f"seed{s}"))
                    for s in protocol.scale.tuning_seeds
                ]
                for value in values
            }
            value, point = select_value(scores, middle=values[1])
            selected[f"{tier}/{method}"] = dict(
                field=name, value=value, scores={f"{v:g}": round(p, 4) for v, p in point.items()}
            )
    return selected


# ---- the whole protocol


def run_protocol(protocol: Protocol, log: Callable[[str], None] = print, **sweep_options) -> dict:
    """Run (or resume) every phase on every map; write protocol.json, marl_eval.json, protocol.md and the
    curve plots under protocol.out. Returns the protocol.json content."""
    from inspo.sweep.runner import ray_session

    protocol.out.mkdir(parents=True, exist_ok=True)
    decisions: dict = dict(scale=protocol.scale.name, maps={})
    options = dict(sweep_options)
    address, num_cpus = options.pop("address", None), options.pop("num_cpus", None)
    # each phase is one sweep over every map (the maps' runs side by side), the phases in order
    with ray_session(address, num_cpus):
        tiers = {name: found for name in protocol.maps if (found := _tiers(protocol, name, log))}
        _sweep("curves", [run for name, ts in tiers.items() for run in curve_runs(protocol, name, ts)], log, options)
        curves, budgets = {}, {}
        for name, ts in tiers.items():
            curves[name] = collect_curves(protocol, name, ts)
            budgets[name] = choose_budget(curves[name], protocol.scale.tolerance)
            flat = budgets[name][0] < protocol.scale.max_steps
            log(f"{name}: budget {budgets[name][0]} steps" + ("" if flat else " (NOT flattened within max_steps)"))
        runs = [run for name, ts in tiers.items() for run in tune_runs(protocol, name, ts, budgets[name][0])]
        _sweep("tune", runs, log, options)
        selected = {name: select_values(protocol, name, ts) for name, ts in tiers.items()}
        runs = [
            run
            for name, ts in tiers.items()
            for run in report_runs(protocol, name, ts, budgets[name][0], selected[name])
        ]
        _sweep("report", runs, log, options)
    for name, ts in tiers.items():
        budget, per_curve = budgets[name]
        plot_curves(protocol, name, curves[name], budget, protocol.out / f"curves_{name}.png")
        decisions["maps"][name] = dict(
            tiers=ts,
            budget=budget,
            flattened=budget < protocol.scale.max_steps,
            per_curve=per_curve,
            selected=selected[name],
        )
    (protocol.out / "protocol.json").write_text(json.dumps(decisions, indent=1) + "\n")
    write_outputs(protocol, decisions)
    return decisions


def write_outputs(protocol: Protocol, decisions: Optional[dict] = None) -> dict:
    """marl_eval.json and protocol.md from the run folders and protocol.json (`--table-only`: no training)."""
    if decisions is None:
        path = protocol.out / "protocol.json"
        if not path.is_file():
            raise ValueError(f"no {path}: run the protocol first (without --table-only)")
        decisions = json.loads(path.read_text())
    (protocol.out / "marl_eval.json").write_text(json.dumps(marl_eval_report(protocol, decisions)) + "\n")
    (protocol.out / "protocol.md").write_text(markdown(protocol, decisions))
    return decisions


def _sweep(label: str, runs: list, log, options: dict) -> None:
    """One phase of one map on the sweep runner (finished runs reused); a failed seed group stops the protocol."""
    from inspo.sweep.runner import run_sweep

    log(f"{label}: {len(runs)} runs")
    outcome = run_sweep(runs, **options)
    if outcome.failures:
        raise RuntimeError(f"{label}: {len(outcome.failures)} seed groups failed:\n  " + "\n  ".join(outcome.failures))


def report_finals(protocol: Protocol, map_name: str, tier: str, method: str) -> list[dict]:
    base = _folder(protocol, "report", map_name, tier, method)
    return [
        _final(base / f"seed{s}")
        for s in protocol.scale.report_seeds
        if (base / f"seed{s}" / "final_eval.json").is_file()
    ]


def marl_eval_report(protocol: Protocol, decisions: dict) -> dict:
    data: dict = {"smax": {}}
    for map_name, decided in decisions["maps"].items():
        for tier in decided["tiers"]:
            task = data["smax"].setdefault(f"{map_name}-{tier}", {})
            for method in protocol.methods:
                base = _folder(protocol, "report", map_name, tier, method)
                for s in protocol.scale.report_seeds:
                    if (base / f"seed{s}" / "final_eval.json").is_file():
                        task.setdefault(method, {})[f"run_{s}"] = run_record(base / f"seed{s}")
    return data


def seed_means(finals: list[dict], metric: str) -> list[float]:
    """Per report seed: the mean over its battles (the unit the IQM and the spread are taken over)."""
    return [float(np.mean(final[metric])) for final in finals]


def score_cell(values: Sequence[float]) -> str:
    """ "IQM [low, high] · mean ± std" of the seeds (one seed: its value)."""
    from inspo.sweep.report import mean_std
    from inspo.sweep.stats import format_interval, iqm_interval

    if not len(values):
        return "–"
    return f"{format_interval(iqm_interval(values), 2)} · {mean_std(list(values), 2)}"


def markdown(protocol: Protocol, decisions: dict) -> str:
    scale = protocol.scale
    label = [] if scale.converged else [TINY_LABEL, ""]
    lines = label + [
        f"Protocol (`python -m inspo.smax.results --protocol --scale {scale.name}`; inspo.smax.protocol): "
        f"learning curves of every method on tuning seeds {', '.join(map(str, scale.tuning_seeds))} up to "
        f"{scale.max_steps:,} gradient steps (evaluated every {scale.eval_every:,} on {scale.curve_episodes} "
        f"battles); the budget of a map is the smallest step after which every method's tuning-seed IQM curve "
        f"(stochastic return) stays within {scale.tolerance} of its final value; each method's main temperature "
        "is tuned over three values on the tuning seeds at that budget (the highest IQM of the mean of greedy and "
        f"stochastic final return wins); the selected values are reported on fresh seeds "
        f"{', '.join(map(str, scale.report_seeds))}: the final policy (never the best checkpoint) on "
        f"{scale.final_episodes} battles, greedy and stochastic on the same battles. Cells: IQM [95% stratified-"
        "bootstrap CI] · mean ± std over the seeds of the seed's mean. Raw per-episode data: `marl_eval.json`.",
        "",
        "| map | budget (steps) | flattened | " + " | ".join(ALGORITHM_TITLES[m] for m in protocol.methods) + " |",
        "|---|---|---|" + "---|" * len(protocol.methods),
    ]
    for map_name, decided in decisions["maps"].items():
        cells = []
        for method in protocol.methods:
            per = [decided["per_curve"][f"{tier}/{method}"] for tier in decided["tiers"]]
            chosen = [decided["selected"][f"{tier}/{method}"]["value"] for tier in decided["tiers"]]
            field_name = TEMPERATURES[method][0] if TEMPERATURES[method] else None
            flat = f"flat from {', '.join(map(str, per))}"
            if field_name:
                cells.append(f"{flat}; {field_name} {', '.join(f'{v:g}' for v in chosen)}")
            else:
                cells.append(f"{flat}; no temperature")
        lines.append(
            f"| {map_name} | {decided['budget']:,} | {'yes' if decided['flattened'] else 'NO'} | "
            + " | ".join(cells)
            + " |"
        )
    lines += ["", "(per method: the step its curve flattened from on each tier, and the selected value per tier)", ""]
    for map_name in decisions["maps"]:
        lines.append(f"![SMAX learning curves {map_name}](results/smax_protocol_{scale.name}_{map_name}.png)")
    for metric, title in (
        ("greedy_win_rate", "greedy win rate"),
        ("stochastic_win_rate", "stochastic win rate"),
        ("greedy_return", "greedy return"),
        ("stochastic_return", "stochastic return"),
    ):
        lines += [
            "",
            f"Final {title}" + (" (tiny, not converged)" if not scale.converged else "") + ":",
            "",
            "| map | tier | " + " | ".join(ALGORITHM_TITLES[m] for m in protocol.methods) + " |",
            "|---|---|" + "---|" * len(protocol.methods),
        ]
        for map_name, decided in decisions["maps"].items():
            matrix: dict[str, list] = {m: [] for m in protocol.methods}
            for tier in decided["tiers"]:
                cells = []
                for method in protocol.methods:
                    values = seed_means(report_finals(protocol, map_name, tier, method), metric)
                    matrix[method].append(values)
                    cells.append(score_cell(values))
                lines.append(f"| {map_name} | {tier} | " + " | ".join(cells) + " |")
            if len(decided["tiers"]) > 1:  # rliable's aggregate over the map's tiers: (seeds, tiers)
                lines.append(
                    f"| {map_name} | all tiers | "
                    + " | ".join(_aggregate(matrix[method]) for method in protocol.methods)
                    + " |"
                )
    return "\n".join(lines) + "\n"


def _aggregate(per_tier: list[list[float]]) -> str:
    from inspo.sweep.stats import format_interval, iqm_interval

    if not per_tier or any(len(v) != len(per_tier[0]) or not v for v in per_tier):
        return "–"
    return format_interval(iqm_interval(np.array(per_tier).T), 2)


def plot_curves(protocol: Protocol, map_name: str, curves: dict, budget: int, path: Path) -> Path:
    """One panel per tier: each method's tuning-seed IQM curve, the budget as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tiers = list(dict.fromkeys(name.split("/")[0] for name in curves))
    figure, axes = plt.subplots(1, len(tiers), figsize=(4 * len(tiers), 3.2), squeeze=False)
    for axis, tier in zip(axes[0], tiers):
        for method in protocol.methods:
            steps, scores = curves[f"{tier}/{method}"]
            axis.plot(steps, [iqm(scores[:, k]) for k in range(len(steps))], label=ALGORITHM_TITLES[method])
        axis.axvline(budget, color="k", linestyle="--", linewidth=1)
        axis.set_title(f"{map_name} {tier}")
        axis.set_xlabel("gradient steps")
        axis.set_ylabel("IQM stochastic return (tuning seeds)")
    axes[0][-1].legend(fontsize=7)
    title = f"budget {budget:,} steps (dashed)"
    figure.suptitle(title if protocol.scale.converged else f"TINY, NOT CONVERGED - {title}", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_results_md(protocol: Protocol, results_md: Path, figures: Path) -> None:
    """The `smax-protocol` region of RESULTS.md, and the curve figures it links, from protocol.out."""
    import shutil

    from inspo.results.report import fill_regions

    decisions = json.loads((protocol.out / "protocol.json").read_text())
    figures.mkdir(parents=True, exist_ok=True)
    for map_name in decisions["maps"]:
        shutil.copyfile(
            protocol.out / f"curves_{map_name}.png", figures / f"smax_protocol_{protocol.scale.name}_{map_name}.png"
        )
    text = results_md.read_text()
    results_md.write_text(fill_regions(text, {"smax-protocol": markdown(protocol, decisions)}, where=str(results_md)))


def protocol_from_args(args, grid: GridConfig) -> Protocol:
    scale = SCALES[args.scale]
    if args.max_steps is not None:
        scale = replace(scale, max_steps=args.max_steps)
    if args.protocol_tiers:
        scale = replace(scale, tiers=tuple(args.protocol_tiers))
    return Protocol(maps=tuple(args.maps), methods=tuple(args.methods), scale=scale, out=args.out, grid=grid)


def log_stderr(message: str) -> None:
    print(f"smax protocol: {message}", file=sys.stderr, flush=True)
