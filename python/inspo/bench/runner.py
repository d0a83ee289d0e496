"""The benchmark run: the op sweep, the training iteration, the scaling studies and the targets.

Every row of a group (same op, mode, size, threads) is measured back to back for the three
implementations, so the ratios compare numbers taken under the same machine load.
"""

from __future__ import annotations

import math
import os
import platform
import sys
import time
import traceback
from dataclasses import dataclass, replace
from typing import Any, Callable, Optional, TextIO

import torch

from inspo.bench import ops as op_specs
from inspo.bench.ops import OPS, BenchOp, Size
from inspo.bench.report import Row, fill_ratios, terminal_header, terminal_line
from inspo.bench.roofline import Bandwidth
from inspo.bench.timing import TimingPolicy, first_call_seconds, measure, peak_memory_bytes

POLICY_LOSS = "sequential_policy_loss"


@dataclass(frozen=True)
class Settings:
    device: torch.device
    impls: tuple[str, ...]
    modes: tuple[str, ...]
    policy: TimingPolicy
    threads: int
    max_elements: int
    measure_memory: bool = True
    compile_dynamic: bool = True
    seed: int = 0


def machine_summary(device: torch.device) -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    summary = {
        "cpu": f"{cpu}, {available_cores()} cores available",
        "torch": torch.__version__,
        "ours": op_specs.ours_backend(),
        "device": str(device),
        "load average (1 min) at start": f"{os.getloadavg()[0]:.2f}",
    }
    if device.type == "cuda":
        summary["gpu"] = torch.cuda.get_device_name(device)
    return summary


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


class Bench:
    def __init__(self, settings: Settings, bandwidth: Bandwidth, out: Optional[TextIO] = None):
        self.settings = settings
        self.bandwidth = bandwidth
        self.out = out  # None: sys.stdout as it is when a line is printed (a default bound at import went stale)
        self.impls = op_specs.make_implementations(settings.impls, dynamic=settings.compile_dynamic)
        self.rows: list[Row] = []
        self._measured: dict[tuple, Row] = {}  # (op, impl, mode, size, threads) -> Row, reused across sections
        self.floors: dict[tuple[str, str], float] = {}  # (iteration op, shape) -> matmul-FLOP floor in ms

    def say(self, text: str = "") -> None:
        print(text, file=self.out if self.out is not None else sys.stdout, flush=True)

    # ---- one group: the implementations of one (op, mode, size, threads) ----
    def op_group(
        self, section: str, spec: BenchOp, size: Size, mode: str, inputs: Optional[dict[str, Any]], threads: int
    ) -> dict[str, Row]:
        group = {}
        for impl in self.settings.impls:
            key = (spec.name, impl, mode, size, threads)
            if key in self._measured:
                row = replace(self._measured[key], section=section)
            else:
                row = self._op_row(section, spec, size, mode, impl, inputs, threads)
                self._measured[key] = row
            group[impl] = row
        self._finish_group(group)
        return group

    def _op_row(
        self,
        section: str,
        spec: BenchOp,
        size: Size,
        mode: str,
        impl: str,
        inputs: Optional[dict[str, Any]],
        threads: int,
    ) -> Row:
        row = self._blank(section, spec.name, impl, mode, size, threads)
        if inputs is None:
            row.note = self._skip_note(size)
            return row
        prepare, region = op_specs.regions(spec, self.impls[impl], inputs, mode)
        self._time(row, prepare, region, threads)
        if row.ok:
            row.bytes_moved = spec.bytes_moved(size, mode)
            row.gbps = row.bytes_moved / (row.median_ms / 1e3) / 1e9
            row.roofline = self.bandwidth.fraction(row.gbps)
        return row

    def _blank(self, section: str, op: str, impl: str, mode: str, size: Size, threads: int) -> Row:
        return Row(
            section=section,
            op=op,
            impl=impl,
            mode=mode,
            batch=size.batch,
            agents=size.agents,
            actions=size.actions,
            threads=threads,
            device=str(self.settings.device),
        )

    def _skip_note(self, size: Size) -> str:
        return (
            f"skipped: B*N*A = {size.elements / 1e6:.0f}M > --max-elements "
            f"{self.settings.max_elements / 1e6:.0f}M (eager memory/time)"
        )

    def _time(self, row: Row, prepare: Callable, region: Callable, threads: int) -> None:
        device, policy = self.settings.device, self.settings.policy
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            row.first_call_s = first_call_seconds(region, prepare, device)
            stats = measure(region, prepare, device, policy)
            if self.settings.measure_memory:
                row.peak_mb = peak_memory_bytes(region, prepare, device) / 2**20
        except Exception as error:  # one failing implementation must not end the run: report it in its row
            row.note = f"failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"[:160]
            traceback.print_exc(file=sys.stderr)
            return
        finally:
            torch.set_num_threads(previous)
        row.median_ms, row.p25_ms, row.p75_ms = stats.median * 1e3, stats.p25 * 1e3, stats.p75 * 1e3
        row.repeats = stats.repeats

    def _finish_group(self, group: dict[str, Row]) -> None:
        rows = list(group.values())
        fill_ratios(rows)
        self.rows.extend(rows)
        self.say(terminal_line(group))

    def _inputs(self, spec: BenchOp, size: Size) -> Optional[dict[str, Any]]:
        if size.elements > self.settings.max_elements:
            return None
        generator = torch.Generator().manual_seed(self.settings.seed)
        return spec.setup(size, self.settings.device, generator)

    # ---- sections ----
    def op_sweep(self, op_names: list[str], sizes: list[Size]) -> None:
        self.say("\n## ops: every op, every size; forward (fwd), backward (bwd), both (full)\n")
        self.say(terminal_header())
        for name in op_names:
            spec = OPS[name]
            for size in sizes:
                inputs = self._inputs(spec, size)
                for mode in spec.modes:
                    if mode in self.settings.modes:
                        self.op_group("ops", spec, size, mode, inputs, self.settings.threads)
                del inputs

    def batch_scaling(self, batches: list[int], agents: int, actions: int) -> None:
        spec = OPS[POLICY_LOSS]
        self.say(f"\n## batch scaling: {POLICY_LOSS} fwd+bwd, N={agents}, A={actions}\n")
        self.say(terminal_header())
        groups = []
        for batch in batches:
            size = Size(batch, agents, actions)
            groups.append(
                self.op_group("batch_scaling", spec, size, "full", self._inputs(spec, size), self.settings.threads)
            )
        for impl in self.settings.impls:
            points = [(g[impl].batch, g[impl].median_ms) for g in groups if impl in g and g[impl].ok]
            if len(points) >= 2:
                per_sample = ", ".join(f"B={b}: {t * 1e6 / b:.0f} ns" for b, t in points)
                self.say(
                    f"  {impl:9s} log-log slope {loglog_slope(points):.2f} (1 = linear in B); "
                    f"time per sample {per_sample}"
                )

    def thread_scaling(self, size: Size, thread_counts: list[int]) -> None:
        spec = OPS[POLICY_LOSS]
        self.say(f"\n## thread scaling: {POLICY_LOSS} fwd+bwd, {size.label}\n")
        self.say(terminal_header())
        inputs = self._inputs(spec, size)
        groups = [self.op_group("thread_scaling", spec, size, "full", inputs, threads) for threads in thread_counts]
        for impl in self.settings.impls:
            times = {g[impl].threads: g[impl].median_ms for g in groups if impl in g and g[impl].ok}
            if 1 in times and len(times) >= 2:
                speedups = ", ".join(f"{t} threads: {times[1] / ms:.2f}x" for t, ms in sorted(times.items()))
                self.say(f"  {impl:9s} speed-up over 1 thread: {speedups}")

    def iterations(self, shapes: list, variants: tuple) -> None:
        """One training iteration per learner and shape, in every variant of `inspo.bench.iteration`."""
        from inspo.bench import iteration  # imports the learners, only when this section runs
        from inspo.bench.report import iteration_header, iteration_line

        threads = self.settings.threads
        self.say(
            "\n## training iteration: what a user runs (plain PyTorch, our ops, compiled, 5 seeds batched, bf16)\n"
        )
        self.say(iteration_header())
        for shape in shapes:
            size = Size(shape.batch, shape.agents, shape.actions)
            for algo, mode in (("inspo", "fused"), ("inspo", "exact"), ("omiga", "fused")):
                op = f"iteration/{'omiga' if algo == 'omiga' else mode}"
                group = {}
                for variant in variants:
                    row = self._blank("iteration", op, variant.name, "full", size, threads)
                    case = iteration.make_case(
                        algo,
                        mode,
                        shape,
                        variant.seeds,
                        variant.compiled,
                        self.settings.device,
                        self.settings.seed,
                        precision=variant.precision,
                    )
                    with iteration.ops_backend(variant.reference_ops):
                        self._time(row, case.prepare, case.region, threads)
                        if row.ok and variant.name in ("ours", "ours/bf16"):  # the floor of each precision
                            previous = torch.get_num_threads()
                            torch.set_num_threads(threads)
                            rate = iteration.gemm_rate(
                                shape, case.learner.config.hidden[0], self.settings.device, precision=variant.precision
                            )
                            floor_ms = iteration.matmul_flops(case) / rate * 1e3
                            if variant.precision == "fp32":
                                self.floors[(op, shape.name)] = floor_ms
                            row.note = (
                                f"matmul floor {floor_ms:.2f} ms at {rate / 1e9:.0f} GFLOP/s ({variant.precision})"
                            )
                            if algo == "inspo":
                                row.note += f"; our ops {100 * iteration.ops_share(case):.0f}% of the iteration"
                            torch.set_num_threads(previous)
                    if row.ok and variant.seeds > 1:  # per seed
                        row.median_ms, row.p25_ms, row.p75_ms = (
                            t / variant.seeds for t in (row.median_ms, row.p25_ms, row.p75_ms)
                        )
                        row.note = f"{variant.seeds} seeds batched, time per seed"
                    group[variant.name] = row
                fill_ratios(list(group.values()))
                self.rows.extend(group.values())
                for row in group.values():
                    self.say(iteration_line(shape.name, row))

    def find(
        self, section: str, op: str, impl: str, mode: str, size: Size, threads: Optional[int] = None
    ) -> Optional[Row]:
        threads = self.settings.threads if threads is None else threads
        for row in self.rows:
            if (row.section, row.op, row.impl, row.mode, row.batch, row.agents, row.actions, row.threads) == (
                section,
                op,
                impl,
                mode,
                size.batch,
                size.agents,
                size.actions,
                threads,
            ):
                return row
        return None


def loglog_slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(time) against log(B)."""
    xs = [math.log(b) for b, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


# ---------------------------------------------------------------------------------------------
# Targets of the issue, judged on this run's rows.
# ---------------------------------------------------------------------------------------------
@dataclass
class Target:
    name: str
    goal: str
    measured: str
    met: Optional[bool]  # None: not measured in this run


def evaluate_targets(rows: list[Row], floors: Optional[dict[tuple[str, str], float]] = None) -> list[Target]:
    ours = [r for r in rows if r.impl == "ours" and r.section == "ops"]
    targets = []

    big = [r for r in ours if r.op == POLICY_LOSS and r.mode == "full" and r.batch * r.agents >= 65536 and r.ok]
    for attr, goal, label in (("vs_eager", 5.0, "eager PyTorch"), ("vs_compiled", 2.0, "torch.compile")):
        values = [(getattr(r, attr), r) for r in big if not math.isnan(getattr(r, attr))]
        if values:
            worst, row = min(values, key=lambda v: v[0])
            targets.append(
                Target(
                    f"{POLICY_LOSS} fwd+bwd vs {label}, B*N >= 64k",
                    f">= {goal:g}x",
                    f"min {worst:.2f}x at B={row.batch} N={row.agents} A={row.actions} (over {len(values)} sizes)",
                    worst >= goal,
                )
            )
        else:
            targets.append(
                Target(f"{POLICY_LOSS} fwd+bwd vs {label}, B*N >= 64k", f">= {goal:g}x", "not measured", None)
            )

    full = [r for r in ours if r.op == POLICY_LOSS and r.mode == "full" and r.ok]
    if full:
        largest = max(full, key=lambda r: (r.batch * r.agents * r.actions, r.batch))
        targets.append(
            Target(
                f"{POLICY_LOSS} fwd+bwd at the largest size, fraction of copy bandwidth",
                ">= 50%",
                f"{100 * largest.roofline:.0f}% ({largest.gbps:.1f} GB/s) at B={largest.batch} "
                f"N={largest.agents} A={largest.actions}",
                largest.roofline >= 0.5,
            )
        )
    else:
        targets.append(
            Target(f"{POLICY_LOSS} at the largest size, fraction of copy bandwidth", ">= 50%", "not measured", None)
        )

    targets += iteration_targets(rows, floors or {})

    small = [r for r in ours if r.batch == 1024 and r.ok and not math.isnan(r.vs_eager)]
    if small:
        worst = min(small, key=lambda r: r.vs_eager)
        slower = sum(r.vs_eager < 1.0 for r in small)
        targets.append(
            Target(
                "B = 1k, every op and mode: ours no slower than eager",
                ">= 1x",
                f"min {worst.vs_eager:.2f}x ({worst.op} {worst.mode} N={worst.agents} "
                f"A={worst.actions}); {slower} of {len(small)} rows below 1x",
                worst.vs_eager >= 1.0,
            )
        )
    else:
        targets.append(Target("B = 1k: ours no slower than eager", ">= 1x", "not measured", None))
    return targets


def iteration_targets(rows: list[Row], floors: dict[tuple[str, str], float]) -> list[Target]:
    """The iteration rows' speed targets (2s3z: N = 5; the large batch: N = 8)."""
    found = {(r.op, r.agents, r.impl): r for r in rows if r.section == "iteration" and r.ok}
    targets = []

    def ratio(name: str, op: str, agents: int, impl: str, base: str, goal: float) -> None:
        row, other = found.get((op, agents, impl)), found.get((op, agents, base))
        if row is None or other is None:
            targets.append(Target(name, f">= {goal:g}x", "not measured", None))
            return
        value = other.median_ms / row.median_ms
        targets.append(
            Target(
                name,
                f">= {goal:g}x",
                f"{value:.2f}x ({base} {other.median_ms:.2f} ms, {impl} {row.median_ms:.2f} ms)",
                value >= goal,
            )
        )

    ratio("2s3z fused: compiled vs plain PyTorch", "iteration/fused", 5, "ours+compile", "eager", 3.0)
    ratio(
        "2s3z fused: 5 seeds batched, per seed, vs plain PyTorch", "iteration/fused", 5, "ours+compile/S5", "eager", 4.0
    )
    ratio("B=4k N=8 fused: compiled vs plain PyTorch", "iteration/fused", 8, "ours+compile", "eager", 2.0)
    ratio("2s3z exact: compiled vs its eager iteration", "iteration/exact", 5, "ours+compile", "ours", 2.0)
    ratio("2s3z OMIGA (256-wide): compiled vs eager", "iteration/omiga", 5, "ours+compile", "ours", 3.0)
    ratio("2s3z OMIGA: 5 seeds batched, per seed, vs eager", "iteration/omiga", 5, "ours+compile/S5", "ours", 4.0)
    compiled, floor = found.get(("iteration/fused", 5, "ours+compile")), floors.get(("iteration/fused", "2s3z"))
    if compiled is not None and floor:
        value = compiled.median_ms / floor
        targets.append(
            Target(
                "2s3z fused: compiled iteration vs its matmul floor",
                "<= 1.5x",
                f"{value:.2f}x (floor {floor:.2f} ms, compiled {compiled.median_ms:.2f} ms)",
                value <= 1.5,
            )
        )
    else:
        targets.append(Target("2s3z fused: compiled iteration vs its matmul floor", "<= 1.5x", "not measured", None))
    return targets


def format_targets(targets: list[Target]) -> list[str]:
    mark = {True: "MET", False: "MISSED", None: "n/a"}
    return [f"[{mark[t.met]:6s}] {t.name}: goal {t.goal}; measured {t.measured}" for t in targets]


def timestamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")
