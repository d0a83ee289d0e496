"""The three dataset formats, each written with its own library (numpy, h5py, flashbax) and read back:
the same transitions as the arrays they came from, lazily read, and every malformed file of
tests/test_data_buffer.py per format with an error naming the file and the field."""

import numpy as np
import pytest
import torch

from data_testing import STORE_FIELDS, small_episodes, vault_rows, write_h5, write_npy, write_vault
from inspo.data import DatasetError, TransitionStore
from inspo.data.formats import build_store, detect_format, read_dataset

pytest.importorskip("h5py")


def needs_flashbax():
    return pytest.importorskip("flashbax")


def write(format, tmp_path, arrays):
    if format == "npy":
        return write_npy(tmp_path / "npy", arrays)
    if format == "h5":
        return write_h5(tmp_path / "data.h5", arrays)
    needs_flashbax()
    return write_vault(tmp_path / "vaults", vault_rows(arrays))


def assert_same_transitions(a, b, rows=None):
    for name in STORE_FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        if rows is not None:
            left, right = left[rows], right[rows]
        assert torch.equal(left, right), name


@pytest.mark.parametrize("format", ["npy", "h5", "vault"])
def test_each_format_reads_the_transitions_of_its_arrays(tmp_path, format):
    arrays = small_episodes()
    path = write(format, tmp_path, arrays)
    assert detect_format(path) == format
    dataset = read_dataset(path)
    expected = TransitionStore.from_episode_buffer(arrays)
    assert expected.done.sum() == 6 and expected.truncated.sum() == 6  # half terminal, half cut at the limit
    assert_same_transitions(build_store(dataset), expected)
    # memory-mapped runs gather minibatches from the lazy arrays: the same rows
    mapped = build_store(read_dataset(path), mapped=True)
    rows = torch.randperm(len(expected), generator=torch.Generator().manual_seed(0))[:40]
    assert_same_transitions(mapped.index(rows), expected.index(rows))
    if format != "npy":  # streamed: the large fields are never numpy arrays in RAM
        assert not isinstance(dataset.arrays["obs"], np.ndarray)


def test_hdf5_keeps_extra_datasets_and_reads_chunks(tmp_path):
    arrays = small_episodes(episodes=30)
    arrays["probs"] = np.random.default_rng(1).random((30, 8, 3, 4)).astype(np.float32)  # CFCQL stores these
    dataset = read_dataset(write_h5(tmp_path / "cfcql.h5", arrays))
    assert np.array_equal(dataset.arrays["probs"][3:7], arrays["probs"][3:7])
    store = TransitionStore.from_episode_buffer(dataset.arrays, chunk=4)  # 8 blocks of episodes
    assert_same_transitions(store, TransitionStore.from_episode_buffer(arrays))


def test_vault_ends_follow_og_marl(tmp_path):
    """Terminals end an episode; a truncated step has no stored next observation (the next row is the
    next episode's first), so it is dropped, never bootstrapped from another episode; the vault's
    last, unfinished episode likewise; per-agent equal rewards are the team reward."""
    needs_flashbax()
    rng = np.random.default_rng(0)
    rows, agents, actions = 11, 2, 3
    ends = {"terminals": [3], "truncations": [7]}  # episodes: rows 0-3 terminal, 4-7 truncated, 8-10 unfinished
    flags = {key: np.zeros((1, rows, agents), bool) for key in ends}
    for key, at in ends.items():
        flags[key][0, at] = True
    observations = rng.normal(size=(1, rows, agents, 4)).astype(np.float32)
    experience = {
        "observations": observations,
        "actions": rng.integers(0, actions, (1, rows, agents)).astype(np.int32),
        "rewards": np.repeat(np.arange(rows, dtype=np.float32)[None, :, None], agents, axis=2),
        **flags,
        "infos": {
            "legals": np.ones((1, rows, agents, actions), bool),
            "state": rng.normal(size=(1, rows, 5)).astype(np.float32),
        },
    }
    dataset = read_dataset(write_vault(tmp_path, experience))
    store = build_store(dataset)
    # kept: rows 0-3 (3 terminal), rows 4-6 (7 truncated without a next row: dropped), rows 8-9
    assert len(store) == 4 + 3 + 2
    assert store.done.tolist() == [0, 0, 0, 1] + [0] * 5
    assert store.reward.tolist() == [0, 1, 2, 3, 4, 5, 6, 8, 9]
    assert torch.equal(store.next_obs[4], torch.from_numpy(observations[0, 5]))  # within the episode
    assert torch.equal(store.obs[7], torch.from_numpy(observations[0, 8]))
    assert dataset.arrays["truncated"][:, :, 0].sum() == 1 and "unfinished" in " ".join(dataset.notes)


def test_vault_sums_differing_agent_rewards_and_says_so(tmp_path):
    needs_flashbax()
    experience = vault_rows(small_episodes())
    experience["rewards"] = experience["rewards"] * np.array([1.0, 2.0, 0.5], np.float32)
    dataset = read_dataset(write_vault(tmp_path, experience))
    assert any("sum" in note for note in dataset.notes)
    expected = TransitionStore.from_episode_buffer(small_episodes())
    assert torch.allclose(build_store(dataset).reward, expected.reward * 3.5)


def test_vault_name_folder_with_one_vault_is_found_and_with_two_is_refused(tmp_path):
    needs_flashbax()
    experience = vault_rows(small_episodes())
    write_vault(tmp_path, experience, uid="a")
    assert read_dataset(tmp_path / "data").format == "vault"
    write_vault(tmp_path, experience, uid="b")
    with pytest.raises(DatasetError, match="holds 2 vaults"):
        read_dataset(tmp_path / "data", "vault")


# ---- malformed files: each of test_data_buffer.py's cases per format; the error names file and field ----
def _drop(arrays, name):
    del arrays[name]


def _set(arrays, name, index, value):
    arrays[name][index] = value


def _mask_taken(avail, actions, index):
    """The action taken at `index` (episode/row, step, agent) unavailable, every other one available."""
    avail[index] = 1
    avail[index + (int(actions[index]),)] = 0


# case -> (change to the episode arrays (npy, h5), change to the vault experience, field named per format)
MALFORMED = {
    "missing field": (
        lambda a: _drop(a, "reward"),
        lambda x: _drop(x, "rewards"),
        {"npy": "reward", "h5": "reward", "vault": "rewards"},
    ),
    "mismatched shapes": (
        lambda a: a.update(state=a["state"][:5]),
        lambda x: x["infos"].update(legals=np.concatenate([x["infos"]["legals"]] * 2, axis=2)),
        {"npy": "state", "h5": "state", "vault": "infos.legals"},
    ),
    "wrong rank": (
        lambda a: a.update(actions=a["actions"][..., 0]),
        lambda x: x.update(actions=x["actions"][..., None]),
        {"npy": "actions", "h5": "actions", "vault": "actions"},
    ),
    "wrong dtype": (
        lambda a: a.update(actions=a["actions"].astype(np.float32)),
        lambda x: x.update(actions=x["actions"].astype(np.float32)),
        {"npy": "actions", "h5": "actions", "vault": "actions"},
    ),
    "action out of range": (
        lambda a: _set(a, "actions", (1, 0, 2, 0), 4),
        lambda x: _set(x, "actions", (0, 9, 2), 4),
        {"npy": "'actions.npy'.*outside", "h5": "'/actions'.*outside", "vault": "'actions'.*outside"},
    ),
    "masked action": (
        lambda a: _mask_taken(a["avail_actions"], a["actions"][..., 0], (1, 0, 0)),
        lambda x: _mask_taken(x["infos"]["legals"], x["actions"], (0, 9, 0)),
        {
            "npy": "'avail_actions.npy'.*not available",
            "h5": "'/avail_actions'.*not available",
            "vault": "'infos.legals'.*not available",
        },
    ),
    "non-finite reward": (
        lambda a: _set(a, "reward", (3, 0, 0), np.nan),
        lambda x: _set(x, "rewards", (0, 9), np.nan),
        {"npy": "'reward.npy'.*non-finite", "h5": "'/reward'.*non-finite", "vault": "'rewards'.*non-finite"},
    ),
    "non-finite observation": (
        lambda a: _set(a, "obs", (3, 1, 0, 0), np.inf),
        lambda x: _set(x, "observations", (0, 9, 0, 0), np.inf),
        {"npy": "'obs.npy'.*non-finite", "h5": "'/obs'.*non-finite", "vault": "'observations'.*non-finite"},
    ),
}


@pytest.mark.parametrize("format", ["npy", "h5", "vault"])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_files_name_the_file_and_the_field(tmp_path, format, case):
    change_arrays, change_vault, field = MALFORMED[case]
    arrays = small_episodes()
    if format == "vault":
        needs_flashbax()
        experience = vault_rows(arrays)
        change_vault(experience)
        path = write_vault(tmp_path / "vaults", experience)
    else:
        change_arrays(arrays)
        path = write(format, tmp_path, arrays)
    with pytest.raises(DatasetError) as error:
        build_store(read_dataset(path, format))
    message = str(error.value)
    assert str(path) in message
    assert __import__("re").search(field[format], message), message


@pytest.mark.parametrize("format", ["npy", "h5", "vault"])
def test_empty_and_missing_datasets(tmp_path, format):
    arrays = small_episodes()
    if format == "vault":
        needs_flashbax()
        path = write_vault(tmp_path / "vaults", vault_rows(arrays), rows=0)
        pattern = "empty"
    else:
        arrays["filled"][:] = 0
        path = write(format, tmp_path, arrays)
        pattern = "no usable transitions"
    with pytest.raises(DatasetError, match=pattern) as error:
        build_store(read_dataset(path, format))
    assert str(path) in str(error.value)
    with pytest.raises(DatasetError, match="does not exist"):
        read_dataset(tmp_path / "nowhere", format if format != "h5" else "auto")


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("not a dataset")
    with pytest.raises(DatasetError, match="is a file, not an episode-buffer directory, and not an HDF5"):
        read_dataset(tmp_path / "notes.txt")
    with pytest.raises(DatasetError, match="cannot be read as HDF5"):
        read_dataset(tmp_path / "notes.txt", "h5")
    with pytest.raises(DatasetError, match="cannot tell the dataset format"):
        read_dataset(tmp_path)


def test_vault_batch_rows_are_separate_episode_streams(tmp_path):
    needs_flashbax()
    first, second = vault_rows(small_episodes(seed=0)), vault_rows(small_episodes(seed=0))
    rows = first["observations"].shape[1]

    def stack(a, b):
        return {k: stack(a[k], b[k]) if isinstance(a[k], dict) else np.concatenate([a[k], b[k]]) for k in a}

    dataset = read_dataset(write_vault(tmp_path, stack(first, second), rows=rows))
    store, single = build_store(dataset), TransitionStore.from_episode_buffer(small_episodes(seed=0))
    assert dataset.arrays["filled"].shape[0] == 24 and len(store) == 2 * len(single)
    assert torch.equal(store.next_obs, torch.cat([single.next_obs, single.next_obs]))


# ---- errors that name the thing at fault -------------------------------------------------------------------
def test_a_shorter_time_axis_names_the_array_that_has_it(tmp_path):
    arrays = small_episodes()
    arrays["obs"] = arrays["obs"][:, :-1]
    with pytest.raises(DatasetError) as error:
        read_dataset(write_npy(tmp_path / "npy", arrays))
    assert error.value.field == "obs"
    assert (
        "array 'obs' has T+1 = 7 but 'state', 'actions', 'reward', 'terminated', 'filled', 'avail_actions' have T+1 = 8"
        in str(error.value)
    )


def test_a_file_of_random_bytes_is_not_a_npy_file(tmp_path):
    path = write_npy(tmp_path / "npy", small_episodes())
    (path / "reward.npy").write_bytes(np.random.default_rng(0).bytes(512))
    with pytest.raises(DatasetError) as error:
        read_dataset(path)
    assert str(error.value).endswith(
        f"array 'reward' ({path / 'reward.npy'}) is not a .npy file: it does not start with the .npy signature "
        "(another format, or damaged bytes)"
    )
    assert "pickle" not in str(error.value)


def test_a_vault_without_its_manifest_is_named_without_tensorstore_text(tmp_path):
    needs_flashbax()
    vault = write_vault(tmp_path / "vaults", vault_rows(small_episodes()))
    (vault / "manifest.ocdbt").unlink()
    with pytest.raises(DatasetError) as error:
        read_dataset(vault)
    assert str(error.value) == (
        f"{vault} (vault): manifest.ocdbt is missing (the index of the vault's data files under d/): an "
        "incomplete copy or write of the vault"
    )


def test_tensorstore_text_is_cut_to_its_reason():
    from inspo.data.formats.vault import tensorstore_reason

    raw = (
        'NOT_FOUND: Error opening "zarr" driver: Metadata at "actions./.zarray" in OCDBT database at local file '
        "\"/v/\" does not exist [source locations='tensorstore/x.cc:1'] [tensorstore_spec='{\"context\": {}}']"
    )
    assert (
        tensorstore_reason(ValueError(raw))
        == 'Error opening "zarr" driver: Metadata at "actions./.zarray" does not exist'
    )


def test_a_bad_inspo_meta_attribute_names_the_file_and_the_attribute(tmp_path):
    import h5py

    path = write_h5(tmp_path / "data.h5", small_episodes())
    with h5py.File(path, "a") as file:
        file.attrs["inspo_meta"] = "{not json"
    with pytest.raises(DatasetError) as error:
        read_dataset(path)
    assert str(error.value).startswith(f"{path} (h5): attribute 'inspo_meta' is not a JSON object: ")
    with h5py.File(path, "a") as file:
        file.attrs["inspo_meta"] = "[1, 2]"
    with pytest.raises(DatasetError, match="attribute 'inspo_meta' must hold a JSON object, got list"):
        read_dataset(path)
