"""The SMAX adapter: shapes, masks, episode boundaries, bad actions, the torch hand-off, evaluation.

The exact time limit and the auto-reset of training rollouts are checked on the recorded PPO
rollouts in test_smax_tiers.py (one compile fewer)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("jaxmarl")
import jax.numpy as jnp
import torch

import smax_testing  # noqa: F401  (fast compiles)
from inspo.smax.env import SmaxVecEnv, smax_spec, to_torch

# a child runs outside the repository root, whose source folder inspo_ext/ would hide the installed package
CHILD_FOLDER = Path(__file__).resolve().parent

MOVE_ACTIONS, STOP = 5, 4  # actions 0-3 move, 4 stops, 5.. attack enemy (action - 5)


def random_available(avail: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    probs = avail.double().reshape(-1, avail.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).reshape(avail.shape[:-1])


def play(env: SmaxVecEnv, generator: torch.Generator, max_steps: int = 200):
    """Random available actions until every battle ended; returns the per-step outputs."""
    first = env.reset()
    current, steps = first, []
    while not env.all_done:
        out = env.step(random_available(current.avail, generator))
        steps.append(out)
        current = out.next
        assert len(steps) <= max_steps
    return first, steps


E = 16  # every test steps 16 battles of 3m, so the jitted reset and step compile once per session


@pytest.fixture(scope="module")
def env():
    return SmaxVecEnv("3m", num_envs=E, seed=0)


def test_map_sizes():
    for map_name, sizes in {
        "3m": (3, 75, 72, 8),
        "2s3z": (5, 127, 120, 10),
        "5m_vs_6m": (5, 140, 132, 11),
        "3s_vs_5z": (3, 101, 96, 10),
        "6h_vs_8z": (6, 179, 168, 13),
    }.items():
        spec = smax_spec(map_name)
        assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions) == sizes, map_name
        assert spec.episode_limit == 100 and spec.env_name == f"smax:{map_name}"


def test_shapes_and_dtypes(env):
    first = env.reset()
    assert first.obs.shape == (E, 3, 75) and first.obs.dtype == torch.float32
    assert first.state.shape == (E, 72) and first.state.dtype == torch.float32
    assert first.avail.shape == (E, 3, 8) and first.avail.dtype == torch.bool
    out = env.step(torch.full((E, 3), STOP))
    assert out.reward.shape == out.done.shape == out.won.shape == out.terminated.shape == (E,)
    assert out.reward.dtype == torch.float32 and out.done.dtype == torch.bool
    assert torch.isfinite(out.next.obs).all() and torch.isfinite(out.next.state).all()


def test_masks_follow_the_units(env):
    generator = torch.Generator().manual_seed(0)
    first, steps = play(env, generator)
    # at the start everyone is alive and out of range: move or stop, no attack
    assert first.avail[..., :MOVE_ACTIONS].all() and not first.avail[..., MOVE_ACTIONS:].any()
    avails = torch.stack([first.avail] + [s.next.avail for s in steps])  # [T+1, E, N, A]
    obs = torch.stack([first.obs] + [s.next.obs for s in steps])
    assert avails[..., STOP].all(), "stop must always be available (no all-zero mask)"
    # a dead agent (its observation is all zeros) can only stop
    dead = obs.abs().sum(-1) == 0
    assert dead.any(), "some agents should die in random battles"
    assert not avails[dead][:, :STOP].any() and not avails[dead][:, MOVE_ACTIONS:].any()
    assert avails[..., MOVE_ACTIONS:].any(), "attacks become available once enemies are in range"


def test_episode_boundaries_freeze_finished_battles(env):
    generator = torch.Generator().manual_seed(1)
    _, steps = play(env, generator)
    done = torch.stack([s.done for s in steps])  # [T, E]
    # done is monotone, and after it the battle is frozen: no reward, no new end, same observation
    assert (done[1:] >= done[:-1]).all() and done[-1].all()
    for t in range(1, len(steps)):
        was_done = done[t - 1]
        assert (steps[t].reward[was_done] == 0).all()
        assert not steps[t].won[was_done].any() and not steps[t].terminated[was_done].any()
        assert torch.equal(steps[t].next.obs[was_done], steps[t - 1].next.obs[was_done])
    ended = torch.stack([s.terminated for s in steps]).sum(0)
    assert (ended <= 1).all()
    won = torch.stack([s.won for s in steps])
    rewards = torch.stack([s.reward for s in steps])
    assert (rewards[won] >= 1.0).all(), "a win pays the 1.0 bonus on its step"
    assert (rewards[~won] < 1.0).all()


def test_bad_actions_raise(env):
    with pytest.raises(RuntimeError, match="before reset"):
        SmaxVecEnv("3m", num_envs=E).step(torch.zeros((E, 3), dtype=torch.long))
    env.reset()
    with pytest.raises(ValueError, match="actions: expected shape"):
        env.step(torch.zeros((E, 4), dtype=torch.long))
    with pytest.raises(ValueError, match="out of range"):
        env.step(torch.full((E, 3), 8))
    with pytest.raises(ValueError, match="integer"):
        env.step(torch.zeros((E, 3)))
    with pytest.raises(ValueError, match="not available"):
        env.step(torch.full((E, 3), 5))  # attack enemy 0, out of range at the start
    with pytest.raises(ValueError, match="unknown SMAX map"):
        SmaxVecEnv("4m", num_envs=1)


def test_torch_shares_jax_memory():
    array = jnp.arange(12.0, dtype=jnp.float32).reshape(3, 4)
    tensor = to_torch(array)
    assert tensor.data_ptr() == array.unsafe_buffer_pointer()
    assert torch.equal(tensor, torch.arange(12.0).reshape(3, 4))


def test_evaluation_protocol_reports_greedy_and_stochastic():
    from inspo.smax.task import SmaxTask

    task = SmaxTask("3m")

    def always_stop(obs, avail):  # a team that only stops never shoots: no damage, no win
        logits = torch.full(avail.shape, -5.0)
        logits[..., STOP] = 5.0
        return logits

    scores = task.evaluate(always_stop, episodes=E, generator=torch.Generator().manual_seed(0))
    for kind in ("greedy", "stochastic"):
        assert {f"{kind}_win_rate", f"{kind}_return", f"{kind}_return_std", f"{kind}_episode_length"} <= set(scores)
    assert scores["greedy_win_rate"] == 0.0 and scores["greedy_return"] == 0.0
    assert 1.0 <= scores["greedy_episode_length"] <= 100.0
    assert scores["stochastic_return"] >= 0.0


# imports a submodule first, as a user does; records XLA_FLAGS when JAX creates its backends
XLA_FLAGS_PROBE = """
import os
from jax._src import xla_bridge

seen = []
create = xla_bridge.backends


def backends():
    if not seen:
        seen.append(os.environ.get("XLA_FLAGS"))
    return create()


xla_bridge.backends = backends
import inspo.smax.rollout  # env and policies too
import jax.numpy as jnp

jnp.zeros(1).block_until_ready()
print(seen[0])
"""


def test_xla_flags_are_set_before_jax_creates_its_backend():
    """`inspo.smax` itself sets the one-thread XLA flags, so no submodule has to before importing jax."""
    environ = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "INSPO_JAX_THREADS")}
    probe = subprocess.run(
        [sys.executable, "-c", XLA_FLAGS_PROBE], cwd=CHILD_FOLDER, env=environ, capture_output=True, text=True
    )
    assert probe.returncode == 0, probe.stderr
    assert "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" in probe.stdout.splitlines()[-1]
