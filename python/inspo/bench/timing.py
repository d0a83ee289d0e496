"""Timing and peak-memory measurement of one benchmark row.

A row is a `region` (the code being timed) run after an untimed `prepare` (e.g. the forward pass
whose backward is timed). On CPU the clock is `time.perf_counter`; on CUDA a pair of CUDA events
recorded around the region, so host-side call overhead that stalls the GPU counts in both cases.
Repeats continue until both `min_repeats` and `min_time` are reached (capped at `max_repeats`):
small sizes get many repeats, large ones a few. The result is the median with its quartiles.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch.profiler import ProfilerActivity, profile, record_function

Prepare = Callable[[], Any]
Region = Callable[[Any], Any]


@dataclass(frozen=True)
class TimingPolicy:
    warmup: int = 1  # untimed calls before the first timed one (the first compiled call is extra)
    min_repeats: int = 5
    max_repeats: int = 200
    min_time: float = 0.5  # seconds of timed region per row before stopping (at least min_repeats)


@dataclass(frozen=True)
class Stats:
    median: float  # seconds
    p25: float
    p75: float
    repeats: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median."""
        return (self.p75 - self.p25) / self.median if self.median > 0 else float("nan")


class Clock:
    """Times one region: perf_counter on CPU, CUDA events (after a synchronize) on CUDA."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self._start = torch.cuda.Event(enable_timing=True)
            self._end = torch.cuda.Event(enable_timing=True)

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def time(self, region: Region, state: Any) -> float:
        self.sync()  # nothing queued before the region counts
        if self.cuda:
            self._start.record()
            region(state)
            self._end.record()
            self._end.synchronize()
            return self._start.elapsed_time(self._end) / 1e3
        start = time.perf_counter()
        region(state)
        return time.perf_counter() - start


def measure(region: Region, prepare: Prepare, device: torch.device, policy: TimingPolicy) -> Stats:
    clock = Clock(device)
    for _ in range(policy.warmup):
        clock.time(region, prepare())
    times: list[float] = []
    while len(times) < policy.max_repeats and (len(times) < policy.min_repeats or sum(times) < policy.min_time):
        times.append(clock.time(region, prepare()))
    return summarize(times)


def summarize(times: list[float]) -> Stats:
    if len(times) == 1:
        return Stats(times[0], times[0], times[0], 1)
    quartiles = statistics.quantiles(times, n=4, method="inclusive")
    return Stats(statistics.median(times), quartiles[0], quartiles[2], len(times))


def first_call_seconds(region: Region, prepare: Prepare, device: torch.device) -> float:
    """Duration of one call: used on the first call of a compiled function (its compile time)."""
    return Clock(device).time(region, prepare())


def peak_memory_bytes(region: Region, prepare: Prepare, device: torch.device) -> int:
    """Peak of the memory allocated inside the region, above the level when the region started.

    CUDA: the caching allocator's peak statistic. CPU: the profiler's allocation records (every
    tensor allocation, including those of compiled code and of our ops, whose outputs are torch
    tensors), replayed as a running sum and maximized over the region; `prepare` runs under the
    profiler too, so frees of what it allocated (a forward's saved tensors) count. Memory a C++
    kernel allocates outside torch (a std::vector scratch) is invisible to it.
    """
    if device.type == "cuda":
        state = prepare()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        region(state)
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated(device) - before
    with quiet_profiler(profile(activities=[ProfilerActivity.CPU], profile_memory=True)) as prof:
        state = prepare()
        with record_function(_REGION_MARKER):
            region(state)
        del state
    events = prof.profiler.kineto_results.events()
    marker = next(e for e in events if e.name() == _REGION_MARKER)
    start, end = marker.start_ns(), marker.start_ns() + marker.duration_ns()
    allocated = level_at_start = peak = 0
    for when, nbytes in sorted((e.start_ns(), e.nbytes()) for e in events if e.name() == "[memory]"):
        if when > end:
            break
        if when < start:
            allocated += nbytes
            level_at_start = peak = allocated
            continue
        allocated += nbytes
        peak = max(peak, allocated)
    return peak - level_at_start


_REGION_MARKER = "inspo_bench_region"


@contextlib.contextmanager
def quiet_profiler(prof: profile):
    """Enter and exit the profiler with stderr silenced: kineto prints a line on each start and stop."""
    with _stderr_to_devnull():
        prof.__enter__()
    try:
        yield prof
    finally:
        with _stderr_to_devnull():
            prof.__exit__(None, None, None)


@contextlib.contextmanager
def _stderr_to_devnull():
    saved: Optional[int] = None
    try:
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
    except OSError:  # no usable file descriptor 2 (e.g. an embedded interpreter): just run
        saved = None
    try:
        yield
    finally:
        if saved is not None:
            os.dup2(saved, 2)
            os.close(saved)
