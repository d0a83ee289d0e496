"""Shared pieces of the training tests: tiny configs, float64 runs, run-folder readers."""
import json

import pytest
import torch

import inspo.loop
from inspo.config import make_config
from inspo.run import prepare_run

FLOATS = ("state", "obs", "reward", "next_state", "next_obs", "done")


@pytest.fixture
def float64(monkeypatch):
    """Networks and datasets in float64, so that runs that should agree do so to rounding."""
    def prepare_in_float64(config):
        run = prepare_run(config)
        for name in FLOATS:
            setattr(run.store, name, getattr(run.store, name).double())
        return run

    monkeypatch.setattr(inspo.loop, "prepare_run", prepare_in_float64)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def tiny(algo, seed, **overrides):
    values = dict(algo=algo, seed=seed, steps=200, bc_steps=30, batch_size=32, hidden=(8, 8), critic_hidden=(16, 16),
                  mixer_hidden=8, log_every=50, checkpoint_every=0, eval_episodes=3, critic_warmup_steps=0)
    values.update(overrides)
    return make_config(values.pop("env", "xor"), **values)


def rows(folder, kind="metrics"):
    return [json.loads(line) for line in (folder / f"{kind}.jsonl").read_text().splitlines()]


def final_state(folder):
    return torch.load(folder / "checkpoint.pt", weights_only=False)["learner"]


def assert_same_run(ours, theirs, rtol=1e-9):
    """Two run folders: the same metrics rows (but the time) and final learner states, to rounding."""
    for mine, other in zip(rows(ours), rows(theirs), strict=True):
        assert mine.keys() == other.keys()
        for key in mine.keys() - {"seconds"}:
            assert mine[key] == pytest.approx(other[key], rel=1e-7, abs=1e-7), key
    state, other_state = final_state(ours), final_state(theirs)
    assert state.keys() == other_state.keys()
    for key in state:
        torch.testing.assert_close(state[key], other_state[key], rtol=rtol, atol=rtol / 10, msg=key)
