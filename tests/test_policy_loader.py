"""inspo.load_policy(run_dir): a run folder's trained policy in one call, the same function `inspo eval` builds
by hand from the environment's sizes; a folder that is not a run folder is refused with one line naming it."""

import json

import pytest
import torch

import inspo
from inspo.envs import make_env
from inspo.loop import train, train_seeds
from inspo.nets import make_policy_net, policy_fn
from inspo.runfolder import RunFolderError, load_checkpoint, policy_state
from train_testing import tiny


def trained(tmp_path, name, **overrides):
    config = tiny("bc", 0, env="bridge", steps=20, **overrides)
    train(config, out_dir=tmp_path / name, progress=False)
    return config, tmp_path / name


def hand_built_policy(config, folder):
    """What the README had users type: the environment's sizes, the checkpoint's weights."""
    env = make_env(config)
    actor = make_policy_net(config, env.n_agents, env.obs_dim, env.n_actions)
    actor.load_state_dict(policy_state(load_checkpoint(folder)))
    return policy_fn(actor), env


@pytest.mark.parametrize("share_parameters", [False, True])
def test_the_loaded_policy_is_the_runs_actor(tmp_path, share_parameters):
    config, folder = trained(tmp_path, "run", share_parameters=share_parameters, hidden=(8, 6))
    expected, env = hand_built_policy(config, folder)
    policy = inspo.load_policy(folder)
    obs = torch.randn(7, env.n_agents, env.obs_dim)
    avail = torch.rand(7, env.n_agents, env.n_actions) < 0.8
    logits = policy(obs, avail)
    assert logits.shape == (7, env.n_agents, env.n_actions)
    assert torch.equal(logits, expected(obs, avail))
    assert not torch.equal(logits, policy(torch.randn_like(obs), avail))  # it reads the observations


def test_each_seed_folder_of_a_batched_run_loads_its_own_seed(tmp_path):
    configs = [tiny("bc", seed, env="bridge", steps=10) for seed in (0, 1)]
    train_seeds(configs, [tmp_path / "b" / f"seed{seed}" for seed in (0, 1)], progress=False)
    obs, avail = torch.randn(4, 2, 8), torch.ones(4, 2, 5, dtype=torch.bool)
    first, second = (inspo.load_policy(tmp_path / "b" / f"seed{seed}")(obs, avail) for seed in (0, 1))
    assert not torch.equal(first, second)
    with pytest.raises(RunFolderError, match=r"b is not a run folder .*seed folders seed0, seed1"):
        inspo.load_policy(tmp_path / "b")


def test_a_folder_that_is_not_a_run_folder_is_named(tmp_path):
    with pytest.raises(RunFolderError, match=f"{tmp_path / 'nothing'} is not a run folder"):
        inspo.load_policy(tmp_path / "nothing")
    (tmp_path / "config_only").mkdir()
    (tmp_path / "config_only" / "config.json").write_text("{}")
    with pytest.raises(RunFolderError, match=r"config_only is not a run folder \(no checkpoint.pt\)"):
        inspo.load_policy(tmp_path / "config_only")


def test_a_config_that_does_not_fit_the_checkpoint_is_named(tmp_path):
    _, folder = trained(tmp_path, "run")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "hidden": [8]}))
    with pytest.raises(RunFolderError, match=r"run: the checkpointed policy's hidden sizes \[8, 8\] differ .* \[8\]"):
        inspo.load_policy(folder)
    (folder / "config.json").write_text(json.dumps({**config, "share_parameters": True}))
    with pytest.raises(RunFolderError, match=r"run: the checkpointed policy does not fit config.json's network"):
        inspo.load_policy(folder)(torch.randn(4, 2, 6), torch.ones(4, 2, 5, dtype=torch.bool))


@pytest.mark.parametrize("share_parameters", [False, True])
def test_observations_of_the_wrong_shape_are_named(tmp_path, share_parameters):
    _, folder = trained(tmp_path, "run", share_parameters=share_parameters)
    policy = inspo.load_policy(folder)
    with pytest.raises(ValueError, match=r"obs must be \[B, .* for the policy of .*run, got \[4, 2, 7\]"):
        policy(torch.randn(4, 2, 7), torch.ones(4, 2, 5, dtype=torch.bool))
