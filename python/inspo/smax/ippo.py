"""Online behaviour policies for the SMAX datasets: PPO with a shared actor, IPPO or MAPPO critic.

CleanRL-style: one jitted function collects a rollout of ``rollout_steps`` from ``num_envs``
auto-resetting battles and takes ``epochs`` x ``minibatches`` PPO steps; a Python loop calls it,
evaluates and saves a checkpoint every ``checkpoint_every`` updates. Everything random comes from
``seed``, and XLA on CPU is deterministic, so training can be replayed exactly: the medium-replay
tier re-runs training up to a checkpoint and records every rollout on the way.

Outputs in ``out_dir``: ``config.json``, ``ckpt_<update>.npz`` (parameters), ``progress.jsonl``
(one line per checkpoint: update, env steps, training-episode return and win rate, and an
evaluation of the stochastic and greedy policy on ``eval_episodes`` fresh battles) and
``final.json`` naming the final checkpoint.
"""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from optax import ScaleByScheduleState as ScheduleState

from .env import Observation, Pytree, SmaxCore, make_core
from .policies import (
    NetworkConfig,
    actor_critic_policy,
    actor_params,
    init_actor_critic,
    load_params,
    masked_logits,
    save_json,
    save_params,
    values,
)
from .rollout import EpisodePlayer, rollout_batch


@dataclass(frozen=True)
class PPOConfig:
    map_name: str = "3m"
    seed: int = 0
    total_env_steps: int = 2_000_000  # environment steps (battles x steps), rounded to whole updates
    num_envs: int = 64
    rollout_steps: int = 128
    epochs: int = 4
    minibatches: int = 4
    lr: float = 1e-3  # with entropy_coef 0.03: 75% wins on 3m at 0.65M steps (5e-4 / 0.01: 62%)
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    entropy_coef: float = 0.03
    value_coef: float = 0.5
    max_grad_norm: float = 0.5
    hidden: int = 128
    layers: int = 2
    critic: str = "global"  # "global" = MAPPO (critic sees the state), "local" = IPPO
    checkpoint_every: int = 10  # updates
    eval_episodes: int = 128
    episode_limit: int = 100

    @property
    def algorithm(self) -> str:
        return "mappo" if self.critic == "global" else "ippo"

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.rollout_steps

    @property
    def num_updates(self) -> int:
        return max(1, self.total_env_steps // self.steps_per_update)

    @property
    def network(self) -> NetworkConfig:
        return NetworkConfig(hidden=self.hidden, layers=self.layers, critic=self.critic)

    def validate(self) -> "PPOConfig":
        for name in (
            "total_env_steps",
            "num_envs",
            "rollout_steps",
            "epochs",
            "minibatches",
            "checkpoint_every",
            "eval_episodes",
            "episode_limit",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1, got {getattr(self, name)}")
        if (self.num_envs * self.rollout_steps) % self.minibatches:
            raise ValueError(f"minibatches: {self.minibatches} must divide num_envs * rollout_steps")
        _ = self.network  # building it checks critic
        return self


class Runner(NamedTuple):
    params: dict
    opt_state: tuple
    env_state: object
    current: Observation  # what the agents see now, per battle
    running_return: jax.Array  # [E] return of the episode in progress
    key: jax.Array


def checkpoint_name(update: int) -> str:
    return f"ckpt_{update:06d}.npz"


_COMPILED_UPDATES: dict = {}


def compiled_update(
    config: PPOConfig, core: SmaxCore, optimizer: optax.GradientTransformation
) -> Callable[[Runner], tuple[Runner, dict, dict]]:
    """``build_update`` cached per config in the process (a second run of a config compiles nothing)."""
    if config not in _COMPILED_UPDATES:
        _COMPILED_UPDATES[config] = build_update(config, core, optimizer)
    return _COMPILED_UPDATES[config]


def build_update(
    config: PPOConfig, core: SmaxCore, optimizer: optax.GradientTransformation
) -> Callable[[Runner], tuple[Runner, dict, dict]]:
    """The jitted PPO iteration: rollout + GAE + epochs of minibatch steps. Returns (runner, stats, steps)."""
    net = config.network
    step_all = jax.vmap(core.step_autoreset)

    def env_step(runner: Runner, _: None) -> tuple[Runner, dict[str, jax.Array]]:
        params = runner.params
        key, act_key, step_key = jax.random.split(runner.key, 3)
        logits = masked_logits(params, runner.current)
        actions = jax.random.categorical(act_key, logits, axis=-1).astype(jnp.int32)
        log_prob = jnp.take_along_axis(jax.nn.log_softmax(logits), actions[..., None], -1)[..., 0]
        value = values(params, runner.current, net)
        env_state, out, start = step_all(jax.random.split(step_key, config.num_envs), runner.env_state, actions)
        episode_return = runner.running_return + out.reward
        record = dict(
            obs=runner.current.obs,
            state=runner.current.state,
            avail=runner.current.avail,
            actions=actions,
            log_prob=log_prob,
            value=value,
            reward=out.reward,
            done=out.done,
            terminated=out.terminated,
            won=out.won,
            final_value=values(params, out.next, net),
            final_obs=out.next.obs,
            final_state=out.next.state,
            final_avail=out.next.avail,
            episode_return=episode_return,
        )
        runner = runner._replace(
            env_state=env_state, current=start, key=key, running_return=jnp.where(out.done, 0.0, episode_return)
        )
        return runner, record

    def advantages(steps: dict[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
        # Every episode end counts as terminal, the time limit included: the task is the return
        # within the limit (the observation has no clock). Bootstrapping through the limit paid a
        # phantom V(final) for merely surviving, and on 2s3z PPO learned to run out the clock.
        not_done = 1.0 - steps["done"][..., None].astype(jnp.float32)
        delta = steps["reward"][..., None] + config.gamma * not_done * steps["final_value"] - steps["value"]

        def backward(next_advantage: jax.Array, x: tuple) -> tuple[jax.Array, jax.Array]:
            delta_t, not_done_t = x
            advantage = delta_t + config.gamma * config.gae_lambda * not_done_t * next_advantage
            return advantage, advantage

        _, adv = jax.lax.scan(backward, jnp.zeros_like(delta[0]), (delta, not_done), reverse=True)
        return adv, adv + steps["value"]

    def loss_fn(params: Pytree, batch: dict[str, jax.Array]) -> tuple[jax.Array, tuple[jax.Array, ...]]:
        observation = Observation(batch["obs"], batch["state"], batch["avail"])
        logits = masked_logits(params, observation)
        log_probs_all = jax.nn.log_softmax(logits)
        log_prob = jnp.take_along_axis(log_probs_all, batch["actions"][..., None], -1)[..., 0]
        ratio = jnp.exp(log_prob - batch["log_prob"])
        adv = (batch["advantage"] - batch["advantage"].mean()) / (batch["advantage"].std() + 1e-8)
        policy_loss = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - config.clip, 1 + config.clip) * adv).mean()
        value = values(params, observation, net)
        value_clipped = batch["value"] + jnp.clip(value - batch["value"], -config.clip, config.clip)
        value_loss = 0.5 * jnp.maximum((value - batch["target"]) ** 2, (value_clipped - batch["target"]) ** 2).mean()
        probs = jnp.exp(log_probs_all)
        entropy = -jnp.where(observation.avail, probs * log_probs_all, 0.0).sum(-1).mean()
        total = policy_loss + config.value_coef * value_loss - config.entropy_coef * entropy
        return total, (policy_loss, value_loss, entropy)

    def sgd_epoch(carry: tuple, _: None) -> tuple[tuple, tuple[jax.Array, ...]]:
        params, opt_state, key, batch = carry
        key, perm_key = jax.random.split(key)
        size = config.num_envs * config.rollout_steps
        order = jax.random.permutation(perm_key, size)
        shuffled = jax.tree.map(lambda x: x.reshape((size,) + x.shape[2:])[order], batch)
        minibatches = jax.tree.map(lambda x: x.reshape((config.minibatches, -1) + x.shape[1:]), shuffled)

        def sgd_step(carry: tuple, minibatch: dict[str, jax.Array]) -> tuple[tuple, tuple[jax.Array, ...]]:
            params, opt_state = carry
            (_, parts), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, minibatch)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), parts

        (params, opt_state), parts = jax.lax.scan(sgd_step, (params, opt_state), minibatches)
        return (params, opt_state, key, batch), parts

    def update(runner: Runner) -> tuple[Runner, dict, dict]:
        runner, steps = jax.lax.scan(env_step, runner, None, config.rollout_steps)
        advantage, target = advantages(steps)
        batch = {name: steps[name] for name in ("obs", "state", "avail", "actions", "log_prob", "value")}
        batch.update(advantage=advantage, target=target)
        key, sgd_key = jax.random.split(runner.key)
        (params, opt_state, _, _), parts = jax.lax.scan(
            sgd_epoch, (runner.params, runner.opt_state, sgd_key, batch), None, config.epochs
        )
        runner = runner._replace(params=params, opt_state=opt_state, key=key)
        done = steps["done"]
        episodes = done.sum()
        stats = dict(
            episodes=episodes,
            train_return=jnp.where(done, steps["episode_return"], 0.0).sum() / jnp.maximum(episodes, 1),
            train_win_rate=(steps["won"] & done).sum() / jnp.maximum(episodes, 1),
            policy_loss=parts[0].mean(),
            value_loss=parts[1].mean(),
            entropy=parts[2].mean(),
        )
        return runner, stats, steps

    return jax.jit(update)


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    updates_total = config.num_updates * config.epochs * config.minibatches
    lr = optax.linear_schedule(config.lr, 0.0, updates_total) if config.anneal_lr else config.lr
    return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), optax.adam(lr, eps=1e-5))


def train(
    config: PPOConfig,
    out_dir: Optional[Path],
    *,
    resume: bool = False,
    log: Callable[[str], None] = print,
) -> dict:
    """Train and checkpoint. Returns the final parameters and the progress rows (``out_dir=None``: nothing
    is written). ``resume`` continues an interrupted run in ``out_dir`` from its last checkpoint (resume_state)."""
    config.validate()
    core = make_core(config.map_name, config.episode_limit)
    optimizer = make_optimizer(config)
    key, init_key, reset_key, eval_key = _training_keys(config)
    params = init_actor_critic(init_key, core.spec, config.network)
    env_state, current = jax.vmap(core.reset)(jax.random.split(reset_key, config.num_envs))
    runner = Runner(params, optimizer.init(params), env_state, current, jnp.zeros((config.num_envs,), jnp.float32), key)
    update = compiled_update(config, core, optimizer)
    evaluator = EpisodePlayer(core, actor_critic_policy(), batch=rollout_batch(config.eval_episodes))
    first, resumed_from = 1, None
    if out_dir is not None and resume:
        out_dir = Path(out_dir)
        resumed_from = read_progress(out_dir)[-1]
        runner = resume_state(config, core, optimizer, out_dir / resumed_from["checkpoint"], resumed_from["update"])
        first = resumed_from["update"] + 1
        log(f"[{config.algorithm} {config.map_name}] resuming after update {resumed_from['update']}")
    elif out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_json(out_dir / "config.json", dict(asdict(config), algorithm=config.algorithm))
        save_params(out_dir / checkpoint_name(0), params)  # the medium-replay tier replays from update 0
        (out_dir / "progress.jsonl").write_text("")
    last = config.num_updates
    progress, window, started = [], [], time.time()
    for index in range(first, last + 1):
        runner, stats, steps = update(runner)
        stats = {name: float(value) for name, value in stats.items()}
        window.append(stats)
        if out_dir is None or (index % config.checkpoint_every and index != config.num_updates):
            continue
        row = dict(
            update=index,
            env_steps=index * config.steps_per_update,
            seconds=round(time.time() - started, 1),
            checkpoint=checkpoint_name(index),
            training_episodes=int(sum(s["episodes"] for s in window)),
        )
        if resumed_from is not None:  # the first row after a resume says so
            row["resumed_after_update"], resumed_from = resumed_from["update"], None
        done = [s for s in window if s["episodes"] > 0]
        weights = [s["episodes"] for s in done]
        for name in ("train_return", "train_win_rate"):
            row[name] = float(np.average([s[name] for s in done], weights=weights)) if done else None
        row["entropy"] = window[-1]["entropy"]
        for kind in ("stochastic", "greedy"):
            summary = evaluator.summary(
                actor_params(runner.params, kind == "greedy"), jax.random.fold_in(eval_key, index), config.eval_episodes
            )
            row[f"{kind}_return"] = summary["return_mean"]
            row[f"{kind}_win_rate"] = summary["win_rate"]
        save_params(out_dir / row["checkpoint"], runner.params)
        with open(out_dir / "progress.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        progress.append(row)
        window = []
        log(
            f"[{config.algorithm} {config.map_name}] update {index}/{config.num_updates} "
            f"steps {row['env_steps']} {row['seconds']}s  train return {row['train_return']}  "
            f"eval return {row['stochastic_return']:.3f} win {row['stochastic_win_rate']:.2f} "
            f"(greedy {row['greedy_return']:.3f} / {row['greedy_win_rate']:.2f})"
        )
    if out_dir is not None:
        save_json(
            out_dir / "final.json",
            dict(checkpoint=checkpoint_name(last), update=last, seconds=round(time.time() - started, 1)),
        )
    return dict(params=runner.params, progress=progress)


def resume_state(
    config: PPOConfig, core: SmaxCore, optimizer: optax.GradientTransformation, checkpoint: Path, update: int
) -> Runner:
    """Where a resumed run starts: the checkpoint's parameters, a fresh Adam state whose learning-rate schedule
    stands at `update`, and fresh battles (their keys folded with `update`). Checkpoints hold parameters only,
    so a resumed run is close to, not bit-identical with, an uninterrupted one; its progress says where it
    resumed."""
    params = load_params(checkpoint)
    steps = update * config.epochs * config.minibatches

    def at_step(state):  # optax's schedule counts optimizer steps; Adam's own moments and count start over
        return (
            state._replace(count=jnp.asarray(steps, state.count.dtype)) if isinstance(state, ScheduleState) else state
        )

    opt_state = jax.tree.map(at_step, optimizer.init(params), is_leaf=lambda s: isinstance(s, ScheduleState))
    key, _, reset_key, _ = _training_keys(config)
    env_state, current = jax.vmap(core.reset)(jax.random.split(jax.random.fold_in(reset_key, update), config.num_envs))
    zeros = jnp.zeros((config.num_envs,), jnp.float32)
    return Runner(params, opt_state, env_state, current, zeros, jax.random.fold_in(key, update))


def _training_keys(config: PPOConfig) -> list:
    """The training run's random keys: (loop, initialization, environment reset, evaluation)."""
    return list(jax.random.split(jax.random.PRNGKey(config.seed), 4))


def initial_params(config: PPOConfig) -> Pytree:
    """The parameters training starts from (update 0), as ``train`` draws them: for behaviour runs saved
    without ``ckpt_000000.npz``. Orthogonal initialization goes through LAPACK's QR, whose rounding may
    depend on the CPU, so exported behaviour runs carry this as a file (tiers.export_behaviour)."""
    core = make_core(config.map_name, config.episode_limit)
    return init_actor_critic(_training_keys(config)[1], core.spec, config.network)


def read_progress(out_dir: Path) -> list:
    path = Path(out_dir) / "progress.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no behaviour training found in {out_dir} (missing progress.jsonl)")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def read_config(out_dir: Path) -> PPOConfig:
    values_ = json.loads((Path(out_dir) / "config.json").read_text())
    values_.pop("algorithm", None)
    return PPOConfig(**values_)


def is_complete(out_dir: Path) -> bool:
    return (Path(out_dir) / "final.json").is_file()
