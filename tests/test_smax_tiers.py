"""The tier pipeline at a tiny size: behaviour training with checkpoints, expert / medium /
medium-replay / mixed from one run, the scripted tier, and the trainer-facing SmaxTask."""

import json

import numpy as np
import pytest

pytest.importorskip("jaxmarl")
import smax_testing  # noqa: F401  (fast compiles)
from inspo.data import TransitionStore
from inspo.data.card import load_dataset
from inspo.smax.ippo import PPOConfig, read_progress
from inspo.smax.tiers import TRAINED_TIERS, DataConfig, ensure_behaviour, make_tiers, pick_medium

EPISODES = 8  # = eval_episodes below: the evaluations and the datasets share one compiled rollout
LIMIT = 5  # time limit of the tiny battles: PPO's 16-step rollouts cross episode ends and rollout ends


def tiny_config(root, **changes) -> DataConfig:
    behaviour = PPOConfig(
        map_name="3m",
        seed=3,
        total_env_steps=8 * 16 * 6,
        num_envs=8,
        rollout_steps=16,
        epochs=1,
        minibatches=2,
        hidden=16,
        layers=1,
        checkpoint_every=1,
        eval_episodes=8,
        episode_limit=LIMIT,
    )
    return DataConfig(map_name="3m", seed=3, episodes=EPISODES, root=root, behaviour=behaviour, **changes)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    config = tiny_config(tmp_path_factory.mktemp("smax"))
    directories = make_tiers(config, log=lambda message: None)
    return config, dict(zip(TRAINED_TIERS, directories))


def test_behaviour_run_keeps_every_checkpoint(made):
    config, _ = made
    progress = read_progress(config.behaviour_dir)
    assert [row["update"] for row in progress] == list(range(1, 7))
    for row in progress:
        assert (config.behaviour_dir / row["checkpoint"]).is_file()
        assert 0.0 <= row["stochastic_win_rate"] <= 1.0 and 0.0 <= row["greedy_win_rate"] <= 1.0
    assert json.loads((config.behaviour_dir / "final.json").read_text())["checkpoint"] == progress[-1]["checkpoint"]


def test_tiers_use_the_final_and_the_medium_checkpoints(made):
    config, directories = made
    progress = read_progress(config.behaviour_dir)
    medium = pick_medium(progress, 0.5)
    cards = {tier: load_dataset(path)[1]["card"] for tier, path in directories.items()}
    for tier in ("expert", "medium", "mixed"):
        assert cards[tier]["episodes"] == EPISODES and cards[tier]["tier"] == tier
    assert [p["checkpoint"].rsplit("/", 1)[-1] for p in cards["expert"]["behaviour"]["parts"]] == [
        progress[-1]["checkpoint"]
    ]  # the final policy, never the best checkpoint
    assert [p["checkpoint"].rsplit("/", 1)[-1] for p in cards["medium"]["behaviour"]["parts"]] == [medium["checkpoint"]]
    mixed_parts = cards["mixed"]["behaviour"]["parts"]
    assert [(p["checkpoint"].rsplit("/", 1)[-1], p["episodes"]) for p in mixed_parts] == [
        (medium["checkpoint"], EPISODES // 2),
        (progress[-1]["checkpoint"], EPISODES - EPISODES // 2),
    ]
    for card in cards.values():
        assert card["behaviour_config"]["seed"] == 3 and card["seed"] == 3


def test_medium_replay_holds_every_training_episode_until_medium(made):
    config, directories = made
    progress = read_progress(config.behaviour_dir)
    medium = pick_medium(progress, 0.5)
    arrays, meta = load_dataset(directories["medium-replay"])
    expected = sum(row["training_episodes"] for row in progress if row["update"] <= medium["update"])
    assert expected > 0 and meta["card"]["episodes"] == expected
    assert meta["card"]["behaviour"]["until"]["checkpoint"].endswith(medium["checkpoint"])
    # the stitched episodes have the buffer layout: contiguous filled steps, one end flag at most
    filled = np.asarray(arrays["filled"][..., 0])
    lengths = filled.sum(1)
    assert all(filled[e, : lengths[e]].all() and not filled[e, lengths[e] :].any() for e in range(len(lengths)))
    assert (np.asarray(arrays["terminated"]).sum((1, 2)) <= 1).all()
    assert len(TransitionStore.from_episode_buffer(arrays)) > 0  # actions available, values finite
    # PPO's auto-reset at the time limit: 3m units start out of range, so nobody dies in 5 steps and
    # every episode ends at exactly LIMIT steps, unterminated (a time limit is not a terminal state);
    # an episode cut by the end of a 16-step rollout is stitched to its rest from the next rollout
    assert (lengths == LIMIT).all() and not np.asarray(arrays["terminated"]).any()
    assert meta["card"]["episode_limit"] == LIMIT and arrays["obs"].shape[1] == LIMIT + 1
    assert np.abs(np.asarray(arrays["obs"][:, LIMIT])).sum((1, 2)).all()  # the final observation is kept
    # each episode begins a fresh battle (all alive, out of range: move or stop, no attack) at its
    # own random start
    avail = np.asarray(arrays["avail_actions"][:, 0]) != 0
    assert avail[..., :5].all() and not avail[..., 5:].any()
    first_states = np.asarray(arrays["state"][:, 0])
    assert len(np.unique(first_states, axis=0)) == len(first_states)


def test_generation_is_deterministic_and_training_is_reused(made, tmp_path):
    config, directories = made
    stamp = (config.behaviour_dir / "config.json").stat().st_mtime_ns
    again = tiny_config(config.root, tier="expert", out=tmp_path / "expert")
    from inspo.smax.tiers import make_dataset

    make_dataset(again, log=lambda message: None)
    assert (config.behaviour_dir / "config.json").stat().st_mtime_ns == stamp  # not retrained
    first, _ = load_dataset(directories["expert"])
    second, _ = load_dataset(tmp_path / "expert")
    for name in first:
        assert np.array_equal(first[name], second[name]), name
    other = DataConfig(
        map_name="3m",
        seed=3,
        root=config.root,
        behaviour=PPOConfig(map_name="3m", seed=3, total_env_steps=1000, num_envs=8),
    )
    with pytest.raises(ValueError, match="different config"):
        ensure_behaviour(other, log=lambda message: None)
    with pytest.raises(FileExistsError):
        make_dataset(again, log=lambda message: None)


def test_pick_medium_takes_the_first_checkpoint_near_half():
    # expert (final) return 2.0 -> target 1.0; the first checkpoint reaching it is update 3 (1.5);
    # among updates 1..3 the closest to 1.0 is update 2; the later dip (update 4) is not considered
    rows = [dict(update=u, stochastic_return=r) for u, r in [(1, 0.2), (2, 0.95), (3, 1.5), (4, 1.0), (5, 2.0)]]
    assert pick_medium(rows, 0.5)["update"] == 2
    rows[1]["stochastic_return"] = 0.6  # now update 3 (|1.5 - 1.0| = 0.5 > 0.4) ... and 0.6 is 0.4 away
    assert pick_medium(rows, 0.5)["update"] == 2
    rows[1]["stochastic_return"] = 0.4
    assert pick_medium(rows, 0.5)["update"] == 3


def test_actor_policy_is_greedy_or_stochastic_by_argument():
    import jax
    import jax.numpy as jnp

    from inspo.smax.env import Observation
    from inspo.smax.policies import actor_critic_policy, actor_params, masked_logits

    rng = np.random.default_rng(0)
    n_agents, obs_dim, n_actions = 3, 75 - 3, 8  # the actor's input is obs + one-hot agent id
    weights = rng.normal(size=(obs_dim + n_agents, n_actions)).astype(np.float32)
    avail = rng.random((n_agents, n_actions)) < 0.6
    avail[:, 4] = True
    observation = Observation(
        jnp.asarray(rng.normal(size=(n_agents, obs_dim)), jnp.float32), jnp.zeros(1), jnp.asarray(avail)
    )
    act = jax.jit(actor_critic_policy().act)
    keys = jax.random.split(jax.random.PRNGKey(1), 40)

    # nearly uniform logits: samples vary from key to key, the greedy action does not
    network = {"actor": [{"w": jnp.asarray(weights * 1e-3), "b": jnp.zeros(n_actions)}]}
    greedy = np.stack([act(actor_params(network, True), key, (), observation)[0] for key in keys])
    assert (greedy == np.asarray(jnp.argmax(masked_logits(network, observation), -1))).all()
    sampled = np.stack([act(actor_params(network, False), key, (), observation)[0] for key in keys])
    assert len(np.unique(sampled, axis=0)) > 1
    assert np.take_along_axis(avail[None], sampled[..., None], -1).all()  # available actions only


def test_task_makes_the_scripted_tier_and_asks_for_trained_ones(tmp_path):
    from inspo.smax.task import SmaxTask

    task = SmaxTask("3m", root=tmp_path, scripted_episodes=12)  # = the card tests' size: one compile
    arrays, meta = task.generate_dataset("scripted", seed=1)
    assert meta["card"]["episodes"] == 12 and meta["card"]["behaviour"]["kind"] == "jaxmarl-heuristic"
    store = TransitionStore.from_episode_buffer(arrays)
    assert (store.n_agents, store.n_actions, store.obs_dim, store.state_dim) == (
        task.n_agents,
        task.n_actions,
        task.obs_dim,
        task.state_dim,
    )
    with pytest.raises(FileNotFoundError, match="inspo data make --env smax:3m --tier expert"):
        task.generate_dataset("expert", seed=1)
    with pytest.raises(ValueError):
        task.generate_dataset("random", seed=1)


def test_recipe_sizes_are_the_defaults_of_data_make():
    """CFCQL's recipe: 5,000 episodes per tier (mixed: half of each), medium-replay uncapped; the harder
    maps' behaviour budget is a preset that --behaviour-steps overrides."""
    import argparse

    from inspo.smax import cli
    from inspo.smax.tiers import RECIPE_EPISODES, behaviour_config

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config = cli._data_config(parser.parse_args(["make", "--env", "smax:2s3z", "--tier", "mixed"]), "mixed")
    assert config.episodes == RECIPE_EPISODES == 5000 and config.replay_episodes is None
    args = parser.parse_args(["make", "--env", "smax:5m_vs_6m", "--tier", "expert", "--episodes", "12"])
    assert cli._data_config(args, "expert").episodes == 12
    assert cli._data_config(args, "expert").behaviour.total_env_steps == 10_000_000
    args = parser.parse_args(["make", "--env", "smax:5m_vs_6m", "--tier", "expert", "--behaviour-steps", "81920"])
    assert cli._data_config(args, "expert").behaviour.total_env_steps == 81920
    assert behaviour_config("3m", 0).total_env_steps == 2_000_000
