"""The SMAX environment adapter: many battles in one jitted step, arrays out to torch.

Two layers:

* ``SmaxCore``: pure, jittable functions over ONE battle (reset, step, observation) with arrays
  indexed by agent instead of JaxMARL's per-agent dicts. Vectorize it with ``jax.vmap``; the
  behaviour-policy training and the dataset rollouts run fully inside ``jax.jit``.
* ``SmaxVecEnv``: ``num_envs`` battles stepped together from Python by one jitted, vmapped call,
  handing observations, global state and availability masks to torch through DLPack (no copy,
  no loop over agents). Each battle plays exactly one episode; a finished battle is frozen (its
  reward is 0 and its observation stays the final one) until the next ``reset``. That is the
  shape evaluation needs (run N episodes, stop when all are over).

Facts about SMAX that shape this code (see also the package docstring):
* the reward is the fraction of enemy health removed this step (averaged over enemies) plus 1.0
  when the last enemy dies while an ally lives; a battle is won when all enemies are dead and one
  ally lives;
* a dead agent can only take action 4 (stop), so no mask is ever all-zero;
* the episode ends on a win, a loss or the time limit (exactly ``episode_limit`` steps, 100 by
  default; JaxMARL's own default of max_steps=100 plays 101); ``terminated``
  below is a real end (one team dead), not a time-limit truncation.
"""

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._runtime import import_smax

if TYPE_CHECKING:  # torch is imported where tensors are made (to_torch), not with this module
    import torch

Pytree = Any  # a JAX pytree: SMAX's battle state, network parameters, a policy's carry

_smax = import_smax()


class Observation(NamedTuple):
    """What the agents and the critic see at one step (one battle, or a leading batch dim)."""

    obs: jax.Array  # [N, O] float32, each agent's local observation
    state: jax.Array  # [S] float32, the global state
    avail: jax.Array  # [N, A] bool, available actions


class StepOut(NamedTuple):
    """The result of one step of one battle."""

    next: Observation  # observation after the step (the final one when the episode ended)
    reward: jax.Array  # [] float32, shared team reward
    done: jax.Array  # [] bool, the episode ended (win, loss or time limit)
    terminated: jax.Array  # [] bool, it ended because a team is dead (not the time limit)
    won: jax.Array  # [] bool, all enemies dead with an ally alive


@dataclass(frozen=True)
class SmaxSpec:
    """Sizes of one SMAX map as seen by our agents."""

    map_name: str
    n_agents: int
    n_enemies: int
    obs_dim: int
    state_dim: int
    n_actions: int
    episode_limit: int

    @property
    def env_name(self) -> str:
        return f"smax:{self.map_name}"


def _strong_types(tree: Pytree) -> Pytree:
    """Drop JAX's weak types: a leaf of a fresh state starts from a Python int, and a jitted step
    would otherwise compile a second time when it first sees the strongly typed version."""
    return jax.tree.map(lambda x: jax.lax.convert_element_type(x, x.dtype), tree)


class SmaxCore:
    """Jittable single-battle functions for one SMAX map, our team against JaxMARL's scripted enemy."""

    def __init__(self, map_name: str, episode_limit: int = 100) -> None:
        if map_name not in _smax.smax_env.MAP_NAME_TO_SCENARIO:
            known = ", ".join(sorted(_smax.smax_env.MAP_NAME_TO_SCENARIO))
            raise ValueError(f"map_name: unknown SMAX map {map_name!r}; known: {known}")
        if episode_limit < 1:
            raise ValueError(f"episode_limit: must be >= 1, got {episode_limit}")
        # JaxMARL tests the time limit before counting the step, so max_steps=k ends an episode
        # after k + 1 steps; ask for one less to get exactly episode_limit steps.
        self.env = _smax.HeuristicEnemySMAX(scenario=_smax.map_name_to_scenario(map_name), max_steps=episode_limit - 1)
        self.spec = SmaxSpec(
            map_name=map_name,
            n_agents=self.env.num_allies,
            n_enemies=self.env.num_enemies,
            obs_dim=self.env.obs_size,
            state_dim=self.env.state_size,
            n_actions=self.env.num_ally_actions,
            episode_limit=episode_limit,
        )
        self.agents = list(self.env.agents)

    def observe(self, env_state) -> Observation:
        """The observation of a battle state (allies only)."""
        inner = env_state.state
        all_obs = self.env._env.get_obs(inner)
        obs = jnp.stack([all_obs[agent] for agent in self.agents])
        avail_dict = self.env.get_avail_actions(env_state)
        avail = jnp.stack([avail_dict[agent] for agent in self.agents]).astype(jnp.bool_)
        state = self.env._env.get_world_state(inner)
        return Observation(obs.astype(jnp.float32), state.astype(jnp.float32), avail)

    def reset(self, key: jax.Array) -> tuple[Pytree, Observation]:
        """Start a battle: returns (env_state, Observation)."""
        _, env_state = self.env.reset(key)
        env_state = _strong_types(env_state)
        return env_state, self.observe(env_state)

    def step(self, key: jax.Array, env_state: Pytree, actions: jax.Array) -> tuple[Pytree, StepOut]:
        """Advance one battle by one step (no automatic reset): returns (env_state, StepOut).

        ``actions`` is an int array [N]; the caller guarantees they are available.
        """
        action_dict = {agent: actions[i] for i, agent in enumerate(self.agents)}
        _, env_state, rewards, dones, _ = self.env.step_env(key, env_state, action_dict)
        env_state = _strong_types(env_state)
        alive = env_state.state.unit_alive
        allies_alive = jnp.any(alive[: self.spec.n_agents])
        enemies_alive = jnp.any(alive[self.spec.n_agents :])
        out = StepOut(
            next=self.observe(env_state),
            reward=rewards[self.agents[0]].astype(jnp.float32),
            done=dones["__all__"],
            terminated=~allies_alive | ~enemies_alive,
            won=~enemies_alive & allies_alive,
        )
        return env_state, out

    def step_autoreset(
        self, key: jax.Array, env_state: Pytree, actions: jax.Array
    ) -> tuple[Pytree, StepOut, Observation]:
        """Like ``step``, but a finished battle is replaced by a fresh one.

        Returns (env_state, StepOut, Observation): the StepOut holds the final observation of an
        episode that just ended; the extra Observation is where the next step starts (the fresh
        battle's first observation after an end, else the same as ``StepOut.next``).
        """
        step_key, reset_key = jax.random.split(key)
        stepped_state, out = self.step(step_key, env_state, actions)
        fresh_state, fresh_obs = self.reset(reset_key)
        pick = lambda fresh, stepped: jnp.where(out.done, fresh, stepped)  # noqa: E731
        env_state = jax.tree.map(pick, fresh_state, stepped_state)
        start = jax.tree.map(pick, fresh_obs, out.next)
        return env_state, out, start

    def step_frozen(
        self, key: jax.Array, env_state: Pytree, finished: jax.Array, actions: jax.Array
    ) -> tuple[Pytree, StepOut, jax.Array]:
        """Like ``step``, but a battle that has already finished stays as it is (reward 0).

        Returns (env_state, StepOut, finished'). Used to play exactly one episode per battle.
        """
        stepped_state, out = self.step(key, env_state, actions)
        keep = lambda old, new: jnp.where(finished, old, new)  # noqa: E731
        env_state = jax.tree.map(keep, env_state, stepped_state)
        out = StepOut(
            next=jax.tree.map(keep, self.observe(env_state), out.next),
            reward=jnp.where(finished, 0.0, out.reward),
            done=finished | out.done,
            terminated=jnp.where(finished, False, out.terminated),
            won=jnp.where(finished, False, out.won),
        )
        return env_state, out, finished | out.done


@functools.lru_cache(maxsize=None)
def make_core(map_name: str, episode_limit: int = 100) -> SmaxCore:
    """The shared ``SmaxCore`` of a map: JaxMARL jits its methods per environment object, so one
    object per (map, limit) in a process compiles its reset once (2 s), not once per user."""
    return SmaxCore(map_name, episode_limit)


def smax_spec(map_name: str, episode_limit: int = 100) -> SmaxSpec:
    """Sizes of a map (builds the environment object; no compilation)."""
    return make_core(map_name, episode_limit).spec


def to_torch(array: jax.Array, device: Optional["torch.device | str"] = None) -> "torch.Tensor":
    """A JAX (or numpy) array as a torch tensor, sharing memory where possible (DLPack)."""
    import torch

    try:
        tensor = torch.from_dlpack(array)
    except (BufferError, RuntimeError, TypeError):  # e.g. a dtype torch cannot share
        tensor = torch.as_tensor(np.asarray(array))
    return tensor if device is None else tensor.to(device)


class TorchObservation(NamedTuple):
    obs: "torch.Tensor"  # [E, N, O] float32
    state: "torch.Tensor"  # [E, S] float32
    avail: "torch.Tensor"  # [E, N, A] bool


class TorchStep(NamedTuple):
    next: TorchObservation
    reward: "torch.Tensor"  # [E] float32
    done: "torch.Tensor"  # [E] bool, finished now or earlier
    terminated: "torch.Tensor"  # [E] bool, ended at this step by a dead team
    won: "torch.Tensor"  # [E] bool, won at this step


class SmaxVecEnv:
    """``num_envs`` SMAX battles advanced by one jitted call; one episode per battle per reset.

    >>> env = SmaxVecEnv("3m", num_envs=32, seed=0)
    >>> first = env.reset()                       # TorchObservation, [32, 3, 75] ...
    >>> out = env.step(actions)                   # actions: [32, 3] integer tensor
    >>> env.all_done                              # True once every battle has ended

    The compiled reset and step are cached per (map, episode_limit, num_envs) in the process, so a
    second environment of the same shape compiles nothing.
    """

    _compiled: dict = {}

    def __init__(
        self, map_name: str, num_envs: int, seed: int = 0, episode_limit: int = 100, device: Optional[str] = None
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs: must be >= 1, got {num_envs}")
        self.core = make_core(map_name, episode_limit)
        self.spec = self.core.spec
        self.num_envs = num_envs
        self.device = device
        self._key = jax.random.PRNGKey(seed)
        self._reset_fn, self._step_fn = self._compile()
        self._env_state = None
        self._finished = None
        self._avail = None

    def _compile(self) -> tuple[Callable, Callable]:
        cache_key = (self.spec.map_name, self.spec.episode_limit)
        if cache_key not in SmaxVecEnv._compiled:
            core = self.core
            reset = jax.jit(jax.vmap(core.reset))
            step = jax.jit(jax.vmap(core.step_frozen))
            SmaxVecEnv._compiled[cache_key] = (reset, step)
        return SmaxVecEnv._compiled[cache_key]

    def _observation(self, observation: Observation) -> TorchObservation:
        return TorchObservation(*(to_torch(x, self.device) for x in observation))

    def reset(self) -> TorchObservation:
        self._key, key = jax.random.split(self._key)
        self._env_state, first = self._reset_fn(jax.random.split(key, self.num_envs))
        self._finished = jnp.zeros((self.num_envs,), dtype=jnp.bool_)
        self._avail = np.asarray(first.avail)
        return self._observation(first)

    @property
    def all_done(self) -> bool:
        return self._finished is not None and bool(jnp.all(self._finished))

    def step(self, actions) -> TorchStep:
        """Step every battle; ``actions`` [num_envs, n_agents] integers (torch, numpy or JAX)."""
        if self._env_state is None:
            raise RuntimeError("SmaxVecEnv.step called before reset")
        actions_np = np.asarray(actions.detach().cpu() if hasattr(actions, "detach") else actions)
        self._check_actions(actions_np)
        self._key, key = jax.random.split(self._key)
        self._env_state, out, self._finished = self._step_fn(
            jax.random.split(key, self.num_envs),
            self._env_state,
            self._finished,
            jnp.asarray(actions_np, dtype=jnp.int32),
        )
        self._avail = np.asarray(out.next.avail)
        return TorchStep(
            next=self._observation(out.next),
            reward=to_torch(out.reward, self.device),
            done=to_torch(out.done, self.device),
            terminated=to_torch(out.terminated, self.device),
            won=to_torch(out.won, self.device),
        )

    def _check_actions(self, actions: np.ndarray) -> None:
        expected = (self.num_envs, self.spec.n_agents)
        if actions.shape != expected:
            raise ValueError(f"actions: expected shape {expected}, got {tuple(actions.shape)}")
        if not np.issubdtype(actions.dtype, np.integer):
            raise ValueError(f"actions: expected an integer dtype, got {actions.dtype}")
        if actions.min() < 0 or actions.max() >= self.spec.n_actions:
            raise ValueError(
                f"actions: out of range [0, {self.spec.n_actions}): min {actions.min()}, max {actions.max()}"
            )
        chosen = np.take_along_axis(self._avail, actions[..., None].astype(np.int64), axis=-1)[..., 0]
        if not chosen.all():
            env, agent = np.argwhere(~chosen)[0]
            raise ValueError(f"actions: action {actions[env, agent]} of agent {agent} in env {env} is not available")
