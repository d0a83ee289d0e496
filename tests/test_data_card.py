"""SMAX dataset cards: a dataset that disagrees with its card is an error, never a smaller dataset."""

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("jaxmarl")
import smax_testing  # noqa: F401  (fast compiles)
from inspo.cli import main
from inspo.data.buffer import DatasetError
from inspo.data.card import load_dataset, verify_card
from inspo.smax.tiers import DataConfig, make_dataset


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    root = tmp_path_factory.mktemp("smax")
    return make_dataset(
        DataConfig(map_name="3m", tier="scripted", episodes=12, eps=0.2, root=root), log=lambda message: None
    )


@pytest.fixture
def copy(scripted, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(scripted, target)
    return target


def test_card_matches_the_data(scripted, capsys):
    arrays, meta = load_dataset(scripted)
    card = meta["card"]
    assert isinstance(arrays["obs"], np.memmap)  # memory-mapped, not read into RAM
    assert card["episodes"] == arrays["obs"].shape[0] == 12
    assert card["transitions"] == int(arrays["filled"].sum())
    returns = (arrays["reward"][..., 0] * arrays["filled"][..., 0]).sum(1)
    assert card["return_mean"] == pytest.approx(returns.mean(), abs=1e-5)
    assert card["return_std"] == pytest.approx(returns.std(), abs=1e-5)
    assert 0.0 <= card["win_rate"] <= 1.0 and card["tier"] == "scripted" and card["seed"] == 0
    assert card["behaviour"] == dict(kind="jaxmarl-heuristic", eps=0.2, attack_mode="closest")
    assert card["generator"].startswith("inspo.smax") and card["versions"]["jaxmarl"] == "0.2.0"
    assert main(["data", "check", str(scripted), "--hashes"]) == 0
    assert json.loads(capsys.readouterr().out)["episodes"] == 12


def test_truncated_file_is_an_error(copy):
    path = copy / "obs.npy"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 4096])
    with pytest.raises(DatasetError, match="obs"):
        load_dataset(copy)
    assert main(["data", "check", str(copy)]) == 1


def test_fewer_episodes_than_the_card_is_an_error(copy):
    arrays, meta = load_dataset(copy, mmap=False)
    meta["episodes_in_buffer"] = 10  # a reader would otherwise silently see a smaller dataset
    (copy / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DatasetError, match="episodes"):
        load_dataset(copy)


def test_changed_rewards_are_an_error(copy):
    reward = np.load(copy / "reward.npy")
    reward[0, 0, 0] += 0.5  # same file size, different data
    np.save(copy / "reward.npy", reward)
    with pytest.raises(DatasetError, match="return_mean"):
        load_dataset(copy)


def test_hashes_catch_a_changed_observation(copy):
    obs = np.load(copy / "obs.npy")
    obs[0, 0, 0, 0] += 1.0
    np.save(copy / "obs.npy", obs)
    load_dataset(copy)  # sizes and statistics still agree ...
    with pytest.raises(DatasetError, match="sha256"):
        load_dataset(copy, hashes=True)  # ... the digests do not


def test_missing_card_is_an_error(scripted):
    arrays, meta = load_dataset(scripted)
    with pytest.raises(DatasetError, match="no dataset card"):
        verify_card(arrays, {k: v for k, v in meta.items() if k != "card"})
    wrong = json.loads(json.dumps(meta))
    wrong["card"]["n_agents"] = 5
    with pytest.raises(DatasetError, match="n_agents"):
        verify_card(arrays, wrong)
