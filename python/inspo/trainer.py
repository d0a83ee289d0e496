"""The InSPO training loop (spec: shared/spec/inspo.md, sections 4-6).

    fit mu by BC; cache log mu; pi <- copy of mu; init Q, Q_target, local critics
    for k in 1..K:
        sample B; critic step; draw a permutation sigma
        exact:        for i in sigma: ratios of the current teammates (predecessors already updated),
                      resample, local-critic and policy steps for agent i only
        fused:        one pass: predecessors at the eta-lookahead, all agents step together
        simultaneous: one pass: every agent against the current teammates (the ablation)
        Polyak-update Q_target

The per-sample math runs in the `inspo_ext` ops; this file moves batches between them and steps the
optimizers. With weighting="resample" each agent trains on its own resampled rows of B; with
"importance" / "self_normalized" all agents train on B itself with the ratio as a weight.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

import inspo_ext as ops
from inspo.bc import fit_behaviour, make_policy_net, masked_log_softmax, policy_fn
from inspo.config import TrainConfig
from inspo.data import TransitionBatch
from inspo.nets import AgentMLP, CentralCritic, clip_grad_norm_per_group, polyak_update
from inspo.run import RunFiles, eval_generator, prepare_run, resume_config, rng_state, set_rng_state, train_loop


@dataclass
class Learner:
    """Networks and optimizers of one InSPO run (everything a checkpoint restores besides the RNG)."""

    actor: AgentMLP  # pi
    mu: AgentMLP  # the behaviour policy, frozen after BC
    local_critic: AgentMLP  # Q~^i(s, .) on the state
    critic: CentralCritic  # Q(s, a)
    critic_target: CentralCritic
    actor_opt: torch.optim.Adam
    local_opt: torch.optim.Adam
    critic_opt: torch.optim.Adam

    PARTS = ("actor", "mu", "local_critic", "critic", "critic_target", "actor_opt", "local_opt", "critic_opt")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in self.PARTS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.PARTS:
            getattr(self, name).load_state_dict(state[name])


def build_learner(config: TrainConfig, n_agents: int, obs_dim: int, state_dim: int, n_actions: int) -> Learner:
    # one Adam per network family: per-agent parameters are separate tensors, so a step after a
    # backward pass that reached only agent i (grads of the others None) moves agent i alone
    actor = make_policy_net(config, n_agents, obs_dim, n_actions)
    mu = make_policy_net(config, n_agents, obs_dim, n_actions)
    local_critic = AgentMLP(n_agents, state_dim, n_actions, config.hidden, config.share_parameters).to(config.device)
    critic = CentralCritic(state_dim, n_agents, n_actions, config.critic_hidden).to(config.device)
    critic_target = CentralCritic(state_dim, n_agents, n_actions, config.critic_hidden).to(config.device)
    critic_target.load_state_dict(critic.state_dict())
    critic_target.requires_grad_(False)
    return Learner(actor, mu, local_critic, critic, critic_target,
                   actor_opt=torch.optim.Adam(actor.parameters(), lr=config.lr, fused=True),
                   local_opt=torch.optim.Adam(local_critic.parameters(), lr=config.critic_lr, fused=True),
                   critic_opt=torch.optim.Adam(critic.parameters(), lr=config.critic_lr, fused=True))


@dataclass
class AgentRows:
    """Per-agent training rows: column k holds the rows of agent agents[k]."""

    obs: Tensor  # [B, n, O]
    state: Tensor  # [B, n, S]
    actions: Tensor  # [B, n] the agent's own action
    avail: Tensor  # [B, n, A]
    log_mu: Tensor  # [B, n, A]
    q_target: Tensor  # [B, n] target critic at the row's state and joint action


class InspoStep:
    """One training iteration of InSPO in the configured mode; returns scalar metrics."""

    def __init__(self, config: TrainConfig, learner: Learner, generator: torch.Generator):
        self.cfg = config
        self.net = learner
        self.generator = generator
        self.n_agents = learner.actor.n_agents
        self.local_steps = config.local_critic_steps or config.policy_steps

    def __call__(self, batch: TransitionBatch, step: int) -> dict[str, Tensor]:
        beta = self.cfg.beta_at(step)
        metrics = self.critic_step(batch, beta)
        order = torch.randperm(self.n_agents, generator=self.generator, device=self.generator.device)
        pass_fn = self.exact_pass if self.cfg.mode == "exact" else self.joint_pass
        # during the critic warm-up the local critics train too; the policy loss is only measured
        policy_steps = self.cfg.policy_steps if step >= self.cfg.critic_warmup_steps else 0
        metrics.update(pass_fn(batch, order, beta, policy_steps))
        polyak_update(self.net.critic_target, self.net.critic, self.cfg.polyak)
        return metrics

    def temperatures(self, beta: float) -> dict[str, float]:
        return dict(alpha=self.cfg.alpha, beta=beta, log_rho_max=self.cfg.log_rho_max)

    # ---- global critic: soft in-sample evaluation on B resampled (or weighted) by rho' ----
    def critic_step(self, batch: TransitionBatch, beta: float) -> dict[str, Tensor]:
        cfg, net = self.cfg, self.net
        with torch.no_grad():
            target = ops.soft_bellman_target(
                batch.reward, batch.done, net.critic_target(batch.next_state, batch.next_actions),
                net.actor(batch.next_obs), batch.next_log_mu, batch.next_avail, batch.next_actions,
                gamma=cfg.gamma, **self.temperatures(beta))
        if cfg.weighting == "resample":
            rows = ops.resample(target.log_ratio.unsqueeze(1), method=cfg.resample_method,
                                generator=self.generator).indices[:, 0]
            loss = (net.critic(batch.state[rows], batch.actions[rows]) - target.target[rows]).pow(2).mean()
        else:
            sq_error = (net.critic(batch.state, batch.actions) - target.target).pow(2)
            loss = weighted_mean(sq_error, target.log_ratio, cfg.weighting)
        net.critic_opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.critic.parameters(), cfg.grad_clip)
        net.critic_opt.step()
        return dict(critic_loss=loss.detach(), next_kl=target.kl.sum(-1).mean(),
                    next_entropy=target.entropy.sum(-1).mean())

    # ---- fused / simultaneous: all agents in one pass ----
    def joint_pass(self, batch: TransitionBatch, order: Tensor, beta: float, policy_steps: int
                   ) -> dict[str, Tensor]:
        cfg, net = self.cfg, self.net
        eta = cfg.eta if cfg.mode == "fused" else 0.0  # simultaneous: teammates at their current policy
        state = batch.state.unsqueeze(1).expand(-1, self.n_agents, -1)
        with torch.no_grad():
            log_rho = ops.teammate_log_ratios(
                net.actor(batch.obs), batch.log_mu, batch.avail, batch.actions, order, predecessors="target",
                q_local=net.local_critic(state), eta=eta, **self.temperatures(beta))
        if cfg.weighting == "resample":
            indices, ess = ops.resample(log_rho, method=cfg.resample_method, generator=self.generator)
            rows, ratio, weight_log_rho = self.gather_rows(batch, indices), "none", None
        else:  # the whole joint batch with the ratio as a weight: the one fused op call
            rows, ratio, weight_log_rho = self.joint_rows(batch), cfg.weighting, log_rho
            ess = effective_sample_size(log_rho)
        local_loss = self.fit_local_critics(rows, weight_log_rho)
        with torch.no_grad():
            q_rows = net.local_critic(rows.state)
        for _ in range(max(1, policy_steps)):
            policy = ops.sequential_policy_loss(
                net.actor(rows.obs), rows.log_mu, rows.avail, rows.actions, q_rows, order, predecessors="target",
                eta=eta, log_w_max=cfg.log_w_max, ratio=ratio, **self.temperatures(beta))
            if policy_steps:
                self.step_actor(policy.loss.sum())
        return dict(policy_loss=policy.loss.detach().sum(), local_loss=local_loss.sum(), ess=ess.mean(),
                    min_ess=ess.min(), mean_weight=policy.mean_weight.mean(), entropy=policy.entropy.mean(),
                    kl=policy.kl.mean())

    # ---- exact: N dependent agent steps ----
    def exact_pass(self, batch: TransitionBatch, order: Tensor, beta: float, policy_steps: int
                   ) -> dict[str, Tensor]:
        cfg, net = self.cfg, self.net
        parts: dict[str, list[Tensor]] = {}
        for agent in order.tolist():
            with torch.no_grad():  # refresh: every teammate at its current network (predecessors updated)
                logits = net.actor(batch.obs)
                log_pi_taken = masked_log_softmax(logits, batch.avail).gather(-1, batch.actions.unsqueeze(-1))
                log_rho = ops.teammate_log_ratios(
                    logits, batch.log_mu, batch.avail, batch.actions, order, predecessors="policy",
                    updated_log_probs=log_pi_taken.squeeze(-1), eta=0.0, **self.temperatures(beta))
            if cfg.weighting == "resample":
                indices, ess = ops.resample(log_rho[:, agent:agent + 1].contiguous(), method=cfg.resample_method,
                                            generator=self.generator)
                rows = self.gather_rows(batch, indices, agents=[agent])
                local_loss = self.fit_local_critics(rows, None, agent)
                with torch.no_grad():
                    q_rows = net.local_critic.forward_agent(agent, rows.state[:, 0]).unsqueeze(1)
                only_agent = torch.zeros(1, dtype=torch.int64, device=order.device)
                for _ in range(max(1, policy_steps)):
                    policy = ops.sequential_policy_loss(
                        net.actor.forward_agent(agent, rows.obs[:, 0]).unsqueeze(1), rows.log_mu, rows.avail,
                        rows.actions, q_rows, only_agent, predecessors="target", eta=0.0, log_w_max=cfg.log_w_max,
                        ratio="none", **self.temperatures(beta))
                    if policy_steps:
                        self.step_actor(policy.loss.sum(), agent)
                column = 0
            else:
                rows = self.joint_rows(batch, agents=[agent])
                ess = effective_sample_size(log_rho[:, agent:agent + 1])
                local_loss = self.fit_local_critics(rows, log_rho[:, agent:agent + 1], agent)
                with torch.no_grad():
                    q_all = net.local_critic(batch.state.unsqueeze(1).expand(-1, self.n_agents, -1))
                for _ in range(max(1, policy_steps)):
                    # agent's column with gradient, teammates' columns fixed: the op's loss[agent]
                    own = net.actor.forward_agent(agent, batch.obs[:, agent]).unsqueeze(1)
                    joint_logits = torch.cat([logits[:, :agent], own, logits[:, agent + 1:]], dim=1)
                    policy = ops.sequential_policy_loss(
                        joint_logits, batch.log_mu, batch.avail, batch.actions, q_all, order, predecessors="policy",
                        updated_log_probs=log_pi_taken.squeeze(-1), eta=0.0, log_w_max=cfg.log_w_max,
                        ratio=cfg.weighting, **self.temperatures(beta))
                    if policy_steps:
                        self.step_actor(policy.loss[agent], agent)
                column = agent
            for key, value in (("policy_loss", policy.loss[column]), ("local_loss", local_loss.sum()),
                               ("ess", ess[0]), ("mean_weight", policy.mean_weight[column]),
                               ("entropy", policy.entropy[column]), ("kl", policy.kl[column])):
                parts.setdefault(key, []).append(value.detach())
        metrics = {key: torch.stack(values) for key, values in parts.items()}
        return dict(policy_loss=metrics["policy_loss"].sum(), local_loss=metrics["local_loss"].sum(),
                    ess=metrics["ess"].mean(), min_ess=metrics["ess"].min(),
                    mean_weight=metrics["mean_weight"].mean(), entropy=metrics["entropy"].mean(),
                    kl=metrics["kl"].mean())

    # ---- shared pieces ----
    def gather_rows(self, batch: TransitionBatch, indices: Tensor, agents: Optional[list[int]] = None) -> AgentRows:
        """Rows indices[:, k] of agent agents[k] (all agents by default) from every per-agent field."""
        agent_ids = torch.arange(self.n_agents, device=indices.device) if agents is None else \
            torch.tensor(agents, device=indices.device)
        state = batch.state[indices]  # [B, n, S]
        with torch.no_grad():
            q_target = self.net.critic_target(state, batch.actions[indices])
        return AgentRows(obs=batch.obs[indices, agent_ids], state=state, actions=batch.actions[indices, agent_ids],
                         avail=batch.avail[indices, agent_ids], log_mu=batch.log_mu[indices, agent_ids],
                         q_target=q_target)

    def joint_rows(self, batch: TransitionBatch, agents: Optional[list[int]] = None) -> AgentRows:
        """B itself as every agent's rows (the importance / self-normalized options)."""
        cols = list(range(self.n_agents)) if agents is None else agents
        with torch.no_grad():
            q_target = self.net.critic_target(batch.state, batch.actions)
        return AgentRows(obs=batch.obs[:, cols], state=batch.state.unsqueeze(1).expand(-1, len(cols), -1),
                         actions=batch.actions[:, cols], avail=batch.avail[:, cols], log_mu=batch.log_mu[:, cols],
                         q_target=q_target.unsqueeze(1).expand(-1, len(cols)))

    def fit_local_critics(self, rows: AgentRows, weight_log_rho: Optional[Tensor],
                          agent: Optional[int] = None) -> Tensor:
        """Regress Q~^i(s, a^i) on Q_target(s, a) over the rows; returns the per-agent losses [n]."""
        net = self.net
        for _ in range(self.local_steps):
            if agent is None:
                q = net.local_critic(rows.state)
            else:
                q = net.local_critic.forward_agent(agent, rows.state[:, 0]).unsqueeze(1)
            sq_error = (q.gather(-1, rows.actions.unsqueeze(-1)).squeeze(-1) - rows.q_target).pow(2)  # [B, n]
            if weight_log_rho is None:
                per_agent = sq_error.mean(0)
            else:
                per_agent = weighted_mean(sq_error, weight_log_rho, self.cfg.weighting, dim=0)
            net.local_opt.zero_grad(set_to_none=True)
            per_agent.sum().backward()
            clip_grad_norm_per_group(self.groups(net.local_critic, agent), self.cfg.grad_clip)
            net.local_opt.step()
        return per_agent.detach()

    def step_actor(self, loss: Tensor, agent: Optional[int] = None) -> None:
        net = self.net
        net.actor_opt.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm_per_group(self.groups(net.actor, agent), self.cfg.grad_clip)
        net.actor_opt.step()

    @staticmethod
    def groups(module: AgentMLP, agent: Optional[int]) -> list[list[torch.nn.Parameter]]:
        return list(module.parameter_groups()) if agent is None else [module.agent_parameters(agent)]


def weighted_mean(values: Tensor, log_rho: Tensor, weighting: str, dim: Optional[int] = None) -> Tensor:
    """mean_b rho(b) values(b) ("importance") or sum_b rho values / sum_b rho ("self_normalized")."""
    rho = log_rho.exp()
    if weighting == "importance":
        return (rho * values).mean() if dim is None else (rho * values).mean(dim)
    if dim is None:
        return (rho * values).sum() / rho.sum()
    return (rho * values).sum(dim) / rho.sum(dim)


def effective_sample_size(log_rho: Tensor) -> Tensor:
    """(sum rho)^2 / sum rho^2 per column, in log space."""
    shifted = log_rho - log_rho.max(0, keepdim=True).values
    return torch.exp(2 * torch.logsumexp(shifted, 0) - torch.logsumexp(2 * shifted, 0))


def train(config: TrainConfig, *, out_dir=None, resume: bool = False, progress: bool = True,
          on_step: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Run InSPO: returns {"scores": final evaluation, ...}; writes logs/checkpoints when out_dir is set.

    resume=True continues from out_dir's checkpoint (its config wins, except steps: run.resume_config)
    bit-identically on the CPU.
    `on_step(step)` is called after every iteration (a hook for progress displays and tests).
    """
    start_time = time.perf_counter()
    files = RunFiles(out_dir, config.tensorboard)
    checkpoint = None
    if resume:
        checkpoint = files.load_checkpoint()
        config = resume_config(checkpoint, config)
    run = prepare_run(config)
    files.write_config(config)
    env, store = run.env, run.store
    learner = build_learner(config, env.n_agents, env.obs_dim, env.state_dim, env.n_actions)
    if checkpoint is None:
        bc_nll = fit_behaviour(learner.mu, store, config, run.generator)
        if config.pi_init_from_mu:
            learner.actor.load_state_dict(learner.mu.state_dict())
        first_step = 0
    else:
        learner.load_state_dict(checkpoint["learner"])
        set_rng_state(run.generator, checkpoint["rng"])
        with torch.no_grad():
            store.cache_behaviour(lambda obs, avail: masked_log_softmax(learner.mu(obs), avail))
        bc_nll, first_step = checkpoint["bc_nll"], checkpoint["step"]
        files.truncate_logs(first_step)
    learner.mu.requires_grad_(False)
    iteration = InspoStep(config, learner, run.generator)
    policy = policy_fn(learner.actor)

    def save(step: int) -> None:
        files.save_checkpoint(dict(config=config.to_dict(), algo="inspo", step=step, bc_nll=bc_nll,
                                   learner=learner.state_dict(), rng=rng_state(run.generator)))

    def evaluate(step: int) -> dict[str, float]:
        scores = env.evaluate(policy, episodes=config.eval_episodes, generator=eval_generator(config, step))
        files.log("eval", {"step": step, **scores})
        return scores

    label = f"{config.env}/{config.dataset_path or config.dataset} {config.mode}"
    scores = train_loop(config, run, files, first_step, start_time, step_fn=iteration,
                        row_extras=lambda step: {"beta": config.beta_at(step)}, save=save, evaluate=evaluate,
                        label=label, postfix_keys=("critic_loss", "ess", "entropy"), progress=progress,
                        on_step=on_step)
    results = dict(config=config.to_dict(), algo="inspo", scores=scores, bc_nll=bc_nll, steps=config.steps,
                   transitions=len(store), seconds=time.perf_counter() - start_time)
    files.write_results(results)
    files.close()
    return results
