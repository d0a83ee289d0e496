"""Recording SMAX episodes in the episode-buffer layout (docs/ALGORITHM.md#episode-buffer-format).

Layout of one episode of L steps, padded to T+1 >= L + 1 slots (the tiers cut T+1 to the longest
episode + 1 when they save): slots 0..L-1 hold the
observation, state and mask the agents acted on, their actions, the reward and ``terminated`` (1 on
slot L-1 when a team died, 0 after a time limit); ``filled`` is 1 exactly there. Slot L holds the
final observation, state and mask (not filled, action 0). Later slots are zeros.

``EpisodePlayer`` plays exactly one episode per battle, a batch of battles inside one jitted ``lax.scan``
(every tier).
"""

import math
from pathlib import Path
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np
from numpy.lib.format import open_memmap

from .env import Pytree, SmaxCore, SmaxSpec
from .policies import RolloutPolicy

BUFFER_DTYPES = {
    "obs": np.float32,
    "state": np.float32,
    "actions": np.int64,
    "reward": np.float32,
    "terminated": np.uint8,
    "filled": np.int64,
    "avail_actions": np.int32,
}


def buffer_shapes(spec: SmaxSpec, episodes: int) -> dict:
    length = spec.episode_limit + 1
    n = spec.n_agents
    return {
        "obs": (episodes, length, n, spec.obs_dim),
        "state": (episodes, length, spec.state_dim),
        "actions": (episodes, length, n, 1),
        "reward": (episodes, length, 1),
        "terminated": (episodes, length, 1),
        "filled": (episodes, length, 1),
        "avail_actions": (episodes, length, n, spec.n_actions),
    }


def buffer_bytes(spec: SmaxSpec, episodes: int) -> int:
    return sum(
        math.prod(shape) * np.dtype(BUFFER_DTYPES[name]).itemsize
        for name, shape in buffer_shapes(spec, episodes).items()
    )


class EpisodeSink:
    """Preallocated episode-major arrays that chunks of episodes are copied into.

    In memory, or, when ``staging`` is given, as memory-mapped .npy files in that directory (for
    datasets too big to hold twice in RAM). Also keeps each episode's return, win and length.
    """

    def __init__(self, spec: SmaxSpec, capacity: int, staging: Optional[Path] = None) -> None:
        self.spec = spec
        self.capacity = capacity
        self.count = 0
        self.arrays = {}
        for name, shape in buffer_shapes(spec, capacity).items():
            dtype = BUFFER_DTYPES[name]
            if staging is None:
                self.arrays[name] = np.zeros(shape, dtype)
            else:
                Path(staging).mkdir(parents=True, exist_ok=True)
                self.arrays[name] = open_memmap(Path(staging) / f"{name}.npy", "w+", dtype, shape)
        self.returns = np.zeros(capacity, np.float64)
        self.wins = np.zeros(capacity, bool)
        self.lengths = np.zeros(capacity, np.int64)

    @property
    def full(self) -> bool:
        return self.count >= self.capacity

    def add(self, chunk: dict, wins: np.ndarray) -> int:
        """Copy episodes (buffer-layout arrays [B, T+1, ...]) in; returns how many fitted."""
        take = min(len(wins), self.capacity - self.count)
        rows = slice(self.count, self.count + take)
        for name, array in self.arrays.items():
            array[rows] = chunk[name][:take]
        filled = chunk["filled"][:take, :, 0].astype(bool)
        self.returns[rows] = (chunk["reward"][:take, :, 0] * filled).sum(axis=1)
        self.wins[rows] = wins[:take]
        self.lengths[rows] = filled.sum(axis=1)
        self.count += take
        return take

    def result(self) -> dict:
        """The arrays holding the episodes added so far (views, no copy)."""
        return {name: array[: self.count] for name, array in self.arrays.items()}


def _episode_scan(core: SmaxCore, policy: RolloutPolicy) -> Callable[[Pytree, jax.Array], dict[str, jax.Array]]:
    """One battle, one episode: (params, key) -> buffer-layout arrays of that episode (JAX)."""
    limit = core.spec.episode_limit

    def play(params: Pytree, key: jax.Array) -> dict[str, jax.Array]:
        reset_key, policy_key, loop_key = jax.random.split(key, 3)
        env_state, first = core.reset(reset_key)

        def body(carry: tuple, _: None) -> tuple[tuple, dict[str, jax.Array]]:
            env_state, current, finished, policy_carry, key = carry
            key, act_key, step_key = jax.random.split(key, 3)
            actions, policy_carry = policy.act(params, act_key, policy_carry, current)
            env_state, out, now_finished = core.step_frozen(step_key, env_state, finished, actions)
            record = (current, actions, out.reward, out.terminated, ~finished, out.won)
            return (env_state, out.next, now_finished, policy_carry, key), record

        init = (env_state, first, jnp.array(False), policy.init(policy_key), loop_key)
        (_, last, _, _, _), (seen, actions, reward, terminated, filled, won) = jax.lax.scan(
            body, init, None, length=limit
        )
        # slot t holds a real observation for t <= L (the final one at L); zero the padding after it
        valid = jnp.concatenate([jnp.array([True]), filled])
        pad1 = lambda x: jnp.concatenate([x, jnp.zeros((1,) + x.shape[1:], x.dtype)])  # noqa: E731

        def slots(seen_x: jax.Array, last_x: jax.Array) -> jax.Array:
            x = jnp.concatenate([seen_x, last_x[None]])
            return jnp.where(valid.reshape((-1,) + (1,) * (x.ndim - 1)), x, jnp.zeros_like(x))

        return {
            "obs": slots(seen.obs, last.obs),
            "state": slots(seen.state, last.state),
            "avail_actions": slots(seen.avail, last.avail),
            "actions": pad1(jnp.where(filled[:, None], actions, 0)),
            "reward": pad1(reward),
            "terminated": pad1(terminated & filled),
            "filled": pad1(filled),
            "won": jnp.any(won),
        }

    return play


def to_buffer_layout(episodes: dict) -> tuple[dict, np.ndarray]:
    """JAX episode arrays [B, T+1, ...] -> (numpy arrays with the buffer's shapes and dtypes, wins [B])."""
    arrays = {}
    for name, dtype in BUFFER_DTYPES.items():
        array = np.asarray(episodes[name]).astype(dtype)
        if name in ("actions", "reward", "terminated", "filled"):
            array = array[..., None]
        arrays[name] = array
    return arrays, np.asarray(episodes["won"]).astype(bool)


MAX_ROLLOUT_BATCH = 256


def rollout_batch(episodes: int) -> int:
    """Battles per compiled rollout for ``episodes`` episodes: the next power of two, at most 256.

    Every batch size is a compile of its own (seconds), so few sizes are used; small requests (tests,
    quick evaluations) do not play 256 battles.
    """
    return min(MAX_ROLLOUT_BATCH, 1 << max(0, episodes - 1).bit_length())


class EpisodePlayer:
    """Plays batches of one-episode battles with a fixed policy; one compile per (map, episode limit,
    policy, batch) in a process."""

    _compiled: dict = {}

    def __init__(self, core: SmaxCore, policy: RolloutPolicy, batch: int = MAX_ROLLOUT_BATCH) -> None:
        self.core = core
        self.batch = batch
        cache_key = (core.spec, policy.name)
        if cache_key not in EpisodePlayer._compiled:
            EpisodePlayer._compiled[cache_key] = jax.jit(jax.vmap(_episode_scan(core, policy), in_axes=(None, 0)))
        self._play = EpisodePlayer._compiled[cache_key]

    def play(self, params, key) -> tuple[dict, np.ndarray]:
        """``batch`` episodes -> (buffer-layout numpy arrays, wins)."""
        return to_buffer_layout(self._play(params, jax.random.split(key, self.batch)))

    def fill(self, sink: EpisodeSink, params, key, episodes: int) -> None:
        """Add ``episodes`` episodes to ``sink``."""
        added = 0
        while added < episodes:
            key, batch_key = jax.random.split(key)
            chunk, wins = self.play(params, batch_key)
            take = min(episodes - added, len(wins))
            added += sink.add({k: v[:take] for k, v in chunk.items()}, wins[:take])

    def summary(self, params, key, episodes: int) -> dict:
        """Mean return and win rate of ``episodes`` episodes (rounded up to whole batches)."""
        returns, wins = [], []
        for _ in range(max(1, math.ceil(episodes / self.batch))):
            key, batch_key = jax.random.split(key)
            chunk, won = self.play(params, batch_key)
            returns.append((chunk["reward"][..., 0] * chunk["filled"][..., 0]).sum(axis=1))
            wins.append(won)
        returns, wins = np.concatenate(returns), np.concatenate(wins)
        return {
            "return_mean": float(returns.mean()),
            "return_std": float(returns.std()),
            "win_rate": float(wins.mean()),
            "episodes": int(len(returns)),
        }
