"""The training loop of every algorithm, for S seeds at once.

A learner (InSPO, BC, OMIGA: `LEARNERS`) holds the networks of S runs that differ only in their seed,
batched as a leading tensor dimension, and knows one iteration: `update(batch, draws, step)`. This loop
owns everything around it, per seed: the dataset and its seeded generator, the minibatch rows, the
metrics rows, the evaluations, the checkpoints and the run folder (the same files a single run writes),
and resume. Seed s draws exactly what a single run with seed s draws, in the same order: its networks
right after its dataset, then the behaviour-cloning and training minibatches and the iteration's
randomness from its own generator.

    for step in first_step .. steps:
        rows of every seed from its generator; batch = the seeds' rows stacked [S, B, ...]
        draws = learner.draw(generators, step)          # permutations, resampling uniforms
        metrics = learner.update(batch, draws, step)   # [S] each
        metrics rows, evaluation, checkpoint (each seed to its own folder)
"""

from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import torch
from torch import Tensor, nn

import inspo_ext
from inspo.config import TrainConfig
from inspo.data import TransitionBatch
from inspo.nets import AgentMLP, policy_fn, set_precision
from inspo.progress import progress_bar
from inspo.run import (
    RunFiles,
    check_dataset_unchanged,
    eval_generator,
    prepare_run,
    resume_config,
    rng_state,
    set_rng_state,
)

# torch.compile's backend for config.compile (tests of the graph itself may use "aot_eager": same capture)
COMPILE_BACKEND = "inductor"
LEARNERS = {
    "inspo": "inspo.trainer:InspoLearner",
    "bc": "inspo.bc:BCLearner",
    "omiga": "inspo.baselines.omiga:OmigaLearner",
    "cfcql": "inspo.baselines.cfcql:CfcqlLearner",
}


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


def task_name(config: TrainConfig) -> str:
    """ENV/DATASET of a run, as tables and progress displays name it (a dataset path by its name)."""
    data = Path(config.dataset_path).name if config.dataset_path else config.dataset
    return f"{config.env or 'dataset'}/{data}"


class NonFiniteLoss(ValueError):
    """A training metric (a loss) that turned infinite or NaN: the run stops rather than train on it."""


class FiniteWatch:
    """Where each metric of each seed first turned non-finite, tracked on the device without a host sync
    per step; `check` (at log rows, evaluations and checkpoints) raises NonFiniteLoss naming the first."""

    def __init__(self) -> None:
        self.first_bad: Optional[Tensor] = None  # [K, S] step (1-based) of the first non-finite value, 0: none
        self.names: list[str] = []

    def update(self, metrics: dict[str, Tensor], done: int) -> None:
        values = torch.stack([value.detach().reshape(-1).float() for value in metrics.values()])
        if self.first_bad is None:
            self.names = list(metrics)
            self.first_bad = torch.zeros(values.shape, dtype=torch.int64, device=values.device)
        bad = ~torch.isfinite(values)
        self.first_bad = torch.where(bad & (self.first_bad == 0), done, self.first_bad)

    def check(self, seeds: Sequence[int]) -> None:
        if self.first_bad is None or not bool((self.first_bad > 0).any()):
            return
        steps = torch.where(self.first_bad > 0, self.first_bad, torch.iinfo(torch.int64).max)
        index = int(torch.argmin(steps))
        metric, seed = divmod(index, steps.shape[1])
        raise NonFiniteLoss(
            f"training stopped: {self.names[metric]} of seed {seeds[seed]} is not finite at step "
            f"{int(steps.reshape(-1)[index])} (the data's scale or the learning rates make the losses "
            "overflow); the checkpoint before that step is kept"
        )


def replays_cuda_graphs(device: str | torch.device) -> bool:
    """Whether a compiled iteration on `device` is replayed as a CUDA graph: on CUDA devices (launch-bound
    at these sizes, thousands of small kernels per step), not on the CPU (no such thing there)."""
    return torch.device(device).type == "cuda"


def seed_slice(state: dict[str, Tensor], seed: int) -> dict[str, Tensor]:
    """Seed `seed`'s part of a batched state dict: every tensor's slice [seed:seed+1]."""
    return {key: value[seed : seed + 1].clone() for key, value in state.items()}


def get_learner(algo: str) -> type[Learner]:
    if algo not in LEARNERS:
        raise ValueError(f"unknown algorithm {algo!r}; known: {sorted(LEARNERS)}")
    module_name, name = LEARNERS[algo].split(":")
    return getattr(importlib.import_module(module_name), name)


def stack_batches(batches: Sequence[TransitionBatch]) -> TransitionBatch:
    """The seeds' minibatches as one [S, ...] batch (of one seed: views, no copy)."""

    def stacked(values: list[Optional[Tensor]]) -> Optional[Tensor]:
        if values[0] is None:
            return None
        return values[0].unsqueeze(0) if len(values) == 1 else torch.stack(values)

    return TransitionBatch(**{f.name: stacked([getattr(b, f.name) for b in batches]) for f in fields(TransitionBatch)})


def minibatch(store: Any, rows: Tensor, names: Optional[tuple[str, ...]] = None) -> TransitionBatch:
    """Transitions `rows` of a store: every field, or only the fields `names` (the others None)."""
    if names is None:
        return store.index(rows)
    here = rows.to(store.reward.device)
    return TransitionBatch(
        **{f.name: getattr(store, f.name)[here] if f.name in names else None for f in fields(TransitionBatch)}
    )


def check_seed_batch(configs: Sequence[TrainConfig]) -> None:
    """Runs batched together must differ only in their seed."""

    def without_seed(config: TrainConfig) -> dict[str, Any]:
        return {k: v for k, v in config.to_dict().items() if k != "seed"}

    first = without_seed(configs[0])
    for config in configs[1:]:
        other = without_seed(config)
        differ = sorted(k for k in first if first[k] != other[k])
        if differ:
            raise ValueError(f"runs trained together must differ only in their seed; these fields differ: {differ}")


def train_seeds(
    configs: Sequence[TrainConfig],
    out_dirs: Optional[Sequence[Any]] = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    allow_dataset_change: bool = False,
    progress: bool = True,
    on_step: Optional[Callable[[int], None]] = None,
) -> list[dict[str, Any]]:
    """Train runs that differ only in their seed, batched in one process; returns each run's results
    ({"scores": final evaluation, ...}) and writes each run folder of `out_dirs` (None: no files).

    Seed s draws what `train_seeds([configs[s]], ...)` draws, in the same order; in float64 it reaches
    the same numbers, in float32 the batched kernels round differently (their reductions are ordered
    otherwise), and a run that is sensitive to rounding can end elsewhere (docs/ALGORITHM.md#seeds-batched-in-one-process).

    Each run folder is locked while the runs train (inspo.run.RunFiles): a folder another live run
    writes is refused. A fresh run needs an empty folder; `overwrite` deletes the run there first.
    resume=True continues every folder from its checkpoint (all at the same step) bit-identically on the
    CPU, on the dataset the checkpoint was trained on (its fingerprint; `allow_dataset_change`: on
    whatever the dataset path holds now). `on_step(step)` is called after every iteration (a hook for
    progress displays and tests).
    """
    configs = list(configs)
    out_dirs = [None] * len(configs) if out_dirs is None else list(out_dirs)
    if not configs or len(out_dirs) != len(configs):
        raise ValueError(
            f"train_seeds needs one out_dir per config, got {len(configs)} configs and {len(out_dirs)} out_dirs"
        )
    files: list[RunFiles] = []
    try:
        for config, out_dir in zip(configs, out_dirs):
            files.append(RunFiles(out_dir, config.tensorboard, resume=resume, overwrite=overwrite))
        return _train_seeds(configs, out_dirs, files, resume, allow_dataset_change, progress, on_step)
    finally:
        for run_files in files:
            run_files.close()


def _train_seeds(configs, out_dirs, files, resume, allow_dataset_change, progress, on_step) -> list[dict[str, Any]]:
    start_time = time.perf_counter()
    checkpoints = None
    if resume:
        checkpoints = [run_files.load_checkpoint() for run_files in files]
        for checkpoint, out_dir, config in zip(checkpoints, out_dirs, configs):
            if checkpoint.get("algo") != config.algo:
                raise ValueError(
                    f"checkpoint in {out_dir} is from algo {checkpoint.get('algo')!r}, not {config.algo!r}"
                )
        configs = [resume_config(checkpoint, config) for checkpoint, config in zip(checkpoints, configs)]
        at = sorted({checkpoint["step"] for checkpoint in checkpoints})
        if len(at) > 1:
            raise ValueError(
                f"the checkpoints are at different steps {at} (a batched run interrupted while "
                f"saving): resume each run folder on its own"
            )
    check_seed_batch(configs)
    learner_type = get_learner(configs[0].algo)

    runs, learner = [], None
    try:
        for seed, config in enumerate(configs):
            run = prepare_run(config)  # seeds the global RNG: seed s's networks are drawn right after its data
            if checkpoints is not None and not allow_dataset_change:
                check_dataset_unchanged(checkpoints[seed], run.dataset_fingerprint, out_dirs[seed])
            files[seed].write_config(config)
            store = run.store
            dims = Dims(store.n_agents, store.obs_dim, store.state_dim, store.n_actions)
            if learner is None:
                learner = learner_type(config, len(configs), dims)
                set_precision(learner, config.precision)
            elif dims != learner.dims:
                raise ValueError(f"seed {config.seed}'s dataset has {dims}, seed {configs[0].seed}'s {learner.dims}")
            learner.initialize_seed(seed)
            runs.append(run)
    except BaseException:
        for run_files in files:
            run_files.discard_if_created()
        raise
    stores = [run.store for run in runs]
    generators = [run.generator for run in runs]
    first_step = 0
    if checkpoints is not None:
        learner.load_seed_states([checkpoint["learner"] for checkpoint in checkpoints])
        for generator, checkpoint in zip(generators, checkpoints):
            set_rng_state(generator, checkpoint["rng"])
        first_step = checkpoints[0]["step"]
        start_time -= checkpoints[0].get("seconds", 0.0)  # the time trained before the interruption counts
        for run_files in files:
            run_files.truncate_logs(first_step)
    learner.prepare(stores, generators, resumed=checkpoints is not None, progress=progress)
    batch_size = learner.batch_size(stores)

    def evaluate(step: int) -> list[dict[str, float]]:
        all_scores = []
        for seed, (run, config) in enumerate(zip(runs, configs)):
            scores: dict[str, float] = {}
            if run.env is not None:  # dataset-only training has nothing to evaluate on
                scores = run.env.evaluate(
                    policy_fn(learner.actor, seed),
                    episodes=config.eval_episodes,
                    generator=eval_generator(config, step),
                )
                files[seed].log("eval", {"step": step, **scores})
            all_scores.append(scores)
        return all_scores

    def save(step: int) -> None:
        actor_state = learner.actor.state_dict()
        for seed, (config, generator) in enumerate(zip(configs, generators)):
            files[seed].save_checkpoint(
                dict(
                    config=config.to_dict(),
                    algo=config.algo,
                    step=step,
                    actor=seed_slice(actor_state, seed),
                    learner=learner.seed_state(seed),
                    rng=rng_state(generator),
                    dataset=runs[seed].dataset_fingerprint,
                    seconds=round(time.perf_counter() - start_time, 3),
                )
            )

    steps, log_every = learner.steps, configs[0].log_every
    eval_every, checkpoint_every = configs[0].eval_every, configs[0].checkpoint_every
    bar = progress_bar(steps, initial=first_step, desc=learner.label, enabled=progress)
    compile_timer = CompileTimer(learner.label, enabled=configs[0].compile, announce=progress)
    watch, seeds = FiniteWatch(), [config.seed for config in configs]
    for step in range(first_step, steps):
        rows = [
            torch.randint(len(store), (batch_size,), generator=generator, device=generator.device)
            for store, generator in zip(stores, generators)
        ]
        batch = stack_batches(
            [minibatch(store, seed_rows, learner.batch_fields) for store, seed_rows in zip(stores, rows)]
        )
        done = step + 1
        # The ops' input errors wait in their status flags (no synchronization inside the step, none
        # inside a CUDA graph) and are raised here before anything reads, evaluates or saves the step.
        with compile_timer, inspo_ext.deferred_status():
            metrics = learner.update(batch, learner.draw(generators, step), step)
        watch.update(metrics, done)
        logs = done % log_every == 0 or done == steps
        evaluates = eval_every and done % eval_every == 0 and done != steps
        saves = checkpoint_every and done % checkpoint_every == 0 and done != steps
        if logs or evaluates or saves:
            try:
                inspo_ext.check_status()
            except ValueError:  # an op refused a value since the last check
                watch.check(seeds)  # a loss that turned non-finite first says more (the data were checked)
                raise
            watch.check(seeds)
        if logs:
            values = {key: value.tolist() for key, value in metrics.items()}
            extras, seconds = learner.row_extras(step), round(time.perf_counter() - start_time, 3)
            for seed, run_files in enumerate(files):
                run_files.log(
                    "metrics",
                    {"step": done, **{k: round(v[seed], 6) for k, v in values.items()}, **extras, "seconds": seconds},
                )
            bar.set_postfix({k: f"{values[k][0]:.3g}" for k in learner.postfix_keys if k in values})
        if evaluates:
            evaluate(done)
        if saves:
            save(done)
        bar.update(1)
        if on_step is not None:
            on_step(done)
    bar.close()
    watch.check(seeds)
    final_scores = evaluate(steps)
    save(steps)
    seconds = time.perf_counter() - start_time
    results = []
    for seed, (config, store, scores) in enumerate(zip(configs, stores, final_scores)):
        result = dict(
            config=config.to_dict(),
            algo=config.algo,
            scores=scores,
            steps=steps,
            transitions=len(store),
            seconds=seconds,
            **compile_timer.results(),
            **learner.results_extras(seed, store),
        )
        files[seed].write_results(result)
        results.append(result)
    return results


class CompileTimer:
    """Times the iterations in which torch.compile compiled a graph (dynamo's count of graphs grew): the
    first call of the compiled iteration, and the first after the critic warm-up. Says so on stderr, since
    the progress display stands still meanwhile (minutes, for the exact mode), and reports the total as the
    run's `compile_seconds`."""

    def __init__(self, label: str, enabled: bool, announce: bool):
        self.label, self.enabled, self.announce = label, enabled, announce
        self.seconds, self.graphs = 0.0, 0

    def _graph_count(self) -> int:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])

    def __enter__(self) -> None:
        if self.enabled:
            self._before, self._start = self._graph_count(), time.perf_counter()

    def __exit__(self, *exc_info) -> None:
        if not self.enabled or self._graph_count() == self._before:
            return
        took = time.perf_counter() - self._start
        self.seconds += took
        self.graphs += 1
        if self.announce:
            print(
                f"{self.label}: compiled the training iteration (graph {self.graphs}) in {took:.1f} s; inductor "
                "caches the code it generates, so a later run of the same shapes compiles faster",
                file=sys.stderr,
                flush=True,
            )

    def results(self) -> dict[str, float]:
        return {"compile_seconds": round(self.seconds, 3)} if self.enabled else {}


def train(
    config: TrainConfig,
    *,
    out_dir=None,
    resume: bool = False,
    overwrite: bool = False,
    allow_dataset_change: bool = False,
    progress: bool = True,
    on_step: Optional[Callable[[int], None]] = None,
) -> dict[str, Any]:
    """One run (any algorithm of `LEARNERS`): train_seeds([config], [out_dir])[0]."""
    return train_seeds(
        [config],
        [out_dir],
        resume=resume,
        overwrite=overwrite,
        allow_dataset_change=allow_dataset_change,
        progress=progress,
        on_step=on_step,
    )[0]
