"""Behaviour cloning: per-agent masked-softmax maximum likelihood. InSPO's mu, and the BC baseline."""
from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor

from inspo.config import TrainConfig
from inspo.data import MappedTransitions, TransitionStore
from inspo.envs.base import PolicyFn
from inspo.nets import AgentMLP, clip_grad_norm_per_group
from inspo.run import RunFiles, eval_generator, prepare_run


def masked_log_softmax(logits: Tensor, avail: Tensor) -> Tensor:
    return torch.log_softmax(logits.masked_fill(~avail, float("-inf")), dim=-1)


def make_policy_net(config: TrainConfig, n_agents: int, obs_dim: int, n_actions: int) -> AgentMLP:
    """An actor (or mu): per-agent MLP from the observation to the action logits."""
    return AgentMLP(n_agents, obs_dim, n_actions, config.hidden, config.share_parameters).to(config.device)


def fit_behaviour(mu: AgentMLP, store: TransitionStore | MappedTransitions, config: TrainConfig,
                  generator: torch.Generator) -> float:
    """Fit mu by maximum likelihood of the dataset actions (bc_steps minibatch Adam steps, the step
    size decaying linearly to 0 so that the minibatch noise averages out at the end).

    Returns the final mean negative log-likelihood per agent over the whole dataset.
    """
    optimizer = torch.optim.Adam(mu.parameters(), lr=config.bc_lr, fused=True)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1.0 - k / config.bc_steps)
    batch_size = min(config.bc_batch_size, len(store))
    groups = list(mu.parameter_groups())
    for _ in range(config.bc_steps):
        rows = torch.randint(len(store), (batch_size,), generator=generator, device=store.reward.device)
        log_probs = masked_log_softmax(mu(store.obs[rows]), store.avail[rows])
        nll = -log_probs.gather(-1, store.actions[rows].unsqueeze(-1)).mean()
        optimizer.zero_grad(set_to_none=True)
        (nll * store.n_agents).backward()  # the sum of the per-agent means: each agent's own loss
        clip_grad_norm_per_group(groups, config.grad_clip)
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        store.cache_behaviour(lambda obs, avail: masked_log_softmax(mu(obs), avail))
        return float(-store.log_mu.gather(-1, store.actions.unsqueeze(-1)).mean())


def policy_fn(actor: AgentMLP) -> PolicyFn:
    @torch.no_grad()
    def policy(obs: Tensor, avail: Tensor) -> Tensor:
        device = next(actor.parameters()).device
        return actor(obs.to(device)).cpu()
    return policy


def train_bc(config: TrainConfig, *, out_dir=None, resume: bool = False, progress: bool = True,
             on_step=None) -> dict[str, Any]:
    """The BC baseline: fit mu, evaluate it. (No iterations to resume: BC is short.)"""
    start = time.perf_counter()
    run = prepare_run(config)
    files = RunFiles(out_dir, config.tensorboard)
    files.write_config(config)
    mu = make_policy_net(config, run.env.n_agents, run.env.obs_dim, run.env.n_actions)
    nll = fit_behaviour(mu, run.store, config, run.generator)
    scores = run.env.evaluate(policy_fn(mu), episodes=config.eval_episodes,
                              generator=eval_generator(config, config.bc_steps))
    files.log("eval", {"step": config.bc_steps, **scores})
    results = dict(config=config.to_dict(), algo="bc", bc_nll=nll, scores=scores,
                   seconds=time.perf_counter() - start, transitions=len(run.store))
    files.save_checkpoint(dict(config=config.to_dict(), algo="bc", step=config.bc_steps, mu=mu.state_dict()))
    files.write_results(results)
    files.close()
    return results
