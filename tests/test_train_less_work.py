"""The InSPO iteration without repeated work against the computation it replaced.

The learner's values on a resampled batch are gathers of one pass of each network over B, the first local
critic and policy steps reuse the pass the ratios read, and the exact mode recomputes after an agent's step
only that agent's logits (and local critic). `GatheredRowsLearner` below is the iteration before that
change, written out: every network run again on the gathered rows, every agent's logits (and local
critics) recomputed at each refresh. In float64 on random non-zero data both train the same networks."""

from dataclasses import dataclass
from typing import Optional

import pytest
import torch
from torch import Tensor, nn

from inspo.learners import ops
from inspo.learners.inspo import InspoLearner, effective_sample_size, seed_index, weighted_mean
from inspo.learners.learner import Dims
from inspo.nets import masked_log_softmax
from train_testing import random_batch, tiny


@dataclass
class GatheredRows:
    obs: Tensor
    state: Tensor
    actions: Tensor
    avail: Tensor
    log_mu: Tensor
    q_target: Tensor


class GatheredRowsLearner(InspoLearner):
    """The reference: InspoLearner's agent passes as they were, forwards over gathered rows."""

    def joint_pass(self, batch, order, uniforms, beta, policy_steps, *, eta):
        cfg, n = self.options, self.dims.n_agents
        state = batch.state.unsqueeze(2).expand(-1, -1, n, -1)
        with torch.no_grad():
            log_rho = ops.teammate_log_ratios(
                self.actor(batch.obs),
                batch.log_mu,
                batch.avail,
                batch.actions,
                order,
                predecessors="target",
                q_local=self.local_critic(state),
                eta=eta,
                **self.temperatures(beta),
            )
        if cfg.weighting == "resample":
            indices, ess = ops.resample(log_rho, uniforms=uniforms, method=cfg.resample_method)
            rows, ratio, weight_log_rho = self.gathered(batch, indices), "none", None
        else:
            rows, ratio, weight_log_rho = self.whole(batch), cfg.weighting, log_rho
            ess = effective_sample_size(log_rho)
        local_loss = self.fit_gathered(rows, weight_log_rho)
        with torch.no_grad():
            q_rows = self.local_critic(rows.state)
        for _ in range(max(1, policy_steps)):
            policy = ops.sequential_policy_loss(
                self.actor(rows.obs),
                rows.log_mu,
                rows.avail,
                rows.actions,
                q_rows,
                order,
                predecessors="target",
                eta=eta,
                log_w_max=cfg.log_w_max,
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

    def exact_pass(self, batch, order, uniforms, beta, policy_steps):
        cfg = self.options
        n_seeds, n = order.shape
        batch_size = batch.reward.shape[1]
        parts = {}
        for position in range(n):
            agents = order[:, position]
            actor_mask, local_mask = self.actor.network_mask(agents), self.local_critic.network_mask(agents)
            with torch.no_grad():
                logits = self.actor(batch.obs)
                log_pi_taken = masked_log_softmax(logits, batch.avail).gather(-1, batch.actions.unsqueeze(-1))[..., 0]
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
            own_log_rho = log_rho.gather(2, agents.view(n_seeds, 1, 1).expand(-1, batch_size, 1))
            if cfg.weighting == "resample":
                indices, ess = ops.resample(
                    own_log_rho, uniforms=uniforms[..., position : position + 1], method=cfg.resample_method
                )
                rows = self.gathered(batch, indices, agents.unsqueeze(1))
                local_loss = self.fit_gathered(rows, None, agents, local_mask)
                with torch.no_grad():
                    q_rows = self.local_critic.forward_agent(agents, rows.state[:, :, 0]).unsqueeze(2)
                only_agent = torch.zeros(n_seeds, 1, dtype=torch.int64)
                for _ in range(max(1, policy_steps)):
                    policy = ops.sequential_policy_loss(
                        self.actor.forward_agent(agents, rows.obs[:, :, 0]).unsqueeze(2),
                        rows.log_mu,
                        rows.avail,
                        rows.actions,
                        q_rows,
                        only_agent,
                        predecessors="target",
                        eta=0.0,
                        log_w_max=cfg.log_w_max,
                        ratio="none",
                        **self.temperatures(beta),
                    )
                    if policy_steps:
                        self.step_actor(policy.loss.sum(), actor_mask)
                column = torch.zeros_like(agents)
            else:
                rows = self.whole(batch, agents.unsqueeze(1))
                ess = effective_sample_size(own_log_rho)
                local_loss = self.fit_gathered(rows, own_log_rho, agents, local_mask)
                with torch.no_grad():
                    q_all = self.local_critic(batch.state.unsqueeze(2).expand(-1, -1, n, -1))
                is_own = nn.functional.one_hot(agents, n).bool().view(n_seeds, 1, n, 1)
                for _ in range(max(1, policy_steps)):
                    own = self.actor.forward_agent(agents, rows.obs[:, :, 0]).unsqueeze(2)
                    policy = ops.sequential_policy_loss(
                        torch.where(is_own, own, logits),
                        batch.log_mu,
                        batch.avail,
                        batch.actions,
                        q_all,
                        order,
                        predecessors="policy",
                        updated_log_probs=log_pi_taken,
                        eta=0.0,
                        log_w_max=cfg.log_w_max,
                        ratio=cfg.weighting,
                        **self.temperatures(beta),
                    )
                    if policy_steps:
                        self.step_actor(policy.loss.gather(1, agents.unsqueeze(1)).sum(), actor_mask)
                column = agents
            for key, value in (
                ("policy_loss", policy.loss.gather(1, column.unsqueeze(1))[:, 0]),
                ("local_loss", local_loss.sum(-1)),
                ("ess", ess[:, 0]),
                ("mean_weight", policy.mean_weight.gather(1, column.unsqueeze(1))[:, 0]),
                ("entropy", policy.entropy.gather(1, column.unsqueeze(1))[:, 0]),
                ("kl", policy.kl.gather(1, column.unsqueeze(1))[:, 0]),
            ):
                parts.setdefault(key, []).append(value.detach())
        metrics = {key: torch.stack(values, dim=1) for key, values in parts.items()}
        return dict(
            policy_loss=metrics["policy_loss"].sum(1),
            local_loss=metrics["local_loss"].sum(1),
            ess=metrics["ess"].mean(1),
            min_ess=metrics["ess"].min(1).values,
            mean_weight=metrics["mean_weight"].mean(1),
            entropy=metrics["entropy"].mean(1),
            kl=metrics["kl"].mean(1),
        )

    def gathered(self, batch, indices, agents=None):
        seeds = seed_index(indices.shape[0], 3, indices.device)
        agent_ids = torch.arange(self.dims.n_agents) if agents is None else agents.unsqueeze(1)
        with torch.no_grad():
            q_target = self.critic_target(batch.state, batch.actions)[seeds, indices]
        return GatheredRows(
            obs=batch.obs[seeds, indices, agent_ids],
            state=batch.state[seeds, indices],
            actions=batch.actions[seeds, indices, agent_ids],
            avail=batch.avail[seeds, indices, agent_ids],
            log_mu=batch.log_mu[seeds, indices, agent_ids],
            q_target=q_target,
        )

    def whole(self, batch, agents=None):
        with torch.no_grad():
            q_target = self.critic_target(batch.state, batch.actions)
        if agents is None:
            obs, actions, avail, log_mu = batch.obs, batch.actions, batch.avail, batch.log_mu
        else:
            seeds = seed_index(agents.shape[0], 3, agents.device)
            samples = torch.arange(batch.reward.shape[1]).view(1, -1, 1)
            obs, actions, avail, log_mu = (
                field[seeds, samples, agents.unsqueeze(1)]
                for field in (batch.obs, batch.actions, batch.avail, batch.log_mu)
            )
        n = actions.shape[2]
        return GatheredRows(
            obs=obs,
            state=batch.state.unsqueeze(2).expand(-1, -1, n, -1),
            actions=actions,
            avail=avail,
            log_mu=log_mu,
            q_target=q_target.unsqueeze(2).expand(-1, -1, n),
        )

    def fit_gathered(self, rows, weight_log_rho, agents: Optional[Tensor] = None, mask: Optional[Tensor] = None):
        for _ in range(self.local_steps):
            if agents is None:
                q = self.local_critic(rows.state)
            else:
                q = self.local_critic.forward_agent(agents, rows.state[:, :, 0]).unsqueeze(2)
            sq_error = (q.gather(-1, rows.actions.unsqueeze(-1)).squeeze(-1) - rows.q_target).pow(2)
            per_agent = (
                sq_error.mean(1)
                if weight_log_rho is None
                else weighted_mean(sq_error, weight_log_rho, self.options.weighting)
            )
            self.local_opt.minimize(per_agent.sum(), self.config.grad_clip, None if mask is None else [mask])
        return per_agent.detach()


DIMS = Dims(n_agents=4, obs_dim=5, state_dim=6, n_actions=5)


def seed_batch(generator, n_seeds, batch_size, mu_logits):
    """n_seeds random batches stacked [S, B, ...] with behaviour log-probs of random logits."""
    batches = [
        random_batch(generator, (DIMS.n_agents, DIMS.obs_dim, DIMS.state_dim, DIMS.n_actions), batch_size, 0.7)
        for _ in range(n_seeds)
    ]
    stacked = {
        name: torch.cat([getattr(b, name) for b in batches])
        for name in vars(batches[0])
        if getattr(batches[0], name) is not None
    }
    stacked["log_mu"] = masked_log_softmax(mu_logits(stacked["obs"]), stacked["avail"])
    stacked["next_log_mu"] = masked_log_softmax(mu_logits(stacked["next_obs"]), stacked["next_avail"])
    return type(batches[0])(**{**vars(batches[0]), **stacked})


@pytest.mark.parametrize(
    "overrides",
    [
        {"inspo.mode": "fused"},
        {
            "inspo.mode": "fused",
            "inspo.weighting": "importance",
            "inspo.local_critic_steps": 2,
            "inspo.policy_steps": 2,
        },
        {"inspo.mode": "simultaneous", "share_parameters": True, "inspo.policy_steps": 2},
        {"inspo.mode": "exact"},
        {"inspo.mode": "exact", "share_parameters": True, "inspo.local_critic_steps": 2},
        {"inspo.mode": "exact", "inspo.weighting": "self_normalized", "inspo.policy_steps": 2},
        {"inspo.mode": "exact", "inspo.weighting": "importance", "share_parameters": True},
    ],
)
def test_one_pass_over_the_batch_trains_what_the_gathered_rows_trained(overrides, float64):
    config = tiny("inspo", 0, batch_size=24, **overrides, **{"inspo.alpha": 0.7, "inspo.beta": 0.4, "inspo.eta": 0.5})
    n_seeds = 2
    learners = [kind(config, n_seeds, DIMS) for kind in (InspoLearner, GatheredRowsLearner)]
    for s in range(n_seeds):
        torch.manual_seed(10 + s)
        learners[0].initialize_seed(s)
    learners[1].load_state_dict(learners[0].state_dict())
    initial = {key: value.clone() for key, value in learners[0].state_dict().items()}
    generator = torch.Generator().manual_seed(3)
    draw_generators = [torch.Generator().manual_seed(20 + s) for s in range(n_seeds)]
    for step in range(4):
        batch = seed_batch(generator, n_seeds, config.batch_size, lambda obs: learners[0].mu(obs))
        draws = learners[0].draw(draw_generators, step)
        ours, theirs = (learner.update(batch, draws, step) for learner in learners)
        assert ours.keys() == theirs.keys()
        for key in ours:
            torch.testing.assert_close(ours[key], theirs[key], rtol=1e-10, atol=1e-12, msg=key)
    state, reference = learners[0].state_dict(), learners[1].state_dict()
    for key in state:
        torch.testing.assert_close(state[key], reference[key], rtol=1e-10, atol=1e-12, msg=key)
    moved = [
        key
        for key in state
        if key.startswith(("actor.", "local_critic.")) and not torch.equal(state[key], initial[key])
    ]
    assert any(key.startswith("actor.") for key in moved) and any(key.startswith("local_critic.") for key in moved)
