"""The sweep runner: every seed group of a sweep as one Ray task, on this machine or on a cluster.

Finished runs are reused (their key: full resolved config, finishing step, code version), a group whose
task fails or whose worker or node is lost is retried up to `retries` times (its finished seeds are
reused and a run with a checkpoint of its config resumes from it), and one progress line tells done /
running / failed / left and the ETA. Without an address Ray starts on this machine and stops at the
end; with one (`auto` or HOST:PORT) the sweep joins that cluster.
"""

from __future__ import annotations

import os
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Optional, TextIO

from inspo.sweep.execute import code_version, collect_files, finished_result, run_key, store_files, sweep_task
from inspo.sweep.spec import Run, seed_groups
from inspo.sweep.store import SummaryStore

UNMEASURED = dict(cpu_seconds=None, wall_seconds=None, note="finished before this sweep: its cost was not measured")


def import_ray():
    try:
        import ray
    except ImportError as error:
        raise ValueError("sweeps run on Ray, which is not installed: pip install 'inspo[sweep]'") from error
    return ray


@dataclass
class SweepOutcome:
    results: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (run name, seed) -> results
    failures: list[str] = field(default_factory=list)  # one line per run that failed every attempt
    retries: list[str] = field(default_factory=list)  # one line per retried attempt (why)
    seconds: float = 0.0
    cpus: float = 0.0  # the cluster's CPUs when the sweep started (0: nothing to train, no cluster)

    @property
    def reused(self) -> int:
        return sum(1 for result in self.results.values() if result.get("reused"))


class Progress:
    """One live line on a terminal (redrawn in place); on anything else a plain line per change."""

    def __init__(self, total: int, stream: TextIO):
        self.total, self.stream = total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = time.perf_counter()
        self.last = ""
        self.trained = 0  # runs trained by this invocation (not reused): the ETA's rate

    def line(self, done: int, reused: int, running: int, failed: int) -> str:
        left = self.total - done - failed
        elapsed = time.perf_counter() - self.start
        if self.trained:
            eta = f"ETA {format_seconds(elapsed / self.trained * max(0, left))}"
        else:
            eta = "ETA -" if left else "ETA 0s"
        return (
            f"sweep: {done}/{self.total} done ({reused} reused), {running} running, {failed} failed, "
            f"{left - running} left, {eta}"
        )

    def show(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.stream.flush()
        elif text.rsplit(", ETA", 1)[0] != self.last.rsplit(", ETA", 1)[0]:
            print(text, file=self.stream, flush=True)
        self.last = text

    def message(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text + "\n" + self.last)
            self.stream.flush()
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_sweep(
    runs: list[Run],
    *,
    address: Optional[str] = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
    retries: int = 2,
    num_cpus: Optional[int] = None,
    seeds_per_process: Optional[int] = None,
    store: Optional[SummaryStore] = None,
    stream: Optional[TextIO] = None,
) -> SweepOutcome:
    """Run every run not finished yet; return the results of all runs that finished. A config's seeds train
    batched in one process, at most `seeds_per_process` of them (default: all). With a `store`, a run whose
    summary is there under its key is finished, and every run that finishes gets its summary written as its
    group returns (inspo.sweep.store). The progress line goes to `stream` (default: sys.stderr at the time of
    the call)."""
    stream = stream or sys.stderr
    if cpus_per_run <= 0 or gpus_per_run < 0 or retries < 0:
        raise ValueError("--cpus-per-run must be > 0, --gpus-per-run and --retries >= 0")
    if gpus_per_run > 0:  # a run given a GPU trains on it (the device is part of the run's key)
        runs = [
            run
            if run.config.device != "cpu"
            else Run(
                run.name,
                type(run.config).from_dict({**run.config.to_dict(), "device": "cuda"}),
                run.out_dir,
                run.finish,
            )
            for run in runs
        ]
    outcome = SweepOutcome()
    version = code_version()
    pending = runs
    if store is not None:  # runs summarized in the store need neither a task nor their run folder
        for run in runs:
            summary = store.finished(run, version)
            if summary is not None:
                outcome.results[(run.name, run.seed)] = dict(summary["results"], reused=True, resumed=False)
        pending = [run for run in runs if (run.name, run.seed) not in outcome.results]
    groups = []
    for group in seed_groups(pending, seeds_per_process):  # groups finished in this machine's run folders need no task
        found = [finished_result(run.out_dir, run_key(run.config, run.finish_spec, version)) for run in group]
        if all(result is not None for result in found):
            for run, result in zip(group, found):
                outcome.results[(run.name, run.seed)] = dict(result, reused=True, resumed=False)
                if store is not None:
                    store.record(run, version, collect_files(run.out_dir), UNMEASURED)
        else:
            groups.append(group)
    if not groups:
        progress = Progress(len(runs), stream)
        progress.show(progress.line(len(runs), len(runs), 0, 0))
        progress.close()
        return outcome
    with ray_session(address, num_cpus) as ray:
        outcome.cpus = ray.cluster_resources().get("CPU", 0.0)
        return _run_groups(ray, groups, outcome, len(runs), version, cpus_per_run, gpus_per_run, retries, store, stream)


@contextmanager
def ray_session(address: Optional[str] = None, num_cpus: Optional[int] = None):
    """Ray, connected: the session already open in this process, else a cluster joined at `address`, else
    Ray started on this machine (with `num_cpus` CPUs); what this opens it closes."""
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            # "local": a new Ray here, never a cluster that an earlier `ray start` left as this machine's default
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()


def _slots(ray, cpus_per_run: float, gpus_per_run: float) -> int:
    """How many groups the cluster can run at once now (it may grow or shrink during the sweep)."""
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 0) // cpus_per_run)
    if gpus_per_run > 0:
        slots = min(slots, int(resources.get("GPU", 0) // gpus_per_run))
    return max(1, slots)


def _run_groups(
    ray,
    groups: list[list[Run]],
    outcome: SweepOutcome,
    total: int,
    version: str,
    cpus_per_run: float,
    gpus_per_run: float,
    retries: int,
    store: Optional[SummaryStore],
    stream: TextIO,
) -> SweepOutcome:
    start = time.perf_counter()
    threads = max(1, int(cpus_per_run))
    task = ray.remote(sweep_task).options(
        num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0, retry_exceptions=False, name="inspo_sweep_group"
    )
    folders_last = folders_ray_puts_first()
    payloads = [
        [dict(config=run.config.to_dict(), out_dir=str(run.out_dir.resolve()), finish=run.finish_spec) for run in group]
        for group in groups
    ]
    # the longest groups first, so that the last task to finish is a short one
    order = deque(sorted(range(len(groups)), key=lambda g: -sum(_cost(run) for run in groups[g])))
    attempts = [0] * len(groups)
    in_flight: dict[Any, int] = {}
    failed_runs = 0
    progress = Progress(total, stream)

    def draw() -> None:
        running = sum(len(groups[g]) for g in in_flight.values())
        progress.show(progress.line(len(outcome.results), outcome.reused, running, failed_runs))

    try:
        while order or in_flight:
            slots = _slots(ray, cpus_per_run, gpus_per_run)
            while order and len(in_flight) < slots:
                g = order.popleft()
                attempts[g] += 1
                in_flight[task.remote(payloads[g], version, threads, folders_last)] = g
            draw()
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=1.0)
            for ref in ready:
                g = in_flight.pop(ref)
                group = groups[g]
                label = f"{group[0].name} seeds {', '.join(str(run.seed) for run in group)}"
                try:
                    returned = ray.get(ref)
                except ray.exceptions.RayError as error:
                    reason = _reason(error)
                    if attempts[g] <= retries:
                        outcome.retries.append(f"{label}: attempt {attempts[g]} failed ({reason}); retried")
                        progress.message(f"sweep: {outcome.retries[-1]}")
                        order.appendleft(g)
                    else:
                        failed_runs += len(group)
                        outcome.failures.append(f"{label}: failed {attempts[g]} times; last: {reason}")
                        progress.message(f"sweep: FAILED {outcome.failures[-1]}")
                    continue
                for run, result in zip(group, returned):
                    store_files(run.out_dir, result["files"])
                    if store is not None:
                        store.record(run, version, result["files"], result["cost"] or UNMEASURED)
                    outcome.results[(run.name, run.seed)] = dict(
                        result["results"], reused=result["reused"], resumed=result["resumed"]
                    )
                    progress.trained += not result["reused"]
        draw()
    finally:
        progress.close()
    outcome.seconds = time.perf_counter() - start
    return outcome


def _reason(error: Exception) -> str:
    """One line: the exception a task raised, or what Ray lost (a worker, a node)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException) and not isinstance(cause, type(error)):
        return f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def folders_ray_puts_first() -> list[str]:
    """The folders Ray puts at the front of every worker's sys.path: the driver's current folder and its
    script's. A repository root among them would hide the installed inspo_ext behind the root's source folder
    (inspo_ext/_checkout.py), so each task moves them to the end (`sweep_task`)."""
    return [os.path.abspath(os.curdir), os.path.dirname(os.path.realpath(sys.argv[0]))]


def _cost(run: Run) -> float:
    """A rough relative run time (iterations, and BC's steps), to start the long groups first."""
    per_step = {"bridge": 2.5}.get(run.config.env, 1.0)
    if run.config.algo == "inspo":
        per_step *= 1.8 if run.config.inspo.mode == "exact" else 1.0
        per_step *= 1 + 0.15 * (run.config.inspo.policy_steps - 1)
    return (0 if run.config.algo == "bc" else run.config.steps * per_step) + run.config.bc_steps * 2.0
