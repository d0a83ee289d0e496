"""MappedTransitions serves the same transitions as TransitionStore, straight from mapped files."""
import numpy as np
import pytest

pytest.importorskip("jaxmarl")
import smax_testing  # noqa: E402,F401  (fast compiles)
torch = pytest.importorskip("torch")

from inspo.data import TransitionStore  # noqa: E402
from inspo.smax.card import load_dataset  # noqa: E402
from inspo.smax.store import MappedTransitions  # noqa: E402
from inspo.smax.tiers import DataConfig, make_dataset  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("smax")
    return make_dataset(DataConfig(map_name="3m", tier="scripted", episodes=12, root=root), log=lambda m: None)


def test_same_transitions_as_the_in_memory_store(dataset):
    arrays, _ = load_dataset(dataset)  # memory-mapped
    mapped = MappedTransitions(arrays)
    store = TransitionStore.from_episode_buffer({k: np.asarray(v) for k, v in arrays.items()})
    assert len(mapped) == len(store) > 0
    rows = torch.randperm(len(store), generator=torch.Generator().manual_seed(0))[:50]
    rows = torch.cat([rows, rows[:5]])  # repeated rows too
    got, expected = mapped.index(rows), store.index(rows)
    for name in ("state", "obs", "actions", "reward", "next_state", "next_obs", "next_actions", "done",
                 "avail", "next_avail"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name
        assert getattr(got, name).dtype == getattr(expected, name).dtype, name


def test_behaviour_cache_matches(dataset):
    arrays, _ = load_dataset(dataset)
    mapped = MappedTransitions(arrays)
    store = TransitionStore.from_episode_buffer({k: np.asarray(v) for k, v in arrays.items()})
    weights = torch.randn(mapped.obs_dim, mapped.n_actions, generator=torch.Generator().manual_seed(1))

    def log_probs(obs, avail):
        return torch.log_softmax((obs @ weights).masked_fill(~avail, float("-inf")), -1)

    mapped.cache_behaviour(log_probs, chunk=7)  # several chunks
    store.cache_behaviour(log_probs)
    rows = torch.arange(len(store))
    batch = mapped.index(rows)
    assert torch.equal(batch.log_mu, store.log_mu) and torch.equal(batch.next_log_mu, store.next_log_mu)


def test_bad_data_is_an_error_as_in_the_store(dataset):
    from inspo.data.buffer import DatasetError

    arrays, _ = load_dataset(dataset)
    clean = {k: np.array(v) for k, v in arrays.items()}
    MappedTransitions(clean, chunk=7)  # several chunks, no error
    unavailable = {k: v.copy() for k, v in clean.items()}
    unavailable["avail_actions"][3, 2, 1, :] = 0
    unavailable["avail_actions"][3, 2, 1, 4] = 1  # only "stop" available ...
    unavailable["actions"][3, 2, 1, 0] = 0  # ... but the dataset moves north
    with pytest.raises(DatasetError, match="not available"):
        MappedTransitions(unavailable, chunk=7)
    not_finite = {k: v.copy() for k, v in clean.items()}
    not_finite["obs"][5, 1, 0, 3] = np.nan
    with pytest.raises(DatasetError, match="obs has non-finite values"):
        MappedTransitions(not_finite, chunk=7)
