"""The training loop of every algorithm, for S seeds at once.

A learner (inspo.learners.learner.Learner; which one: config.algo in inspo.algorithms) holds the networks of
S runs that differ only in their seed, batched as a leading tensor dimension, and knows one iteration. This
loop owns everything around it, per seed: the task (environment, dataset, seeded generator:
inspo.task), the minibatch rows, the metrics rows, the evaluations, the checkpoints and the run folder
(inspo.runfolder: the same files a single run writes), and resume. Seed s draws exactly what a single run
with seed s draws, in the same order: its networks right after its dataset, then the behaviour-cloning and
training minibatches and the iteration's randomness from its own generator.

    set up every seed (or restore it from its checkpoint); learner.prepare (InSPO: fit mu by BC)
    for step in first_step .. steps:
        rows of every seed from its generator; batch = the seeds' rows stacked [S, B, ...]
        metrics = learner.update(batch, learner.draw(generators, step), step)   # [S] each
        metrics rows, evaluation, checkpoint (each seed to its own folder)
    final evaluation, checkpoint and results
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

import inspo_ext
from inspo.algorithms import learner_class
from inspo.config import TrainConfig
from inspo.data import minibatch, stack_batches
from inspo.learners.learner import Dims, seed_slice
from inspo.nets import policy_fn, set_precision
from inspo.progress import progress_bar
from inspo.runfolder import RunFiles, resume_config
from inspo.task import Task, check_dataset_unchanged, eval_generator, prepare_task, rng_state, set_rng_state


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
    """One run of any algorithm (config.algo): train_seeds([config], [out_dir])[0]; returns its results
    ({"scores": the final evaluation, ...})."""
    return train_seeds(
        [config],
        [out_dir],
        resume=resume,
        overwrite=overwrite,
        allow_dataset_change=allow_dataset_change,
        progress=progress,
        on_step=on_step,
    )[0]


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

    Each run folder is locked while the runs train (inspo.runfolder.RunFiles): a folder another live run
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
    """train_seeds with its run folders open: set up (or restore) every seed, then the loop."""
    start_time = time.perf_counter()
    checkpoints = None
    if resume:
        checkpoints = read_checkpoints(files, out_dirs, configs)
        configs = [resume_config(checkpoint, config) for checkpoint, config in zip(checkpoints, configs)]
    check_seed_batch(configs)
    learner, tasks = build_seeds(configs, files, checkpoints if not allow_dataset_change else None, out_dirs)
    stores = [task.store for task in tasks]
    generators = [task.generator for task in tasks]
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
        for seed, (task, config) in enumerate(zip(tasks, configs)):
            scores: dict[str, float] = {}
            if task.env is not None:  # dataset-only training has nothing to evaluate on
                scores = task.env.evaluate(
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
                    dataset=tasks[seed].dataset_fingerprint,
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


def read_checkpoints(files: Sequence[RunFiles], out_dirs: Sequence[Any], configs: Sequence[TrainConfig]) -> list[dict]:
    """Every run folder's checkpoint, all of the runs' algorithm and at one step."""
    checkpoints = [run_files.load_checkpoint() for run_files in files]
    for checkpoint, out_dir, config in zip(checkpoints, out_dirs, configs):
        if checkpoint.get("algo") != config.algo:
            raise ValueError(f"checkpoint in {out_dir} is from algo {checkpoint.get('algo')!r}, not {config.algo!r}")
    at = sorted({checkpoint["step"] for checkpoint in checkpoints})
    if len(at) > 1:
        raise ValueError(
            f"the checkpoints are at different steps {at} (a batched run interrupted while saving): resume each run "
            "folder on its own"
        )
    return checkpoints


def build_seeds(
    configs: Sequence[TrainConfig],
    files: Sequence[RunFiles],
    checkpoints: Optional[Sequence[dict]],
    out_dirs: Sequence[Any],
) -> tuple[Any, list[Task]]:
    """The learner of every seed and each seed's task, in a single run's order: seed s's networks are drawn
    right after its dataset. With `checkpoints`, a dataset that changed since its checkpoint is refused. A
    failure removes the run folders this call created."""
    learner_type = learner_class(configs[0].algo)
    tasks, learner = [], None
    try:
        for seed, config in enumerate(configs):
            task = prepare_task(config)  # seeds the global RNG
            if checkpoints is not None:
                check_dataset_unchanged(checkpoints[seed], task.dataset_fingerprint, out_dirs[seed])
            files[seed].write_config(config)
            store = task.store
            dims = Dims(store.n_agents, store.obs_dim, store.state_dim, store.n_actions)
            if learner is None:
                learner = learner_type(config, len(configs), dims)
                set_precision(learner, config.precision)
            elif dims != learner.dims:
                raise ValueError(f"seed {config.seed}'s dataset has {dims}, seed {configs[0].seed}'s {learner.dims}")
            learner.initialize_seed(seed)
            tasks.append(task)
    except BaseException:
        for run_files in files:
            run_files.discard_if_created()
        raise
    return learner, tasks


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
