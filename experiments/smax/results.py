"""The pieces of a SMAX run that the protocol (experiments.smax.protocol) and its compute plan
(experiments.smax.plan) share: the methods and their titles, a run's TrainConfig (run_config: the trainer's SMAX
preset, SMAX_OVERRIDES, the run's own fields, its dataset), the datasets' folders (dataset_dir), the final
evaluation (write_final_eval: the sweep's finishing step of a run, final_eval.json) and a run in marl-eval's
layout (marl_eval_run).

The final evaluation plays the FINAL policy of a run (never the best checkpoint) on ``episodes`` battles,
greedy and stochastic on the same battles (seed FINAL_SEED_OFFSET + the run's seed). SMAX returns lie in
[0, ~2]: not comparable with SMAC numbers.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from inspo.smax.tiers import DEFAULT_ROOT

ALGORITHMS = {  # name in the table -> (trainer, mode)
    "inspo-fused": ("inspo", "fused"),
    "inspo-exact": ("inspo", "exact"),
    "cfcql": ("cfcql", None),
    "omiga": ("omiga", None),
    "bc": ("bc", None),
}
# What every run sets on top of the trainer's SMAX preset (inspo.config.PRESETS["smax"]: iterations,
# temperatures, networks): evaluations of 32 battles every 500 iterations during training (the protocol's
# phases set their own eval_every and eval_episodes; the final evaluation is final_evaluation's), metrics every
# 250 iterations, no intermediate checkpoints.
SMAX_OVERRIDES: dict[str, Any] = dict(eval_episodes=32, eval_every=500, log_every=250, checkpoint_every=0)


@dataclass
class GridConfig:
    """What every run of a protocol shares: where its datasets are and the TrainConfig fields set on all of them."""

    data_seed: int = 0
    data_root: Path = DEFAULT_ROOT
    overrides: dict = field(default_factory=dict)  # TrainConfig fields on top of SMAX_OVERRIDES


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
    """The TrainConfig of one run: the SMAX preset, SMAX_OVERRIDES, `grid.overrides`, the run's own
    `extra` fields (the protocol's budget and temperature), then its dataset, seed and algorithm."""
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


FINAL_SEED_OFFSET = 10_000  # the final evaluation's battles: seed 10000 + the run's seed


def write_final_eval(run_dir: Path, episodes: int, seed_offset: int) -> None:
    """The sweep's finishing step of a run: final_eval.json, the final policy on `episodes` battles
    (seed: seed_offset + the run's seed), with the training time."""
    results = json.loads((run_dir / "results.json").read_text())
    final = final_evaluation(run_dir, episodes, seed=seed_offset + results["config"]["seed"])
    final["train_seconds"] = round(results["seconds"], 1)
    (run_dir / "final_eval.json").write_text(json.dumps(final))


FINAL_METRICS = ("greedy_return", "greedy_win_rate", "stochastic_return", "stochastic_win_rate")


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
