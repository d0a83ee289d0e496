"""OMIGA (Wang et al., NeurIPS 2023): offline in-sample learning with value decomposition.

Spec: docs/ALGORITHM.md#omiga. For each of S seeds (a leading tensor dimension, as every learner) and
per agent a Q_i(o_i, .), a V_i(o_i) and an actor pi_i(.|o_i), each one
batched `AgentMLP` over the N agents (separate weights, or one network with an agent-id input when
`share_parameters`); a mixer gives non-negative state weights w(s) = |W(s)| and a bias b(s):

    Q_tot = sum_i w_i Q_i(o_i, a_i) + b(s),    V_tot = sum_i w_i V_i(o_i) + b(s)

Losses on a minibatch (alpha = omiga.alpha, `OmigaOptions`; bars are Polyak targets, detached):

    Q:  (Q_tot(s, a) - [r + gamma (1 - d) V_tot-bar(s')])^2     (target V and target mixer)
    V:  z_i = clamp((w-bar_i Q-bar_i(o_i, a_i) - w-bar_i V_i(o_i)) / alpha, -10, 10)
        exp(z_i - m) + exp(-m) w-bar_i V_i / alpha,   m = max(max_{b,i} z, -1) detached
    pi: -exp(z_i) log pi_i(a_i | o_i)                          (z detached)

The max-shift m only rescales the V loss (its minimiser is unchanged) and keeps exp finite. Mixing
with non-negative weights makes argmax Q_tot = (argmax Q_i)_i (IGM) by construction, which is exactly
what fails on XOR-like payoffs: the decomposition cannot represent them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from inspo.algorithms import OmigaOptions
from inspo.config import TrainConfig
from inspo.data import TransitionBatch
from inspo.learners.learner import Dims, Learner
from inspo.nets import (
    AgentMLP,
    StackedAdam,
    StackedMLP,
    make_policy_net,
    masked_log_softmax,
    network_families,
    polyak_update,
)

Z_CLAMP = 10.0  # |z| bound of the in-sample weight exponent (OMIGA's value)
M_FLOOR = -1.0  # the max-shift m never goes below this (OMIGA's value)


class Mixer(nn.Module):
    """state [S, B, state dim] -> (w(s) = |W(s)| [S, B, N], b(s) [S, B]); W and b one hidden layer each."""

    def __init__(self, n_seeds: int, state_dim: int, n_agents: int, hidden: int):
        super().__init__()
        self.weight_net = StackedMLP(n_seeds, 1, [state_dim, hidden, n_agents])
        self.bias_net = StackedMLP(n_seeds, 1, [state_dim, hidden, 1])

    def forward(self, state: Tensor) -> tuple[Tensor, Tensor]:
        x = state.reshape(state.shape[0], 1, -1, state.shape[-1])
        weights = self.weight_net(x).reshape(*state.shape[:-1], -1)
        return weights.abs(), self.bias_net(x).reshape(state.shape[:-1])

    def reset_seed(self, seed: int) -> None:
        self.weight_net.init_like_linear(seed)
        self.bias_net.init_like_linear(seed)


def taken(values: Tensor, actions: Tensor) -> Tensor:
    """values [..., N, A], actions [..., N] -> values at the actions [..., N]."""
    return values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


class OmigaLearner(Learner):
    """Networks and optimizers of S OMIGA runs; one iteration: Q (with the mixer), V and policy steps,
    then Polyak targets."""

    algo = "omiga"
    postfix_keys = ("q_loss", "v_loss", "mean_weight")

    def __init__(self, config: TrainConfig, n_seeds: int, dims: Dims):
        super().__init__(config, n_seeds, dims)
        n = dims.n_agents
        options: OmigaOptions = config.algo_options

        def agent_net(out_dim: int) -> AgentMLP:
            return AgentMLP(n_seeds, n, dims.obs_dim, out_dim, config.hidden, config.share_parameters).to(config.device)

        self.actor = make_policy_net(config, n, dims.obs_dim, dims.n_actions, n_seeds)
        self.q_net, self.v_net = agent_net(dims.n_actions), agent_net(1)  # Q_i(o_i, .), V_i(o_i)
        self.mixer = Mixer(n_seeds, dims.state_dim, n, options.mixer_hidden).to(config.device)
        self.q_target, self.v_target = agent_net(dims.n_actions), agent_net(1)
        self.mixer_target = Mixer(n_seeds, dims.state_dim, n, options.mixer_hidden).to(config.device)
        for target in (self.q_target, self.v_target, self.mixer_target):
            target.requires_grad_(False)
        self.actor_opt = StackedAdam(network_families(self.actor), lr=config.lr)
        # Q networks and the mixer: both sit in the Q loss (the mixer's two nets clipped as one network)
        self.q_opt = StackedAdam(network_families(self.q_net, self.mixer), lr=config.critic_lr)
        self.v_opt = StackedAdam(network_families(self.v_net), lr=config.critic_lr)

    def targets(self) -> tuple[tuple[nn.Module, nn.Module], ...]:
        return (self.q_target, self.q_net), (self.v_target, self.v_net), (self.mixer_target, self.mixer)

    def initialize_seed(self, seed: int) -> None:
        for module in (self.actor, self.q_net, self.v_net, self.mixer, self.q_target, self.v_target, self.mixer_target):
            module.reset_seed(seed)
        with torch.no_grad():
            for target, online in self.targets():
                for p_target, p_online in zip(target.parameters(), online.parameters()):
                    p_target[seed] = p_online[seed]

    def iteration(self, batch: TransitionBatch, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.config
        losses = omiga_losses(self, batch, alpha=cfg.algo_options.alpha, gamma=cfg.gamma)
        for loss, optimizer in (
            (losses["q_loss"], self.q_opt),
            (losses["v_loss"], self.v_opt),
            (losses["policy_loss"], self.actor_opt),
        ):
            optimizer.minimize(loss.sum(), cfg.grad_clip)  # seeds share no parameter: each its own gradient
        for target, online in self.targets():
            polyak_update(target, online, cfg.polyak)
        weight = losses["weight"].flatten(1)
        return dict(
            q_loss=losses["q_loss"].detach(),
            v_loss=losses["v_loss"].detach(),
            policy_loss=losses["policy_loss"].detach(),
            mean_weight=weight.mean(1),
            max_weight=weight.max(1).values,
            mixer_w=losses["w"].flatten(1).mean(1),
        )


def omiga_losses(nets: OmigaLearner, batch: TransitionBatch, *, alpha: float, gamma: float) -> dict[str, Tensor]:
    """The three OMIGA losses of every seed on the stacked `batch` ([S] with gradients) and the weights
    exp(z) [S, B, N].

    Per-agent terms are averaged over the batch and summed over the agents (each agent's own loss,
    as in BC), the Q loss is one joint regression.
    """
    with torch.no_grad():
        w_next, b_next = nets.mixer_target(batch.next_state)
        v_tot_next = (w_next * nets.v_target(batch.next_obs).squeeze(-1)).sum(-1) + b_next
        q_tot_target = batch.reward + gamma * (1.0 - batch.done) * v_tot_next
        w_bar, _ = nets.mixer_target(batch.state)
        q_bar = taken(nets.q_target(batch.obs), batch.actions)
    w, b = nets.mixer(batch.state)
    q_tot = (w * taken(nets.q_net(batch.obs), batch.actions)).sum(-1) + b
    q_loss = (q_tot - q_tot_target).pow(2).mean(1)

    v = nets.v_net(batch.obs).squeeze(-1)  # [S, B, N]
    z = ((w_bar * q_bar - w_bar * v) / alpha).clamp(-Z_CLAMP, Z_CLAMP)
    shift = z.detach().flatten(1).max(1).values.clamp(min=M_FLOOR).view(-1, 1, 1)  # per seed
    v_loss = (torch.exp(z - shift) + torch.exp(-shift) * w_bar * v / alpha).mean(1).sum(-1)

    weight = z.detach().exp()
    log_pi = taken(masked_log_softmax(nets.actor(batch.obs), batch.avail), batch.actions)
    policy_loss = -(weight * log_pi).mean(1).sum(-1)
    return dict(
        q_loss=q_loss, v_loss=v_loss, policy_loss=policy_loss, weight=weight, w=w.detach(), log_pi=log_pi.detach()
    )
