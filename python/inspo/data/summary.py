"""What a dataset holds (`inspo data info`): sizes, episode ends, returns, Joint SACo, win rate.

One pass over blocks of episodes (lazy formats stream). Episode ends follow the transition store's
rule (inspo.data.transitions.end_rule), so the counts are those a training run sees. Joint SACo is
OG-MARL's coverage measure: unique (state, joint action) pairs over transitions, counted through
two independent 64-bit hashes of each pair's bytes (a false match has probability ~ n^2 / 2^129).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inspo.data.buffer import DatasetError
from inspo.data.formats import Dataset
from inspo.data.transitions import end_rule, resolve_ends, select_transitions

CHUNK = 4096  # episodes per block


@dataclass
class DatasetSummary:
    path: str
    format: str
    agents: int
    actions: int
    actions_per_agent: list[int]  # actions ever available to each agent (fewer than `actions`: padded)
    obs_dim: int
    state_dim: int
    episodes: int
    terminal_episodes: int
    truncated_episodes: int  # cut by a time limit, the last transition bootstraps
    empty_episodes: int  # no usable transition (a single cut step without a next step)
    transitions: int
    terminal_transitions: int
    truncated_transitions: int
    end_rule: str
    return_mean: float
    return_std: float
    return_min: float
    return_max: float
    joint_saco: float
    win_rate: Optional[float]  # the behaviour's, where the dataset records it
    notes: list[str] = field(default_factory=list)
    returns: Optional[np.ndarray] = field(default=None, repr=False)  # per episode, for the histogram

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("returns")
        return out

    def lines(self) -> list[str]:
        per_agent = (
            ""
            if len(set(self.actions_per_agent)) == 1
            else f" (available per agent: {', '.join(map(str, self.actions_per_agent))}; the rest padded as unavailable)"
        )
        win = "not recorded in the dataset" if self.win_rate is None else f"{self.win_rate:.3f}"
        return [
            f"dataset       {self.path} ({self.format})",
            f"agents        {self.agents}",
            f"actions       {self.actions}{per_agent}",
            f"obs dim       {self.obs_dim}",
            f"state dim     {self.state_dim}",
            f"episodes      {self.episodes} (terminal {self.terminal_episodes}, truncated {self.truncated_episodes}"
            + (f", no usable transition {self.empty_episodes}" if self.empty_episodes else "")
            + ")",
            f"transitions   {self.transitions} (terminal {self.terminal_transitions}, "
            f"truncated {self.truncated_transitions}, bootstrapped)",
            f"episode ends  {self.end_rule}",
            f"return        {self.return_mean:.4g} ± {self.return_std:.4g} (min {self.return_min:.4g}, "
            f"max {self.return_max:.4g})",
            f"joint SACo    {self.joint_saco:.4f} (unique (state, joint action) pairs / transitions)",
            f"win rate      {win}",
            *[f"note          {note}" for note in self.notes],
        ]


def _pair_hashes(state: np.ndarray, actions: np.ndarray) -> np.ndarray:
    """[R, 2] uint64: two independent hashes of each row's (state, joint action) bytes."""
    raw = np.concatenate(
        [
            np.ascontiguousarray(state).reshape(len(state), -1).view(np.uint8),
            np.ascontiguousarray(actions.astype(np.int64)).view(np.uint8),
        ],
        axis=1,
    )
    pad = (-raw.shape[1]) % 8
    words = np.concatenate([raw, np.zeros((len(raw), pad), np.uint8)], axis=1).view(np.uint64)
    rng = np.random.default_rng(20240917)  # fixed: the same pair hashes alike in every block
    out = np.empty((len(words), 2), np.uint64)
    with np.errstate(over="ignore"):
        for k in range(2):
            keys = rng.integers(1, 2**63, size=words.shape[1], dtype=np.uint64) | np.uint64(1)
            mixed = words ^ (words >> np.uint64(29))
            h = (mixed * keys).sum(axis=1, dtype=np.uint64)
            h ^= h >> np.uint64(32)
            out[:, k] = h * np.uint64(0x9E3779B97F4A7C15)
    return out


def summarize(dataset: Dataset, episode_limit: Optional[int] = None) -> DatasetSummary:
    arrays = dataset.arrays
    try:
        return _summarize(dataset, arrays, episode_limit)
    except DatasetError as error:
        raise dataset.error(error) from error


def _summarize(dataset: Dataset, arrays: dict[str, Any], episode_limit: Optional[int]) -> DatasetSummary:
    n_episodes, _, n_agents, obs_dim = arrays["obs"].shape
    n_actions, state_dim = arrays["avail_actions"].shape[3], arrays["state"].shape[2]
    has_truncated = "truncated" in arrays
    # the file's own episode_limit is a hint only: our generators and SMAX write it beside exact flags
    stated_limit = dataset.meta.get("episode_limit")
    stated_limit = stated_limit if isinstance(stated_limit, int) and not isinstance(stated_limit, bool) else None
    flagged_at_limit = 0
    returns, hashes = [], []
    counts = dict(terminal_episodes=0, truncated_episodes=0, transitions=0, terminal=0, truncated=0)
    ever_available = np.zeros((n_agents, n_actions), bool)
    for start in range(0, n_episodes, CHUNK):
        rows = slice(start, start + CHUNK)
        filled = np.asarray(arrays["filled"][rows, :, 0])
        terminated = np.asarray(arrays["terminated"][rows, :, 0])
        truncated = np.asarray(arrays["truncated"][rows, :, 0]) if has_truncated else None
        episode, step, done, cut = select_transitions(filled, terminated, truncated, episode_limit)
        real, terminal, cut_steps = resolve_ends(filled, terminated, truncated, episode_limit)
        end = terminal | cut_steps
        real &= ~(np.cumsum(end, axis=1) - end > 0)
        reward = np.asarray(arrays["reward"][rows, :, 0], np.float64)
        returns.append((reward * real).sum(axis=1))
        counts["transitions"] += len(episode)
        counts["terminal"] += int(done.sum())
        counts["truncated"] += int(cut.sum())
        counts["terminal_episodes"] += len(np.unique(episode[done]))
        if stated_limit is not None and 1 < stated_limit <= filled.shape[1]:
            flagged_at_limit += int((terminal[:, stated_limit - 1] & real[:, stated_limit - 1]).sum())
        counts["truncated_episodes"] += len(np.unique(episode[cut]))
        avail = np.asarray(arrays["avail_actions"][rows]) != 0
        ever_available |= (avail & real[..., None, None]).any(axis=(0, 1))
        if len(episode):
            state = np.asarray(arrays["state"][rows])[episode, step]
            actions = np.asarray(arrays["actions"][rows])[episode, step, :, 0]
            hashes.append(_pair_hashes(state, actions))
    returns_all = np.concatenate(returns)
    unique_pairs = len(np.unique(np.concatenate(hashes), axis=0)) if hashes else 0
    card = dataset.meta.get("card") if isinstance(dataset.meta.get("card"), dict) else {}
    win_rate = dataset.meta.get("win_rate", card.get("win_rate"))
    per_agent = [int(np.nonzero(row)[0].max()) + 1 if row.any() else 0 for row in ever_available]
    notes = list(dataset.notes)
    if flagged_at_limit and episode_limit is None and not has_truncated:
        notes.append(
            f"{flagged_at_limit} episode(s) end flagged terminated at the metadata's episode_limit = "
            f"{stated_limit}; if those are time-limit cuts, pass --episode-limit {stated_limit}"
        )
    return DatasetSummary(
        path=str(dataset.path),
        format=dataset.format,
        agents=n_agents,
        actions=n_actions,
        actions_per_agent=per_agent,
        obs_dim=obs_dim,
        state_dim=state_dim,
        episodes=n_episodes,
        terminal_episodes=counts["terminal_episodes"],
        truncated_episodes=counts["truncated_episodes"],
        empty_episodes=n_episodes - counts["terminal_episodes"] - counts["truncated_episodes"],
        transitions=counts["transitions"],
        terminal_transitions=counts["terminal"],
        truncated_transitions=counts["truncated"],
        end_rule=end_rule(has_truncated, episode_limit),
        return_mean=float(returns_all.mean()),
        return_std=float(returns_all.std()),
        return_min=float(returns_all.min()),
        return_max=float(returns_all.max()),
        joint_saco=unique_pairs / max(1, counts["transitions"]),
        win_rate=None if win_rate is None else float(win_rate),
        notes=notes,
        returns=returns_all,
    )


def write_histogram(summary: DatasetSummary, path: str | Path, bins: int = 30) -> Path:
    """A PNG histogram of the episode returns."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(
            "--histogram needs matplotlib: pip install 'inspo[plots]' (the summary itself does not)"
        ) from error
    path = Path(path)
    figure, axes = plt.subplots(figsize=(6, 3.5))
    axes.hist(summary.returns, bins=bins, color="tab:blue")
    axes.set_xlabel("episode return")
    axes.set_ylabel("episodes")
    axes.set_title(
        f"{Path(summary.path).name}: {summary.episodes} episodes, "
        f"mean {summary.return_mean:.3g} ± {summary.return_std:.3g}",
        fontsize=9,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
