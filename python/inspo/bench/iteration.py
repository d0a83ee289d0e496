"""One full training iteration of a learner (InSPO fused / exact, OMIGA), timed end to end.

The learner's `update` runs on synthetic datasets of the requested shape (random observations,
states, masks and actions; behaviour log-probs cached from a randomly initialized mu, pi = mu). The
variants (the `impl` column) are what a user could run:

    eager            plain PyTorch: the learner calling the reference ops (inspo_ext.reference), one seed
    ours             the learner calling our ops (inspo_ext), eager, one seed
    ours/S5          the eager iteration with 5 seeds batched (`inspo train --seeds 0-4`: compile is off by
                     default); time per seed (the batched time / 5)
    ours+compile     the same iteration as one torch.compile(fullgraph=True) graph, one seed
    ours+compile/S5  the compiled iteration with 5 seeds batched; time per seed (the batched time / 5)
    ours/bf16, ours+compile/bf16
                     the eager and the compiled one-seed iteration with config.precision = "bf16": the
                     networks' matmuls in bfloat16 under torch.autocast, everything else float32

On a CUDA device the compiled variants are replayed as CUDA graphs (`inspo.learners.learner.replays_cuda_graphs`);
`COMPILED_WITHOUT_GRAPH` is the compiled one-seed iteration without them, to show what the graph adds.

OMIGA calls no InSPO op: its eager and ours rows are the same code. The minibatch gather and the
iteration's random draws happen in `prepare`, outside the timed region.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch.utils.flop_counter import FlopCounterMode

from inspo.algorithms import InspoOptions, learner_class
from inspo.bench.ops import HYPER, ReferenceOps
from inspo.bench.timing import quiet_profiler
from inspo.config import TrainConfig
from inspo.data import TransitionStore, stack_batches
from inspo.learners import ops as learner_ops
from inspo.learners.learner import Dims
from inspo.nets import AUTOCAST_DTYPES, masked_log_softmax, set_precision


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    agents: int
    actions: int
    obs_dim: int
    state_dim: int
    hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    share_parameters: bool


# SMAX 2s3z (inspo.smax.env.smax_spec("2s3z")) with the smax preset's networks; and a large joint batch
SHAPES = {
    "2s3z": Shape("2s3z", 256, 5, 10, 127, 120, (128, 128), (256, 256), True),
    "4k": Shape("B=4k", 4096, 8, 16, 32, 64, (64, 64), (128, 128), False),
}
OMIGA_HIDDEN = (256, 256)  # OMIGA's official network sizes (mixer 64)


@dataclass(frozen=True)
class Variant:
    name: str
    reference_ops: bool
    compiled: bool
    seeds: int
    cuda_graphs: bool = True  # on a CUDA device, the compiled step replayed as a CUDA graph
    precision: str = "fp32"  # config.precision


VARIANTS = (
    Variant("eager", True, False, 1),
    Variant("ours", False, False, 1),
    Variant("ours/S5", False, False, 5),
    Variant("ours+compile", False, True, 1),
    Variant("ours+compile/S5", False, True, 5),
    Variant("ours/bf16", False, False, 1, precision="bf16"),
    Variant("ours+compile/bf16", False, True, 1, precision="bf16"),
)

COMPILED_WITHOUT_GRAPH = Variant("ours+compile/nograph", False, True, 1, cuda_graphs=False)

REFERENCE_BACKEND = ReferenceOps()


@contextlib.contextmanager
def ops_backend(use_reference: bool) -> Iterator[None]:
    """Run the learners on the reference ops (plain PyTorch) or on ours: the one switch between them."""
    saved = learner_ops.backend
    learner_ops.backend = REFERENCE_BACKEND if use_reference else learner_ops.OURS
    try:
        yield
    finally:
        learner_ops.backend = saved


def synthetic_store(
    transitions: int, shape: Shape, device: torch.device, generator: torch.Generator
) -> TransitionStore:
    n, a = shape.agents, shape.actions

    def avail_and_actions():
        actions = torch.randint(0, a, (transitions, n), generator=generator)
        avail = torch.rand(transitions, n, a, generator=generator) > 0.25
        avail.scatter_(-1, actions.unsqueeze(-1), True)
        return avail.to(device), actions.to(device)

    avail, actions = avail_and_actions()
    next_avail, next_actions = avail_and_actions()

    def randn(*size: int) -> torch.Tensor:
        return torch.randn(*size, generator=generator).to(device)

    return TransitionStore(
        state=randn(transitions, shape.state_dim),
        obs=randn(transitions, n, shape.obs_dim),
        actions=actions,
        reward=randn(transitions),
        next_state=randn(transitions, shape.state_dim),
        next_obs=randn(transitions, n, shape.obs_dim),
        next_actions=next_actions,
        done=(torch.rand(transitions, generator=generator) < 0.05).float().to(device),
        avail=avail,
        next_avail=next_avail,
    )


@dataclass
class IterationCase:
    learner: Any
    stores: list[TransitionStore]
    generators: list[torch.Generator]
    batch_size: int
    step: int  # an iteration index past any critic warm-up, so the agent pass runs

    def prepare(self):
        rows = [
            torch.randint(len(store), (self.batch_size,), generator=g, device=g.device)
            for store, g in zip(self.stores, self.generators)
        ]
        batch = stack_batches([store.index(r) for store, r in zip(self.stores, rows)])
        return batch, self.learner.draw(self.generators, self.step)

    def region(self, prepared) -> None:
        self.learner.update(*prepared, self.step)


def make_case(
    algo: str,
    mode: str,
    shape: Shape,
    seeds: int,
    compiled: bool,
    device: torch.device,
    seed: int = 0,
    cuda_graphs: bool = True,
    precision: str = "fp32",
) -> IterationCase:
    hidden = OMIGA_HIDDEN if algo == "omiga" else shape.hidden
    config = TrainConfig(
        algo=algo,
        algo_options=InspoOptions(mode=mode, alpha=HYPER["alpha"], beta=HYPER["beta"], eta=HYPER["eta"])
        if algo == "inspo"
        else None,
        batch_size=shape.batch,
        hidden=hidden,
        critic_hidden=shape.critic_hidden,
        share_parameters=shape.share_parameters,
        device=str(device),
        seed=seed,
        compile=compiled,
        precision=precision,
    ).validate()
    learner = learner_class(algo)(config, seeds, Dims(shape.agents, shape.obs_dim, shape.state_dim, shape.actions))
    set_precision(learner, precision)
    learner.cuda_graphs = learner.cuda_graphs and cuda_graphs
    for s in range(seeds):
        torch.manual_seed(seed + s)  # network initialization
        learner.initialize_seed(s)
    stores = [
        synthetic_store(2 * shape.batch, shape, device, torch.Generator().manual_seed(seed + s)) for s in range(seeds)
    ]
    if algo == "inspo":
        with torch.no_grad():
            for s, store in enumerate(stores):
                store.cache_behaviour(
                    lambda obs, avail, s=s: masked_log_softmax(learner.mu.forward_seed(s, obs), avail)
                )
            learner.actor.load_state_dict(learner.mu.state_dict())  # pi starts as mu, as in training
        learner.mu.requires_grad_(False)
    generators = [torch.Generator(device=device).manual_seed(seed + s) for s in range(seeds)]
    warmup = config.inspo.critic_warmup_steps if algo == "inspo" else 0
    return IterationCase(learner, stores, generators, shape.batch, warmup)


def matmul_flops(case: IterationCase) -> int:
    """The matmul FLOPs of one iteration (forward and backward), counted by torch's FLOP counter."""
    prepared = case.prepare()
    with FlopCounterMode(display=False) as counter:
        case.learner.iteration(*prepared, **case.learner.step_scalars(case.step))
    return counter.get_total_flops()


def gemm_rate(shape: Shape, width: int, device: torch.device, repeats: int = 20, precision: str = "fp32") -> float:
    """FLOP/s of this machine on the iteration's typical matmul: [B*N, H] x [H, H] at hidden width H, in the
    dtype of `precision` (config.precision: the bf16 rate is the floor of a bf16 iteration)."""
    dtype = AUTOCAST_DTYPES[precision] or torch.float32
    x = torch.randn(shape.batch * shape.agents, width, device=device, dtype=dtype)
    w = torch.randn(width, width, device=device, dtype=dtype)
    for _ in range(3):
        x @ w
    start = time.perf_counter()
    for _ in range(repeats):
        x @ w
    if device.type == "cuda":
        torch.cuda.synchronize()
    return 2 * x.shape[0] * width * width * repeats / (time.perf_counter() - start)


def ops_share(case: IterationCase, iterations: int = 5) -> float:
    """Fraction of the eager iteration's wall time spent inside the inspo_ext custom ops (profiler)."""
    prepared = [case.prepare() for _ in range(iterations)]
    with quiet_profiler(torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])) as profile:
        start = time.perf_counter()
        for item in prepared:
            case.region(item)
        wall = time.perf_counter() - start
    inside = sum(e.cpu_time_total for e in profile.key_averages() if e.key.startswith("inspo_ext::"))
    return inside / 1e6 / wall
