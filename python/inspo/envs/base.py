"""What the trainer needs from an environment."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor

from inspo.data import load_episode_buffer

# policy(obs [E, N, O] float32, avail [E, N, A] bool) -> logits [E, N, A]; called without grad
PolicyFn = Callable[[Tensor, Tensor], Tensor]


class Env(ABC):
    """A cooperative discrete-action task with seeded offline datasets and its own scoring."""

    name: str
    n_agents: int
    n_actions: int
    obs_dim: int
    state_dim: int
    dataset_names: tuple[str, ...]
    # (metric key, table header) of the scores printed in the summary table, main score first
    score_columns: tuple[tuple[str, str], ...]

    @abstractmethod
    def generate_dataset(self, name: str, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Episode-buffer arrays and meta of dataset `name` (deterministic in `seed`)."""

    @abstractmethod
    def evaluate(self, policy: PolicyFn, *, episodes: int, generator: torch.Generator) -> dict[str, float]:
        """Scores of `policy` (stochastic and greedy)."""

    def load_dataset(self, path: str | os.PathLike, *, mmap: bool) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Episode-buffer arrays and meta of a dataset directory (a run's dataset_path), memory-mapped
        with ``mmap``. Environments whose datasets carry more checks (SMAX's dataset cards) add them."""
        return load_episode_buffer(path, mmap_mode="r" if mmap else None)

    def check_dataset_name(self, name: str) -> None:
        if name not in self.dataset_names:
            raise ValueError(f"{self.name} has datasets {self.dataset_names}, not {name!r}")


def masked_probs(logits: Tensor, avail: Tensor) -> Tensor:
    return torch.softmax(logits.masked_fill(~avail, float("-inf")), dim=-1)


def greedy_actions(logits: Tensor, avail: Tensor) -> Tensor:
    """argmax over the available actions (ties: the lowest index)."""
    return logits.masked_fill(~avail, float("-inf")).argmax(dim=-1)


def sample_actions(logits: Tensor, avail: Tensor, generator: torch.Generator) -> Tensor:
    probs = masked_probs(logits, avail)
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
