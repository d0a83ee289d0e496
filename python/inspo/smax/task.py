"""``smax:<map>`` in the trainer's environment registry: sizes, datasets and the evaluation protocol.

Evaluation protocol (for every algorithm): the final policy, never the best checkpoint; each
evaluation plays ``episodes`` fresh battles (32 during training, more at the end) with the greedy
and with the stochastic policy on the same battles (the same seeds), and reports win rate and
return of both separately.
"""

from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import torch

from inspo.data.card import load_dataset
from inspo.envs.base import Env, PolicyFn, greedy_actions, sample_actions

from .env import SmaxVecEnv, smax_spec
from .tiers import DEFAULT_ROOT, TIERS, DataConfig, build_dataset

EVAL_BATCH = 256  # battles stepped together during evaluation


class EpisodeResults(NamedTuple):
    returns: np.ndarray  # [episodes] float
    wins: np.ndarray  # [episodes] bool
    lengths: np.ndarray  # [episodes] int


@torch.no_grad()
def play(
    map_name: str,
    policy: PolicyFn,
    episodes: int,
    *,
    seed: int,
    greedy: bool,
    generator: torch.Generator,
    episode_limit: int = 100,
) -> EpisodeResults:
    """Play ``episodes`` battles with a torch policy ``policy(obs [E, N, O], avail [E, N, A]) -> logits``.

    Battles are seeded by ``seed`` alone, so greedy and stochastic play meet the same starts.
    """
    if episodes < 1:
        raise ValueError(f"episodes: must be >= 1, got {episodes}")
    returns, wins, lengths = [], [], []
    for batch_index, start in enumerate(range(0, episodes, EVAL_BATCH)):
        count = min(EVAL_BATCH, episodes - start)
        env = SmaxVecEnv(map_name, count, seed=seed * 7919 + batch_index, episode_limit=episode_limit)
        current = env.reset()
        episode_return = torch.zeros(count)
        won = torch.zeros(count, dtype=torch.bool)
        length = torch.zeros(count, dtype=torch.long)
        done = torch.zeros(count, dtype=torch.bool)
        while not env.all_done:
            logits = policy(current.obs, current.avail).cpu()
            actions = (
                greedy_actions(logits, current.avail) if greedy else sample_actions(logits, current.avail, generator)
            )
            out = env.step(actions)
            length += (~done).long()
            episode_return += out.reward
            won |= out.won
            done = out.done.clone()
            current = out.next
        returns.append(episode_return.double().numpy())
        wins.append(won.numpy().copy())
        lengths.append(length.numpy())
    return EpisodeResults(np.concatenate(returns), np.concatenate(wins), np.concatenate(lengths))


def summarize(results: EpisodeResults, prefix: str) -> dict[str, float]:
    return {
        f"{prefix}_win_rate": float(results.wins.mean()),
        f"{prefix}_return": float(results.returns.mean()),
        f"{prefix}_return_std": float(results.returns.std()),
        f"{prefix}_episode_length": float(results.lengths.mean()),
    }


class SmaxTask(Env):
    """A SMAX map for the trainer. Datasets: the tiers of ``inspo.smax.tiers``; ``scripted`` is
    generated on the fly, the trained tiers are read from the data root (``inspo data make``)."""

    dataset_names = TIERS
    score_columns = (
        ("greedy_win_rate", "greedy win"),
        ("greedy_return", "greedy return"),
        ("stochastic_win_rate", "stoch. win"),
        ("stochastic_return", "stoch. return"),
    )

    def __init__(
        self, map_name: str, episode_limit: int = 100, root: Path = DEFAULT_ROOT, scripted_episodes: int = 1000
    ) -> None:
        spec = smax_spec(map_name, episode_limit)
        self.spec = spec
        self.name = spec.env_name
        self.n_agents, self.n_actions = spec.n_agents, spec.n_actions
        self.obs_dim, self.state_dim = spec.obs_dim, spec.state_dim
        self.root = root
        self.scripted_episodes = scripted_episodes  # size of the scripted tier made on the fly

    def generate_dataset(self, name: str, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.check_dataset_name(name)
        config = DataConfig(
            map_name=self.spec.map_name, tier=name, seed=seed, root=self.root, episodes=self.scripted_episodes
        )
        if name == "scripted":
            return build_dataset(config, log=lambda message: None)
        if not (config.dataset_dir / "meta.json").is_file():
            raise FileNotFoundError(
                f"no {name} dataset for {self.name} seed {seed} in {config.dataset_dir}; make it with "
                f"`inspo data make --env {self.name} --tier {name} --seed {seed}` or pass --dataset-path"
            )
        return load_dataset(config.dataset_dir)

    def load_dataset(self, path, *, mmap: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """A dataset directory checked against its card (``inspo.data.card``): a truncated, cut or
        swapped file is a DatasetError, never a smaller dataset."""
        return load_dataset(path, mmap=mmap)

    def evaluate(self, policy: PolicyFn, *, episodes: int, generator: torch.Generator) -> dict[str, float]:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        scores: dict[str, float] = {}
        for kind in ("greedy", "stochastic"):
            results = play(
                self.spec.map_name,
                policy,
                episodes,
                seed=seed,
                greedy=kind == "greedy",
                generator=generator,
                episode_limit=self.spec.episode_limit,
            )
            scores.update(summarize(results, kind))
        return scores


def make_env(options: object, arg: Optional[str]) -> SmaxTask:
    """Factory of the trainer's environment registry (inspo.envs.LAZY_ENVS): ``smax:<map>`` -> a
    SmaxTask (SMAX has no ``smax.*`` options: ``options`` is ``inspo.options.NoOptions()``)."""
    if not arg:
        raise ValueError("env: expected 'smax:<map>' (e.g. smax:3m), got 'smax' without a map")
    return SmaxTask(arg)
