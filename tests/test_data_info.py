"""`inspo data info` (any format: sizes, ends, returns, Joint SACo, win rate, histogram) and
`inspo data convert` (lossless round trips between npy, h5 and vault)."""

import json

import numpy as np
import pytest
import torch

from data_testing import STORE_FIELDS, small_episodes, vault_rows, write_h5, write_npy, write_vault
from inspo.cli import main
from inspo.data import TransitionStore
from inspo.data.formats import build_store, read_dataset

pytest.importorskip("h5py")


def repeated_episodes():
    """small_episodes with episode 1 a copy of episode 0: repeated (state, joint action) pairs."""
    arrays = small_episodes()
    for array in arrays.values():
        array[1] = array[0]
    return arrays


def write_format(format, tmp_path, arrays, meta=None):
    if format == "npy":
        return write_npy(tmp_path / "npy", arrays, meta)
    if format == "h5":
        return write_h5(tmp_path / "data.h5", arrays)
    pytest.importorskip("flashbax")
    return write_vault(tmp_path / "vaults", vault_rows(arrays))


@pytest.mark.parametrize("format", ["npy", "h5", "vault"])
def test_info_prints_the_summary_and_writes_the_histogram(tmp_path, capsys, format):
    arrays = repeated_episodes()
    path = write_format(format, tmp_path, arrays)
    capsys.readouterr()  # flashbax's own messages
    png = tmp_path / "returns.png"
    assert main(["data", "info", str(path), "--histogram", str(png), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    store = TransitionStore.from_episode_buffer(arrays)
    assert (summary["agents"], summary["actions"], summary["obs_dim"], summary["state_dim"]) == (3, 4, 5, 6)
    assert (summary["episodes"], summary["transitions"]) == (12, len(store))
    # episodes 0, 1 (its copy), 2, 4, ... terminate, the other five are cut at the limit
    assert (summary["terminal_transitions"], summary["truncated_transitions"]) == (7, 5)
    assert (summary["terminal_episodes"], summary["truncated_episodes"]) == (7, 5)
    returns = (arrays["reward"][..., 0] * arrays["filled"][..., 0]).sum(axis=1)  # rewards after the end are 0
    assert summary["return_mean"] == pytest.approx(returns.mean(), rel=1e-6)
    assert summary["return_std"] == pytest.approx(returns.std(), rel=1e-5)
    assert (summary["return_min"], summary["return_max"]) == pytest.approx((returns.min(), returns.max()))
    pairs = {(s.numpy().tobytes(), a.numpy().tobytes()) for s, a in zip(store.state, store.actions)}
    assert len(pairs) < len(store)  # episode 1 repeats episode 0
    assert summary["joint_saco"] == pytest.approx(len(pairs) / len(store))
    assert png.read_bytes()[:4] == b"\x89PNG" and summary["histogram"] == str(png)
    assert main(["data", "info", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "joint SACo" in printed and "transitions   " in printed and "episode ends" in printed


def test_info_reports_the_win_rate_the_per_agent_actions_and_the_end_rule(tmp_path, capsys):
    arrays = small_episodes()
    arrays["avail_actions"][:, :, 2, 2:] = 0  # agent 2 has 2 of the 4 actions
    arrays["actions"][:, :, 2] %= 2
    np.put_along_axis(arrays["avail_actions"], arrays["actions"], 1, axis=-1)  # the taken action stays available
    path = write_npy(tmp_path / "npy", arrays, {"win_rate": 0.25})
    assert main(["data", "info", str(path), "--episode-limit", "7"]) == 0
    printed = capsys.readouterr().out
    assert "win rate      0.250" in printed
    assert "available per agent: 4, 4, 2" in printed
    assert "episode_limit = 7" in printed
    assert main(["data", "info", str(path)]) == 0
    assert "PyMARL convention" in capsys.readouterr().out


def test_info_hints_at_the_episode_limit_of_the_metadata(tmp_path, capsys):
    """AlberDICE-style data: the cut episodes flagged terminated at meta.json's episode_limit."""
    arrays = small_episodes()
    arrays["terminated"][arrays["terminated"][..., 0].sum(axis=1) == 0, 6] = 1
    path = write_npy(tmp_path / "npy", arrays, {"episode_limit": 7})
    assert main(["data", "info", str(path)]) == 0
    assert "6 episode(s) end flagged terminated at the metadata's episode_limit = 7" in capsys.readouterr().out
    assert main(["data", "info", str(path), "--episode-limit", "7"]) == 0
    printed = capsys.readouterr().out
    assert "metadata's episode_limit" not in printed and "terminal 6, truncated 6" in printed


def test_info_without_matplotlib_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    path = write_npy(tmp_path / "npy", small_episodes())
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    assert main(["data", "info", str(path), "--histogram", str(tmp_path / "h.png")]) == 2
    assert "--histogram needs matplotlib: pip install 'inspo[plots]'" in capsys.readouterr().err


def test_info_needs_no_matplotlib_and_writes_no_file_unasked(tmp_path, capsys, monkeypatch):
    path = write_npy(tmp_path / "npy", small_episodes())
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["data", "info", str(path)]) == 0
    assert "joint SACo" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no histogram in the current folder


def nan_reward(tmp_path):
    arrays = small_episodes()
    arrays["reward"][2, 1, 0] = np.nan
    return write_npy(tmp_path / "npy", arrays)


def truncated_vault_chunk(tmp_path):
    pytest.importorskip("flashbax")
    vault = write_vault(tmp_path / "vaults", vault_rows(small_episodes()))
    biggest = max((vault / "d").iterdir(), key=lambda file: file.stat().st_size)
    biggest.write_bytes(biggest.read_bytes()[:100])
    return vault


@pytest.mark.parametrize(
    "make, message",
    [
        (nan_reward, "reward has non-finite values (episode 2, step 1)"),
        (truncated_vault_chunk, "the vault's data cannot be read (a truncated or missing file under d/?)"),
    ],
    ids=["nan reward", "truncated vault chunk"],
)
def test_info_refuses_what_training_refuses(tmp_path, capsys, make, message):
    path = make(tmp_path)
    capsys.readouterr()
    assert main(["data", "info", str(path)]) == 2
    info_error = capsys.readouterr().err.strip()
    assert main(["train", "--dataset-path", str(path), "--steps", "2", "--out", str(tmp_path / "run")]) == 2
    train_error = capsys.readouterr().err.strip()
    for error in (info_error, train_error):
        assert len(error.splitlines()) == 1 and message in error, error
        assert "tensorstore_spec" not in error and len(error) < 400


def test_npy_to_h5_to_npy_is_byte_exact(tmp_path, capsys):
    arrays = small_episodes()
    arrays["actions_onehot"] = np.eye(4, dtype=np.float32)[arrays["actions"][..., 0]]
    source = write_npy(tmp_path / "src", arrays, {"env": "mine", "episode_limit": 7})
    assert main(["data", "convert", str(source), str(tmp_path / "d.h5"), "--to", "h5"]) == 0
    assert main(["data", "convert", str(tmp_path / "d.h5"), str(tmp_path / "back"), "--to", "npy"]) == 0
    back = read_dataset(tmp_path / "back")
    assert set(back.arrays) == set(arrays) and back.meta["env"] == "mine" and back.meta["episode_limit"] == 7
    for name, array in arrays.items():
        assert back.arrays[name].dtype == array.dtype and np.array_equal(back.arrays[name], array), name
    assert main(["data", "convert", str(source), str(tmp_path / "d.h5"), "--to", "h5"]) == 2  # exists
    assert "--overwrite" in capsys.readouterr().err
    assert main(["data", "convert", str(source), str(tmp_path / "d.h5"), "--to", "h5", "--overwrite"]) == 0


def test_npy_to_vault_to_npy_keeps_every_transition_and_flashbax_reads_our_vault(tmp_path):
    flashbax = pytest.importorskip("flashbax")
    arrays = small_episodes()
    arrays["actions_onehot"] = np.eye(4, dtype=np.float32)[arrays["actions"][..., 0]]
    source = write_npy(tmp_path / "src", arrays, {"env": "mine"})
    vault = tmp_path / "vaults" / "mine" / "v1"
    assert main(["data", "convert", str(source), str(vault), "--to", "vault"]) == 0
    assert main(["data", "convert", str(vault), str(tmp_path / "back"), "--to", "npy"]) == 0
    expected = TransitionStore.from_episode_buffer(arrays)
    for path in (vault, tmp_path / "back"):
        store = build_store(read_dataset(path))
        for name in STORE_FIELDS:
            assert torch.equal(getattr(store, name), getattr(expected, name)), (path, name)
    back = read_dataset(tmp_path / "back")
    assert back.meta["env"] == "mine"

    def real(data):  # the filled steps up to the episode's end (PyMARL's state stored after a terminal is not)
        terminated = data["terminated"][..., 0]
        return (data["filled"][..., 0] != 0) & ~(np.cumsum(terminated, axis=1) - terminated > 0)

    assert real(back.arrays).sum() == real(arrays).sum()
    assert np.array_equal(back.arrays["actions_onehot"][real(back.arrays)], arrays["actions_onehot"][real(arrays)])
    # flashbax opens what we wrote: the same observations, row for row
    experience = (
        flashbax.vault.Vault(vault_name="mine", rel_dir=str(tmp_path / "vaults"), vault_uid="v1").read().experience
    )
    ours = read_dataset(vault).arrays["obs"][0:12]
    assert np.array_equal(np.asarray(experience["observations"][0]), ours[ours.any(axis=(2, 3))])


def test_vault_to_npy_to_vault_keeps_the_leaves(tmp_path):
    flashbax = pytest.importorskip("flashbax")
    rows = vault_rows(small_episodes())
    first = write_vault(tmp_path / "vaults", rows, name="og", uid="u")
    assert main(["data", "convert", str(first), str(tmp_path / "npy"), "--to", "npy"]) == 0
    assert (
        main(["data", "convert", str(tmp_path / "npy"), str(tmp_path / "vaults" / "og" / "again"), "--to", "vault"])
        == 0
    )
    again = flashbax.vault.Vault(vault_name="og", rel_dir=str(tmp_path / "vaults"), vault_uid="again").read().experience
    for leaf in ("observations", "actions", "rewards", "terminals", "truncations"):
        assert np.array_equal(np.asarray(again[leaf]), rows[leaf]), leaf
    for leaf in ("legals", "state"):
        assert np.array_equal(np.asarray(again["infos"][leaf]), rows["infos"][leaf]), leaf


def test_convert_with_an_episode_limit_stores_the_truncations(tmp_path):
    """AlberDICE-style data (episodes cut at the limit flagged terminated, the final state stored): the
    vault written with --episode-limit keeps them as truncations, read back without any flag."""
    pytest.importorskip("tensorstore")
    arrays = small_episodes()
    cut = arrays["terminated"][..., 0].sum(axis=1) == 0
    arrays["terminated"][cut, 6] = 1
    source = write_npy(tmp_path / "alberdice", arrays)
    assert build_store(read_dataset(source)).done.sum() == 12  # as flagged: all terminal
    assert main(["data", "convert", str(source), str(tmp_path / "vault"), "--to", "vault", "--episode-limit", "7"]) == 0
    store = build_store(read_dataset(tmp_path / "vault"))
    assert store.done.sum() == 6 and store.truncated.sum() == 6
    expected = TransitionStore.from_episode_buffer(arrays, episode_limit=7)
    assert torch.equal(store.next_state, expected.next_state) and torch.equal(store.done, expected.done)


def test_the_smax_subcommands_stay_under_inspo_data(tmp_path, capsys):
    path = write_npy(tmp_path / "npy", small_episodes())
    assert main(["data", "check", str(path)]) == 1  # the SMAX check: no SMAX dataset card here
    assert "dataset card" in capsys.readouterr().err
