"""The episode-buffer format (round trip, other projects' layout, errors) and the transition store."""

import json

import numpy as np
import pytest
import torch

from inspo.data import DatasetError, TransitionStore, load_episode_buffer, save_episode_buffer
from inspo.envs.bridge import Bridge
from inspo.envs.matrix import XorGame


@pytest.fixture(scope="module")
def bridge_mixed():
    return Bridge().generate_dataset("mixed", seed=0)


def test_round_trip_keeps_every_array_and_dtype(tmp_path, bridge_mixed):
    arrays, meta = bridge_mixed
    save_episode_buffer(tmp_path / "ds", arrays, meta)
    loaded, loaded_meta = load_episode_buffer(tmp_path / "ds")
    assert set(loaded) == set(arrays)
    for name, array in arrays.items():
        assert loaded[name].dtype == array.dtype and np.array_equal(loaded[name], array), name
    assert loaded_meta["episodes_in_buffer"] == 1000 and loaded_meta["env"] == "bridge"
    assert not list((tmp_path / "ds").glob("*.tmp"))  # atomic writes leave no temporaries


def test_mmap_mode_maps_instead_of_reading(tmp_path, bridge_mixed):
    save_episode_buffer(tmp_path / "ds", *bridge_mixed)
    loaded, _ = load_episode_buffer(tmp_path / "ds", mmap_mode="r")
    assert all(isinstance(a, np.memmap) for a in loaded.values())
    store = TransitionStore.from_episode_buffer(loaded)
    direct = TransitionStore.from_episode_buffer(bridge_mixed[0])
    assert torch.equal(store.obs, direct.obs) and torch.equal(store.next_actions, direct.next_actions)


def pymarl_style(arrays):
    """The same episodes as PyMARL stores them: the final state after a terminal step marked filled,
    looser dtypes, an extra actions_onehot array, and a buffer preallocated for more episodes."""
    out = {k: v.copy() for k, v in arrays.items()}
    episodes = out["filled"].shape[0]
    terminal_step = out["terminated"][..., 0].argmax(1)
    out["filled"][np.arange(episodes), terminal_step + 1, 0] = 1
    out["obs"] = out["obs"].astype(np.float64)
    out["avail_actions"] = out["avail_actions"].astype(np.int64)
    out["actions_onehot"] = np.eye(out["avail_actions"].shape[-1], dtype=np.float32)[out["actions"][..., 0]]
    return {k: np.concatenate([v, np.zeros_like(v[:3])]) for k, v in out.items()}


def test_other_projects_buffers_load_unchanged(tmp_path, bridge_mixed):
    arrays, _ = bridge_mixed
    directory = tmp_path / "pymarl"
    directory.mkdir()
    for name, array in pymarl_style(arrays).items():
        np.save(directory / f"{name}.npy", array)
    (directory / "meta.json").write_text(
        json.dumps({"buffer_index": 1000, "episodes_in_buffer": 1000, "buffer_size": 1003})
    )
    loaded, meta = load_episode_buffer(directory)
    assert loaded["obs"].shape[0] == 1000 and loaded["obs"].dtype == np.float64 and "actions_onehot" in loaded
    ours = TransitionStore.from_episode_buffer(arrays)
    theirs = TransitionStore.from_episode_buffer(loaded)
    assert len(theirs) == len(ours)  # the filled final state after termination is not a transition
    assert torch.equal(theirs.actions, ours.actions) and torch.equal(theirs.done, ours.done)


def test_transitions_of_the_optimal_bridge_dataset():
    arrays, _ = Bridge().generate_dataset("optimal", seed=0)
    store = TransitionStore.from_episode_buffer(arrays)
    assert len(store) == 500 * 8 and store.done.sum() == 500
    # a' is the next joint action of the same episode; s' the next state
    assert torch.equal(store.next_actions[:7], torch.from_numpy(arrays["actions"][0, 1:8, :, 0]))
    assert torch.equal(store.next_state[:7], torch.from_numpy(arrays["state"][0, 1:8]))
    assert store.avail.dtype == torch.bool and store.n_actions == 5 and store.state_dim == 8


def test_time_limited_steps_without_a_next_step_are_dropped(bridge_mixed):
    arrays, _ = bridge_mixed
    store = TransitionStore.from_episode_buffer(arrays)
    filled = arrays["filled"][..., 0].sum()
    cut = ((arrays["filled"][..., 0].sum(1) == 50) & (arrays["terminated"][..., 0].sum(1) == 0)).sum()
    assert len(store) == filled - cut


def test_matrix_transitions_are_terminal():
    store = TransitionStore.from_episode_buffer(XorGame().generate_dataset("d", seed=0)[0])
    assert len(store) == 5000 and bool((store.done == 1).all())


def _xor_arrays():
    return XorGame().generate_dataset("c", seed=0)[0]


def test_missing_array_is_named(tmp_path):
    arrays = _xor_arrays()
    del arrays["avail_actions"]
    with pytest.raises(DatasetError, match="avail_actions"):
        save_episode_buffer(tmp_path / "x", arrays, {})


def test_missing_file_is_named(tmp_path):
    save_episode_buffer(tmp_path / "x", _xor_arrays(), {})
    (tmp_path / "x" / "reward.npy").unlink()
    with pytest.raises(DatasetError, match="reward"):
        load_episode_buffer(tmp_path / "x")
    with pytest.raises(DatasetError, match="does not exist"):
        load_episode_buffer(tmp_path / "nowhere")


def test_mismatched_shapes_are_named():
    arrays = _xor_arrays()
    arrays["state"] = arrays["state"][:10]
    with pytest.raises(DatasetError, match="state.*E = 10"):
        TransitionStore.from_episode_buffer(arrays)
    arrays = _xor_arrays()
    arrays["actions"] = arrays["actions"][..., 0]
    with pytest.raises(DatasetError, match="actions.*rank 4"):
        TransitionStore.from_episode_buffer(arrays)


def test_the_writer_insists_on_exact_dtypes(tmp_path):
    arrays = _xor_arrays()
    arrays["reward"] = arrays["reward"].astype(np.float64)
    with pytest.raises(DatasetError, match="reward.*float32"):
        save_episode_buffer(tmp_path / "x", arrays, {})
    arrays = _xor_arrays()
    arrays["actions"] = arrays["actions"].astype(np.float32)
    with pytest.raises(DatasetError, match="actions"):
        TransitionStore.from_episode_buffer(arrays)


def test_actions_out_of_range_or_masked_are_rejected():
    arrays = _xor_arrays()
    arrays["actions"][7, 0, 1, 0] = 2
    with pytest.raises(DatasetError, match="action 2 of agent 1 outside"):
        TransitionStore.from_episode_buffer(arrays)
    arrays = _xor_arrays()
    arrays["avail_actions"][5, 0, 0, arrays["actions"][5, 0, 0, 0]] = 0
    with pytest.raises(DatasetError, match="not available.*episode 5"):
        TransitionStore.from_episode_buffer(arrays)


def test_non_finite_values_are_rejected():
    arrays = _xor_arrays()
    arrays["reward"][3, 0, 0] = np.nan
    with pytest.raises(DatasetError, match="reward.*non-finite.*episode 3"):
        TransitionStore.from_episode_buffer(arrays)


def test_non_finite_next_observation_names_the_step_it_is_read_at():
    """A truncated episode's last state is read only as the next observation of the step before it:
    both stores name that state's own step."""
    from inspo.data import MappedTransitions

    arrays = _xor_arrays()
    arrays["terminated"][4, 0, 0] = 0  # episode 4 runs out of time after step 0: step 1 is its last state
    arrays["filled"][4, 1, 0] = 1
    arrays["obs"][4, 1, 0, 0] = np.nan
    with pytest.raises(DatasetError, match=r"next_obs has non-finite values \(episode 4, step 1\)"):
        TransitionStore.from_episode_buffer(arrays)
    with pytest.raises(DatasetError, match=r"obs has non-finite values \(episode 4, step 1\)"):
        MappedTransitions(arrays)


def test_empty_dataset_is_rejected():
    arrays = _xor_arrays()
    arrays["filled"][:] = 0
    with pytest.raises(DatasetError, match="no usable transitions"):
        TransitionStore.from_episode_buffer(arrays)
    with pytest.raises(DatasetError, match="empty"):
        TransitionStore.from_episode_buffer({k: v[:0] for k, v in _xor_arrays().items()})


def test_meta_episode_count_beyond_the_arrays_is_rejected(tmp_path):
    save_episode_buffer(tmp_path / "x", _xor_arrays(), {"episodes_in_buffer": 6000})
    with pytest.raises(DatasetError, match="episodes_in_buffer = 6000"):
        load_episode_buffer(tmp_path / "x")
