"""CFCQL (Shao et al., NeurIPS 2023): counterfactual conservative Q-learning, the discrete version.

docs/BASELINES.md lists every choice and each departure from the official code (thu-rllab/CFCQL,
discrete/). For each of S seeds (a leading tensor dimension, as every learner) and per agent a
Q_i(o_i, .) (one batched `AgentMLP` over the N agents), mixed by a QMIX mixer whose weights come from
state hypernetworks (non-negative by |.|):

    Q_tot(s, q) = w2(s) . elu(q W1(s) + b1(s)) + b2(s),    q = (Q_1(o_1, a_1), ..., Q_N(o_N, a_N))

Loss on a minibatch (alpha = cfcql.alpha, `CfcqlOptions`; bars are Polyak targets, detached):

    TD:  0.5 (Q_tot(s, a) - [r + gamma (1 - d) Q_tot-bar(s', a*)])^2,
         a*_i = argmax over the available a' of the online Q_i(o'_i, a')  (double Q-learning)
    penalty: alpha (sum_i lambda_i log sum_j exp Q_tot(s, (a_-i, j)) - Q_tot(s, a))

Agent i's counterfactual Q_tot(s, (a_-i, j)) puts its action j (each available one) in place of the
data action and keeps the other agents' data actions. The weights lambda_i (detached) are
softmax_i(temperature * KL_i) with KL_i = KL(softmax_j Q_tot(s, (a_-i, j)) || mu_i(.|o_i)): agents whose
counterfactual policy strays furthest from the behaviour policy mu (fitted by BC first) get the
penalty. The evaluated policy is greedy (or Boltzmann) on the Q_i.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor, nn

from inspo.algorithms import CfcqlOptions
from inspo.config import TrainConfig
from inspo.data import TransitionBatch
from inspo.learners.bc import fit_behaviour
from inspo.learners.learner import Dims, Learner
from inspo.learners.omiga import taken
from inspo.nets import (
    AgentMLP,
    StackedAdam,
    StackedMLP,
    make_policy_net,
    masked_log_softmax,
    network_families,
    polyak_update,
)

KL_SMOOTHING = 1e-5  # added to both distributions of KL_i (the official kl_div(log(beta + 1e-5), mu + 1e-5))


class QmixMixer(nn.Module):
    """QMIX's monotonic mixer per seed: hypernetworks of the state give |W1| [N, E], b1 [E], |w2| [E], b2."""

    def __init__(self, n_seeds: int, state_dim: int, n_agents: int, embed: int, hypernet_hidden: int):
        super().__init__()
        self.n_agents, self.embed = n_agents, embed
        self.hyper_w1 = StackedMLP(n_seeds, 1, [state_dim, hypernet_hidden, n_agents * embed])
        self.hyper_b1 = StackedMLP(n_seeds, 1, [state_dim, embed])
        self.hyper_w2 = StackedMLP(n_seeds, 1, [state_dim, hypernet_hidden, embed])
        self.hyper_b2 = StackedMLP(n_seeds, 1, [state_dim, embed, 1])

    def forward(self, q: Tensor, state: Tensor) -> Tensor:
        """q [S, B, ..., N] (any joint-action dims between B and N), state [S, B, D] -> Q_tot [S, B, ...].

        The hypernetworks run once per state; every joint action of that state shares their output."""
        n_seeds, batch = state.shape[:2]
        x = state.reshape(n_seeds, 1, batch, -1)
        extra = (1,) * (q.dim() - 3)
        w1 = self.hyper_w1(x).abs().reshape(n_seeds, batch, *extra, self.n_agents, self.embed)
        b1 = self.hyper_b1(x).reshape(n_seeds, batch, *extra, self.embed)
        w2 = self.hyper_w2(x).abs().reshape(n_seeds, batch, *extra, self.embed)
        b2 = self.hyper_b2(x).reshape(n_seeds, batch, *extra)
        hidden = nn.functional.elu((q.unsqueeze(-2) @ w1).squeeze(-2) + b1)  # a matmul: no [.., N, E] product
        return (hidden * w2).sum(-1) + b2

    def reset_seed(self, seed: int) -> None:
        for net in (self.hyper_w1, self.hyper_b1, self.hyper_w2, self.hyper_b2):
            net.init_like_linear(seed)


def counterfactual_q(q_all: Tensor, actions: Tensor) -> Tensor:
    """q_all [S, B, N, A], actions [S, B, N] -> [S, B, N (agent i), A (action j), N]: the agent values of
    the joint action (a_-i, j), agent i's data action replaced by j, the others' kept."""
    n_agents, n_actions = q_all.shape[-2:]
    data = taken(q_all, actions)[:, :, None, None, :]  # [S, B, 1, 1, N]
    own = q_all.unsqueeze(-1)  # [S, B, N (i), A (j), 1]: Q_i(o_i, j) at position i
    is_i = torch.eye(n_agents, dtype=torch.bool, device=q_all.device).view(n_agents, 1, n_agents)
    return torch.where(is_i, own, data.expand(*q_all.shape[:2], n_agents, n_actions, n_agents))


def agent_weights(cf_q_tot: Tensor, avail: Tensor, log_mu: Tensor | None, weighting: str, temperature: float) -> Tensor:
    """lambda [S, B, N] (detached) from the counterfactual Q_tot [S, B, N, A] (unavailable j at -inf)."""
    if weighting == "uniform":
        return torch.full(cf_q_tot.shape[:-1], 1.0 / cf_q_tot.shape[-2], dtype=cf_q_tot.dtype, device=cf_q_tot.device)
    with torch.no_grad():
        cf_policy = torch.softmax(cf_q_tot, dim=-1) + KL_SMOOTHING
        kl_terms = cf_policy * (cf_policy.log() - (log_mu.exp() + KL_SMOOTHING).log())
        kl = kl_terms.masked_fill(~avail, 0.0).sum(-1)  # [S, B, N]
        if weighting == "kl_argmax":
            return nn.functional.one_hot(kl.argmax(-1), kl.shape[-1]).to(kl.dtype)
        return torch.softmax(temperature * kl, dim=-1)


class CfcqlLearner(Learner):
    """Networks and optimizers of S CFCQL runs; one iteration: one step of the Q networks and the mixer
    on TD + penalty, then Polyak targets. mu (BC, frozen) only sets the agent weights."""

    algo = "cfcql"
    postfix_keys = ("td_loss", "penalty", "q_tot")

    def __init__(self, config: TrainConfig, n_seeds: int, dims: Dims):
        super().__init__(config, n_seeds, dims)
        n = dims.n_agents
        options: CfcqlOptions = config.algo_options

        def mixer() -> QmixMixer:
            return QmixMixer(n_seeds, dims.state_dim, n, options.mixer_embed, options.hypernet_hidden).to(config.device)

        self.q_net = AgentMLP(n_seeds, n, dims.obs_dim, dims.n_actions, config.hidden, config.share_parameters).to(
            config.device
        )
        self.mixer = mixer()
        self.q_target = AgentMLP(n_seeds, n, dims.obs_dim, dims.n_actions, config.hidden, config.share_parameters).to(
            config.device
        )
        self.mixer_target = mixer()
        self.mu = make_policy_net(config, n, dims.obs_dim, dims.n_actions, n_seeds)  # behaviour policy (BC)
        for frozen in (self.q_target, self.mixer_target, self.mu):
            frozen.requires_grad_(False)
        self.optimizer = StackedAdam(network_families(self.q_net, self.mixer), lr=config.critic_lr)

    @property
    def actor(self) -> AgentMLP:
        """The Q values are the policy's logits: greedy evaluation is argmax_a Q_i(o_i, a)."""
        return self.q_net

    def targets(self) -> tuple[tuple[nn.Module, nn.Module], ...]:
        return (self.q_target, self.q_net), (self.mixer_target, self.mixer)

    def initialize_seed(self, seed: int) -> None:
        for module in (self.q_net, self.mixer, self.q_target, self.mixer_target, self.mu):
            module.reset_seed(seed)
        with torch.no_grad():
            for target, online in self.targets():
                for p_target, p_online in zip(target.parameters(), online.parameters()):
                    p_target[seed] = p_online[seed]

    def prepare(
        self, stores: Sequence[Any], generators: Sequence[torch.Generator], resumed: bool, progress: bool = False
    ) -> None:
        # mu is part of the checkpoint: a resumed run keeps it (and its generators are past the BC draws)
        if self.config.algo_options.weighting != "uniform" and not resumed:
            self.mu.requires_grad_(True)
            fit_behaviour(self.mu, stores, self.config, generators, progress, self.label)
            self.mu.requires_grad_(False)

    def iteration(self, batch: TransitionBatch, draws: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg, options = self.config, self.config.algo_options
        log_mu = None if options.weighting == "uniform" else masked_log_softmax(self.mu(batch.obs), batch.avail)
        losses = cfcql_losses(
            self,
            batch,
            log_mu,
            alpha=options.alpha,
            gamma=cfg.gamma,
            weighting=options.weighting,
            temperature=options.temperature,
        )
        self.optimizer.minimize(losses["loss"].sum(), cfg.grad_clip)  # seeds share no parameter
        for target, online in self.targets():
            polyak_update(target, online, cfg.polyak)
        return dict(
            td_loss=losses["td_loss"].detach(),
            penalty=losses["penalty"].detach(),
            loss=losses["loss"].detach(),
            q_tot=losses["q_tot"].mean(1),
            max_agent_weight=losses["agent_weights"].max(-1).values.mean(1),
        )


def cfcql_losses(
    nets: CfcqlLearner,
    batch: TransitionBatch,
    log_mu: Tensor | None,
    *,
    alpha: float,
    gamma: float,
    weighting: str,
    temperature: float,
) -> dict[str, Tensor]:
    """CFCQL's loss of every seed on the stacked `batch`: td_loss, penalty (alpha included) and their sum
    loss, each [S] with gradients; agent_weights (lambda) [S, B, N] and q_tot [S, B] detached."""
    with torch.no_grad():
        next_q = nets.q_net(batch.next_obs).masked_fill(~batch.next_avail, float("-inf"))
        greedy_next = next_q.argmax(-1)  # double Q-learning: the online networks pick, the targets value
        q_tot_next = nets.mixer_target(taken(nets.q_target(batch.next_obs), greedy_next), batch.next_state)
        target = batch.reward + gamma * (1.0 - batch.done) * q_tot_next
    q_all = nets.q_net(batch.obs)  # [S, B, N, A]
    q_tot = nets.mixer(taken(q_all, batch.actions), batch.state)  # [S, B]
    td_loss = 0.5 * (q_tot - target).pow(2).mean(1)

    cf_q_tot = nets.mixer(counterfactual_q(q_all, batch.actions), batch.state)  # [S, B, N, A]
    cf_q_tot = cf_q_tot.masked_fill(~batch.avail, float("-inf"))
    weights = agent_weights(cf_q_tot, batch.avail, log_mu, weighting, temperature)
    pushed_down = (weights * torch.logsumexp(cf_q_tot, dim=-1)).sum(-1)  # [S, B]
    penalty = alpha * (pushed_down - q_tot).mean(1)
    return dict(td_loss=td_loss, penalty=penalty, loss=td_loss + penalty, agent_weights=weights, q_tot=q_tot.detach())
