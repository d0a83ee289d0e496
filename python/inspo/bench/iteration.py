"""One full InSPO training iteration (critic step + the exact or fused agent pass), timed end to end.

The trainer's single-iteration function `inspo.trainer.InspoStep` runs on a synthetic dataset of the
requested size (random observations, states, masks and actions; behaviour log-probs cached from a
randomly initialized mu). The three implementations differ only in the ops module the trainer calls:
`inspo_ext` (ours), the eager reference, or the compiled reference; the networks, optimizers and
data movement are the same PyTorch code in all three.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

import torch

from inspo import trainer
from inspo.bc import masked_log_softmax
from inspo.bench.ops import HYPER, Size
from inspo.config import TrainConfig
from inspo.data import TransitionStore

OBS_DIM = 32
STATE_DIM = 64


@dataclass
class IterationCase:
    step: trainer.InspoStep
    store: TransitionStore
    generator: torch.Generator
    batch_size: int
    first_step: int  # an iteration index past any critic warm-up, so the agent pass runs

    def prepare(self):
        rows = torch.randint(len(self.store), (self.batch_size,), generator=self.generator,
                             device=self.generator.device)
        return self.store.index(rows)

    def region(self, batch) -> None:
        self.step(batch, self.first_step)


def synthetic_store(transitions: int, size: Size, device: torch.device, generator: torch.Generator) -> TransitionStore:
    n, a = size.agents, size.actions

    def avail_and_actions():
        actions = torch.randint(0, a, (transitions, n), generator=generator)
        avail = torch.rand(transitions, n, a, generator=generator) > 0.25
        avail.scatter_(-1, actions.unsqueeze(-1), True)
        return avail.to(device), actions.to(device)

    avail, actions = avail_and_actions()
    next_avail, next_actions = avail_and_actions()

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device)

    return TransitionStore(
        state=randn(transitions, STATE_DIM), obs=randn(transitions, n, OBS_DIM), actions=actions,
        reward=randn(transitions), next_state=randn(transitions, STATE_DIM), next_obs=randn(transitions, n, OBS_DIM),
        next_actions=next_actions, done=(torch.rand(transitions, generator=generator) < 0.05).float().to(device),
        avail=avail, next_avail=next_avail)


def make_case(size: Size, mode: str, device: torch.device, seed: int = 0) -> IterationCase:
    config = TrainConfig(mode=mode, batch_size=size.batch, alpha=HYPER["alpha"], beta=HYPER["beta"],
                         eta=HYPER["eta"], device=str(device), seed=seed).validate()
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    torch.manual_seed(seed)  # network initialization
    store = synthetic_store(2 * size.batch, size, device, torch.Generator().manual_seed(seed))
    learner = trainer.build_learner(config, size.agents, OBS_DIM, STATE_DIM, size.actions)
    learner.mu.requires_grad_(False)
    with torch.no_grad():
        store.cache_behaviour(lambda obs, avail: masked_log_softmax(learner.mu(obs), avail))
        learner.actor.load_state_dict(learner.mu.state_dict())  # pi starts as mu, as in training
    first_step = getattr(config, "critic_warmup_steps", 0)
    return IterationCase(trainer.InspoStep(config, learner, generator), store, generator, size.batch, first_step)


@contextlib.contextmanager
def trainer_ops(ops: Any) -> Iterator[None]:
    """Run the trainer on `ops` (an object with the public inspo_ext op functions).

    The trainer calls its ops through the module attribute `inspo.trainer.ops`; swapping it is the
    one switch between the three implementations.
    """
    saved = trainer.ops
    trainer.ops = ops
    try:
        yield
    finally:
        trainer.ops = saved
