"""One-step matrix games: XOR (two payoff variants) and M-NE (docs/ALGORITHM.md#environments-and-datasets).

Horizon 1, one state, a constant observation. Scores are exact: the expected payoff of the learned
product policy computed from its probabilities, and the payoff of the greedy joint action.
"""

from __future__ import annotations

import itertools
import string
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from inspo.envs.base import Env, PolicyFn, greedy_actions, masked_probs
from inspo.options import one_of

XOR_DATASETS = {  # name -> joint actions present in equal numbers (A = 0, B = 1)
    "a": ((0, 1),),
    "b": ((0, 1), (1, 0)),
    "c": ((0, 0), (0, 1), (1, 0)),
    "d": ((0, 0), (0, 1), (1, 0), (1, 1)),
}
MNE_MARGINALS = {  # name -> each agent's action probabilities, drawn independently
    "balanced": (1 / 3, 1 / 3, 1 / 3),
    "imbalanced": (0.1, 0.3, 0.6),
}
DATASET_SAMPLES = 5000
XOR_VARIANTS = ("penalty", "plain")
MNE_SAMPLINGS = ("stratified", "iid")


@dataclass(frozen=True)
class XorOptions:
    """`xor.*` options of a run (inspo.options)."""

    variant: str = "penalty"  # payoff of BB: "penalty" (-2) or "plain" (0)

    def validate(self, name: str) -> None:
        one_of(f"{name}.variant", self.variant, XOR_VARIANTS)


@dataclass(frozen=True)
class MneOptions:
    """`mne.*` options of a run (inspo.options)."""

    diagonal: tuple[float, ...] = (10.0, 5.0, 8.0)  # payoff diag(R); off-diagonal 0
    # (choice) datasets: "stratified" = every joint action in exactly its product proportion,
    # "iid" = independent draws per sample (see MneGame)
    sampling: str = "stratified"

    def validate(self, name: str) -> None:
        if len(self.diagonal) < 2:
            raise ValueError(f"{name}.diagonal needs >= 2 actions, got {self.diagonal}")
        one_of(f"{name}.sampling", self.sampling, MNE_SAMPLINGS)


class MatrixGame(Env):
    """A cooperative one-step game with payoff tensor R[a^1, ..., a^N]."""

    obs_dim = 1
    state_dim = 1
    score_columns = (("expected_payoff", "E[payoff]"), ("greedy_payoff", "greedy payoff"))

    def __init__(self, name: str, payoff: np.ndarray, samples: int = DATASET_SAMPLES):
        self.name = name
        self.payoff = np.asarray(payoff, dtype=np.float64)
        self.n_agents = self.payoff.ndim
        self.n_actions = self.payoff.shape[0]
        if any(size != self.n_actions for size in self.payoff.shape):
            raise ValueError(f"payoff must have the same number of actions per agent, got shape {self.payoff.shape}")
        self.samples = samples

    def joint_actions(self, name: str, rng: np.random.Generator) -> np.ndarray:
        """[samples, N] joint actions of dataset `name`."""
        raise NotImplementedError

    def generate_dataset(self, name: str, seed: int) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self.check_dataset_name(name)
        actions = self.joint_actions(name, np.random.default_rng(seed))
        arrays = episode_arrays_one_step(actions, self.payoff[tuple(actions.T)], self.n_actions)
        meta = dict(
            env=self.name,
            dataset=name,
            seed=seed,
            n_agents=self.n_agents,
            n_actions=self.n_actions,
            episode_limit=1,
            payoff=self.payoff.tolist(),
        )
        return arrays, meta

    def evaluate(
        self, policy: PolicyFn, *, episodes: int = 0, generator: torch.Generator | None = None
    ) -> dict[str, float]:
        obs = torch.ones(1, self.n_agents, self.obs_dim)
        avail = torch.ones(1, self.n_agents, self.n_actions, dtype=torch.bool)
        logits = policy(obs, avail)
        probs = masked_probs(logits, avail)[0].double().cpu()
        greedy = greedy_actions(logits, avail)[0].cpu()
        scores = {
            "expected_payoff": expected_payoff(self.payoff, probs.numpy()),
            "greedy_payoff": float(self.payoff[tuple(greedy.tolist())]),
        }
        for agent, action in itertools.product(range(self.n_agents), range(self.n_actions)):
            scores[f"p{agent + 1}_{string.ascii_uppercase[action]}"] = float(probs[agent, action])
        return scores


class XorGame(MatrixGame):
    """XOR: payoff 1 for AB and BA, 0 for AA, and -2 (penalty variant) or 0 (plain) for BB."""

    dataset_names = tuple(XOR_DATASETS)

    def __init__(self, variant: str = XorOptions.variant, samples: int = DATASET_SAMPLES):
        if variant not in XOR_VARIANTS:
            raise ValueError(f"XOR variant must be 'penalty' or 'plain', got {variant!r}")
        payoff = np.array([[0.0, 1.0], [1.0, -2.0 if variant == "penalty" else 0.0]])
        super().__init__("xor", payoff, samples)
        self.variant = variant

    def joint_actions(self, name: str, rng: np.random.Generator) -> np.ndarray:
        # equal numbers of each joint action in a seeded random order
        support = np.array(XOR_DATASETS[name], dtype=np.int64)
        actions = support[np.arange(self.samples) % len(support)]
        return actions[rng.permutation(self.samples)]


class MneGame(MatrixGame):
    """M-NE: 3 actions, payoff diag(10, 5, 8) by default (three equilibria AA, BB, CC).

    sampling="iid" draws each agent's action independently for every sample. sampling="stratified"
    (the default) holds every joint action in exactly its product proportion (largest-remainder
    rounding) in a seeded random order: the same distribution without the sampling noise, which on
    5,000 samples moves the count of the rare AA (50 expected) by +-15% and with it the in-sample
    value of A, enough to decide between the equilibria by itself.
    """

    dataset_names = tuple(MNE_MARGINALS)

    def __init__(
        self,
        diagonal: Sequence[float] = MneOptions.diagonal,
        samples: int = DATASET_SAMPLES,
        marginals: dict[str, Sequence[float]] | None = None,
        sampling: str = "stratified",
    ):
        super().__init__("mne", np.diag(np.asarray(diagonal, dtype=np.float64)), samples)
        if sampling not in MNE_SAMPLINGS:
            raise ValueError(f"M-NE sampling must be 'stratified' or 'iid', got {sampling!r}")
        self.sampling = sampling
        self.marginals = dict(MNE_MARGINALS if marginals is None else marginals)
        self.dataset_names = tuple(self.marginals)
        for name, probs in self.marginals.items():
            if len(probs) != self.n_actions or not np.isclose(sum(probs), 1.0) or min(probs) < 0:
                raise ValueError(f"M-NE marginals {name!r} must be {self.n_actions} probabilities, got {probs}")

    def joint_actions(self, name: str, rng: np.random.Generator) -> np.ndarray:
        probs = np.asarray(self.marginals[name], dtype=np.float64)
        if self.sampling == "iid":
            return rng.choice(self.n_actions, size=(self.samples, self.n_agents), p=probs).astype(np.int64)
        joint = np.array(list(itertools.product(range(self.n_actions), repeat=self.n_agents)), dtype=np.int64)
        expected = np.prod(probs[joint], axis=1) * self.samples
        counts = np.floor(expected).astype(np.int64)
        remainder_order = np.argsort(-(expected - counts), kind="stable")
        counts[remainder_order[: self.samples - counts.sum()]] += 1
        actions = np.repeat(joint, counts, axis=0)
        return actions[rng.permutation(self.samples)]


def expected_payoff(payoff: np.ndarray, probs: np.ndarray) -> float:
    """sum over joint actions of R[a] * prod_i pi^i(a^i)."""
    value = payoff
    for agent_probs in probs[::-1]:  # contract the last agent's axis first
        value = value @ agent_probs
    return float(value)


def episode_arrays_one_step(actions: np.ndarray, reward: np.ndarray, n_actions: int) -> dict[str, np.ndarray]:
    """Episode-buffer arrays of one-step episodes (step 0 real and terminal, step 1 a pad)."""
    episodes, n_agents = actions.shape
    arrays = {
        "obs": np.zeros((episodes, 2, n_agents, 1), np.float32),
        "state": np.zeros((episodes, 2, 1), np.float32),
        "actions": np.zeros((episodes, 2, n_agents, 1), np.int64),
        "reward": np.zeros((episodes, 2, 1), np.float32),
        "terminated": np.zeros((episodes, 2, 1), np.uint8),
        "filled": np.zeros((episodes, 2, 1), np.int64),
        "avail_actions": np.ones((episodes, 2, n_agents, n_actions), np.int32),
    }
    arrays["obs"][:, 0] = 1.0  # the constant observation
    arrays["state"][:, 0] = 1.0
    arrays["actions"][:, 0, :, 0] = actions
    arrays["reward"][:, 0, 0] = reward
    arrays["terminated"][:, 0] = 1
    arrays["filled"][:, 0] = 1
    return arrays
