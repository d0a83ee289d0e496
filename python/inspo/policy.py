"""A trained policy from its run folder in one call: `inspo.load_policy(run_dir)`."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from inspo.envs.base import PolicyFn
from inspo.nets import AgentMLP, policy_fn
from inspo.runfolder import CHECKPOINT, CONFIG, RunFolderError, load_checkpoint, policy_state, read_run_config


def load_policy(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> PolicyFn:
    """The trained policy of a run folder (`inspo train --out RUN_DIR`, or one seed's folder of `--seeds`):
    `policy(obs [B, N, O], avail [B, N, A]) -> logits [B, N, A]`, the policy `inspo eval` evaluates.

    Reads the folder's config.json (the network's hidden sizes, whether the agents share one network) and
    its checkpoint.pt (the weights, checked by `inspo.runfolder.load_checkpoint`); the numbers of agents, actions
    and observation features are those of the checkpointed network. The logits are not masked: take
    `inspo.nets.masked_log_softmax(logits, avail)` for log-probabilities. Runs on `device` (default the CPU,
    whatever device trained the run). A folder without a run's config.json and checkpoint.pt is refused with
    one RunFolderError naming it.
    """
    folder = Path(run_dir)
    missing = [name for name in (CONFIG, CHECKPOINT) if not (folder / name).is_file()]
    if missing:
        seeds = sorted(p.name for p in folder.glob("seed*") if (p / CHECKPOINT).is_file()) if folder.is_dir() else []
        hint = f"; it holds the seed folders {', '.join(seeds)}: load one of them" if seeds else ""
        raise RunFolderError(f"{folder} is not a run folder (no {' or '.join(missing)}){hint}")
    config = read_run_config(folder)
    state = policy_state(load_checkpoint(folder))
    layers = sum(1 for key in state if key.startswith("mlp.weights."))
    weights = [state[f"mlp.weights.{layer}"] for layer in range(layers)]
    hidden = [weight.shape[3] for weight in weights[:-1]]
    if hidden != list(config.hidden):
        raise RunFolderError(
            f"{folder}: the checkpointed policy's hidden sizes {hidden} differ from config.json's {list(config.hidden)}"
        )
    n_nets, in_dim, n_actions = weights[0].shape[1], weights[0].shape[2], weights[-1].shape[3]
    # A shared network takes the observation and the one-hot agent id (in_dim = O + N): its number of agents
    # is that of the observations it is given; per-agent networks fix both.
    actors: dict[int, PolicyFn] = {}

    def policy(obs: Tensor, avail: Tensor) -> Tensor:
        n_agents = obs.shape[-2] if config.share_parameters and obs.dim() >= 2 else n_nets
        obs_dim = in_dim - n_agents if config.share_parameters else in_dim
        if obs.dim() != 3 or tuple(obs.shape[1:]) != (n_agents, obs_dim):
            size = f"N, O] with O + N = {in_dim}" if config.share_parameters else f"{n_agents}, {obs_dim}]"
            raise ValueError(f"obs must be [B, {size} for the policy of {folder}, got {list(obs.shape)}")
        if n_agents not in actors:
            actor = AgentMLP(1, n_agents, obs_dim, n_actions, config.hidden, config.share_parameters)
            actors[n_agents] = policy_fn(load_weights(actor.to(device), state, folder))
        return actors[n_agents](obs, avail)

    if not config.share_parameters:  # built now, so that a checkpoint that does not fit fails here
        actor = AgentMLP(1, n_nets, in_dim, n_actions, config.hidden)
        actors[n_nets] = policy_fn(load_weights(actor.to(device), state, folder))
    return policy


def load_weights(actor: AgentMLP, state: dict[str, Tensor], folder: Path) -> AgentMLP:
    try:
        actor.load_state_dict(state)
    except RuntimeError as error:
        raise RunFolderError(
            f"{folder}: the checkpointed policy does not fit config.json's network: {str(error).splitlines()[0]}"
        ) from error
    return actor.eval()
