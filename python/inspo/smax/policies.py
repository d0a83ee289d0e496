"""Behaviour policies in JAX: the PPO actor-critic (shared across agents) and a scripted heuristic.

A policy for rollouts is a ``RolloutPolicy``: ``init(key) -> carry`` per battle and
``act(params, key, carry, observation) -> (actions [N], carry)``. ``params`` is an argument (not
closed over) so that one compiled rollout serves every checkpoint.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from inspo.atomic import atomic_path, atomic_write_text

from ._runtime import import_smax
from .env import Observation, Pytree, SmaxCore, SmaxSpec

_smax = import_smax()

NEG_INF = -1e9  # logit of an unavailable action (finite, so 0 * logit stays 0)


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of the actor-critic; the actor and critic are separate MLPs shared by all agents."""

    hidden: int = 128
    layers: int = 2
    critic: str = "global"  # "global": V(global state, agent id) = MAPPO; "local": V(obs, id) = IPPO

    def __post_init__(self) -> None:
        if self.critic not in ("global", "local"):
            raise ValueError(f"critic: expected 'global' (MAPPO) or 'local' (IPPO), got {self.critic!r}")
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {self.hidden}, {self.layers}")


def _init_mlp(key: jax.Array, sizes: list[int], last_scale: float) -> list[dict[str, jax.Array]]:
    orthogonal = jax.nn.initializers.orthogonal
    layers = []
    keys = jax.random.split(key, len(sizes) - 1)
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        scale = last_scale if i == len(sizes) - 2 else np.sqrt(2.0)
        layers.append({"w": orthogonal(scale)(keys[i], (fan_in, fan_out)), "b": jnp.zeros((fan_out,))})
    return layers


def _mlp(layers: list[dict[str, jax.Array]], x: jax.Array) -> jax.Array:
    for layer in layers[:-1]:
        x = jax.nn.relu(x @ layer["w"] + layer["b"])
    return x @ layers[-1]["w"] + layers[-1]["b"]


def with_agent_id(x: jax.Array, n_agents: int) -> jax.Array:
    """Append a one-hot agent id to per-agent inputs [..., N, D] (parameters are shared)."""
    eye = jnp.broadcast_to(jnp.eye(n_agents, dtype=x.dtype), x.shape[:-1] + (n_agents,))
    return jnp.concatenate([x, eye], axis=-1)


def actor_input_dim(spec: SmaxSpec) -> int:
    return spec.obs_dim + spec.n_agents


def critic_input_dim(spec: SmaxSpec, net: NetworkConfig) -> int:
    return (spec.state_dim if net.critic == "global" else spec.obs_dim) + spec.n_agents


def init_actor_critic(key: jax.Array, spec: SmaxSpec, net: NetworkConfig) -> dict[str, list[dict[str, jax.Array]]]:
    actor_key, critic_key = jax.random.split(key)
    hidden = [net.hidden] * net.layers
    return {
        "actor": _init_mlp(actor_key, [actor_input_dim(spec)] + hidden + [spec.n_actions], 0.01),
        "critic": _init_mlp(critic_key, [critic_input_dim(spec, net)] + hidden + [1], 1.0),
    }


def masked_logits(params, observation: Observation) -> jax.Array:
    """Actor logits [..., N, A] with unavailable actions at NEG_INF."""
    n_agents = observation.obs.shape[-2]
    logits = _mlp(params["actor"], with_agent_id(observation.obs, n_agents))
    return jnp.where(observation.avail, logits, NEG_INF)


def values(params, observation: Observation, net: NetworkConfig) -> jax.Array:
    """Per-agent state values [..., N]."""
    n_agents = observation.obs.shape[-2]
    if net.critic == "global":
        per_agent = jnp.broadcast_to(
            observation.state[..., None, :], observation.obs.shape[:-1] + observation.state.shape[-1:]
        )
    else:
        per_agent = observation.obs
    return _mlp(params["critic"], with_agent_id(per_agent, n_agents))[..., 0]


class RolloutPolicy(NamedTuple):
    name: str  # identifies the policy's code (compiled rollouts are cached by it)
    init: Callable  # key -> carry, for one battle
    act: Callable  # (params, key, carry, Observation) -> (actions [N] int32, carry)


def actor_critic_policy() -> RolloutPolicy:
    """The PPO actor as a rollout policy; its ``params`` are ``actor_params(network, greedy)``.

    ``greedy`` is traced, not static, so one compiled rollout plays both the argmax of the masked
    logits and samples of their softmax (a SMAX rollout costs seconds to compile).
    """

    def act(params: Pytree, key: jax.Array, carry: tuple, observation: Observation) -> tuple[jax.Array, tuple]:
        network, greedy = params
        logits = masked_logits(network, observation)
        sampled = jax.random.categorical(key, logits, axis=-1)
        actions = jnp.where(greedy, jnp.argmax(logits, axis=-1), sampled)
        return actions.astype(jnp.int32), carry

    return RolloutPolicy(name="actor", init=lambda key: (), act=act)


def actor_params(network: Pytree, greedy: bool) -> tuple[Pytree, jax.Array]:
    """The ``params`` of ``actor_critic_policy``: the network and whether to act greedily."""
    return network, jnp.asarray(greedy)


def uniform_available(key, avail: jax.Array) -> jax.Array:
    """One uniformly random available action per agent: avail [N, A] -> [N]."""
    return jax.random.categorical(key, jnp.where(avail, 0.0, NEG_INF), axis=-1).astype(jnp.int32)


def heuristic_policy(core: SmaxCore) -> RolloutPolicy:
    """JaxMARL's scripted SMAX micro (attack the closest enemy in range, else advance), for our team.

    ``params`` is the exploration rate eps: with probability eps an agent takes a uniformly random
    available action instead. A scripted action that is not available (a dead unit only has
    "stop") is replaced by a random available one.
    """
    script = _smax.heuristic_enemy.create_heuristic_policy(core.env._env, team=0)
    n_agents = core.spec.n_agents

    def init(key: jax.Array) -> Pytree:
        single = _smax.heuristic_enemy.get_heuristic_policy_initial_state()
        single = single.replace(last_attacked_enemy=jnp.int32(single.last_attacked_enemy))
        return jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * n_agents), single)

    def act(eps: jax.Array, key: jax.Array, carry: Pytree, observation: Observation) -> tuple[jax.Array, Pytree]:
        script_key, random_key, coin_key = jax.random.split(key, 3)
        scripted, carry = jax.vmap(script)(jax.random.split(script_key, n_agents), carry, observation.obs)
        scripted = scripted.astype(jnp.int32)
        random_actions = uniform_available(random_key, observation.avail)
        legal = jnp.take_along_axis(observation.avail, scripted[:, None], axis=-1)[:, 0]
        explore = jax.random.uniform(coin_key, (n_agents,)) < eps
        actions = jnp.where(explore | ~legal, random_actions, scripted)
        return actions, carry

    return RolloutPolicy(name="heuristic", init=init, act=act)


# --- checkpoints ----------------------------------------------------------------------------------


def save_params(path: Path, params) -> None:
    """Write a parameter pytree as an .npz of named arrays (``actor/0/w`` ...)."""
    flat = {}
    for name, layers in params.items():
        for i, layer in enumerate(layers):
            for key, value in layer.items():
                flat[f"{name}/{i}/{key}"] = np.asarray(value)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:  # a file handle: savez adds no ".npz" suffix
        np.savez(handle, **flat)


def load_params(path: Path) -> Pytree:
    with np.load(path) as data:
        params = {}
        for full_name in sorted(data.files, key=lambda n: (n.split("/")[0], int(n.split("/")[1]), n)):
            name, index, key = full_name.split("/")
            layers = params.setdefault(name, [])
            while len(layers) <= int(index):
                layers.append({})
            layers[int(index)][key] = jnp.asarray(data[full_name])
    return params


def save_json(path: Path, payload) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=True) + "\n")
