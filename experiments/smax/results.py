"""The SMAX results grid: algorithms x maps x tiers x seeds, under one evaluation protocol.

    python -m experiments.smax --maps 3m 2s3z 5m_vs_6m --seeds 0 1 2 3 4 --out runs/smax
    python -m experiments.smax --protocol --scale full --maps 3m 2s3z 3s_vs_5z 5m_vs_6m --address auto

`--protocol` runs experiments.smax.protocol instead (learning curves -> a step budget per map, a temperature
sweep on tuning seeds, the report on fresh seeds; its docstring and docs/SMAX.md have the rules).

Protocol: every run trains on a dataset made by ``inspo data make`` (data seed 0 unless
``--data-seed``), evaluates its current policy on 32 battles every ``eval_every`` steps (greedy and
stochastic, in the run's eval.jsonl), and at the end its FINAL policy (never the best checkpoint)
on ``final_episodes`` battles, greedy and stochastic on the same battles. Written:

* ``<out>/<map>/<tier>/<algo>/seed<k>/``: the trainer's run folder, plus final_eval.json
  (per-episode returns and wins of the final evaluation);
* ``<out>/marl_eval.json``: marl-eval's raw-data layout, env "smax" -> task "<map>-<tier>" ->
  algorithm -> run -> step_k (means of the 32-battle evaluations) and absolute_metrics (the
  per-episode final evaluation);
* ``<out>/smax_results.md``: the table (mean +- std over seeds) with the behaviour datasets'
  own return and win rate beside it.

The grid is a sweep on Ray (inspo.sweep; `--address` joins a cluster): a finished run (its config, the
final evaluation's settings and the code version unchanged) is reused, so an interrupted grid resumes. SMAX
returns lie in [0, ~2]: not comparable with SMAC numbers.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inspo.smax.tiers import DEFAULT_ROOT, TRAINED_TIERS

ALGORITHMS = {  # name in the table -> (trainer, mode)
    "inspo-fused": ("inspo", "fused"),
    "inspo-exact": ("inspo", "exact"),
    "cfcql": ("cfcql", None),
    "omiga": ("omiga", None),
    "bc": ("bc", None),
}
# What the grid sets on top of the trainer's SMAX preset (inspo.config.PRESETS["smax"]: iterations,
# temperatures, networks): evaluations of 32 battles every 500 iterations during training (the final
# evaluation is final_evaluation's), no intermediate checkpoints.
SMAX_OVERRIDES: dict[str, Any] = dict(eval_episodes=32, eval_every=500, log_every=250, checkpoint_every=0)


@dataclass
class GridConfig:
    maps: tuple = ("3m", "2s3z")
    tiers: tuple = TRAINED_TIERS
    algorithms: tuple = tuple(ALGORITHMS)
    seeds: tuple = (0, 1, 2, 3, 4)
    cell_seeds: dict = field(default_factory=dict)  # "<map>/<tier>" -> its own seeds (instead of `seeds`)
    data_seed: int = 0
    data_root: Path = DEFAULT_ROOT
    out: Path = Path("runs/smax")
    final_episodes: int = 256
    overrides: dict = field(default_factory=dict)  # TrainConfig fields on top of SMAX_OVERRIDES


def seeds_of(grid: GridConfig, map_name: str, tier: str) -> tuple:
    return tuple(grid.cell_seeds.get(f"{map_name}/{tier}", grid.seeds))


def final_policy(run_dir: Path):
    """The policy network of a run's final checkpoint, as the trainer's PolicyFn, and its config."""
    from inspo.config import TrainConfig
    from inspo.nets import make_policy_net, policy_fn
    from inspo.runfolder import load_checkpoint, policy_state
    from inspo.smax import map_from_env_name
    from inspo.smax.env import smax_spec

    payload = load_checkpoint(run_dir / "checkpoint.pt")
    config = TrainConfig.from_dict(payload["config"])
    spec = smax_spec(map_from_env_name(config.env))
    actor = make_policy_net(config, spec.n_agents, spec.obs_dim, spec.n_actions)
    actor.load_state_dict(policy_state(payload))
    actor.eval()
    return policy_fn(actor), config, payload["step"]


def final_evaluation(run_dir: Path, episodes: int, seed: int) -> dict:
    """Greedy and stochastic play of the final policy on the same ``episodes`` battles."""
    import torch

    from inspo.smax import map_from_env_name
    from inspo.smax.task import play

    policy, config, step = final_policy(run_dir)
    result: dict[str, Any] = dict(step=step, episodes=episodes, seed=seed)
    for kind in ("greedy", "stochastic"):
        generator = torch.Generator().manual_seed(seed)
        episodes_ = play(
            map_from_env_name(config.env), policy, episodes, seed=seed, greedy=kind == "greedy", generator=generator
        )
        result[f"{kind}_return"] = episodes_.returns.tolist()
        result[f"{kind}_win_rate"] = episodes_.wins.astype(float).tolist()
    return result


def dataset_dir(grid: GridConfig, map_name: str, tier: str) -> Path:
    return Path(grid.data_root).expanduser() / map_name / f"seed{grid.data_seed}" / tier


def run_config(grid: GridConfig, map_name: str, tier: str, algorithm: str, seed: int, extra: Optional[dict] = None):
    """The TrainConfig of one grid run: the SMAX preset, SMAX_OVERRIDES, the grid's overrides, the run's
    own `extra` fields (the protocol's budget and temperature), then its dataset, seed and algorithm."""
    from inspo.config import make_config

    trainer_name, mode = ALGORITHMS[algorithm]
    overrides = {
        **SMAX_OVERRIDES,
        **grid.overrides,
        **(extra or {}),
        "seed": seed,
        "dataset": tier,
        "dataset_seed": grid.data_seed,
        "dataset_path": str(dataset_dir(grid, map_name, tier)),
        "algo": trainer_name,
    }
    if mode is not None:
        overrides["inspo.mode"] = mode
    return make_config(f"smax:{map_name}", **overrides)


def write_final_eval(run_dir: Path, episodes: int, seed_offset: int) -> None:
    """The sweep's finishing step of a grid run: final_eval.json, the final policy on `episodes` battles
    (seed: seed_offset + the run's seed), with the training time."""
    results = json.loads((run_dir / "results.json").read_text())
    final = final_evaluation(run_dir, episodes, seed=seed_offset + results["config"]["seed"])
    final["train_seconds"] = round(results["seconds"], 1)
    (run_dir / "final_eval.json").write_text(json.dumps(final))


def grid_runs(grid: GridConfig, log) -> list:
    """The sweep of the grid: a Run per map, tier, algorithm and seed whose dataset exists (the others are
    logged: the grid does not make datasets)."""
    from inspo.algorithms import algorithm as registered
    from inspo.sweep.spec import Run

    runs = []
    for map_name in grid.maps:
        for tier in grid.tiers:
            dataset = dataset_dir(grid, map_name, tier)
            if not (dataset / "meta.json").is_file():
                log(
                    f"skip {map_name}/{tier}: no dataset at {dataset} (inspo data make --env smax:{map_name} "
                    f"--tier {tier})"
                )
                continue
            for algorithm in grid.algorithms:
                try:
                    registered(ALGORITHMS[algorithm][0])
                except ValueError as error:
                    log(f"skip {algorithm}: {error}")
                    continue
                for seed in seeds_of(grid, map_name, tier):
                    runs.append(
                        Run(
                            f"{map_name}/{tier}/{algorithm}",
                            run_config(grid, map_name, tier, algorithm, seed),
                            grid.out / map_name / tier / algorithm / f"seed{seed}",
                            finish=(
                                "experiments.smax.results:write_final_eval",
                                (("episodes", grid.final_episodes), ("seed_offset", FINAL_SEED_OFFSET)),
                            ),
                        )
                    )
    return runs


FINAL_SEED_OFFSET = 10_000  # the final evaluation's battles: seed 10000 + the run's seed


def marl_eval_json(grid: GridConfig) -> dict:
    """Collect the finished runs in marl-eval's raw-data layout."""
    data: dict = {"smax": {}}
    for map_name in grid.maps:
        for tier in grid.tiers:
            task = data["smax"].setdefault(f"{map_name}-{tier}", {})
            for algorithm in grid.algorithms:
                for seed in seeds_of(grid, map_name, tier):
                    run_dir = grid.out / map_name / tier / algorithm / f"seed{seed}"
                    if not _finished(run_dir):
                        continue
                    task.setdefault(algorithm, {})[f"run_{seed}"] = run_record(run_dir)
    return data


FINAL_METRICS = ("greedy_return", "greedy_win_rate", "stochastic_return", "stochastic_win_rate")


def run_record(run_dir: Path) -> dict:
    """One finished run in marl-eval's layout: step_k = the k-th evaluation during training (32-battle
    means), absolute_metrics = the per-episode final evaluation (final_eval.json)."""
    eval_log = run_dir / "eval.jsonl"
    lines = eval_log.read_text().splitlines() if eval_log.is_file() else []
    curve = [json.loads(line) for line in lines if line.strip()]
    return marl_eval_run(curve, json.loads((run_dir / "final_eval.json").read_text()))


def marl_eval_run(curve: list[dict], final: dict) -> dict:
    """A run in marl-eval's layout from its evaluation rows during training and its final evaluation."""
    run: dict = {}
    for k, row in enumerate(curve):
        run[f"step_{k}"] = {
            "step_count": row["step"],
            **{metric: [row[metric]] for metric in FINAL_METRICS if metric in row},
        }
    run["absolute_metrics"] = {metric: final[metric] for metric in FINAL_METRICS}
    return run


ALGORITHM_TITLES = {
    "inspo-fused": "InSPO fused",
    "inspo-exact": "InSPO exact",
    "cfcql": "CFCQL",
    "omiga": "OMIGA",
    "bc": "BC",
}


def _finished(run_dir: Path) -> bool:
    """A run the sweep finished: its key file is written after final_eval.json."""
    from inspo.sweep.execute import KEY_FILE

    return (run_dir / "final_eval.json").is_file() and (run_dir / KEY_FILE).is_file()


def _finals(grid: GridConfig, map_name: str, tier: str, algorithm: str) -> list:
    runs = grid.out / map_name / tier / algorithm
    dirs = [runs / f"seed{seed}" for seed in seeds_of(grid, map_name, tier)]
    return [json.loads((run_dir / "final_eval.json").read_text()) for run_dir in dirs if _finished(run_dir)]


def _cell(finals: list, kind: str, seeds: int) -> str:
    """Win rate mean ± std over seeds (return mean), with the seed count when some are missing."""
    if not finals:
        return "–"
    wins = [float(np.mean(f[f"{kind}_win_rate"])) for f in finals]
    returns = [float(np.mean(f[f"{kind}_return"])) for f in finals]
    spread = f" ± {np.std(wins):.2f}" if len(finals) > 1 else ""  # no spread from one seed
    missing = f" [{len(finals)} of {seeds} seeds]" if len(finals) != seeds else ""
    return f"{np.mean(wins):.2f}{spread} ({np.mean(returns):.2f}){missing}"


def _dataset_card(grid: GridConfig, map_name: str, tier: str) -> Optional[dict]:
    from inspo.data.card import load_dataset

    dataset = dataset_dir(grid, map_name, tier)
    return load_dataset(dataset)[1]["card"] if (dataset / "meta.json").is_file() else None


def markdown(grid: GridConfig) -> str:
    """The SMAX section: datasets (with the behaviour's own win rate), then the final greedy and
    stochastic win rates (mean ± std over seeds, mean return in brackets) per algorithm."""
    settings = run_config(grid, grid.maps[0], grid.tiers[0], "inspo-fused", 0).to_dict()  # the same for every run
    algorithms = [a for a in grid.algorithms if any(_finals(grid, m, t, a) for m in grid.maps for t in grid.tiers)]
    lines = [
        "SMAX is JaxMARL's JAX re-implementation of SMAC (`pip install '.[smax]'`); the datasets are made here "
        "with CFCQL's recipe (`inspo data make --env smax:<map> --tier all`: MAPPO trained online here; expert = "
        "its final policy, medium = the first checkpoint at about half the expert return, medium-replay = the "
        "training rollouts until then, mixed = half and half; docs/SMAX.md).",
        "",
        "**SMAX numbers are not comparable with SMAC papers**: another simulator, unit statistics, scripted "
        "enemy and reward (enemy health removed + 1 for a win: returns lie in [0, ~2], not SMAC's ~20).",
        "",
        f"Protocol: the final policy of every run (never the best checkpoint), evaluated on {grid.final_episodes} "
        "battles, greedy and stochastic on the same battles; win rate mean ± std over the seeds of the row "
        "(fewer where marked; no ± from one seed), mean return in brackets. Training: "
        f"{settings['steps']} iterations (InSPO, OMIGA, CFCQL) or {settings['bc_steps']} BC steps, batch "
        f"{settings['batch_size']}, alpha {settings['algo_options']['inspo']['alpha']}, beta "
        f"{settings['algo_options']['inspo']['beta']}, OMIGA alpha "
        f"{run_config(grid, grid.maps[0], grid.tiers[0], 'omiga', 0).algo_options.alpha}, CFCQL alpha "
        f"{run_config(grid, grid.maps[0], grid.tiers[0], 'cfcql', 0).algo_options.alpha}, shared networks "
        f"{settings['hidden']}: a budget that 2 shared CPU cores "
        "afford, not a tuned or converged one. Raw per-episode results for IQM / bootstrap intervals: "
        "`marl_eval.json` (marl-eval layout) beside the run folders.",
        "",
        f"Datasets (data seed {grid.data_seed}; win rate and return of the behaviour episodes themselves):",
        "",
        "| map | tier | episodes | transitions | behaviour win rate | behaviour return | behaviour policy | generator |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for map_name in grid.maps:
        for tier in grid.tiers:
            card = _dataset_card(grid, map_name, tier)
            if card is None:
                lines.append(
                    f"| {map_name} | {tier} | not made | | | | "
                    f"`inspo data make --env smax:{map_name} --tier {tier}` | |"
                )
                continue
            behaviour = card["behaviour"]
            if "parts" in behaviour:
                source = " + ".join(
                    f"{p['kind']} at {p['env_steps']:,} env steps x {p['episodes']}" for p in behaviour["parts"]
                )
            else:
                until = behaviour["until"]
                recorded, total = behaviour["recorded_of_total"]
                source = (
                    f"{behaviour['kind']} until {until['env_steps']:,} env steps ({recorded:,} of {total:,} episodes)"
                )
            lines.append(
                f"| {map_name} | {tier} | {card['episodes']:,} | {card['transitions']:,} | "
                f"{card['win_rate']:.3f} | {card['return_mean']:.2f} ± {card['return_std']:.2f} | {source} | "
                f"{card['generator']} |"
            )
    for kind in ("greedy", "stochastic"):
        lines += [
            "",
            f"Final {kind} win rate (return):",
            "",
            "| map | tier | seeds | " + " | ".join(ALGORITHM_TITLES[a] for a in algorithms) + " |",
            "|---|---|---|" + "---|" * len(algorithms),
        ]
        for map_name in grid.maps:
            for tier in grid.tiers:
                seeds = seeds_of(grid, map_name, tier)
                cells = [_cell(_finals(grid, map_name, tier, a), kind, len(seeds)) for a in algorithms]
                if any(cell != "–" for cell in cells):
                    lines.append(f"| {map_name} | {tier} | {', '.join(map(str, seeds))} | " + " | ".join(cells) + " |")
    missing = [ALGORITHM_TITLES[a] for a in grid.algorithms if a not in algorithms]
    if missing:
        lines += ["", f"No finished runs of {', '.join(missing)} in this grid."]
    lines += compute_lines(grid, algorithms)
    return "\n".join(lines) + "\n"


GRID_TIME_FILE = "grid_time.json"  # one entry per invocation of run_grid that trained runs


def compute_lines(grid: GridConfig, algorithms: list) -> list:
    """What the grid cost: training seconds per seed (a cell's seeds train batched in one process, whose
    time is divided among them) per map and algorithm, and the wall time of the invocations that trained."""
    from experiments.results.scores import process_seconds, seconds_per_seed

    lines = [
        "",
        "Training time, seconds per seed (mean over the tiers; a cell's seeds train batched in one process, one "
        "CPU, and share its time; the final evaluation is not included):",
        "",
        "| map | " + " | ".join(ALGORITHM_TITLES[a] for a in algorithms) + " |",
        "|---|" + "---|" * len(algorithms),
    ]
    total = 0.0
    for map_name in grid.maps:
        cells = []
        for algorithm in algorithms:
            per_seed = []
            for tier in grid.tiers:
                finals = _finals(grid, map_name, tier, algorithm)
                runs = [{"seconds": final["train_seconds"]} for final in finals if "train_seconds" in final]
                per_seed += seconds_per_seed(runs)
                total += process_seconds(runs)
            cells.append(f"{np.mean(per_seed):.0f}" if per_seed else "–")
        lines.append(f"| {map_name} | " + " | ".join(cells) + " |")
    lines += ["", f"Sum of the training times of the grid's processes: {total / 3600:.2f} CPU-hours."]
    invocations = _grid_times(grid)
    if invocations:
        lines += ["", "Invocations that trained runs (wall time, including the final evaluations):", ""]
        lines += [
            f"* {entry['date']}: {entry['trained']} runs trained, {entry['reused']} reused, {entry['failed']} "
            f"failed, on {entry['cpus']:g} CPUs: {entry['wall_seconds'] / 60:.1f} min wall"
            for entry in invocations
        ]
        wall = sum(entry["wall_seconds"] for entry in invocations)
        lines += ["", f"All of them together: {wall / 60:.1f} min wall."]
    return lines


def _grid_times(grid: GridConfig) -> list:
    path = grid.out / GRID_TIME_FILE
    return json.loads(path.read_text()) if path.is_file() else []


def _record_grid_time(grid: GridConfig, outcome) -> None:
    """Add this invocation's wall time to GRID_TIME_FILE when it trained any run."""
    from datetime import datetime, timezone

    trained = len(outcome.results) - outcome.reused
    if trained == 0:
        return
    entry = dict(
        date=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        trained=trained,
        reused=outcome.reused,
        failed=len(outcome.failures),
        cpus=outcome.cpus,
        wall_seconds=round(outcome.seconds, 1),
    )
    (grid.out / GRID_TIME_FILE).write_text(json.dumps([*_grid_times(grid), entry], indent=1) + "\n")


def run_grid(grid: GridConfig, log=print, **sweep_options) -> Path:
    """Train the grid's unfinished runs (a sweep: inspo.sweep.runner.run_sweep with `sweep_options`), then
    write marl_eval.json and smax_results.md."""
    from inspo.sweep.runner import run_sweep

    grid.out.mkdir(parents=True, exist_ok=True)
    outcome = run_sweep(grid_runs(grid, log), **sweep_options)
    for failure in outcome.failures:
        log(f"FAILED {failure}")
    _record_grid_time(grid, outcome)
    (grid.out / "marl_eval.json").write_text(json.dumps(marl_eval_json(grid)))
    (grid.out / "smax_results.md").write_text(markdown(grid))
    return grid.out / "smax_results.md"


# The grids of `python -m experiments.results --smax` (--quick: the 3m expert cells of seed 0, a few minutes). Both
# use run_config, so the quick cells are cells of the full grid and reuse its finished runs. The
# full grid is 3 maps x 4 tiers x 5 algorithms x 5 seeds = 300 runs, 60 seed groups (a sweep: Ray runs a
# seed group per CPU, or per --cpus-per-run CPUs on a cluster); its cost is in the section it writes.
FULL_GRID = dict(maps=("3m", "2s3z", "3s_vs_5z"), tiers=TRAINED_TIERS, seeds=(0, 1, 2, 3, 4))
QUICK_GRID = dict(maps=("3m",), tiers=("expert",), seeds=(0,))


def reproduce_rows(out_dir, quick: bool, **sweep_options) -> str:
    """The SMAX section of docs/RESULTS.md: trains the runs of the grid not finished yet under
    ``out_dir`` (finished ones are reused; cells without a dataset are listed as not made, they are
    not generated here), writes marl_eval.json and smax_results.md there, returns the markdown."""
    grid = GridConfig(out=Path(out_dir), **(QUICK_GRID if quick else FULL_GRID))
    path = run_grid(grid, log=lambda message: print(f"smax: {message}", file=sys.stderr, flush=True), **sweep_options)
    return path.read_text()
