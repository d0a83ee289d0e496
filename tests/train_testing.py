"""Shared pieces of the training tests: tiny configs, float64 runs, run-folder readers."""

import json

import pytest
import torch

import inspo.loop
from inspo.config import make_config
from inspo.task import prepare_task

FLOATS = ("state", "obs", "reward", "next_state", "next_obs", "done")


@pytest.fixture
def float64(monkeypatch):
    """Networks and datasets in float64, so that runs that should agree do so to rounding."""

    def prepare_in_float64(config):
        run = prepare_task(config)
        for name in FLOATS:
            setattr(run.store, name, getattr(run.store, name).double())
        return run

    monkeypatch.setattr(inspo.loop, "prepare_task", prepare_in_float64)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def tiny(algo, seed, **overrides):
    values = dict(
        algo=algo,
        seed=seed,
        steps=200,
        bc_steps=30,
        batch_size=32,
        hidden=(8, 8),
        critic_hidden=(16, 16),
        log_every=50,
        checkpoint_every=0,
        eval_episodes=3,
    )
    if algo == "inspo":
        values["inspo.critic_warmup_steps"] = 0
    if algo == "omiga":
        values["omiga.mixer_hidden"] = 8
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


def random_batch(generator: torch.Generator, dims, batch: int, p_avail: float, single_action_agent: bool = False):
    """One seed's random float64 transitions ([1, B, ...]) for hand-checked losses: dims = (N, O, S, A); every
    dataset action available, the other actions with probability p_avail; optionally agent 1 of row 0 with a
    single available action."""
    from inspo.data import TransitionBatch, stack_batches

    n, o, s, a = dims

    def normal(*shape):
        return torch.randn(*shape, generator=generator, dtype=torch.float64)

    avail = torch.rand(batch, n, a, generator=generator) < p_avail
    next_avail = torch.rand(batch, n, a, generator=generator) < p_avail
    actions = torch.randint(a, (batch, n), generator=generator)
    avail.scatter_(-1, actions.unsqueeze(-1), True)  # the dataset action is always available
    next_actions = torch.randint(a, (batch, n), generator=generator)
    next_avail.scatter_(-1, next_actions.unsqueeze(-1), True)
    if single_action_agent:
        avail[0, 1] = False
        avail[0, 1, actions[0, 1]] = True
    return stack_batches(
        [
            TransitionBatch(
                state=normal(batch, s),
                obs=normal(batch, n, o),
                actions=actions,
                reward=normal(batch),
                next_state=normal(batch, s),
                next_obs=normal(batch, n, o),
                next_actions=next_actions,
                done=(torch.rand(batch, generator=generator) < 0.3).double(),
                avail=avail,
                next_avail=next_avail,
            )
        ]
    )


def mlp_by_hand(module, x: torch.Tensor) -> torch.Tensor:
    """AgentMLP's forward written out per agent: x [B, N, in] -> [B, N, out] (seed 0's networks)."""
    outputs = []
    n_agents = x.shape[1]
    for agent in range(n_agents):
        net = 0 if module.share_parameters else agent
        h = x[:, agent]
        if module.share_parameters:
            h = torch.cat([h, torch.eye(n_agents, dtype=h.dtype)[agent].expand(len(h), -1)], dim=-1)
        for layer, (weights, biases) in enumerate(module.mlp.layers):
            h = h @ weights[0, net] + biases[0, net]
            if layer < len(module.mlp.layers) - 1:
                h = h.clamp(min=0)
        outputs.append(h)
    return torch.stack(outputs, dim=1)


def train_until(trainer, config, out_dir, stop_after: int) -> None:
    """trainer(config) into out_dir, interrupted (as by Ctrl-C) right after step `stop_after`."""

    def stop(step):
        if step == stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        trainer(config, out_dir=out_dir, progress=False, on_step=stop)
