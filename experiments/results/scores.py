"""The numbers of the results: scores per env, mean ± std and IQM over seeds, and the comparison rule."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from experiments.results.grid import Cell
from inspo.stats import iqm_interval

# the score of a run: (key, header) per env, the first one is the headline
SCORES = {
    "xor": (("expected_payoff", "E[payoff]"), ("greedy_payoff", "greedy payoff")),
    "mne": (("expected_payoff", "E[payoff]"), ("greedy_payoff", "greedy payoff")),
    "bridge": (
        ("greedy_return", "greedy return"),
        ("greedy_optimal", "greedy optimal"),
        ("stochastic_return", "stoch. return"),
    ),
}
ENV_NAMES = {"xor": "XOR", "mne": "M-NE", "bridge": "Bridge"}
# the smallest difference of the headline score called a difference (besides 2 standard errors)
RESOLUTION = {"xor": 0.03, "mne": 0.1, "bridge": 0.02}


@dataclass
class Stats:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else float("nan")

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if self.n > 1 else 0.0

    @property
    def iqm(self) -> tuple[float, float, float]:
        """(IQM, low, high): interquartile mean over seeds and its stratified-bootstrap 95% interval (rliable)."""
        return iqm_interval(self.values)

    def __str__(self) -> str:
        return f"{self.mean:.3f} ± {self.std:.3f}" if self.values else "—"


def compare(a: Stats, b: Stats, env: str) -> int:
    """+1 when a is above b beyond 2 standard errors of the difference and the env's resolution, -1 below, 0 else."""
    if not a.values or not b.values:
        return 0
    margin = max(2 * math.sqrt(a.std**2 / a.n + b.std**2 / b.n), RESOLUTION[env])
    difference = a.mean - b.mean
    return 1 if difference > margin else -1 if difference < -margin else 0


@dataclass
class CellResult:
    cell: Cell
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # seed -> results

    def stats(self, key: str) -> Stats:
        return Stats([run["scores"][key] for _, run in sorted(self.runs.items()) if key in run["scores"]])

    @property
    def headline(self) -> Stats:
        return self.stats(SCORES[self.cell.env][0][0])

    @property
    def seconds(self) -> Stats:
        """Training seconds per seed (`seconds_per_seed`)."""
        return Stats(seconds_per_seed(self.runs.values()))

    @property
    def batch_seconds(self) -> float:
        """The cell's training time: each batched process counted once."""
        return process_seconds(self.runs.values())


def batch_sizes(runs) -> list[tuple[dict[str, Any], int]]:
    """(run, number of runs trained with it in one process): runs of one batch record the same seconds."""
    runs = list(runs)
    counts: dict[float, int] = {}
    for run in runs:
        counts[run["seconds"]] = counts.get(run["seconds"], 0) + 1
    return [(run, counts[run["seconds"]]) for run in runs]


def seconds_per_seed(runs) -> list[float]:
    """Each run's training seconds. The seeds of a group train batched in one process, and each of its run
    folders records the process's time (the same number): that time is shared by the group's seeds."""
    return [run["seconds"] / size for run, size in batch_sizes(runs)]


def process_seconds(runs) -> float:
    """The runs' training time with each batched process counted once."""
    return sum({run["seconds"] for run in runs})


class Table:
    """Lookup of cell results by (env, dataset, method, variant)."""

    def __init__(self, results: list[CellResult]):
        self.results = results
        self.by = {(r.cell.env, r.cell.dataset, r.cell.method, r.cell.variant): r for r in results}

    def get(self, env: str, dataset: str, method: str, variant: str = "") -> Optional[CellResult]:
        return self.by.get((env, dataset, method, variant if env == "xor" else ""))

    def stats(self, env: str, dataset: str, method: str, variant: str = "penalty") -> Stats:
        found = self.get(env, dataset, method, variant)
        return found.headline if found else Stats([])


def greedy_joint(scores: dict[str, float], n_actions: int) -> tuple[int, int]:
    """The greedy joint action of a two-agent matrix-game policy (each agent's most likely action)."""
    letters = "ABC"[:n_actions]
    return tuple(int(np.argmax([scores[f"p{agent}_{a}"] for a in letters])) for agent in (1, 2))


def out_of_data(result: CellResult) -> int:
    """Seeds whose greedy joint action on an XOR dataset is not in that dataset."""
    from inspo.envs.matrix import XOR_DATASETS

    support = set(XOR_DATASETS[result.cell.dataset])
    return sum(greedy_joint(run["scores"], 2) not in support for run in result.runs.values())
