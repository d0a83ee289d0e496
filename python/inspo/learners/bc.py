"""Behaviour cloning: per-agent masked-softmax maximum likelihood. InSPO's mu, and the BC baseline.

Both fit the same way, for S seeds at once: bc_steps minibatch Adam steps, the step size decaying
linearly to 0 so that the minibatch noise averages out at the end.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from inspo.config import TrainConfig
from inspo.data import TransitionBatch, minibatch, stack_batches
from inspo.learners.learner import Dims, Learner
from inspo.nets import AgentMLP, StackedAdam, make_policy_net, masked_log_softmax, network_families
from inspo.progress import progress_bar

BC_FIELDS = ("obs", "actions", "avail")  # what `bc_step` reads of a minibatch


def bc_batch_size(config: TrainConfig, stores: Sequence[Any]) -> int:
    sizes = {min(config.bc_batch_size, len(store)) for store in stores}
    if len(sizes) > 1:
        raise ValueError(
            f"the seeds' datasets are smaller than bc_batch_size and differ in size ({sorted(sizes)}): "
            "train these seeds separately"
        )
    return sizes.pop()


def bc_step(mu: AgentMLP, optimizer: StackedAdam, batch: TransitionBatch, lr: float, grad_clip: float) -> Tensor:
    """One maximum-likelihood step of every seed's mu on the stacked batch; returns the NLL per seed [S]."""
    log_probs = masked_log_softmax(mu(batch.obs), batch.avail)
    nll = -log_probs.gather(-1, batch.actions.unsqueeze(-1)).flatten(1).mean(1)
    # the sum of the per-agent means: each agent's own loss
    optimizer.minimize((nll * mu.n_agents).sum(), grad_clip, lr=lr)
    return nll.detach()


def bc_lr(config: TrainConfig, step: int) -> float:
    return config.bc_lr * (1.0 - step / config.bc_steps)


def behaviour_nll(store: Any) -> float:
    """Mean negative log-likelihood per agent of the dataset actions under the cached log mu."""
    return float(-store.log_mu.gather(-1, store.actions.unsqueeze(-1)).mean())


def cache_behaviour(mu: AgentMLP, stores: Sequence[Any]) -> None:
    with torch.no_grad():
        for seed, store in enumerate(stores):
            store.cache_behaviour(lambda obs, avail, s=seed: masked_log_softmax(mu.forward_seed(s, obs), avail))


def fit_behaviour(
    mu: AgentMLP,
    stores: Sequence[Any],
    config: TrainConfig,
    generators: Sequence[torch.Generator],
    progress: bool = False,
    label: str = "",
) -> Tensor:
    """Fit every seed's mu on its store (minibatches from its generator); cache log mu in the stores.
    With `progress`, a progress display of its own (`label`: behaviour cloning), before training's.

    Returns the final mean negative log-likelihood per agent over each whole dataset [S].
    """
    optimizer = StackedAdam(network_families(mu), lr=config.bc_lr)
    batch_size = bc_batch_size(config, stores)
    bar = progress_bar(
        config.bc_steps, desc=f"{label}: behaviour cloning" if label else "behaviour cloning", enabled=progress
    )
    for step in range(config.bc_steps):
        rows = [
            torch.randint(len(store), (batch_size,), generator=generator, device=store.reward.device)
            for store, generator in zip(stores, generators)
        ]
        bc_step(
            mu,
            optimizer,
            stack_batches([minibatch(store, r, BC_FIELDS) for store, r in zip(stores, rows)]),
            bc_lr(config, step),
            config.grad_clip,
        )
        bar.update(1)
    bar.close()
    cache_behaviour(mu, stores)
    return torch.tensor([behaviour_nll(store) for store in stores], dtype=torch.float64)


class BCLearner(Learner):
    """The BC baseline: bc_steps iterations of `bc_step` on bc_batch_size rows; the policy is mu."""

    algo = "bc"
    postfix_keys = ("nll",)
    batch_fields = BC_FIELDS

    def __init__(self, config: TrainConfig, n_seeds: int, dims: Dims):
        super().__init__(config, n_seeds, dims)
        self.actor = make_policy_net(config, dims.n_agents, dims.obs_dim, dims.n_actions, n_seeds)
        self.optimizer = StackedAdam(network_families(self.actor), lr=config.bc_lr)

    @property
    def steps(self) -> int:
        return self.config.bc_steps

    def batch_size(self, stores: Sequence[Any]) -> int:
        return bc_batch_size(self.config, stores)

    def initialize_seed(self, seed: int) -> None:
        self.actor.reset_seed(seed)

    def step_scalars(self, step: int) -> dict[str, Any]:
        # a tensor, not a number: a compiled step reads it as an input instead of recompiling per value
        return dict(lr=torch.tensor(bc_lr(self.config, step), dtype=torch.float64))

    def iteration(self, batch: TransitionBatch, draws: dict[str, Tensor], *, lr: Tensor) -> dict[str, Tensor]:
        return dict(nll=bc_step(self.actor, self.optimizer, batch, lr, self.config.grad_clip))

    def results_extras(self, seed: int, store: Any) -> dict[str, Any]:
        with torch.no_grad():
            store.cache_behaviour(lambda obs, avail: masked_log_softmax(self.actor.forward_seed(seed, obs), avail))
        return {"bc_nll": behaviour_nll(store)}
