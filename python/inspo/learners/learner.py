"""The learner protocol: what the training loop (inspo.loop) asks of an algorithm.

A learner holds the networks and optimizers of S runs that differ only in their seed, batched as a leading
tensor dimension (every tensor of its state_dict [S, ...]), and knows one iteration: `update(batch, draws,
step)` on the seeds' stacked minibatch. The loop owns everything around it: datasets, minibatch rows, logs,
evaluations, checkpoints, resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Optional, Sequence

import torch
from torch import Tensor, nn

from inspo.config import TrainConfig, task_name
from inspo.data import TransitionBatch
from inspo.nets import AgentMLP

# torch.compile's backend for config.compile (tests of the graph itself may use "aot_eager": same capture)
COMPILE_BACKEND = "inductor"


@dataclass(frozen=True)
class Dims:
    n_agents: int
    obs_dim: int
    state_dim: int
    n_actions: int


class Learner(nn.Module):
    """The networks and optimizers of S seeds of one algorithm (every tensor of its state_dict [S, ...])."""

    algo: ClassVar[str]
    postfix_keys: ClassVar[tuple[str, ...]] = ()
    batch_fields: ClassVar[Optional[tuple[str, ...]]] = None  # the TransitionBatch fields `iteration` reads (None: all)
    actor: AgentMLP  # the policy that is evaluated and checkpointed as "actor"

    def __init__(self, config: TrainConfig, n_seeds: int, dims: Dims):
        super().__init__()
        self.config, self.n_seeds, self.dims = config, n_seeds, dims
        self._compiled: Optional[Callable[..., dict[str, Tensor]]] = None
        # the compiled step replayed as a CUDA graph (set before the first update to compare without it)
        self.cuda_graphs = replays_cuda_graphs(config.device)

    @property
    def steps(self) -> int:
        return self.config.steps

    def batch_size(self, stores: Sequence[Any]) -> int:
        return self.config.batch_size

    @property
    def label(self) -> str:
        return f"{task_name(self.config)} {self.algo}"

    def initialize_seed(self, seed: int) -> None:
        """Draw seed `seed`'s networks from the global torch RNG, as a single run builds them."""
        raise NotImplementedError

    def prepare(
        self, stores: Sequence[Any], generators: Sequence[torch.Generator], resumed: bool, progress: bool = False
    ) -> None:
        """Work before the first iteration (InSPO: fit and cache the behaviour policy, with a progress
        display of its own when `progress`)."""

    def draw(self, generators: Sequence[torch.Generator], step: int) -> dict[str, Tensor]:
        """The iteration's randomness beyond the minibatch, stacked over seeds."""
        return {}

    def iteration(self, batch: TransitionBatch, draws: dict[str, Tensor], **scalars: Any) -> dict[str, Tensor]:
        """One iteration on the stacked batch, a function of tensors and the step's `scalars` only (what
        torch.compile traces); returns metrics [S]."""
        raise NotImplementedError

    def step_scalars(self, step: int) -> dict[str, Any]:
        """The python numbers iteration `step` depends on (a schedule's value)."""
        return {}

    def update(self, batch: TransitionBatch, draws: dict[str, Tensor], step: int) -> dict[str, Tensor]:
        """Iteration `step`, compiled when config.compile (and replayed as a CUDA graph on a CUDA device)."""
        if not self.config.compile:
            return self.iteration(batch, draws, **self.step_scalars(step))
        run = self.compiled_iteration()
        if not self.cuda_graphs:
            return run(batch, draws, **self.step_scalars(step))
        # a new replay of the graph: its outputs live in the graph's memory pool, which the next replay
        # overwrites, so the metrics are copied out; the inputs (batch, draws) are copied in by torch
        torch.compiler.cudagraph_mark_step_begin()
        return {key: value.clone() for key, value in run(batch, draws, **self.step_scalars(step)).items()}

    def compiled_iteration(self) -> Callable[..., dict[str, Tensor]]:
        """`iteration` as one torch.compile(fullgraph=True) graph; the custom ops and the gradients
        (torch.autograd.grad, traced with trace_autograd_ops) inside it. With `cuda_graphs`, inductor's
        "reduce-overhead" mode: the graph is recorded once into a CUDA graph (after a warm-up run) and
        replayed at every later call, one launch sequence per iteration. The parameters, the optimizer
        moments and step counts are module state at fixed addresses, updated in place inside the graph;
        the randomness is drawn outside it (`draw`) and enters as input tensors."""
        if self._compiled is None:
            mode = {"mode": "reduce-overhead"} if self.cuda_graphs else {}
            compiled = torch.compile(self.iteration, fullgraph=True, dynamic=False, backend=COMPILE_BACKEND, **mode)
            self._compiled = torch._dynamo.config.patch(trace_autograd_ops=True)(compiled)
        return self._compiled

    def row_extras(self, step: int) -> dict[str, Any]:
        return {}

    def results_extras(self, seed: int, store: Any) -> dict[str, Any]:
        return {}

    def seed_state(self, seed: int) -> dict[str, Tensor]:
        return seed_slice(self.state_dict(), seed)

    def load_seed_states(self, states: Sequence[dict[str, Tensor]]) -> None:
        self.load_state_dict({key: torch.cat([state[key] for state in states]) for key in states[0]})


def replays_cuda_graphs(device: str | torch.device) -> bool:
    """Whether a compiled iteration on `device` is replayed as a CUDA graph: on CUDA devices (launch-bound
    at these sizes, thousands of small kernels per step), not on the CPU (no such thing there)."""
    return torch.device(device).type == "cuda"


def seed_slice(state: dict[str, Tensor], seed: int) -> dict[str, Tensor]:
    """Seed `seed`'s part of a batched state dict: every tensor's slice [seed:seed+1]."""
    return {key: value[seed : seed + 1].clone() for key, value in state.items()}
