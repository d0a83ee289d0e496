"""Training on a dataset alone (any shapes, no built-in environment), evaluation in a user environment,
and time-limit ends kept apart from terminals in the transition store."""

import json
import textwrap

import numpy as np
import pytest
import torch

from cli_testing import tiny_args
from data_testing import small_episodes, vault_rows, write_npy, write_vault
from inspo.cli import main
from inspo.config import TrainConfig, make_config
from inspo.data import TransitionStore
from inspo.envs.bridge import Bridge

TINY = tiny_args(log_every=5)


def shaped_dataset(agents=3, actions=4, obs_dim=6, state_dim=9):
    return small_episodes(seed=3, episodes=20, agents=agents, actions=actions, obs_dim=obs_dim, state_dim=state_dim)


@pytest.mark.parametrize("algo", ["inspo", "bc", "omiga", "cfcql"])
def test_a_dataset_of_any_shapes_trains_without_an_environment(tmp_path, capsys, algo):
    data = write_npy(tmp_path / "three_agents", shaped_dataset())
    out = tmp_path / "run"
    assert main(["train", "--dataset-path", str(data), "--algo", algo, "--steps", "10", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "dataset/three_agents" in printed and "evaluation skipped" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["scores"] == {} and results["config"]["env"] is None
    assert not (out / "eval.jsonl").exists()
    if algo != "bc":
        metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert [row["step"] for row in metrics] == [5, 10]
        assert all(np.isfinite(v) for row in metrics for v in row.values() if isinstance(v, float))
    assert main(["eval", str(out)]) == 2
    assert "dataset-only run" in capsys.readouterr().err


def test_a_vault_trains_memory_mapped_with_padded_actions(tmp_path, capsys):
    """Agent 2 has 2 of the 4 actions: its other two are unavailable in every mask (padding)."""
    pytest.importorskip("flashbax")
    arrays = shaped_dataset()
    arrays["avail_actions"][:, :, 2, 2:] = 0
    arrays["actions"][:, :, 2] %= 2
    np.put_along_axis(arrays["avail_actions"], arrays["actions"], 1, axis=-1)  # the taken action stays available
    vault = write_vault(tmp_path / "vaults", vault_rows(arrays))
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset-path",
                str(vault),
                "--steps",
                "10",
                "--set",
                "dataset_storage=mapped",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    from inspo.nets import make_policy_net, masked_log_softmax
    from inspo.runfolder import policy_state

    payload = torch.load(out / "checkpoint.pt", weights_only=False)
    config = TrainConfig.from_dict(payload["config"])
    actor = make_policy_net(config, 3, 6, 4)
    actor.load_state_dict(policy_state(payload))
    obs = torch.from_numpy(arrays["obs"][0, :4])
    avail = torch.from_numpy(arrays["avail_actions"][0, :4] != 0)
    probs = masked_log_softmax(actor.forward_seed(0, obs), avail).exp()
    assert torch.isfinite(probs[avail]).all() and (probs[:, 2, 2:] == 0).all()
    assert torch.allclose(probs.sum(-1), torch.ones(4, 3))


REPEATED_XOR_ENV = '''
"""A 50-step repeated XOR game: each step both agents pick A or B, payoff 1 for AB and BA, else 0;
the observation (and the state) is the one-hot previous joint action."""
import numpy as np
import torch

PAYOFF = np.array([[0.0, 1.0], [1.0, 0.0]])


class RepeatedXor:
    n_agents, n_actions, obs_dim, state_dim = 2, 2, 4, 4
    score_columns = (("greedy_return", "greedy return"),)

    def evaluate(self, policy, *, episodes, generator):
        previous, total = 0, 0.0
        for _ in range(50):
            obs = torch.zeros(1, 2, 4)
            obs[0, :, previous] = 1.0
            actions = policy(obs, torch.ones(1, 2, 2, dtype=torch.bool)).argmax(-1)[0].tolist()
            total += PAYOFF[actions[0], actions[1]]
            previous = 2 * actions[0] + actions[1]
        return {"greedy_return": total}


def make_env(config):
    return RepeatedXor()
'''


def repeated_xor_dataset(episodes=40, limit=50, seed=0):
    """AlberDICE-style XOR buffers: 50-step episodes of a repeated matrix game, one-hot observations
    of size 4, joint actions drawn from {AA, AB, BA}, the time-limit end flagged terminated and the
    final state stored, as PyMARL stores it."""
    rng = np.random.default_rng(seed)
    length = limit + 1
    joint = rng.integers(0, 3, size=(episodes, length))  # AA, AB, BA
    actions = np.stack([joint // 2, joint % 2], axis=-1)
    previous = np.concatenate([np.zeros((episodes, 1), int), 2 * actions[:, :-1, 0] + actions[:, :-1, 1]], axis=1)
    onehot = np.eye(4, dtype=np.float32)[previous]
    arrays = {
        "obs": np.repeat(onehot[:, :, None], 2, axis=2),
        "state": onehot,
        "actions": actions[..., None].astype(np.int64),
        "reward": (actions[..., 0] != actions[..., 1]).astype(np.float32)[..., None],
        "terminated": np.zeros((episodes, length, 1), np.uint8),
        "filled": np.ones((episodes, length, 1), np.int64),
        "avail_actions": np.ones((episodes, length, 2, 2), np.int32),
    }
    arrays["terminated"][:, limit - 1] = 1
    arrays["reward"][:, limit] = 0
    return arrays


def test_a_repeated_matrix_game_dataset_trains_and_evaluates_in_a_user_env(tmp_path, capsys, monkeypatch):
    (tmp_path / "repeated_xor.py").write_text(textwrap.dedent(REPEATED_XOR_ENV))
    monkeypatch.chdir(tmp_path)  # `--env repeated_xor:make_env` finds repeated_xor.py in the current folder
    data = write_npy(tmp_path / "xor_buffers", repeated_xor_dataset())
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--dataset-path",
                str(data),
                "--env",
                "repeated_xor:make_env",
                "--episode-limit",
                "50",
                "--steps",
                "10",
                "--out",
                str(out),
                *TINY,
            ]
        )
        == 0
    )
    assert "greedy return" in capsys.readouterr().out
    scores = json.loads((out / "results.json").read_text())["scores"]
    assert 0 <= scores["greedy_return"] <= 50
    assert [json.loads(line)["step"] for line in (out / "eval.jsonl").read_text().splitlines()] == [10]
    assert main(["eval", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == scores
    # a dataset-only run of the same data evaluates afterwards in the user env
    assert main(["train", "--dataset-path", str(data), "--steps", "4", "--out", str(tmp_path / "alone"), *TINY]) == 0
    assert main(["eval", str(tmp_path / "alone"), "--env", "repeated_xor:make_env", "--json"]) == 0
    assert "greedy_return" in capsys.readouterr().out.split("evaluation skipped")[-1]


def test_an_environment_of_other_sizes_or_an_unknown_module_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = write_npy(tmp_path / "xor_buffers", repeated_xor_dataset(episodes=4))
    assert main(["train", "--dataset-path", str(data), "--env", "xor", "--steps", "2", *TINY]) == 2
    assert "(2, 2, 4, 4), but xor expects (2, 2, 1, 1)" in capsys.readouterr().err
    assert main(["train", "--dataset-path", str(data), "--env", "no_such_module:make", "--steps", "2", *TINY]) == 2
    assert "no module 'no_such_module'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="needs dataset_path"):
        make_config(None)


def test_train_without_env_or_dataset_is_still_the_main_job(monkeypatch):
    import inspo.cli.train

    monkeypatch.setattr(inspo.cli.train, "run_default_job", lambda args, overrides: 7)
    assert main(["train"]) == 7


def test_time_limit_ends_flagged_terminal_bootstrap_with_an_episode_limit():
    """AlberDICE's Bridge data flags episodes cut at 50 steps terminated = 1 (the final state stored):
    read as flagged they never bootstrap; with episode_limit = 50 they are truncations whose next
    state is the stored final state, and the genuine terminals stay terminal."""
    arrays, _ = Bridge().generate_dataset("mixed", seed=0)
    cut = (arrays["filled"][..., 0].sum(axis=1) == 50) & (arrays["terminated"][..., 0].sum(axis=1) == 0)
    arrays["terminated"][cut, 49] = 1
    arrays["filled"][cut, 50] = 1  # PyMARL stores the final state
    at_limit = (~cut & (arrays["terminated"][:, 49, 0] != 0)).sum()  # genuine terminals on step 50
    as_flagged = TransitionStore.from_episode_buffer(arrays)
    assert as_flagged.done.sum() == 1000 and as_flagged.truncated.sum() == 0  # the old reading: all terminal
    store = TransitionStore.from_episode_buffer(arrays, episode_limit=50)
    assert store.done.sum() == 1000 - cut.sum() - at_limit
    # the genuine terminals at the limit look cut too: without a stored final state their step 50 is
    # dropped, and step 49 ends the episode as truncated (the rule's price, said in the summary)
    assert len(store) == len(as_flagged) - at_limit
    assert store.truncated.sum() == cut.sum() + at_limit and cut.sum() > 400
    rows = (store.truncated == 1).nonzero()[:, 0]
    pairs = {(s.numpy().tobytes(), n.numpy().tobytes()) for s, n in zip(store.state[rows], store.next_state[rows])}
    assert all((s.tobytes(), n.tobytes()) in pairs for s, n in zip(arrays["state"][cut, 49], arrays["state"][cut, 50]))


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    from pathlib import Path

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = readme.split("<!-- readme:python-example")[1].split("```python\n")[1].split("```")[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block, "README.md", "exec"), namespace)
    assert namespace["results"]["scores"] == {} and namespace["actions"].shape == (1, 2)
    assert (tmp_path / "runs" / "mine" / "metrics.csv").is_file()


def test_a_config_file_names_the_dataset_and_its_rule(tmp_path, capsys):
    data = write_npy(tmp_path / "xor_buffers", repeated_xor_dataset(episodes=6))
    config = tmp_path / "run.yaml"
    config.write_text(f"dataset_path: {data}\nepisode_limit: 50\nsteps: 4\nbc_steps: 5\nbatch_size: 32\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    saved = json.loads((out / "results.json").read_text())["config"]
    assert (saved["env"], saved["episode_limit"], saved["steps"]) == (None, 50, 4)
    assert "evaluation skipped" in capsys.readouterr().out
