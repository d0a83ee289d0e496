"""The InSPO learner (docs/ALGORITHM.md#one-training-iteration), for S seeds at once.

    fit mu by BC; cache log mu; pi <- copy of mu; init Q, Q_target, local critics
    for k in 1..K:
        sample B; critic step; draw a permutation sigma
        exact:        for i in sigma: ratios of the current teammates (predecessors already updated),
                      resample, local-critic and policy steps for agent i only
        fused:        one pass: predecessors at the eta-lookahead, all agents step together
        simultaneous: one pass: every agent against the current teammates (the ablation)
        Polyak-update Q_target

Every tensor carries the seeds as its leading dimension S (batch [S, B, ...], order [S, N]); the
per-sample math runs in the `inspo_ext` ops through `inspo.learners.ops`; this file moves batches
between them and steps the optimizers. The randomness of an iteration (sigma, the resampling uniforms)
is drawn by `draw` from each seed's generator in a single run's order, before the update. With
weighting="resample" each agent trains on its own resampled rows of B; with "importance" /
"self_normalized" all agents train on B itself with the ratio as a weight.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from inspo.algorithms import InspoOptions
from inspo.config import TrainConfig, task_name
from inspo.data import TransitionBatch
from inspo.learners import ops
from inspo.learners.bc import fit_behaviour
from inspo.learners.learner import Dims, Learner
from inspo.nets import (
    AgentMLP,
    CentralCritic,
    StackedAdam,
    make_policy_net,
    masked_log_softmax,
    network_families,
    polyak_update,
)


@dataclass
class AgentRows:
    """Per-agent training rows: column k holds the rows of the k-th trained agent of each seed, as row indices
    into B (None: B itself) and the per-row fields gathered from B. A network's values on the rows are
    `take` of its one pass over B, never a second forward over gathered inputs."""

    indices: Optional[Tensor]  # [S, B, n] rows of B (resampled), or None: B itself
    actions: Tensor  # [S, B, n] the agent's own action
    avail: Tensor  # [S, B, n, A]
    log_mu: Tensor  # [S, B, n, A]
    q_target: Tensor  # [S, B, n] target critic at the row's state and joint action

    def take(self, values: Tensor) -> Tensor:
        """values [S, B, n, X] over B (column k: the k-th trained agent's) -> the same on the rows."""
        if self.indices is None:
            return values
        seeds = seed_index(values.shape[0], 3, values.device)
        return values[seeds, self.indices, torch.arange(values.shape[2], device=values.device)]


def seed_index(n_seeds: int, dims: int, device: torch.device) -> Tensor:
    """arange(S) shaped [S, 1, ...] (dims dimensions) to index a seed-leading tensor."""
    return torch.arange(n_seeds, device=device).view(n_seeds, *([1] * (dims - 1)))


@dataclass
class ExactAgent:
    """The agent each seed updates at one position of the exact pass, and what selects it."""

    agents: Tensor  # [S]: the agent of each seed
    actor_mask: Tensor  # the networks of the actor / local critic that move (its own, or the shared one)
    local_mask: Tensor
    is_own: Tensor  # [S, 1, N, 1]: its column
    obs: Tensor  # [S, B, O]: its observations

    @staticmethod
    def at(position: int, order: Tensor, obs: Tensor, learner: "InspoLearner") -> "ExactAgent":
        n_seeds, n = order.shape
        agents = order[:, position]
        seeds = torch.arange(n_seeds, device=order.device)
        return ExactAgent(
            agents=agents,
            actor_mask=learner.actor.network_mask(agents),
            local_mask=learner.local_critic.network_mask(agents),
            is_own=nn.functional.one_hot(agents, n).bool().view(n_seeds, 1, n, 1),
            obs=obs[seeds, :, agents],
        )


def own_column(values: Tensor, column: Tensor) -> Tensor:
    """values[s, column[s]] of [S, N'] values."""
    return values.gather(1, column.unsqueeze(1))[:, 0]


class InspoLearner(Learner):
    """Networks and optimizers of S InSPO runs, and one iteration in the configured mode."""

    algo = "inspo"
    postfix_keys = ("critic_loss", "ess", "entropy")

    def __init__(self, config: TrainConfig, n_seeds: int, dims: Dims):
        super().__init__(config, n_seeds, dims)
        n, a = dims.n_agents, dims.n_actions
        self.actor = make_policy_net(config, n, dims.obs_dim, a, n_seeds)  # pi
        self.mu = make_policy_net(config, n, dims.obs_dim, a, n_seeds)  # the behaviour policy, frozen after BC
        self.local_critic = AgentMLP(
            n_seeds,
            n,
            dims.state_dim,
            a,
            config.hidden,  # Q~^i(s, .) on the state
            config.share_parameters,
        ).to(config.device)
        self.critic = CentralCritic(n_seeds, dims.state_dim, n, a, config.critic_hidden).to(config.device)  # Q(s, a)
        self.critic_target = CentralCritic(n_seeds, dims.state_dim, n, a, config.critic_hidden).to(config.device)
        self.critic_target.requires_grad_(False)
        self.actor_opt = StackedAdam(network_families(self.actor), lr=config.lr)
        self.local_opt = StackedAdam(network_families(self.local_critic), lr=config.critic_lr)
        self.critic_opt = StackedAdam(network_families(self.critic), lr=config.critic_lr)
        self.register_buffer("bc_nll", torch.zeros(n_seeds, dtype=torch.float64))
        self.options: InspoOptions = config.algo_options
        self.local_steps = self.options.local_critic_steps or self.options.policy_steps

    @property
    def label(self) -> str:
        return f"{task_name(self.config)} {self.options.mode}"

    def initialize_seed(self, seed: int) -> None:
        for module in (self.actor, self.mu, self.local_critic, self.critic, self.critic_target):
            module.reset_seed(seed)
        with torch.no_grad():
            for target, online in zip(self.critic_target.parameters(), self.critic.parameters()):
                target[seed] = online[seed]

    def prepare(
        self, stores: Sequence[Any], generators: Sequence[torch.Generator], resumed: bool, progress: bool = False
    ) -> None:
        if resumed:
            for seed, store in enumerate(stores):
                with torch.no_grad():
                    store.cache_behaviour(
                        lambda obs, avail, s=seed: masked_log_softmax(self.mu.forward_seed(s, obs), avail)
                    )
        else:
            self.bc_nll.copy_(fit_behaviour(self.mu, stores, self.config, generators, progress, self.label))
            if self.options.pi_init_from_mu:
                self.actor.load_state_dict(self.mu.state_dict())
        self.mu.requires_grad_(False)

    def row_extras(self, step: int) -> dict[str, Any]:
        return {"beta": self.options.beta_at(step, self.config.steps)}

    def results_extras(self, seed: int, store: Any) -> dict[str, Any]:
        return {"bc_nll": float(self.bc_nll[seed])}

    def draw(self, generators: Sequence[torch.Generator], step: int) -> dict[str, Tensor]:
        """Per seed, in a single run's order: the critic's resampling uniforms, sigma, the agents' uniforms
        (exact: one agent at a time, column m for the m-th agent of sigma)."""
        options, n = self.options, self.dims.n_agents
        resample, method, batch = options.weighting == "resample", options.resample_method, self.config.batch_size
        per_seed = []
        for generator in generators:
            draws = {}
            if resample:
                draws["critic_uniforms"] = ops.resample_uniforms(generator, batch, 1, method)
            draws["order"] = torch.randperm(n, generator=generator, device=generator.device)
            if resample and options.mode == "exact":
                draws["agent_uniforms"] = torch.cat(
                    [ops.resample_uniforms(generator, batch, 1, method) for _ in range(n)], dim=1
                )
            elif resample:
                draws["agent_uniforms"] = ops.resample_uniforms(generator, batch, n, method)
            per_seed.append(draws)
        return {key: torch.stack([draws[key] for draws in per_seed]) for key in per_seed[0]}

    def step_scalars(self, step: int) -> dict[str, Any]:
        # during the critic warm-up the local critics train too; the policy loss is only measured
        return dict(
            beta=self.options.beta_at(step, self.config.steps),
            policy_steps=self.options.policy_steps if step >= self.options.critic_warmup_steps else 0,
        )

    def iteration(
        self, batch: TransitionBatch, draws: dict[str, Tensor], *, beta: float, policy_steps: int
    ) -> dict[str, Tensor]:
        metrics = self.critic_step(batch, draws.get("critic_uniforms"), beta)
        agents_pass = {"fused": self.fused_pass, "simultaneous": self.simultaneous_pass, "exact": self.exact_pass}
        metrics.update(
            agents_pass[self.options.mode](batch, draws["order"], draws.get("agent_uniforms"), beta, policy_steps)
        )
        polyak_update(self.critic_target, self.critic, self.config.polyak)
        return metrics

    def temperatures(self, beta: float) -> dict[str, float]:
        return dict(alpha=self.options.alpha, beta=beta, log_rho_max=self.options.log_rho_max)

    # ---- global critic: soft in-sample evaluation on B resampled (or weighted) by rho' ----
    def critic_step(self, batch: TransitionBatch, uniforms: Optional[Tensor], beta: float) -> dict[str, Tensor]:
        cfg, weighting = self.config, self.options.weighting
        with torch.no_grad():
            target = ops.soft_bellman_target(
                batch.reward,
                batch.done,
                self.critic_target(batch.next_state, batch.next_actions),
                self.actor(batch.next_obs),
                batch.next_log_mu,
                batch.next_avail,
                batch.next_actions,
                gamma=cfg.gamma,
                **self.temperatures(beta),
            )
        if weighting == "resample":
            rows = ops.resample(
                target.log_ratio.unsqueeze(-1), uniforms=uniforms, method=self.options.resample_method
            ).indices[..., 0]  # [S, B]
            seeds = seed_index(len(rows), 2, rows.device)
            q = self.critic(batch.state[seeds, rows], batch.actions[seeds, rows])
            loss = (q - target.target.gather(1, rows)).pow(2).mean(1)
        else:
            sq_error = (self.critic(batch.state, batch.actions) - target.target).pow(2)
            loss = weighted_mean(sq_error, target.log_ratio, weighting)
        self.critic_opt.minimize(loss.sum(), cfg.grad_clip)  # seeds share no parameter: each its own gradient
        return dict(
            critic_loss=loss.detach(), next_kl=target.kl.sum(-1).mean(-1), next_entropy=target.entropy.sum(-1).mean(-1)
        )

    # ---- fused and simultaneous: all agents in one pass ----
    def fused_pass(
        self, batch: TransitionBatch, order: Tensor, uniforms: Optional[Tensor], beta: float, policy_steps: int
    ) -> dict[str, Tensor]:
        """Every agent steps at once; its predecessors in `order` enter at their eta-lookahead toward their
        closed-form targets."""
        return self.joint_pass(batch, order, uniforms, beta, policy_steps, eta=self.options.eta)

    def simultaneous_pass(
        self, batch: TransitionBatch, order: Tensor, uniforms: Optional[Tensor], beta: float, policy_steps: int
    ) -> dict[str, Tensor]:
        """The ablation: every agent steps at once against its teammates' current policies."""
        return self.joint_pass(batch, order, uniforms, beta, policy_steps, eta=0.0)

    def joint_pass(
        self,
        batch: TransitionBatch,
        order: Tensor,
        uniforms: Optional[Tensor],
        beta: float,
        policy_steps: int,
        *,
        eta: float,
    ) -> dict[str, Tensor]:
        options, n = self.options, self.dims.n_agents
        state = batch.state.unsqueeze(2).expand(-1, -1, n, -1)
        # one pass of each network over B with its gradient: the ratios read it detached, the first local
        # critic step and the first policy step read its rows (the networks have not moved in between)
        logits, q_local = self.actor(batch.obs), self.local_critic(state)
        with torch.no_grad():
            log_rho = ops.teammate_log_ratios(
                logits.detach(),
                batch.log_mu,
                batch.avail,
                batch.actions,
                order,
                predecessors="target",
                q_local=q_local.detach(),
                eta=eta,
                **self.temperatures(beta),
            )
        if options.weighting == "resample":
            indices, ess = ops.resample(log_rho, uniforms=uniforms, method=options.resample_method)
            rows, ratio, weight_log_rho = self.gather_rows(batch, indices), "none", None
        else:  # the whole joint batch with the ratio as a weight: the one fused op call
            rows, ratio, weight_log_rho = self.joint_rows(batch), options.weighting, log_rho
            ess = effective_sample_size(log_rho)
        local_loss = self.fit_local_critics(rows, weight_log_rho, lambda: self.local_critic(state), q_local)
        with torch.no_grad():
            q_rows = rows.take(self.local_critic(state))
        for step in range(max(1, policy_steps)):
            policy = ops.sequential_policy_loss(
                rows.take(logits if step == 0 else self.actor(batch.obs)),
                rows.log_mu,
                rows.avail,
                rows.actions,
                q_rows,
                order,
                predecessors="target",
                eta=eta,
                log_w_max=options.log_w_max,
                ratio=ratio,
                **self.temperatures(beta),
            )
            if policy_steps:
                self.step_actor(policy.loss.sum())
        return dict(
            policy_loss=policy.loss.detach().sum(-1),
            local_loss=local_loss.sum(-1),
            ess=ess.mean(-1),
            min_ess=ess.min(-1).values,
            mean_weight=policy.mean_weight.mean(-1),
            entropy=policy.entropy.mean(-1),
            kl=policy.kl.mean(-1),
        )

    # ---- exact (Algorithm 1): N dependent agent steps ----
    def exact_pass(
        self, batch: TransitionBatch, order: Tensor, uniforms: Optional[Tensor], beta: float, policy_steps: int
    ) -> dict[str, Tensor]:
        """The agents step one after another in `order`; each against its teammates at their current networks
        (its predecessors already updated)."""
        n = order.shape[1]
        # every agent's logits over B at its current network, and the log-probs of the taken actions; after an
        # agent's steps only its own column is recomputed (all columns with one shared network)
        with torch.no_grad():
            logits = self.actor(batch.obs)
            log_pi_taken = taken_log_probs(logits, batch.avail, batch.actions)
        q_all: Optional[Tensor] = None  # the importance options: every local critic over B, kept the same way
        parts: dict[str, list[Tensor]] = {}
        for position in range(n):
            agent = ExactAgent.at(position, order, batch.obs, self)
            with torch.no_grad():  # every teammate at its current network (predecessors updated)
                log_rho = ops.teammate_log_ratios(
                    logits,
                    batch.log_mu,
                    batch.avail,
                    batch.actions,
                    order,
                    predecessors="policy",
                    updated_log_probs=log_pi_taken,
                    eta=0.0,
                    **self.temperatures(beta),
                )
            own_log_rho = log_rho.gather(2, agent.agents.view(-1, 1, 1).expand(-1, log_rho.shape[1], 1))  # [S, B, 1]
            if self.options.weighting == "resample":
                own_uniforms = uniforms[..., position : position + 1]
                policy, local_loss, ess = self.exact_resampled_step(
                    batch, agent, own_log_rho, own_uniforms, beta, policy_steps
                )
                column = torch.zeros_like(agent.agents)  # the op saw the agent's column only
            else:
                policy, local_loss, ess, q_all = self.exact_weighted_step(
                    batch, agent, own_log_rho, order, logits, log_pi_taken, q_all, beta, policy_steps
                )
                column = agent.agents
            if policy_steps and position < n - 1:  # refresh what the agent's step changed, for its successors
                logits, log_pi_taken = self.refreshed_logits(batch, agent, logits, log_pi_taken)
            for key, value in (
                ("policy_loss", own_column(policy.loss, column)),
                ("local_loss", local_loss.sum(-1)),
                ("ess", ess[:, 0]),
                ("mean_weight", own_column(policy.mean_weight, column)),
                ("entropy", own_column(policy.entropy, column)),
                ("kl", own_column(policy.kl, column)),
            ):
                parts.setdefault(key, []).append(value.detach())
        metrics = {key: torch.stack(values, dim=1) for key, values in parts.items()}  # [S, N]
        return dict(
            policy_loss=metrics["policy_loss"].sum(1),
            local_loss=metrics["local_loss"].sum(1),
            ess=metrics["ess"].mean(1),
            min_ess=metrics["ess"].min(1).values,
            mean_weight=metrics["mean_weight"].mean(1),
            entropy=metrics["entropy"].mean(1),
            kl=metrics["kl"].mean(1),
        )

    def exact_resampled_step(
        self,
        batch: TransitionBatch,
        agent: "ExactAgent",
        own_log_rho: Tensor,
        uniforms: Tensor,
        beta: float,
        policy_steps: int,
    ) -> tuple[Any, Tensor, Tensor]:
        """The agent's local-critic and policy steps on its own rows of B, resampled by its teammate ratio."""
        indices, ess = ops.resample(own_log_rho, uniforms=uniforms, method=self.options.resample_method)
        rows = self.gather_rows(batch, indices, agent.agents.unsqueeze(1))
        own_q = functools.partial(self.own_local_q, agent.agents, batch.state)
        local_loss = self.fit_local_critics(rows, None, own_q, mask=agent.local_mask)
        with torch.no_grad():
            q_rows = rows.take(own_q())
        only_agent = torch.zeros(agent.agents.shape[0], 1, dtype=torch.int64, device=agent.agents.device)
        for _ in range(max(1, policy_steps)):
            policy = ops.sequential_policy_loss(
                rows.take(self.actor.forward_agent(agent.agents, agent.obs).unsqueeze(2)),
                rows.log_mu,
                rows.avail,
                rows.actions,
                q_rows,
                only_agent,
                predecessors="target",
                eta=0.0,
                log_w_max=self.options.log_w_max,
                ratio="none",
                **self.temperatures(beta),
            )
            if policy_steps:
                self.step_actor(policy.loss.sum(), agent.actor_mask)
        return policy, local_loss, ess

    def exact_weighted_step(
        self,
        batch: TransitionBatch,
        agent: "ExactAgent",
        own_log_rho: Tensor,
        order: Tensor,
        logits: Tensor,
        log_pi_taken: Tensor,
        q_all: Optional[Tensor],
        beta: float,
        policy_steps: int,
    ) -> tuple[Any, Tensor, Tensor, Tensor]:
        """The agent's steps on B itself with its teammate ratio as a weight (the importance options); also
        returns every local critic over B with the agent's column refreshed."""
        n = logits.shape[2]
        rows = self.joint_rows(batch, agent.agents.unsqueeze(1))
        ess = effective_sample_size(own_log_rho)
        own_q = functools.partial(self.own_local_q, agent.agents, batch.state)
        local_loss = self.fit_local_critics(rows, own_log_rho, own_q, mask=agent.local_mask)
        with torch.no_grad():
            if q_all is None or self.local_critic.share_parameters:
                q_all = self.local_critic(batch.state.unsqueeze(2).expand(-1, -1, n, -1))
            else:
                q_all = torch.where(agent.is_own, own_q(), q_all)
        for _ in range(max(1, policy_steps)):
            # the agent's column with gradient, the teammates' columns fixed: the op's loss[agent]
            own = self.actor.forward_agent(agent.agents, agent.obs).unsqueeze(2)
            policy = ops.sequential_policy_loss(
                torch.where(agent.is_own, own, logits),
                batch.log_mu,
                batch.avail,
                batch.actions,
                q_all,
                order,
                predecessors="policy",
                updated_log_probs=log_pi_taken,
                eta=0.0,
                log_w_max=self.options.log_w_max,
                ratio=self.options.weighting,
                **self.temperatures(beta),
            )
            if policy_steps:
                self.step_actor(policy.loss.gather(1, agent.agents.unsqueeze(1)).sum(), agent.actor_mask)
        return policy, local_loss, ess, q_all

    def own_local_q(self, agents: Tensor, state: Tensor) -> Tensor:
        """Agent agents[s]'s local critic over B, [S, B, 1, A]."""
        return self.local_critic.forward_agent(agents, state).unsqueeze(2)

    def refreshed_logits(
        self, batch: TransitionBatch, agent: "ExactAgent", logits: Tensor, log_pi_taken: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The logits over B and the taken actions' log-probs after the agent's steps (its column recomputed;
        every column with one shared network)."""
        with torch.no_grad():
            if self.actor.share_parameters:
                logits = self.actor(batch.obs)
                return logits, taken_log_probs(logits, batch.avail, batch.actions)
            own_logits = self.actor.forward_agent(agent.agents, agent.obs).unsqueeze(2)
            own_taken = taken_log_probs(
                own_logits, rows_of_agent(batch.avail, agent.agents), rows_of_agent(batch.actions, agent.agents)
            )
            return torch.where(agent.is_own, own_logits, logits), torch.where(
                agent.is_own[..., 0], own_taken, log_pi_taken
            )

    # ---- shared pieces ----
    def gather_rows(self, batch: TransitionBatch, indices: Tensor, agents: Optional[Tensor] = None) -> AgentRows:
        """Rows indices[s, :, k] of agent agents[s, k] (all agents by default): the per-agent fields gathered."""
        seeds = seed_index(indices.shape[0], 3, indices.device)
        agent_ids = torch.arange(self.dims.n_agents, device=indices.device) if agents is None else agents.unsqueeze(1)
        with torch.no_grad():  # a resampled row is a row of B: one target-critic pass over B, then gathers
            q_target = self.critic_target(batch.state, batch.actions)[seeds, indices]
        return AgentRows(
            indices=indices,
            actions=batch.actions[seeds, indices, agent_ids],
            avail=batch.avail[seeds, indices, agent_ids],
            log_mu=batch.log_mu[seeds, indices, agent_ids],
            q_target=q_target,
        )

    def joint_rows(self, batch: TransitionBatch, agents: Optional[Tensor] = None) -> AgentRows:
        """B itself as every agent's rows (the importance / self-normalized options)."""
        with torch.no_grad():
            q_target = self.critic_target(batch.state, batch.actions)
        if agents is None:
            actions, avail, log_mu = batch.actions, batch.avail, batch.log_mu
        else:
            actions, avail, log_mu = (
                rows_of_agent(field, agents[:, 0]) for field in (batch.actions, batch.avail, batch.log_mu)
            )
        n = actions.shape[2]
        return AgentRows(
            indices=None, actions=actions, avail=avail, log_mu=log_mu, q_target=q_target.unsqueeze(2).expand(-1, -1, n)
        )

    def fit_local_critics(
        self,
        rows: AgentRows,
        weight_log_rho: Optional[Tensor],
        q_over_batch: Callable[[], Tensor],
        first_q: Optional[Tensor] = None,
        mask: Optional[Tensor] = None,
    ) -> Tensor:
        """Regress Q~^i(s, a^i) on Q_target(s, a) over the rows; returns the per-agent losses [S, n].
        q_over_batch(): the rows' local critics over B [S, B, n, A] (first_q: its value before the first step,
        already computed with its gradient)."""
        for step in range(self.local_steps):
            q = rows.take(first_q if step == 0 and first_q is not None else q_over_batch())
            sq_error = (q.gather(-1, rows.actions.unsqueeze(-1)).squeeze(-1) - rows.q_target).pow(2)  # [S, B, n]
            if weight_log_rho is None:
                per_agent = sq_error.mean(1)
            else:
                per_agent = weighted_mean(sq_error, weight_log_rho, self.options.weighting)
            self.local_opt.minimize(per_agent.sum(), self.config.grad_clip, None if mask is None else [mask])
        return per_agent.detach()

    def step_actor(self, loss: Tensor, mask: Optional[Tensor] = None) -> None:
        """One actor step on `loss`; with `mask` [S, G] only the selected networks move."""
        self.actor_opt.minimize(loss, self.config.grad_clip, None if mask is None else [mask])


def rows_of_agent(values: Tensor, agents: Tensor) -> Tensor:
    """values [S, B, N, ...] -> [S, B, 1, ...]: agent agents[s]'s column of each seed."""
    return values[torch.arange(len(agents), device=agents.device), :, agents].unsqueeze(2)


def taken_log_probs(logits: Tensor, avail: Tensor, actions: Tensor) -> Tensor:
    """log pi(a | o) of the taken actions [S, B, n] from logits [S, B, n, A]."""
    return masked_log_softmax(logits, avail).gather(-1, actions.unsqueeze(-1))[..., 0]


def weighted_mean(values: Tensor, log_rho: Tensor, weighting: str) -> Tensor:
    """Over the samples (dim 1): mean_b rho(b) values(b) ("importance") or sum_b rho values / sum_b rho
    ("self_normalized")."""
    rho = log_rho.exp()
    if weighting == "importance":
        return (rho * values).mean(1)
    return (rho * values).sum(1) / rho.sum(1)


def effective_sample_size(log_rho: Tensor) -> Tensor:
    """(sum rho)^2 / sum rho^2 over the samples (dim 1), in log space."""
    shifted = log_rho - log_rho.max(1, keepdim=True).values
    return torch.exp(2 * torch.logsumexp(shifted, 1) - torch.logsumexp(2 * shifted, 1))
