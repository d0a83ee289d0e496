"""The SMAX evaluation protocol (OG-MARL's "Dispelling the Mirage", Formanek et al., 2024, as the anchor):
one resumable command, three phases, every run a sweep run (inspo.sweep) reused once finished.

    python -m experiments.smax --maps 3m 2s3z 3s_vs_5z 5m_vs_6m --scale full --address auto

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
   inspo.stats) beside mean ± std, per tier and aggregated over a map's tiers.

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

from experiments.smax.results import (
    ALGORITHM_TITLES,
    ALGORITHMS,
    FINAL_SEED_OFFSET,
    GridConfig,
    dataset_dir,
    marl_eval_run,
    run_config,
)

METHODS = ("inspo-fused", "inspo-exact", "cfcql", "omiga", "bc")
# The main temperature of each method and the three values every method is tuned over. The middle value
# is the SMAX preset's (inspo.config.PRESETS["smax"]) and the one the curves are drawn at. InSPO's alpha
# and OMIGA's alpha weight exp(advantage / alpha): a factor 3 either side. CFCQL's alpha weights a
# penalty whose official SMAC values span 0.1-50 (its README's command: 0.1; its configs' default: 50); on SMAX
# our CFCQL learned nothing at 0.01-1 (its Q_tot diverged: the campaign's amendment, docs/RESULTS.md), so it is
# tuned from 5 to 50, a factor ~3 apart.
TEMPERATURES: dict[str, Optional[tuple[str, tuple[float, float, float]]]] = {
    "inspo-fused": ("inspo.alpha", (0.03, 0.1, 0.3)),
    "inspo-exact": ("inspo.alpha", (0.03, 0.1, 0.3)),
    "cfcql": ("cfcql.alpha", (5.0, 15.0, 50.0)),
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
    curve_tiers: Optional[tuple[str, ...]] = None  # the curves phase's tiers (None: every tier)
    # None: every tier tuned for itself. Else the tiers tuned on: one value per map and method, the best over
    # these tiers' runs pooled, reported on every tier
    tune_tiers: Optional[tuple[str, ...]] = None
    tune_seeds: Optional[tuple[int, ...]] = None  # the tune phase's seeds (None: tuning_seeds)
    budget_cap: Optional[int] = None  # the budget when the curves' is larger than the compute allows

    @property
    def converged(self) -> bool:
        return self.name != "tiny"

    @property
    def curve_tier_list(self) -> tuple[str, ...]:
        return tuple(t for t in self.tiers if t in (self.curve_tiers or self.tiers))

    @property
    def tune_seed_list(self) -> tuple[int, ...]:
        return self.tune_seeds or self.tuning_seeds


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
    # sized to ~16 CPU-hours on the 2-core machines here (docs/SMAX.md, "The campaign"): curves to 10,000
    # steps on the two tiers where offline methods should differ most; the cuts (python -m experiments.smax.plan
    # --campaign) come from the campaign file (experiments/smax-campaign/campaign.json)
    "campaign": Scale(
        "campaign",
        max_steps=10_000,
        eval_every=500,
        curve_episodes=32,
        tuning_seeds=(100, 101, 102),
        report_seeds=(0, 1, 2, 3, 4),
        final_episodes=256,
        tolerance=0.05,
        mu_steps=1_500,
        curve_tiers=("medium-replay", "mixed"),
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


@dataclass(frozen=True)
class Amendment:
    """Methods whose tune and report runs a second campaign redid from its own tag, at the amended campaign's
    budgets and on its datasets (its campaign.json: `amends`, `budgets`, `temperatures`). The amended campaign's
    own tune and report runs of those methods are superseded: kept in its store and reported as such."""

    methods: tuple[str, ...]
    tag: str
    store: Path  # the amendment's summaries
    budgets: dict  # map -> the budget its runs trained at (the amended campaign's)


@dataclass
class Protocol:
    maps: tuple[str, ...] = ("3m",)
    methods: tuple[str, ...] = METHODS
    scale: Scale = SCALES["full"]
    out: Path = Path("runs/smax-protocol")
    grid: GridConfig = field(default_factory=GridConfig)  # data root and seed, extra TrainConfig overrides
    store: Optional[Path] = None  # the run summaries (inspo.sweep.store); default <out>/summaries
    # the datasets the runs must train on: map -> tier -> dataset sha256 (dataset_sha256); None: any
    datasets: Optional[dict] = None
    amendment: Optional[Amendment] = None

    def __post_init__(self):
        unknown = [m for m in self.methods if m not in TEMPERATURES]
        if unknown:
            raise ValueError(f"--methods: unknown method {unknown[0]!r}; methods: {', '.join(METHODS)}")

    @property
    def store_root(self) -> Path:
        return Path(self.store) if self.store is not None else self.out / "summaries"


# ---- the rules (pure functions of scores; tests/test_smax_protocol.py checks them on made-up numbers)


def iqm(values: Sequence[float]) -> float:
    """The interquartile mean of seeds (rliable's, through inspo.stats)."""
    from inspo.stats import iqm_point

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


def run_name(phase: str, map_name: str, tier: str, method: str, value: Optional[float] = None) -> str:
    """A run's name, the same for its seeds: its folder under --out and its summaries' folder in the store. InSPO's
    temperature is named `alpha=VALUE` (the campaign's summaries are stored under these names)."""
    return f"{phase}/{map_name}/{tier}/{method}" + (
        f"/{TEMPERATURES[method][0].removeprefix('inspo.')}={value:g}" if value is not None else ""
    )


def _steps_fields(method: str, steps: int, scale: Scale) -> dict:
    """`steps` budgeted gradient steps: BC's are bc_steps, the others' are iterations after mu's fit."""
    if ALGORITHMS[method][0] == "bc":
        return dict(bc_steps=steps, steps=steps)
    return dict(steps=steps, bc_steps=scale.mu_steps)


def _run(protocol: Protocol, phase, map_name, tier, method, seed, extra, value=None, final=True):
    from inspo.sweep.spec import Run

    name = run_name(phase, map_name, tier, method, value)
    finish = (
        (
            "experiments.smax.results:write_final_eval",
            (("episodes", protocol.scale.final_episodes), ("seed_offset", FINAL_SEED_OFFSET)),
        )
        if final
        else None
    )
    return Run(
        name,
        run_config(protocol.grid, map_name, tier, method, seed, extra),
        protocol.out / name / f"seed{seed}",
        finish,
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


def _values(method: str) -> tuple:
    return TEMPERATURES[method][1] if TEMPERATURES[method] else (None,)


def curve_runs(protocol: Protocol, map_name: str, tiers: list[str]) -> list:
    scale = protocol.scale
    runs = []
    for tier in (t for t in tiers if t in scale.curve_tier_list):
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


def tune_tiers(scale: Scale, tiers: Sequence[str]) -> list[str]:
    return [tier for tier in tiers if scale.tune_tiers is None or tier in scale.tune_tiers]


def tune_runs(protocol: Protocol, map_name: str, tiers: list[str], budget: int) -> list:
    scale = protocol.scale
    runs = []
    for tier in tune_tiers(scale, tiers):
        for method in protocol.methods:
            for value in _values(method):
                extra = dict(_steps_fields(method, budget, scale), **_temperature_fields(method, value), eval_every=0)
                runs += [
                    _run(protocol, "tune", map_name, tier, method, s, extra, value=value) for s in scale.tune_seed_list
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


# ---- reading the phases' results: the run summaries alone (inspo.sweep.store)

Summaries = dict  # (run name, seed) -> summary, as inspo.sweep.store.read_store returns them


def has_report_runs(summaries: Summaries, map_name: str) -> bool:
    """Whether any report run of the map is summarized (its tables and figure are drawn from then on)."""
    return any(name.startswith(f"report/{map_name}/") for name, _ in summaries)


def _summaries_of(summaries: Summaries, name: str, seeds: Sequence[int]) -> list[dict]:
    missing = [s for s in seeds if (name, s) not in summaries]
    if missing:
        raise ValueError(f"{name}: no summary of seeds {', '.join(map(str, missing))} (has that phase run?)")
    return [summaries[(name, s)] for s in seeds]


def curve_of(summary: dict, metric: str = CURVE_METRIC) -> tuple[list[int], list[float]]:
    """(steps, scores) of a run's evaluations during training (the last row is the end)."""
    return [int(row["step"]) for row in summary["curve"]], [float(row[metric]) for row in summary["curve"]]


def collect_curves(protocol: Protocol, summaries: Summaries, map_name: str, tiers: list[str]) -> dict:
    """tier/method -> (steps, scores (tuning seeds, steps)) of the curve runs."""
    curves = {}
    for tier in (t for t in tiers if t in protocol.scale.curve_tier_list):
        for method in protocol.methods:
            name = run_name("curves", map_name, tier, method)
            read = [curve_of(summary) for summary in _summaries_of(summaries, name, protocol.scale.tuning_seeds)]
            steps = read[0][0]
            if any(r[0] != steps for r in read):
                raise ValueError(f"{name}: the curve runs were evaluated at different steps")
            curves[f"{tier}/{method}"] = (steps, np.array([r[1] for r in read]))
    return curves


def select_values(protocol: Protocol, summaries: Summaries, map_name: str, tiers: list[str]) -> dict:
    """tier/method -> {field, value, scores (IQM per value), tuned_on} by the selection rule on the tune runs:
    per tier, or (scale.tune_tiers) one value per method over the tuned tiers' runs pooled, for every tier."""
    scale = protocol.scale
    tuned = tune_tiers(scale, tiers)
    groups = [[tier] for tier in tuned] if scale.tune_tiers is None else [tuned]
    selected = {}
    for method in protocol.methods:
        for group in groups:
            reported_on = group if scale.tune_tiers is None else tiers
            if TEMPERATURES[method] is None:  # nothing to select, once its tune runs are in
                for tier in group:
                    _summaries_of(summaries, run_name("tune", map_name, tier, method), scale.tune_seed_list)
                for tier in reported_on:
                    selected[f"{tier}/{method}"] = dict(field=None, value=None, scores={}, tuned_on=group)
                continue
            name, values = TEMPERATURES[method]
            scores = {
                value: [
                    tuning_score(summary["final"])
                    for tier in group
                    for summary in _summaries_of(
                        summaries, run_name("tune", map_name, tier, method, value), scale.tune_seed_list
                    )
                ]
                for value in values
            }
            value, point = select_value(scores, middle=values[1])
            for tier in reported_on:
                selected[f"{tier}/{method}"] = dict(
                    field=name, value=value, scores={f"{v:g}": round(p, 4) for v, p in point.items()}, tuned_on=group
                )
    return selected


def decide_budget(protocol: Protocol, curves: dict) -> dict:
    """The map's budget from its curves, capped by the scale's budget_cap when there is one."""
    flattened_at, per_curve = choose_budget(curves, protocol.scale.tolerance)
    cap = protocol.scale.budget_cap
    return dict(
        budget=min(flattened_at, cap) if cap else flattened_at,
        curves_budget=flattened_at,
        flattened=flattened_at < protocol.scale.max_steps,
        capped=bool(cap and cap < flattened_at),
        per_curve=per_curve,
    )


def _amended(protocol: Protocol, name: str) -> bool:
    phase, method = name.split("/")[0], name.split("/")[3]
    return protocol.amendment is not None and phase in ("tune", "report") and method in protocol.amendment.methods


def read_summaries(protocol: Protocol) -> Summaries:
    """The protocol's summaries: its store's, the tune and report runs of an amendment's methods taken from the
    amendment's store instead (anything else there is refused by name)."""
    from inspo.sweep.store import read_store

    summaries = {key: s for key, s in read_store(protocol.store_root).items() if not _amended(protocol, key[0])}
    amendment = protocol.amendment
    if amendment is not None and amendment.store.is_dir():  # none of its runs has finished yet without it
        for (name, seed), summary in read_store(amendment.store).items():
            if not _amended(protocol, name):
                raise ValueError(
                    f"{amendment.store}: {name} is not a tune or report run of {', '.join(amendment.methods)}: the "
                    "amendment redoes only those"
                )
            summaries[(name, seed)] = summary
    return summaries


def superseded_summaries(protocol: Protocol) -> Summaries:
    """The amended campaign's own tune and report runs of the amendment's methods."""
    from inspo.sweep.store import read_store

    return {key: s for key, s in read_store(protocol.store_root).items() if _amended(protocol, key[0])}


def present_tiers(protocol: Protocol, summaries: Summaries, map_name: str) -> list[str]:
    """The scale's tiers of a map that have runs in the store (the phases skip a tier without a dataset)."""
    return [
        tier for tier in protocol.scale.tiers if any(name.split("/")[1:3] == [map_name, tier] for name, _ in summaries)
    ]


def decisions_from(protocol: Protocol, summaries: Summaries) -> dict:
    """Budgets, selections and what is finished, per map, from the summaries alone (protocol.json)."""
    decisions: dict = dict(scale=protocol.scale.name, maps={})
    for map_name in protocol.maps:
        tiers = present_tiers(protocol, summaries, map_name)
        if not tiers:
            continue
        try:
            curves = collect_curves(protocol, summaries, map_name, tiers)
        except ValueError:  # the curves phase is still running: no budget yet
            runs = sum(1 for name, _ in summaries if name.split("/")[:2] == ["curves", map_name])
            decisions["maps"][map_name] = dict(tiers=tiers, budget=None, curve_runs=runs, selected=None)
            continue
        decided = dict(tiers=tiers, **decide_budget(protocol, curves))
        selected = {}
        for method in protocol.methods:  # a method still tuning has no selection yet (None: none has one)
            try:
                selected.update(select_values(replace(protocol, methods=(method,)), summaries, map_name, tiers))
            except ValueError:
                continue
        decided["selected"] = selected or None
        decisions["maps"][map_name] = decided
    return decisions


def check_consistency(protocol: Protocol, summaries: Summaries) -> dict:
    """The commits and dataset versions the summaries were made with: one dataset version per map and tier
    (a report never mixes them) and, with protocol.datasets, the expected one. Returns {commits, datasets}."""
    datasets: dict = {}
    commits = set()
    for (name, _), summary in summaries.items():
        _, map_name, tier = name.split("/")[:3]
        commits.add(summary["key"]["commit"])
        found = datasets.setdefault(map_name, {}).setdefault(tier, summary["key"]["dataset"])
        if found != summary["key"]["dataset"]:
            raise ValueError(
                f"{map_name}/{tier}: the summaries were trained on two dataset versions ({found} and "
                f"{summary['key']['dataset']}, e.g. {name}): a report never mixes them; retrain one side"
            )
        expected = (protocol.datasets or {}).get(map_name, {}).get(tier, {}).get("sha256")
        if expected is not None and expected != found:
            raise ValueError(f"{name}: trained on dataset {found}, the campaign's {map_name}/{tier} is {expected}")
    return dict(commits=sorted(commits), datasets=datasets)


# ---- the whole protocol


def dataset_sha256(directory: Path) -> str:
    """One dataset's content hash: the sha256 of its array files' sha256 (the card's, checked against the
    files by inspo.data.card.load_dataset(hashes=True))."""
    import hashlib

    card = json.loads((Path(directory) / "meta.json").read_text())["card"]
    listing = "".join(f"{name}\0{entry['sha256']}\n" for name, entry in sorted(card["files"].items()))
    return hashlib.sha256(listing.encode()).hexdigest()


def fingerprint(grid: GridConfig) -> Callable:
    """The store's dataset fingerprint of a run config (its map, tier and data seed under the grid's root)."""
    cache: dict = {}

    def of(config) -> str:
        directory = dataset_dir(grid, config.env.split(":", 1)[1], config.dataset)
        if directory not in cache:
            cache[directory] = dataset_sha256(directory)
        return cache[directory]

    return of


def check_datasets(protocol: Protocol, tiers: dict, log) -> None:
    """Every dataset the runs will train on matches its card, file by file, and (protocol.datasets) the
    committed version; a mismatch names the dataset and how to make the right one."""
    from inspo.data.card import load_dataset

    for map_name, found in tiers.items():
        for tier in found:
            directory = dataset_dir(protocol.grid, map_name, tier)
            load_dataset(directory, hashes=True)
            found = dataset_sha256(directory)
            expected = (protocol.datasets or {}).get(map_name, {}).get(tier, {}).get("sha256")
            if expected is not None and found != expected:
                raise ValueError(
                    f"{directory}: dataset {found[:16]} is not the campaign's {map_name}/{tier} "
                    f"({expected[:16]}); make it from the committed behaviour run (docs/SMAX.md, 'The campaign')"
                )
            log(f"dataset {map_name}/{tier}: {found[:16]} checked")


def make_store(protocol: Protocol, commit: str):
    from inspo.sweep.store import SummaryStore

    return SummaryStore(protocol.store_root, commit, fingerprint(protocol.grid))


def run_protocol(
    protocol: Protocol,
    log: Callable[[str], None] = print,
    commit: Optional[str] = None,
    stop_after: Optional[str] = None,
    **sweep_options,
) -> dict:
    """Run (or resume) every phase on every map, each finished run summarized in the store as its seed group
    returns; write protocol.json, marl_eval.json, protocol.md and the curve plots under protocol.out from the
    summaries. `commit`: the commit the runs train from (default: the checkout's). `stop_after`: "curves" or
    "tune" ends there (a campaign prices the rest once its curves are in). Returns protocol.json."""
    if stop_after not in (None, "curves", "tune"):
        raise ValueError(f"--stop-after: expected curves or tune, got {stop_after!r}")
    from inspo.sweep.runner import ray_session
    from inspo.sweep.store import git_commit, read_store

    protocol.out.mkdir(parents=True, exist_ok=True)
    protocol.store_root.mkdir(parents=True, exist_ok=True)
    store = make_store(protocol, commit or git_commit(Path(__file__).parent))
    options = dict(sweep_options, store=store)
    address, num_cpus = options.pop("address", None), options.pop("num_cpus", None)
    # each phase is one sweep over every map (the maps' runs side by side), the phases in order
    with ray_session(address, num_cpus):
        tiers = {name: found for name in protocol.maps if (found := _tiers(protocol, name, log))}
        check_datasets(protocol, tiers, log)
        _sweep("curves", [run for name, ts in tiers.items() for run in curve_runs(protocol, name, ts)], log, options)
        summaries = read_store(protocol.store_root)
        budgets = {}
        for name, ts in tiers.items():
            budgets[name] = decide_budget(protocol, collect_curves(protocol, summaries, name, ts))
            decided = budgets[name]
            log(
                f"{name}: budget {decided['budget']} steps"
                + ("" if decided["flattened"] else " (NOT flattened within max_steps)")
                + (f" (capped; the curves flattened at {decided['curves_budget']})" if decided["capped"] else "")
            )
        if stop_after == "curves":
            return write_outputs(protocol)
        runs = [run for name, ts in tiers.items() for run in tune_runs(protocol, name, ts, budgets[name]["budget"])]
        _sweep("tune", runs, log, options)
        if stop_after == "tune":
            return write_outputs(protocol)
        summaries = read_store(protocol.store_root)
        selected = {name: select_values(protocol, summaries, name, ts) for name, ts in tiers.items()}
        runs = [
            run
            for name, ts in tiers.items()
            for run in report_runs(protocol, name, ts, budgets[name]["budget"], selected[name])
        ]
        _sweep("report", runs, log, options)
    return write_outputs(protocol)


def write_outputs(protocol: Protocol) -> dict:
    """protocol.json, marl_eval.json, protocol.md and curves_<map>.png under protocol.out, from the summaries
    alone (`--table-only`: no training, no run folder, no dataset; the same summaries give the same bytes)."""
    summaries = read_summaries(protocol)
    consistency = check_consistency(protocol, summaries)
    decisions = decisions_from(protocol, summaries)
    decisions.update(consistency)
    if protocol.amendment is not None:
        decisions["amendment"] = check_amendment(protocol, decisions)
    protocol.out.mkdir(parents=True, exist_ok=True)
    for name, decided in decisions["maps"].items():
        if decided["budget"] is not None:
            curves = collect_curves(protocol, summaries, name, decided["tiers"])
            plot_curves(protocol, name, curves, decided["budget"], protocol.out / f"curves_{name}.png")
        report = protocol.out / f"report_{name}.png"
        if has_report_runs(summaries, name):
            plot_report(protocol, summaries, name, decided["tiers"], report)
        elif report.exists():
            report.unlink()  # from an earlier store: the figure shows these summaries only
    (protocol.out / "protocol.json").write_text(json.dumps(decisions, indent=1, sort_keys=True) + "\n")
    (protocol.out / "marl_eval.json").write_text(json.dumps(marl_eval_report(protocol, summaries, decisions)) + "\n")
    (protocol.out / "protocol.md").write_text(markdown(protocol, summaries, decisions))
    return decisions


def check_amendment(protocol: Protocol, decisions: dict) -> dict:
    """An amendment's budgets against the decided ones (its runs must train as long as the others); returns
    protocol.json's record of it, with the first grid's tuning scores of the runs it superseded."""
    amendment = protocol.amendment
    for map_name, decided in decisions["maps"].items():
        if decided["budget"] is not None and amendment.budgets.get(map_name) != decided["budget"]:
            raise ValueError(
                f"{amendment.store.parent / 'campaign.json'}: budgets: {map_name} "
                f"{amendment.budgets.get(map_name)}, but the curves decided {decided['budget']}: its runs must train "
                "at the amended campaign's budget"
            )
    return dict(
        methods=list(amendment.methods),
        tag=amendment.tag,
        first_grid=first_grid_scores(protocol, superseded_summaries(protocol)),
    )


def first_grid_scores(protocol: Protocol, superseded: Summaries) -> dict:
    """map -> method -> value -> the IQM tuning score of the superseded tune runs at that value (the tuned tiers
    pooled, as select_values pools them)."""
    scores: dict = {}
    for (name, _), summary in sorted(superseded.items()):
        phase, map_name, _, method = name.split("/")[:4]
        if phase == "tune":
            value = name.rsplit("=", 1)[1]
            scores.setdefault(map_name, {}).setdefault(method, {}).setdefault(value, []).append(
                tuning_score(summary["final"])
            )
    return {
        m: {method: {v: round(iqm(seeds), 4) for v, seeds in values.items()} for method, values in methods.items()}
        for m, methods in scores.items()
    }


def _amendment_lines(protocol: Protocol, decisions: dict) -> list[str]:
    """What the amendment redid and why, with the superseded runs' scores (protocol.md)."""
    amendment = protocol.amendment
    superseded = superseded_summaries(protocol)
    titles = " and ".join(ALGORITHM_TITLES[m] for m in amendment.methods)
    lines = [
        "",
        f"{titles}: tuned and reported by the campaign's amendment (tag `{amendment.tag}`; "
        f"{amendment.store.parent.name}/campaign.json beside this campaign's), over "
        + "; ".join(
            f"{TEMPERATURES[m][0]} " + ", ".join(f"{v:g}" for v in TEMPERATURES[m][1]) for m in amendment.methods
        )
        + ", at the same budgets and on the same datasets. Its curves above are this campaign's, drawn at its first "
        "grid's middle value. The superseded runs of its first grid (kept in the store), their tuning score "
        "(mean of greedy and stochastic final return, IQM over the tuned tiers) per value and their report runs:",
        "",
        "| map | method | first grid's tuning scores | report runs at its selection (greedy, stochastic win rate) |",
        "|---|---|---|---|",
    ]
    for map_name, methods in decisions["amendment"]["first_grid"].items():
        for method, values in methods.items():
            reported = [
                s["final"]
                for (name, _), s in sorted(superseded.items())
                if name.split("/")[:2] == ["report", map_name] and name.split("/")[3] == method
            ]
            runs = "none"
            if reported:
                greedy = np.mean(seed_means(reported, "greedy_win_rate"))
                stochastic = np.mean(seed_means(reported, "stochastic_win_rate"))
                runs = f"{len(reported)} runs: {greedy:.2f}, {stochastic:.2f} (mean)"
            scores = ", ".join(f"{v}: {score:.2f}" for v, score in sorted(values.items(), key=lambda i: float(i[0])))
            lines.append(f"| {map_name} | {ALGORITHM_TITLES[method]} | {scores} | {runs} |")
    return lines


def _sweep(label: str, runs: list, log, options: dict) -> None:
    """One phase on the sweep runner (summarized runs reused); a failed seed group stops the protocol."""
    from inspo.sweep import runner

    log(f"{label}: {len(runs)} runs")
    outcome = runner.run_sweep(runs, **options)
    if outcome.failures:
        raise RuntimeError(f"{label}: {len(outcome.failures)} seed groups failed:\n  " + "\n  ".join(outcome.failures))


def report_finals(protocol: Protocol, summaries: Summaries, map_name: str, tier: str, method: str) -> list[dict]:
    """The final evaluations of a report cell's finished seeds (fewer than the scale's while it runs)."""
    name = run_name("report", map_name, tier, method)
    return [summaries[(name, s)]["final"] for s in protocol.scale.report_seeds if (name, s) in summaries]


def marl_eval_report(protocol: Protocol, summaries: Summaries, decisions: dict) -> dict:
    data: dict = {"smax": {}}
    for map_name, decided in decisions["maps"].items():
        for tier in decided["tiers"]:
            task = data["smax"].setdefault(f"{map_name}-{tier}", {})
            for method in protocol.methods:
                name = run_name("report", map_name, tier, method)
                for s in protocol.scale.report_seeds:
                    if (name, s) in summaries:
                        summary = summaries[(name, s)]
                        task.setdefault(method, {})[f"run_{s}"] = marl_eval_run(summary["curve"], summary["final"])
    return data


def seed_means(finals: list[dict], metric: str) -> list[float]:
    """Per report seed: the mean over its battles (the unit the IQM and the spread are taken over)."""
    return [float(np.mean(final[metric])) for final in finals]


def score_cell(values: Sequence[float]) -> str:
    """ "IQM [low, high] · mean ± std" of the seeds (one seed: its value)."""
    from inspo.stats import format_interval, iqm_interval
    from inspo.sweep.report import mean_std

    if not len(values):
        return "–"
    return f"{format_interval(iqm_interval(values), 2)} · {mean_std(list(values), 2)}"


METRICS = (
    ("greedy_win_rate", "greedy win rate", "win_rate"),
    ("stochastic_win_rate", "stochastic win rate", "win_rate"),
    ("greedy_return", "greedy return", "return_mean"),
    ("stochastic_return", "stochastic return", "return_mean"),
)


def _rules(protocol: Protocol) -> str:
    scale = protocol.scale
    curve_tiers = "every tier" if scale.curve_tiers is None else " and ".join(scale.curve_tier_list)
    seeds = scale.tune_seed_list
    on_seeds = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    wins = "(the highest IQM of the mean of greedy and stochastic final return wins)"
    if scale.tune_tiers is None:
        tuning = (
            f"each method's main temperature is tuned over three values per tier on {on_seeds} at the budget {wins}"
        )
    else:
        tuning = (
            f"each method's main temperature is tuned over three values on {' and '.join(scale.tune_tiers)} "
            f"(their runs pooled) on {on_seeds} at the budget {wins}, and the choice is used on every tier of the map"
        )
    cap = f", capped at {scale.budget_cap:,} steps" if scale.budget_cap else ""
    return (
        f"Protocol (`--scale {scale.name}`; experiments.smax.protocol): learning curves of every method on {curve_tiers}, "
        f"tuning seeds {', '.join(map(str, scale.tuning_seeds))}, up to {scale.max_steps:,} gradient steps "
        f"(evaluated every {scale.eval_every:,} on {scale.curve_episodes} battles); the budget of a map is the "
        f"smallest step after which every method's tuning-seed IQM curve (stochastic return) stays within "
        f"{scale.tolerance} of its final value{cap}; {tuning}; the selected "
        f"values are reported on fresh seeds {', '.join(map(str, scale.report_seeds))}: the final policy (never "
        f"the best checkpoint) on {scale.final_episodes} battles, greedy and stochastic on the same battles. "
        "Cells: IQM [95% stratified-bootstrap CI] · mean ± std over the seeds of the seed's mean. Raw per-episode "
        "data: `marl_eval.json`."
    )


def campaign_plan(protocol: Protocol) -> Optional[dict]:
    """The plan a campaign was priced with (plan.json beside its summaries: experiments.smax.plan --campaign);
    None for a protocol without one."""
    path = protocol.store_root.parent / "plan.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _progress_lines(protocol: Protocol, summaries: Summaries) -> list[str]:
    """Runs summarized per phase and their measured cost (CPU-hours; the share of each seed group's process)."""
    lines = ["| map | phase | runs summarized | CPU-hours | wall hours (per run, summed) |", "|---|---|---|---|---|"]
    for map_name in protocol.maps:
        for phase in ("curves", "tune", "report"):
            runs = [s for (name, _), s in summaries.items() if name.split("/")[:2] == [phase, map_name]]
            if not runs:
                continue
            cpu = sum(s["cost"].get("cpu_seconds") or 0.0 for s in runs) / 3600
            wall = sum(s["cost"].get("wall_seconds") or 0.0 for s in runs) / 3600
            lines.append(f"| {map_name} | {phase} | {len(runs)} | {cpu:.2f} | {wall:.2f} |")
    return lines


def _cost_pointer(protocol: Protocol, summaries: Summaries) -> list[str]:
    """The end of protocol.md: a campaign's cost table lives in SMAX.md (experiments.smax.plan.write_smax_md),
    beside its plan's price; any other protocol's runs and their measured cost are listed here."""
    if campaign_plan(protocol) is not None:
        return [
            "",
            "Runs summarized and their measured cost, beside the campaign plan's price: docs/SMAX.md, "
            "[The campaign's cost](SMAX.md#the-campaigns-cost).",
        ]
    return ["", "Runs summarized and their measured cost:", ""] + _progress_lines(protocol, summaries)


def _improvement_lines(protocol: Protocol, summaries: Summaries, decisions: dict) -> list[str]:
    """P(InSPO fused > baseline) per map over its tiers (rliable's probability of improvement, 95% CI)."""
    from inspo.stats import format_interval, probability_of_improvement

    ours = "inspo-fused"
    others = [m for m in protocol.methods if m != ours]
    if ours not in protocol.methods or not others:
        return []
    lines = [
        "| map | score | " + " | ".join(f"P(InSPO > {ALGORITHM_TITLES[m]})" for m in others) + " |",
        "|---|---|" + "---|" * len(others),
    ]
    for map_name, decided in decisions["maps"].items():
        for metric in ("greedy_return", "stochastic_return"):
            cells = []
            for other in others:
                matrices = []
                for method in (ours, other):
                    per_tier = [
                        seed_means(report_finals(protocol, summaries, map_name, tier, method), metric)
                        for tier in decided["tiers"]
                    ]
                    complete = all(len(v) == len(protocol.scale.report_seeds) for v in per_tier)
                    matrices.append(np.array(per_tier).T if complete else None)
                cells.append(
                    format_interval(probability_of_improvement(*matrices), 2)
                    if all(m is not None for m in matrices)
                    else "–"
                )
            lines.append(f"| {map_name} | {metric.replace('_', ' ')} | " + " | ".join(cells) + " |")
    return lines


def markdown(protocol: Protocol, summaries: Summaries, decisions: dict) -> str:
    scale = protocol.scale
    label = [] if scale.converged else [TINY_LABEL, ""]
    lines = label + [
        _rules(protocol),
        "",
        f"Trained from commit{'s' if len(decisions['commits']) > 1 else ''} "
        + ", ".join(f"`{c[:12]}`" for c in decisions["commits"])
        + "; datasets (sha256 of the array files' sha256): "
        + "; ".join(
            f"{m} " + ", ".join(f"{t} `{h[:12]}`" for t, h in sorted(tiers.items()))
            for m, tiers in sorted(decisions["datasets"].items())
        )
        + ".",
    ]
    if protocol.amendment is not None:
        lines += _amendment_lines(protocol, decisions)
    lines += [
        "",
        "| map | budget (steps) | curves flat from | capped | "
        + " | ".join(ALGORITHM_TITLES[m] for m in protocol.methods)
        + " |",
        "|---|---|---|---|" + "---|" * len(protocol.methods),
    ]
    for map_name, decided in decisions["maps"].items():
        if decided["budget"] is None:
            curve_tiers = [t for t in decided["tiers"] if t in protocol.scale.curve_tier_list]
            planned = len(curve_tiers) * len(protocol.methods) * len(protocol.scale.tuning_seeds)
            lines.append(
                f"| {map_name} | – | curves running: {decided['curve_runs']} of {planned} runs summarized | – | "
                + " | ".join("–" for _ in protocol.methods)
                + " |"
            )
            continue
        cells = []
        for method in protocol.methods:
            curve_tiers = [t for t in decided["tiers"] if f"{t}/{method}" in decided["per_curve"]]
            flat = "flat from " + ", ".join(f"{decided['per_curve'][f'{t}/{method}']:,}" for t in curve_tiers)
            field_name = TEMPERATURES[method][0] if TEMPERATURES[method] else None
            if f"{decided['tiers'][0]}/{method}" not in (decided["selected"] or {}):
                chosen = "tuning"
            elif field_name:
                values = [decided["selected"][f"{t}/{method}"]["value"] for t in decided["tiers"]]
                chosen = f"{field_name} " + ", ".join(f"{v:g}" for v in (dict.fromkeys(values)))
            else:
                chosen = "no temperature"
            cells.append(f"{flat}; {chosen}")
        lines.append(
            f"| {map_name} | {decided['budget']:,} | {decided['curves_budget']:,}"
            f"{'' if decided['flattened'] else ' (NOT flat by the last step)'} | "
            f"{'yes' if decided['capped'] else 'no'} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "(per method: the step its curve flattened from on each curve tier, and the selected temperature)",
        "",
    ]
    tuning = _tuning_lines(protocol, decisions)
    if tuning:
        lines += tuning + [""]
    for map_name, decided in decisions["maps"].items():
        if decided["budget"] is not None:
            lines.append(f"![SMAX learning curves {map_name}](results/smax_protocol_{scale.name}_{map_name}.png)")
    seeds = len(scale.report_seeds)
    if not any(name.startswith("report/") for name, _ in summaries):
        lines += ["", "No report run has finished yet: the final tables follow the report phase."]
        lines += _cost_pointer(protocol, summaries)
        return "\n".join(lines) + "\n"
    for metric, title, card_key in METRICS:
        lines += [
            "",
            f"Final {title}" + (" (tiny, not converged)" if not scale.converged else "") + ":",
            "",
            "| map | tier | dataset | " + " | ".join(ALGORITHM_TITLES[m] for m in protocol.methods) + " |",
            "|---|---|---|" + "---|" * len(protocol.methods),
        ]
        for map_name, decided in decisions["maps"].items():
            matrix: dict[str, list] = {m: [] for m in protocol.methods}
            for tier in decided["tiers"]:
                cells = []
                for method in protocol.methods:
                    values = seed_means(report_finals(protocol, summaries, map_name, tier, method), metric)
                    matrix[method].append(values)
                    partial = f" ({len(values)}/{seeds} seeds)" if 0 < len(values) < seeds else ""
                    cells.append(score_cell(values) + partial)
                card = (protocol.datasets or {}).get(map_name, {}).get(tier, {})
                dataset = f"{card[card_key]:.2f}" if card_key in card else "–"
                lines.append(f"| {map_name} | {tier} | {dataset} | " + " | ".join(cells) + " |")
            if len(decided["tiers"]) > 1:  # rliable's aggregate over the map's tiers: (seeds, tiers)
                lines.append(
                    f"| {map_name} | all tiers | | "
                    + " | ".join(_aggregate(matrix[method]) for method in protocol.methods)
                    + " |"
                )
    for map_name in decisions["maps"]:
        if has_report_runs(summaries, map_name):
            lines += ["", f"![SMAX report {map_name}](results/smax_protocol_{scale.name}_{map_name}_report.png)"]
    improvement = _improvement_lines(protocol, summaries, decisions)
    if improvement:
        lines += ["", "Probability that InSPO (fused) improves on each baseline, over a map's tiers:", ""]
        lines += improvement
    lines += _cost_pointer(protocol, summaries)
    return "\n".join(lines) + "\n"


def _tuning_lines(protocol: Protocol, decisions: dict) -> list[str]:
    """The tuning scores behind each selection: per map, method and group of tuned tiers, the score (IQM over
    the tuning seeds and the group's tiers) of every value of the method's grid."""
    rows = []
    for map_name, decided in decisions["maps"].items():
        for method in protocol.methods:
            groups = {}  # tuned tiers -> their selection (one per group; every reported tier repeats it)
            for tier in decided["tiers"]:
                choice = (decided["selected"] or {}).get(f"{tier}/{method}")
                if choice is not None and choice["scores"]:
                    groups.setdefault(", ".join(choice["tuned_on"]), choice)
            for tuned_on, choice in groups.items():
                scores = ", ".join(
                    f"{value}: {score:.2f}"
                    for value, score in sorted(choice["scores"].items(), key=lambda x: float(x[0]))
                )
                rows.append(
                    f"| {map_name} | {ALGORITHM_TITLES[method]} | {tuned_on} | {choice['field']} | {scores} | "
                    f"{choice['value']:g} |"
                )
    if not rows:
        return []
    seeds = protocol.scale.tune_seed_list
    return [
        f"Tuning scores (the mean of the final greedy and stochastic return; IQM over tuning seed"
        f"{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))} and the tuned tiers' runs):",
        "",
        "| map | method | tuned on | temperature | score per value | selected |",
        "|---|---|---|---|---|---|",
        *rows,
    ]


def _aggregate(per_tier: list[list[float]]) -> str:
    from inspo.stats import format_interval, iqm_interval

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
            label = ALGORITHM_TITLES[method]
            if protocol.amendment is not None and method in protocol.amendment.methods:
                label += " (first grid)"  # the campaign's curves, drawn before the amendment re-tuned it
            axis.plot(steps, [iqm(scores[:, k]) for k in range(len(steps))], label=label)
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


def plot_report(protocol: Protocol, summaries: Summaries, map_name: str, tiers: list[str], path: Path) -> Path:
    """The report at a glance: per tier, each method's IQM with its 95% interval over the report seeds, greedy
    and stochastic return side by side, beside the dataset's own return (a grey bar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from inspo.stats import iqm_interval

    card = (protocol.datasets or {}).get(map_name, {})
    metrics = [(metric, title) for metric, title, card_key in METRICS if card_key == "return_mean"]
    figure, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 3.4), squeeze=False)
    width = 0.8 / len(protocol.methods)
    for axis, (metric, title) in zip(axes[0], metrics):
        for k, tier in enumerate(tiers):
            if "return_mean" in card.get(tier, {}):
                axis.bar(k, card[tier]["return_mean"], width=0.9, color="0.88", zorder=0)
        for m, method in enumerate(protocol.methods):
            xs, points, low, high = [], [], [], []
            for k, tier in enumerate(tiers):
                values = seed_means(report_finals(protocol, summaries, map_name, tier, method), metric)
                if values:
                    point, lower, upper = iqm_interval(values)
                    xs.append(k - 0.4 + (m + 0.5) * width)
                    points.append(point)
                    low.append(point - lower)
                    high.append(upper - point)
            axis.errorbar(
                xs, points, yerr=[low, high], fmt="o", markersize=4, capsize=2, label=ALGORITHM_TITLES[method]
            )
        axis.set_xticks(range(len(tiers)), tiers)
        axis.set_title(f"{map_name}: final {title}")
        axis.set_ylabel("IQM [95% CI] over the report seeds")
    axes[0][-1].legend(fontsize=7, title="grey: the dataset", title_fontsize=7)
    if not protocol.scale.converged:
        figure.suptitle("TINY, NOT CONVERGED", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def write_results_md(protocol: Protocol, results_md: Path, figures: Path) -> None:
    """The `smax-protocol` region of RESULTS.md, and the curve and report figures it links, from protocol.out
    (written by write_outputs)."""
    import shutil

    from experiments.results.report import fill_regions

    decisions = json.loads((protocol.out / "protocol.json").read_text())
    figures.mkdir(parents=True, exist_ok=True)
    for map_name, decided in decisions["maps"].items():
        if decided["budget"] is None:
            continue
        shutil.copyfile(
            protocol.out / f"curves_{map_name}.png", figures / f"smax_protocol_{protocol.scale.name}_{map_name}.png"
        )
        report = protocol.out / f"report_{map_name}.png"
        if report.is_file():
            shutil.copyfile(report, figures / f"smax_protocol_{protocol.scale.name}_{map_name}_report.png")
    text = results_md.read_text()
    region = (protocol.out / "protocol.md").read_text()
    results_md.write_text(fill_regions(text, {"smax-protocol": region}, where=str(results_md)))


def protocol_from_args(args, grid: GridConfig) -> Protocol:
    if args.campaign is not None:
        return campaign_protocol(args.campaign, grid, args.out)
    scale = SCALES[args.scale]
    if args.max_steps is not None:
        scale = replace(scale, max_steps=args.max_steps)
    if args.protocol_tiers:
        scale = replace(scale, tiers=tuple(args.protocol_tiers))
    return Protocol(
        maps=tuple(args.maps), methods=tuple(args.methods), scale=scale, out=args.out, grid=grid, store=args.store
    )


# ---- a campaign: a protocol whose settings, dataset versions and summaries are committed in one folder

CAMPAIGN_CUTS = ("tune_tiers", "tune_seeds", "budget_cap")  # the Scale fields a campaign file may set


def _campaign_file(path: Path, named: str) -> dict:
    """A campaign file's JSON; `named`: how errors name it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{named}: no such file") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{named}: not JSON ({error.msg} at line {error.lineno})") from None


def load_campaign(path: Path) -> dict:
    """campaign.json (maps, methods, scale, cuts, the pinned tag) and datasets.json beside it (the committed
    dataset versions), checked; errors name the file and the field."""
    path = Path(path)
    campaign = _campaign_file(path, f"--campaign {path}")
    campaign.setdefault("overrides", {})
    for key, kind in (
        ("tag", str),
        ("maps", list),
        ("methods", list),
        ("scale", str),
        ("cuts", dict),
        ("overrides", dict),
    ):
        if not isinstance(campaign.get(key), kind):
            raise ValueError(f"--campaign {path}: field {key!r} must be a {kind.__name__}")
    if campaign["scale"] not in SCALES:
        raise ValueError(f"--campaign {path}: scale {campaign['scale']!r} is not one of {', '.join(SCALES)}")
    unknown = sorted(set(campaign["cuts"]) - set(CAMPAIGN_CUTS))
    if unknown:
        raise ValueError(f"--campaign {path}: cuts {unknown} are not among {', '.join(CAMPAIGN_CUTS)}")
    if "amends" in campaign:
        raise ValueError(
            f"--campaign {path}: it amends {campaign['amends']}: report that campaign (its file names this one)"
        )
    datasets = path.parent / "datasets.json"
    campaign["datasets"] = json.loads(datasets.read_text()) if datasets.is_file() else {}
    return campaign


def load_amendment(path: Path, campaign: dict) -> Optional[Amendment]:
    """The amendment the campaign at `path` names in `amended_by`, checked against it; errors name the file and
    the field."""
    if "amended_by" not in campaign:
        return None
    where = Path(path).parent / str(campaign["amended_by"])
    amending = _campaign_file(where, f"--campaign {path}: amended_by {where}")
    if (where.parent / str(amending.get("amends", ""))).resolve() != Path(path).resolve():
        raise ValueError(f"{where}: field 'amends' must name {path}, the campaign it amends")
    for key in ("maps", "scale", "cuts"):
        if amending.get(key) != campaign[key]:
            raise ValueError(f"{where}: field {key!r} must be the amended campaign's ({campaign[key]})")
    methods = amending.get("methods")
    if (
        not isinstance(methods, list)
        or not methods
        or any(m not in METHODS or m in campaign["methods"] for m in methods)
    ):
        raise ValueError(f"{where}: field 'methods' must list methods the amended campaign does not run itself")
    for method in methods:
        grid = amending.get("temperatures", {}).get(method)
        if TEMPERATURES[method] is not None and grid != list(TEMPERATURES[method][1]):
            raise ValueError(
                f"{where}: temperatures of {method}: {grid}, but experiments.smax.protocol.TEMPERATURES tunes it over "
                f"{list(TEMPERATURES[method][1])}"
            )
    budgets = amending.get("budgets")
    if not isinstance(budgets, dict) or sorted(budgets) != sorted(campaign["maps"]):
        raise ValueError(f"{where}: field 'budgets' must give each map of the amended campaign its budget")
    return Amendment(
        methods=tuple(methods), tag=str(amending.get("tag")), store=where.parent / "summaries", budgets=budgets
    )


def campaign_scale(campaign: dict) -> Scale:
    cuts = {key: tuple(value) if isinstance(value, list) else value for key, value in campaign["cuts"].items()}
    return replace(SCALES[campaign["scale"]], **cuts)


def campaign_protocol(path: Path, grid: GridConfig, out: Path) -> Protocol:
    """The protocol of a campaign folder: its settings from campaign.json, its summaries in summaries/ beside it."""
    campaign = load_campaign(path)
    amendment = load_amendment(path, campaign)
    overrides = {**grid.overrides, **campaign.get("overrides", {})}  # TrainConfig fields of every run
    methods = set(campaign["methods"]) | set(amendment.methods if amendment else ())
    return Protocol(
        maps=tuple(campaign["maps"]),
        methods=tuple(m for m in METHODS if m in methods),
        scale=campaign_scale(campaign),
        out=out,
        grid=replace(grid, overrides=overrides),
        store=Path(path).parent / "summaries",
        datasets=campaign["datasets"],
        amendment=amendment,
    )


def record_datasets(path: Path, grid: GridConfig, log) -> dict:
    """Add each of the campaign's datasets found under the grid's data root to datasets.json beside the campaign
    file: its content hash, sizes and statistics, and the machine that made it. A dataset already recorded must
    hash the same (a report never mixes versions): a different one is an error naming both."""
    from inspo.data.card import load_dataset
    from inspo.sweep.execute import machine

    campaign = load_campaign(path)
    recorded = campaign["datasets"]
    for map_name in campaign["maps"]:
        for tier in SCALES[campaign["scale"]].tiers:
            directory = dataset_dir(grid, map_name, tier)
            if not (directory / "meta.json").is_file():
                log(f"{map_name}/{tier}: no dataset at {directory}")
                continue
            card = load_dataset(directory, hashes=True)[1]["card"]
            digest = dataset_sha256(directory)
            known = recorded.get(map_name, {}).get(tier)
            if known is not None:
                if known["sha256"] != digest:
                    raise ValueError(
                        f"{directory}: dataset {digest[:16]} differs from the recorded {map_name}/{tier} "
                        f"({known['sha256'][:16]}, made on {known['made_on']}): this machine does not regenerate it "
                        "bit for bit (docs/SMAX.md, 'The campaign')"
                    )
                log(f"{map_name}/{tier}: {digest[:16]} as recorded")
                continue
            recorded.setdefault(map_name, {})[tier] = dict(
                sha256=digest,
                generator=card["generator"],
                episodes=card["episodes"],
                transitions=card["transitions"],
                return_mean=round(card["return_mean"], 4),
                win_rate=round(card["win_rate"], 4),
                generation_seconds=card["seconds"],
                made_on=machine()["cpu"],
            )
            log(f"{map_name}/{tier}: recorded {digest[:16]}")
    (Path(path).parent / "datasets.json").write_text(json.dumps(recorded, indent=1, sort_keys=True) + "\n")
    return recorded


def record_rollout_checks(path: Path, log) -> dict:
    """rollout_checks.json beside the campaign file: per exported behaviour run (behaviour/<map>), the hash of
    a short rollout of its final checkpoint and the CPU that computed it (tests/test_smax_campaign.py
    recomputes them: a machine that rounds differently is found in seconds, not after regenerating data)."""
    from inspo.smax.tiers import rollout_check
    from inspo.sweep.execute import machine

    checks_path = Path(path).parent / "rollout_checks.json"
    checks = json.loads(checks_path.read_text()) if checks_path.is_file() else {}
    for directory in sorted((Path(path).parent / "behaviour").glob("*")):
        if directory.name not in checks:
            checks[directory.name] = dict(sha256=rollout_check(directory), made_on=machine()["cpu"])
            log(f"{directory.name}: rollout check {checks[directory.name]['sha256'][:16]}")
    checks_path.write_text(json.dumps(checks, indent=1, sort_keys=True) + "\n")
    return checks


def pinned_commit(path: Path) -> str:
    """The commit a campaign trains from: its tag's, which must be the checkout this code runs from, clean."""
    import subprocess

    from inspo.sweep.store import git_commit

    tag = load_campaign(path)["tag"]
    here = Path(__file__).parent
    running = git_commit(here)
    try:
        tagged = subprocess.run(
            ["git", "-C", str(here), "rev-parse", f"{tag}^{{commit}}"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        raise ValueError(f"--campaign: tag {tag!r} not found; the campaign trains from it") from None
    if running != tagged:
        raise ValueError(
            f"--campaign: this code is at {running[:12]}, the campaign's tag {tag} at {tagged[:12]}: train from a "
            f"checkout of the tag (git worktree add ../campaign {tag}) and pass this campaign file to it"
        )
    return tagged


def log_stderr(message: str) -> None:
    print(f"smax protocol: {message}", file=sys.stderr, flush=True)
