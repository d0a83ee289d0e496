"""The SMAX results grid: algorithms x maps x tiers x seeds, under one evaluation protocol.

    python -m inspo.smax.results --maps 3m 2s3z 5m_vs_6m --seeds 0 1 2 3 4 --out runs/smax

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

Runs whose final_eval.json exists are skipped, so an interrupted grid resumes. SMAX returns lie in
[0, ~2]: not comparable with SMAC numbers.
"""

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inspo.smax.tiers import DEFAULT_ROOT, TRAINED_TIERS

ALGORITHMS = {  # name in the table -> (trainer, mode)
    "inspo-fused": ("inspo", "fused"),
    "inspo-exact": ("inspo", "exact"),
    "omiga": ("omiga", None),
    "bc": ("bc", None),
}
# Training settings for SMAX (ours; spec section 7 asks for alpha in [1, 10] at SMAC's reward scale
# of ~20 per episode; SMAX pays ~2, so the temperature is 10x smaller).
SMAX_OVERRIDES: dict[str, Any] = dict(
    steps=5000, batch_size=256, alpha=0.1, beta=0.01, hidden=(128, 128), critic_hidden=(256, 256),
    bc_steps=2000, eval_episodes=32, eval_every=1000, log_every=250, checkpoint_every=0, share_parameters=True,
)


@dataclass
class GridConfig:
    maps: tuple = ("3m", "2s3z")
    tiers: tuple = TRAINED_TIERS
    algorithms: tuple = tuple(ALGORITHMS)
    seeds: tuple = (0, 1, 2, 3, 4)
    data_seed: int = 0
    data_root: Path = DEFAULT_ROOT
    out: Path = Path("runs/smax")
    final_episodes: int = 256
    overrides: dict = field(default_factory=dict)  # TrainConfig fields on top of SMAX_OVERRIDES


def final_policy(run_dir: Path):
    """The policy network of a run's final checkpoint, as the trainer's PolicyFn, and its config."""
    import torch

    from inspo.bc import make_policy_net, policy_fn
    from inspo.cli import policy_state
    from inspo.config import TrainConfig
    from inspo.smax.env import smax_spec
    from inspo.smax import map_from_env_name

    payload = torch.load(run_dir / "checkpoint.pt", weights_only=False)
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
        episodes_ = play(map_from_env_name(config.env), policy, episodes, seed=seed, greedy=kind == "greedy",
                         generator=generator)
        result[f"{kind}_return"] = episodes_.returns.tolist()
        result[f"{kind}_win_rate"] = episodes_.wins.astype(float).tolist()
    return result


def run_one(grid: GridConfig, map_name: str, tier: str, algorithm: str, seed: int, log) -> Optional[Path]:
    from inspo.algos import get_trainer
    from inspo.config import make_config

    trainer_name, mode = ALGORITHMS[algorithm]
    run_dir = grid.out / map_name / tier / algorithm / f"seed{seed}"
    if (run_dir / "final_eval.json").is_file():
        return run_dir
    dataset = Path(grid.data_root).expanduser() / map_name / f"seed{grid.data_seed}" / tier
    if not (dataset / "meta.json").is_file():
        log(f"skip {map_name}/{tier}: no dataset at {dataset} (inspo data make --env smax:{map_name} --tier {tier})")
        return None
    try:
        trainer = get_trainer(trainer_name)
    except ValueError as error:
        log(f"skip {algorithm}: {error}")
        return None
    overrides = {**SMAX_OVERRIDES, **grid.overrides, "seed": seed, "dataset_path": str(dataset), "algo": trainer_name}
    if mode is not None:
        overrides["mode"] = mode
    config = make_config(f"smax:{map_name}", **overrides)
    started = time.time()
    trainer(config, out_dir=run_dir, progress=False)
    final = final_evaluation(run_dir, grid.final_episodes, seed=10_000 + seed)
    final["train_seconds"] = round(time.time() - started, 1)
    (run_dir / "final_eval.json").write_text(json.dumps(final))
    log(f"{map_name}/{tier} {algorithm} seed {seed}: greedy win {np.mean(final['greedy_win_rate']):.3f} "
        f"stoch. win {np.mean(final['stochastic_win_rate']):.3f} ({final['train_seconds']} s)")
    return run_dir


def marl_eval_json(grid: GridConfig) -> dict:
    """Collect the finished runs in marl-eval's raw-data layout."""
    data: dict = {"smax": {}}
    for map_name in grid.maps:
        for tier in grid.tiers:
            task = data["smax"].setdefault(f"{map_name}-{tier}", {})
            for algorithm in grid.algorithms:
                for seed in grid.seeds:
                    run_dir = grid.out / map_name / tier / algorithm / f"seed{seed}"
                    if not (run_dir / "final_eval.json").is_file():
                        continue
                    run: dict = {}
                    eval_log = run_dir / "eval.jsonl"
                    lines = eval_log.read_text().splitlines() if eval_log.is_file() else []
                    rows = [json.loads(line) for line in lines if line.strip()]
                    for k, row in enumerate(rows):
                        run[f"step_{k}"] = {"step_count": row["step"], **{
                            metric: [row[metric]] for metric in
                            ("greedy_return", "greedy_win_rate", "stochastic_return", "stochastic_win_rate")
                            if metric in row}}
                    final = json.loads((run_dir / "final_eval.json").read_text())
                    run["absolute_metrics"] = {metric: final[metric] for metric in
                                               ("greedy_return", "greedy_win_rate", "stochastic_return",
                                                "stochastic_win_rate")}
                    task.setdefault(algorithm, {})[f"run_{seed}"] = run
    return data


def _mean_std(values: list) -> str:
    return f"{np.mean(values):.2f} ± {np.std(values):.2f}" if values else "–"


def markdown(grid: GridConfig) -> str:
    """The results table: final greedy / stochastic win rate (mean ± std over seeds) per algorithm."""
    from inspo.smax.card import load_dataset

    lines = [
        "## SMAX (JaxMARL's SMAC re-implementation)",
        "",
        "Datasets made here (`inspo data make`, behaviour = MAPPO trained here, see the dataset cards). "
        "Final policy, never the best checkpoint; "
        f"{grid.final_episodes} evaluation battles per run, greedy and stochastic on the same battles; "
        f"mean ± std over seeds {list(grid.seeds)}. Win rate (return in [0, ~2]).",
        "",
        "**SMAX numbers are not comparable with SMAC papers**: different simulator, unit stats, "
        "scripted enemy and reward scale (damage fraction + 1 per win, not SMAC's ~20).",
        "",
        "| map | tier | data win (return) | " + " | ".join(f"{a} greedy | {a} stoch." for a in grid.algorithms) + " |",
        "|---|---|---|" + "---|---|" * len(grid.algorithms),
    ]
    for map_name in grid.maps:
        for tier in grid.tiers:
            dataset = Path(grid.data_root).expanduser() / map_name / f"seed{grid.data_seed}" / tier
            if (dataset / "meta.json").is_file():
                card = load_dataset(dataset)[1]["card"]
                data = f"{card['win_rate']:.2f} ({card['return_mean']:.2f})"
            else:
                data = "not made"
            cells = []
            for algorithm in grid.algorithms:
                runs = grid.out / map_name / tier / algorithm
                paths = [runs / f"seed{seed}" / "final_eval.json" for seed in grid.seeds]
                finals = [json.loads(path.read_text()) for path in paths if path.is_file()]
                for kind in ("greedy", "stochastic"):
                    wins = [float(np.mean(f[f"{kind}_win_rate"])) for f in finals]
                    returns = [float(np.mean(f[f"{kind}_return"])) for f in finals]
                    cells.append(f"{_mean_std(wins)} ({np.mean(returns):.2f})" if finals else "–")
            lines.append(f"| {map_name} | {tier} | {data} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def run_grid(grid: GridConfig, log=print) -> Path:
    grid.out.mkdir(parents=True, exist_ok=True)
    for map_name in grid.maps:
        for tier in grid.tiers:
            for algorithm in grid.algorithms:
                for seed in grid.seeds:
                    run_one(grid, map_name, tier, algorithm, seed, log)
    (grid.out / "marl_eval.json").write_text(json.dumps(marl_eval_json(grid)))
    (grid.out / "smax_results.md").write_text(markdown(grid))
    return grid.out / "smax_results.md"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m inspo.smax.results", description=__doc__.split("\n")[0])
    defaults = GridConfig()
    parser.add_argument("--maps", nargs="+", default=list(defaults.maps))
    parser.add_argument("--tiers", nargs="+", default=list(defaults.tiers))
    parser.add_argument("--algorithms", nargs="+", default=list(defaults.algorithms), choices=list(ALGORITHMS))
    parser.add_argument("--seeds", nargs="+", type=int, default=list(defaults.seeds))
    parser.add_argument("--data-seed", type=int, default=0)
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--out", type=Path, default=defaults.out)
    parser.add_argument("--final-episodes", type=int, default=defaults.final_episodes)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="TrainConfig override on top of the SMAX settings (repeatable)")
    parser.add_argument("--table-only", action="store_true", help="only rebuild the JSON and table")
    args = parser.parse_args(argv)
    from inspo.config import parse_overrides

    grid = GridConfig(maps=tuple(args.maps), tiers=tuple(args.tiers), algorithms=tuple(args.algorithms),
                      seeds=tuple(args.seeds), data_seed=args.data_seed, data_root=args.data_root, out=args.out,
                      final_episodes=args.final_episodes, overrides=parse_overrides(args.overrides))
    if args.table_only:
        grid.out.mkdir(parents=True, exist_ok=True)
        (grid.out / "marl_eval.json").write_text(json.dumps(marl_eval_json(grid)))
        (grid.out / "smax_results.md").write_text(markdown(grid))
    else:
        run_grid(grid, log=lambda message: print(message, file=sys.stderr, flush=True))
    print((grid.out / "smax_results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
