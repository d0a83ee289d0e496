"""The tier pipeline at a tiny size: behaviour training with checkpoints, expert / medium /
medium-replay / mixed from one run, the scripted tier, and the trainer-facing SmaxTask."""

import dataclasses
import json

import jax
import numpy as np
import pytest

pytest.importorskip("jaxmarl")
import smax_testing  # noqa: F401  (fast compiles)
from inspo.data import TransitionStore
from inspo.data.card import load_dataset
from inspo.smax.env import make_core
from inspo.smax.ippo import PPOConfig, initial_params, read_progress
from inspo.smax.policies import load_params
from inspo.smax.tiers import (
    TRAINED_TIERS,
    DataConfig,
    ensure_behaviour,
    export_behaviour,
    make_tiers,
    pick_medium,
    replay_windows,
)

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it

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


def test_medium_replay_plays_every_training_window_with_its_opening_checkpoint(made):
    config, directories = made
    progress = read_progress(config.behaviour_dir)
    medium = pick_medium(progress, 0.5)
    arrays, meta = load_dataset(directories["medium-replay"])
    rows = [row for row in progress if row["update"] <= medium["update"]]
    expected = sum(row["training_episodes"] for row in rows)
    assert expected > 0 and meta["card"]["episodes"] == expected
    behaviour = meta["card"]["behaviour"]
    assert behaviour["until"]["checkpoint"].endswith(medium["checkpoint"])
    # window k (the episodes training played up to row k) is played by the checkpoint before it
    assert behaviour["windows"] == [
        dict(checkpoint=name, training_episodes=row["training_episodes"])
        for name, row in zip(["ckpt_000000.npz"] + [r["checkpoint"] for r in rows[:-1]], rows)
    ]
    filled = np.asarray(arrays["filled"][..., 0])
    lengths = filled.sum(1)
    assert all(filled[e, : lengths[e]].all() and not filled[e, lengths[e] :].any() for e in range(len(lengths)))
    assert len(TransitionStore.from_episode_buffer(arrays)) > 0  # actions available, values finite
    # 3m units start out of range, so nobody dies in 5 steps: every episode ends at the time limit, unterminated
    assert (lengths == LIMIT).all() and not np.asarray(arrays["terminated"]).any()
    assert np.abs(np.asarray(arrays["obs"][:, LIMIT])).sum((1, 2)).all()  # the final observation is kept
    first_states = np.asarray(arrays["state"][:, 0])
    assert len(np.unique(first_states, axis=0)) == len(first_states)  # each episode its own random start


def test_replay_windows_open_with_the_checkpoint_before_them():
    progress = [
        dict(update=u, checkpoint=f"ckpt_{u:06d}.npz", training_episodes=e) for u, e in ((10, 7), (20, 5), (30, 4))
    ]
    assert replay_windows(progress, progress[1]) == [("ckpt_000000.npz", 7), ("ckpt_000010.npz", 5)]
    assert replay_windows(progress, progress[0]) == [("ckpt_000000.npz", 7)]


def test_training_saves_its_initial_parameters(made):
    config, _ = made
    saved = load_params(config.behaviour_dir / "ckpt_000000.npz")
    drawn = initial_params(config.behaviour)
    for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(drawn)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_exported_behaviour_regenerates_every_tier_bit_for_bit_without_training(made, tmp_path):
    config, directories = made
    export = tmp_path / "export"
    names = export_behaviour(config.behaviour_dir, export)
    progress = read_progress(config.behaviour_dir)
    medium = pick_medium(progress, 0.5)
    needed = {medium["checkpoint"], progress[-1]["checkpoint"]} | {name for name, _ in replay_windows(progress, medium)}
    assert set(names) == {"config.json", "progress.jsonl", "final.json"} | needed
    assert set(json.loads((export / "files.json").read_text())) == set(names)
    again = dataclasses.replace(config, root=tmp_path / "root", behaviour_source=export)
    for tier, path in zip(TRAINED_TIERS, make_tiers(again, log=lambda message: None)):
        original = load_dataset(directories[tier])[1]["card"]["files"]
        assert load_dataset(path, hashes=True)[1]["card"]["files"] == original, tier
    assert not (tmp_path / "root" / "3m" / "seed3" / "behaviour-mappo").exists()  # nothing trained


def test_a_missing_or_unfinished_behaviour_source_is_named(made, tmp_path):
    config, _ = made
    with pytest.raises(ValueError, match="not a finished behaviour run"):
        ensure_behaviour(dataclasses.replace(config, behaviour_source=tmp_path))
    export = tmp_path / "export"
    export_behaviour(config.behaviour_dir, export)
    final = read_progress(config.behaviour_dir)[-1]["checkpoint"]
    (export / final).unlink()
    listed = json.loads((export / "files.json").read_text())
    with pytest.raises(ValueError, match=f"{final} is missing or differs from files.json"):
        make_tiers(dataclasses.replace(config, root=tmp_path / "r", behaviour_source=export), tiers=("expert",))
    del listed[final]  # a folder without the checkpoint in its list either
    (export / "files.json").write_text(json.dumps(listed))
    with pytest.raises(ValueError, match=f"checkpoint {final} is missing"):
        make_tiers(dataclasses.replace(config, root=tmp_path / "r", behaviour_source=export), tiers=("expert",))


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

    from inspo.cli import data as cli
    from inspo.smax.tiers import RECIPE_EPISODES, behaviour_config

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    config = cli._data_config(parser.parse_args(["make", "--env", "smax:2s3z", "--tier", "mixed"]), "mixed")
    assert config.episodes == RECIPE_EPISODES == 5000 and config.replay_episodes is None
    args = parser.parse_args(["make", "--env", "smax:5m_vs_6m", "--tier", "expert", "--episodes", "12"])
    assert cli._data_config(args, "expert").episodes == 12
    assert cli._data_config(args, "expert").behaviour.total_env_steps == 20_000_000
    args = parser.parse_args(["make", "--env", "smax:5m_vs_6m", "--tier", "expert", "--behaviour-steps", "81920"])
    assert cli._data_config(args, "expert").behaviour.total_env_steps == 81920
    assert behaviour_config("3m", 0).total_env_steps == 2_000_000


def test_an_interrupted_behaviour_run_resumes_from_its_last_checkpoint(made, tmp_path):
    import shutil

    from inspo.smax.ippo import ScheduleState, make_optimizer, resume_state

    config, _ = made
    interrupted = dataclasses.replace(config, root=tmp_path)
    shutil.copytree(config.behaviour_dir, interrupted.behaviour_dir)
    progress = read_progress(config.behaviour_dir)
    # killed after update 3: later checkpoints, rows and final.json never written
    (interrupted.behaviour_dir / "final.json").unlink()
    for row in progress[3:]:
        (interrupted.behaviour_dir / row["checkpoint"]).unlink()
    (interrupted.behaviour_dir / "progress.jsonl").write_text("".join(json.dumps(row) + "\n" for row in progress[:3]))
    ensure_behaviour(interrupted, log=lambda message: None)
    resumed = read_progress(interrupted.behaviour_dir)
    assert [row["update"] for row in resumed] == list(range(1, 7)) and resumed[:3] == progress[:3]
    assert resumed[3]["resumed_after_update"] == 3 and "resumed_after_update" not in resumed[4]
    assert (interrupted.behaviour_dir / "final.json").is_file()
    # the learning-rate schedule continues where it stood; Adam's moments start over
    behaviour = config.behaviour
    core = make_core(behaviour.map_name, behaviour.episode_limit)
    runner = resume_state(
        behaviour, core, make_optimizer(behaviour), config.behaviour_dir / progress[2]["checkpoint"], update=3
    )
    schedule = [s for s in jax.tree.leaves(runner.opt_state, is_leaf=lambda s: isinstance(s, ScheduleState))]
    counts = [int(s.count) for s in schedule if isinstance(s, ScheduleState)]
    assert counts == [3 * behaviour.epochs * behaviour.minibatches]
    np.testing.assert_array_equal(
        np.asarray(runner.params["actor"][0]["w"]),
        np.asarray(load_params(config.behaviour_dir / progress[2]["checkpoint"])["actor"][0]["w"]),
    )


def test_an_export_with_a_changed_file_is_refused_by_name(made, tmp_path):
    config, _ = made
    export = tmp_path / "export"
    export_behaviour(config.behaviour_dir, export)
    medium = pick_medium(read_progress(config.behaviour_dir), 0.5)["checkpoint"]
    with open(export / medium, "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ValueError, match=f"{medium} is missing or differs from files.json"):
        ensure_behaviour(dataclasses.replace(config, behaviour_source=export))
