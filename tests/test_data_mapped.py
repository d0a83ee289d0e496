"""MappedTransitions serves the same transitions as TransitionStore, straight from memory-mapped files.

Two datasets: Bridge's mixed data (time-limited episodes without a next step, finished agents with
one available action; always run) and a tiny scripted SMAX dataset (skipped without jaxmarl).
"""

import numpy as np
import pytest
import torch

from inspo.data import DatasetError, MappedTransitions, TransitionStore, load_episode_buffer, save_episode_buffer
from inspo.envs.bridge import Bridge

FIELDS = ("state", "obs", "actions", "reward", "next_state", "next_obs", "next_actions", "done", "avail", "next_avail")


@pytest.fixture(scope="module", params=["bridge", "smax"])
def dataset(request, tmp_path_factory):
    """(memory-mapped arrays, the same arrays read into RAM) of a dataset directory."""
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "bridge":
        save_episode_buffer(root / "mixed", *Bridge().generate_dataset("mixed", seed=0))
        arrays, _ = load_episode_buffer(root / "mixed", mmap_mode="r")
    else:
        pytest.importorskip("jaxmarl")
        import smax_testing  # noqa: F401  (fast compiles)
        from inspo.data.card import load_dataset
        from inspo.smax.tiers import DataConfig, make_dataset

        directory = make_dataset(DataConfig(map_name="3m", tier="scripted", episodes=12, root=root), log=lambda m: None)
        arrays, _ = load_dataset(directory)
    assert all(isinstance(array, np.memmap) for array in arrays.values())
    return arrays, {k: np.array(v) for k, v in arrays.items()}


def chunk_of(arrays) -> int:
    """A chunk size that cuts the episodes into three chunks (and the transitions into more)."""
    return arrays["filled"].shape[0] // 3 + 1


def test_same_transitions_as_the_in_memory_store(dataset):
    mapped_arrays, arrays = dataset
    mapped = MappedTransitions(mapped_arrays, chunk=chunk_of(arrays))  # several chunks
    store = TransitionStore.from_episode_buffer(arrays)
    assert len(mapped) == len(store) > 0
    assert (mapped.n_agents, mapped.n_actions, mapped.obs_dim, mapped.state_dim) == (
        store.n_agents,
        store.n_actions,
        store.obs_dim,
        store.state_dim,
    )
    rows = torch.randperm(len(store), generator=torch.Generator().manual_seed(0))[:50]
    rows = torch.cat([rows, rows[:5]])  # repeated rows too
    got, expected = mapped.index(rows), store.index(rows)
    for name in FIELDS:
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name
        # the store's fields as the trainers read them (store.obs[rows], store.actions, ...)
        assert torch.equal(getattr(mapped, name)[rows], getattr(store, name)[rows]), name
    assert torch.equal(mapped.actions, store.actions) and torch.equal(mapped.reward, store.reward)
    assert mapped.reward.device == store.reward.device


def test_looser_dtypes_give_the_same_batches(dataset):
    """Other projects' buffers (float64 observations, int32 actions, bool flags) load unchanged."""
    _, arrays = dataset
    loose = dict(
        arrays,
        obs=arrays["obs"].astype(np.float64),
        actions=arrays["actions"].astype(np.int32),
        terminated=arrays["terminated"].astype(bool),
        avail_actions=arrays["avail_actions"].astype(np.int8),
    )
    mapped, store = MappedTransitions(loose), TransitionStore.from_episode_buffer(arrays)
    rows = torch.arange(len(store))
    got = mapped.index(rows)
    for name in FIELDS:
        assert torch.equal(getattr(got, name), getattr(store, name)), name


def test_behaviour_cache_matches(dataset):
    mapped_arrays, arrays = dataset
    mapped = MappedTransitions(mapped_arrays)
    store = TransitionStore.from_episode_buffer(arrays)
    weights = torch.randn(mapped.obs_dim, mapped.n_actions, generator=torch.Generator().manual_seed(1))

    def log_probs(obs, avail):
        return torch.log_softmax((obs @ weights).masked_fill(~avail, float("-inf")), -1)

    mapped.cache_behaviour(log_probs, chunk=chunk_of(arrays))  # several chunks
    store.cache_behaviour(log_probs, chunk=chunk_of(arrays))
    batch = mapped.index(torch.arange(len(store)))
    assert torch.equal(batch.log_mu, store.log_mu) and torch.equal(batch.next_log_mu, store.next_log_mu)
    assert torch.equal(mapped.log_mu, store.log_mu)


def test_bad_data_is_an_error_as_in_the_store(dataset):
    _, clean = dataset
    chunk = chunk_of(clean)
    MappedTransitions(clean, chunk=chunk)  # several chunks, no error
    store = TransitionStore.from_episode_buffer(clean)
    # a transition late in the data (not in the first chunk) whose agent 0 has a choice of actions
    row = max(i for i in range(len(store)) if store.avail[i, 0].sum() > 1)
    mapped = MappedTransitions(clean)
    episode, step = int(mapped.episode[row]), int(mapped.step[row])
    taken = int(clean["actions"][episode, step, 0, 0])

    unavailable = {k: v.copy() for k, v in clean.items()}
    unavailable["avail_actions"][episode, step, 0, :] = 0
    unavailable["avail_actions"][episode, step, 0, (taken + 1) % mapped.n_actions] = 1
    for build in (TransitionStore.from_episode_buffer, lambda a: MappedTransitions(a, chunk=chunk)):
        with pytest.raises(DatasetError, match=f"action {taken} of agent 0 is not available"):
            build(unavailable)
    out_of_range = {k: v.copy() for k, v in clean.items()}
    out_of_range["actions"][episode, step, 0, 0] = mapped.n_actions
    with pytest.raises(DatasetError, match="outside"):
        MappedTransitions(out_of_range, chunk=chunk)
    not_finite = {k: v.copy() for k, v in clean.items()}
    not_finite["obs"][episode, step, 0, 0] = np.nan
    with pytest.raises(DatasetError, match=f"obs has non-finite values \\(episode {episode}, step {step}\\)"):
        MappedTransitions(not_finite, chunk=chunk)
    empty = {k: v.copy() for k, v in clean.items()}
    empty["filled"][:] = 0
    with pytest.raises(DatasetError, match="no usable transitions"):
        MappedTransitions(empty)
