"""OMIGA (Wang et al., NeurIPS 2023): offline in-sample learning with value decomposition.

Spec: shared/spec/baselines.md. Per agent a Q_i(o_i, .), a V_i(o_i) and an actor pi_i(.|o_i), each one
batched `AgentMLP` over the N agents (separate weights, or one network with an agent-id input when
`share_parameters`); a mixer gives non-negative state weights w(s) = |W(s)| and a bias b(s):

    Q_tot = sum_i w_i Q_i(o_i, a_i) + b(s),    V_tot = sum_i w_i V_i(o_i) + b(s)

Losses on a minibatch (alpha = config.omiga_alpha; bars are Polyak targets, detached):

    Q:  (Q_tot(s, a) - [r + gamma (1 - d) V_tot-bar(s')])^2     (target V and target mixer)
    V:  z_i = clamp((w-bar_i Q-bar_i(o_i, a_i) - w-bar_i V_i(o_i)) / alpha, -10, 10)
        exp(z_i - m) + exp(-m) w-bar_i V_i / alpha,   m = max(max_{b,i} z, -1) detached
    pi: -exp(z_i) log pi_i(a_i | o_i)                          (z detached)

The max-shift m only rescales the V loss (its minimiser is unchanged) and keeps exp finite. Mixing
with non-negative weights makes argmax Q_tot = (argmax Q_i)_i (IGM) by construction, which is exactly
what fails on XOR-like payoffs: the decomposition cannot represent them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor, nn

from inspo.bc import make_policy_net, masked_log_softmax, policy_fn
from inspo.config import TrainConfig
from inspo.data import TransitionBatch
from inspo.nets import AgentMLP, clip_grad_norm_per_group, polyak_update
from inspo.run import RunFiles, eval_generator, prepare_run, resume_config, rng_state, set_rng_state, train_loop

Z_CLAMP = 10.0  # |z| bound of the in-sample weight exponent (OMIGA's value)
M_FLOOR = -1.0  # the max-shift m never goes below this (OMIGA's value)


class Mixer(nn.Module):
    """state [B, S] -> (w(s) = |W(s)| [B, N], b(s) [B]); W and b one hidden layer each."""

    def __init__(self, state_dim: int, n_agents: int, hidden: int):
        super().__init__()
        self.weight_net = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, n_agents))
        self.bias_net = nn.Sequential(nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.weight_net(state).abs(), self.bias_net(state).squeeze(-1)


@dataclass
class OmigaNets:
    """Networks and optimizers of one OMIGA run (everything a checkpoint restores besides the RNG)."""

    actor: AgentMLP
    q_net: AgentMLP  # Q_i(o_i, .) -> [B, N, A]
    v_net: AgentMLP  # V_i(o_i) -> [B, N, 1]
    mixer: Mixer
    q_target: AgentMLP
    v_target: AgentMLP
    mixer_target: Mixer
    actor_opt: torch.optim.Adam
    q_opt: torch.optim.Adam  # Q networks and the mixer: both sit in the Q loss
    v_opt: torch.optim.Adam

    PARTS = ("actor", "q_net", "v_net", "mixer", "q_target", "v_target", "mixer_target", "actor_opt", "q_opt",
             "v_opt")

    def state_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name).state_dict() for name in self.PARTS}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.PARTS:
            getattr(self, name).load_state_dict(state[name])


def build_nets(config: TrainConfig, n_agents: int, obs_dim: int, state_dim: int, n_actions: int) -> OmigaNets:
    def agent_net(out_dim: int) -> AgentMLP:
        return AgentMLP(n_agents, obs_dim, out_dim, config.hidden, config.share_parameters).to(config.device)

    actor = make_policy_net(config, n_agents, obs_dim, n_actions)
    q_net, v_net = agent_net(n_actions), agent_net(1)
    mixer = Mixer(state_dim, n_agents, config.mixer_hidden).to(config.device)
    q_target, v_target = agent_net(n_actions), agent_net(1)
    mixer_target = Mixer(state_dim, n_agents, config.mixer_hidden).to(config.device)
    for target, online in ((q_target, q_net), (v_target, v_net), (mixer_target, mixer)):
        target.load_state_dict(online.state_dict())
        target.requires_grad_(False)
    return OmigaNets(actor, q_net, v_net, mixer, q_target, v_target, mixer_target,
                     actor_opt=torch.optim.Adam(actor.parameters(), lr=config.lr),
                     q_opt=torch.optim.Adam([*q_net.parameters(), *mixer.parameters()], lr=config.critic_lr),
                     v_opt=torch.optim.Adam(v_net.parameters(), lr=config.critic_lr))


def taken(values: Tensor, actions: Tensor) -> Tensor:
    """values [B, N, A], actions [B, N] -> values at the actions [B, N]."""
    return values.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def omiga_losses(nets: OmigaNets, batch: TransitionBatch, *, alpha: float, gamma: float) -> dict[str, Tensor]:
    """The three OMIGA losses on `batch` (scalars with gradients) and the weights exp(z) [B, N].

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
    q_loss = (q_tot - q_tot_target).pow(2).mean()

    v = nets.v_net(batch.obs).squeeze(-1)  # [B, N]
    z = ((w_bar * q_bar - w_bar * v) / alpha).clamp(-Z_CLAMP, Z_CLAMP)
    shift = z.detach().max().clamp(min=M_FLOOR)
    v_loss = (torch.exp(z - shift) + torch.exp(-shift) * w_bar * v / alpha).mean(0).sum()

    weight = z.detach().exp()
    log_pi = taken(masked_log_softmax(nets.actor(batch.obs), batch.avail), batch.actions)
    policy_loss = -(weight * log_pi).mean(0).sum()
    return dict(q_loss=q_loss, v_loss=v_loss, policy_loss=policy_loss, weight=weight, w=w.detach(),
                log_pi=log_pi.detach())


class OmigaStep:
    """One OMIGA iteration: Q (with the mixer), V and policy steps, then Polyak targets."""

    def __init__(self, config: TrainConfig, nets: OmigaNets):
        self.cfg = config
        self.nets = nets

    def __call__(self, batch: TransitionBatch) -> dict[str, Tensor]:
        cfg, nets = self.cfg, self.nets
        losses = omiga_losses(nets, batch, alpha=cfg.omiga_alpha, gamma=cfg.gamma)
        for loss, optimizer, groups in (
                (losses["q_loss"], nets.q_opt, [*nets.q_net.parameter_groups(), list(nets.mixer.parameters())]),
                (losses["v_loss"], nets.v_opt, list(nets.v_net.parameter_groups())),
                (losses["policy_loss"], nets.actor_opt, list(nets.actor.parameter_groups()))):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            clip_grad_norm_per_group(groups, cfg.grad_clip)
            optimizer.step()
        for target, online in ((nets.q_target, nets.q_net), (nets.v_target, nets.v_net),
                               (nets.mixer_target, nets.mixer)):
            polyak_update(target, online, cfg.polyak)
        return dict(q_loss=losses["q_loss"].detach(), v_loss=losses["v_loss"].detach(),
                    policy_loss=losses["policy_loss"].detach(), mean_weight=losses["weight"].mean(),
                    max_weight=losses["weight"].max(), mixer_w=losses["w"].mean())


def train(config: TrainConfig, *, out_dir=None, resume: bool = False, progress: bool = True,
          on_step: Optional[Callable[[int], None]] = None) -> dict[str, Any]:
    """Train OMIGA: returns {"scores": final evaluation, ...}; writes logs/checkpoints when out_dir is set.

    resume=True continues from out_dir's checkpoint (its config wins, except steps: run.resume_config).
    `on_step(step)` is called after every iteration.
    """
    start_time = time.perf_counter()
    files = RunFiles(out_dir, config.tensorboard)
    checkpoint = None
    if resume:
        checkpoint = files.load_checkpoint()
        if checkpoint.get("algo") != "omiga":
            raise ValueError(f"checkpoint in {out_dir} is from algo {checkpoint.get('algo')!r}, not 'omiga'")
        config = resume_config(checkpoint, config)
    if config.omiga_alpha <= 0:
        raise ValueError(f"config.omiga_alpha must be > 0, got {config.omiga_alpha}")
    run = prepare_run(config)
    files.write_config(config)
    env, store = run.env, run.store
    nets = build_nets(config, env.n_agents, env.obs_dim, env.state_dim, env.n_actions)
    first_step = 0
    if checkpoint is not None:
        nets.load_state_dict(checkpoint["nets"])
        set_rng_state(run.generator, checkpoint["rng"])
        first_step = checkpoint["step"]
        files.truncate_logs(first_step)
    iteration = OmigaStep(config, nets)
    policy = policy_fn(nets.actor)

    def save(step: int) -> None:
        # "actor" at the top level: what `inspo eval` loads from any trainer's checkpoint
        files.save_checkpoint(dict(config=config.to_dict(), algo="omiga", step=step, actor=nets.actor.state_dict(),
                                   nets=nets.state_dict(), rng=rng_state(run.generator)))

    def evaluate(step: int) -> dict[str, float]:
        scores = env.evaluate(policy, episodes=config.eval_episodes, generator=eval_generator(config, step))
        files.log("eval", {"step": step, **scores})
        return scores

    label = f"{config.env}/{config.dataset_path or config.dataset} omiga"
    scores = train_loop(config, run, files, first_step, start_time, step_fn=lambda batch, step: iteration(batch),
                        row_extras=lambda step: {}, save=save, evaluate=evaluate, label=label,
                        postfix_keys=("q_loss", "v_loss", "mean_weight"), progress=progress, on_step=on_step)
    results = dict(config=config.to_dict(), algo="omiga", scores=scores, steps=config.steps, transitions=len(store),
                   seconds=time.perf_counter() - start_time)
    files.write_results(results)
    files.close()
    return results
