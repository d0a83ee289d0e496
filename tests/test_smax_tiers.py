"""The tier pipeline at a tiny size: behaviour training with checkpoints, expert / medium /
medium-replay / mixed from one run, the scripted tier, and the trainer-facing SmaxTask."""
import json

import numpy as np
import pytest

pytest.importorskip("jaxmarl")

from inspo.data import TransitionStore  # noqa: E402
from inspo.smax.card import load_dataset  # noqa: E402
from inspo.smax.ippo import PPOConfig, read_progress  # noqa: E402
from inspo.smax.tiers import TRAINED_TIERS, DataConfig, ensure_behaviour, make_tiers, pick_medium  # noqa: E402

EPISODES = 6


def tiny_config(root, **changes) -> DataConfig:
    behaviour = PPOConfig(map_name="3m", seed=3, total_env_steps=8 * 16 * 6, num_envs=8, rollout_steps=16,
                          epochs=1, minibatches=2, hidden=16, layers=1, checkpoint_every=1, eval_episodes=8)
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
    assert [p["checkpoint"].rsplit("/", 1)[-1] for p in cards["expert"]["behaviour"]["parts"]] == \
        [progress[-1]["checkpoint"]]  # the final policy, never the best checkpoint
    assert [p["checkpoint"].rsplit("/", 1)[-1] for p in cards["medium"]["behaviour"]["parts"]] == \
        [medium["checkpoint"]]
    mixed_parts = cards["mixed"]["behaviour"]["parts"]
    assert [(p["checkpoint"].rsplit("/", 1)[-1], p["episodes"]) for p in mixed_parts] == \
        [(medium["checkpoint"], EPISODES // 2), (progress[-1]["checkpoint"], EPISODES - EPISODES // 2)]
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
    assert all(filled[e, : lengths[e]].all() and not filled[e, lengths[e]:].any() for e in range(len(lengths)))
    assert (np.asarray(arrays["terminated"]).sum((1, 2)) <= 1).all()
    assert len(TransitionStore.from_episode_buffer(arrays)) > 0  # actions available, values finite


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
    other = DataConfig(map_name="3m", seed=3, root=config.root,
                       behaviour=PPOConfig(map_name="3m", seed=3, total_env_steps=1000, num_envs=8))
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


def test_task_makes_the_scripted_tier_and_asks_for_trained_ones(tmp_path):
    from inspo.smax.task import SmaxTask

    task = SmaxTask("3m", root=tmp_path)
    arrays, meta = task.generate_dataset("scripted", seed=1)
    assert meta["card"]["episodes"] == 1000 and meta["card"]["behaviour"]["kind"] == "jaxmarl-heuristic"
    store = TransitionStore.from_episode_buffer(arrays)
    assert (store.n_agents, store.n_actions, store.obs_dim, store.state_dim) == \
        (task.n_agents, task.n_actions, task.obs_dim, task.state_dim)
    with pytest.raises(FileNotFoundError, match="inspo data make --env smax:3m --tier expert"):
        task.generate_dataset("expert", seed=1)
    with pytest.raises(ValueError):
        task.generate_dataset("random", seed=1)
