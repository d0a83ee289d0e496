"""`inspo bench`: throughput of the fused ops against eager PyTorch and
torch.compile, against the measured memory bandwidth.

Sections (all by default): `ops` (every op over the B x N x A sweep, forward / backward / both),
`batch` (time against B), `threads` (1 -> all cores), `iteration` (one whole training iteration of
each learner, InSPO fused and exact and OMIGA, at the shapes of inspo.bench.iteration.SHAPES). Output:
a table on the terminal as rows complete, then CSV, Markdown and the speed-up plot in --out-dir, and
the issue's targets judged on this run.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

import torch

SECTIONS = ("ops", "batch", "threads", "iteration")
# The grid (--full): every op at every B x N x A. Hours of eager PyTorch on a small machine.
FULL_SWEEP = dict(batch="1024,16384,262144", agents="2,8,27", actions="5,16,64")
# The default run (tens of minutes on 2 cores: eager PyTorch at B = 256k dominates): every op at every
# B of the grid, N = 8, A in {5, 16}; other sizes through --agents / --actions / --full.
DEFAULT_SWEEP = dict(batch="1024,16384,262144", agents="8", actions="5,16")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--full",
        action="store_true",
        help=f"the whole grid B={FULL_SWEEP['batch']} N={FULL_SWEEP['agents']} "
        f"A={FULL_SWEEP['actions']} (default: N={DEFAULT_SWEEP['agents']}, "
        f"A={DEFAULT_SWEEP['actions']})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a seconds-long smoke run (tiny sizes, few repeats): checks that everything works; "
        "its numbers are not measurements",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda (CUDA rows are timed with CUDA events)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {SECTIONS}")
    parser.add_argument("--ops", default="all", help="comma list of op names, or 'all'")
    parser.add_argument(
        "--impls",
        default=None,
        help="comma list of ours, eager, compiled (default all three; --quick: ours,eager, because "
        "a first torch.compile takes 10-30 s here)",
    )
    parser.add_argument("--modes", default="fwd,bwd,full", help="comma list of fwd, bwd, full")
    parser.add_argument("--batch", default=None, help=f"B values of the op sweep (default {DEFAULT_SWEEP['batch']})")
    parser.add_argument("--agents", default=None, help=f"N values (default {DEFAULT_SWEEP['agents']})")
    parser.add_argument("--actions", default=None, help=f"A values (default {DEFAULT_SWEEP['actions']})")
    parser.add_argument(
        "--iteration-shapes",
        default="2s3z,4k",
        help="shapes of the training-iteration section: 2s3z (B=256, N=5, A=10, SMAX 2s3z "
        "obs/state), 4k (B=4096, N=8, A=16)",
    )
    parser.add_argument(
        "--max-elements",
        type=float,
        default=40e6,
        help="skip sizes with B*N*A above this (the eager reference's memory and time)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch / OpenMP threads (default: all cores)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per row after the first")
    parser.add_argument("--repeats", type=int, default=None, help="minimum timed calls per row")
    parser.add_argument("--min-time", type=float, default=None, help="minimum timed seconds per row")
    parser.add_argument(
        "--static-compile",
        action="store_true",
        help="torch.compile(dynamic=False): one compile per shape instead of one per op",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument(
        "--bandwidth-mib",
        type=int,
        default=None,
        help="buffer size of the bandwidth copy (default: 1024, or twice the last-level cache)",
    )
    parser.add_argument("--out-dir", default="runs/bench", help="where bench.csv, bench.md and the plot go")
    parser.add_argument("--plot", default=None, help="path of the speed-up plot (default OUT_DIR/perf_speedup.png)")
    parser.add_argument("--seed", type=int, default=0)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _ints_or_names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def iteration_shape(name: str, batch: int = 0, agents: int = 0, actions: int = 0):
    """A named shape of inspo.bench.iteration.SHAPES, or (name "quick") a tiny one for smoke runs."""
    from inspo.bench.iteration import SHAPES, Shape

    if name == "quick":
        return Shape("quick", batch, agents, actions, 8, 12, (16, 16), (32, 32), False)
    if name not in SHAPES:
        raise SystemExit(f"inspo bench: unknown iteration shape {name!r}; choose from {sorted(SHAPES)}")
    return SHAPES[name]


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = list(allowed) if text == "all" else [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in names if x not in allowed]
    if unknown:
        raise SystemExit(f"inspo bench: unknown {what} {unknown}; choose from {list(allowed)}")
    return names


def run(args: argparse.Namespace) -> int:
    from inspo.bench import report
    from inspo.bench.ops import IMPLEMENTATIONS, MODES, OPS, Size
    from inspo.bench.roofline import last_level_cache_bytes, measure_bandwidth
    from inspo.bench.runner import (
        POLICY_LOSS,
        Bench,
        Settings,
        available_cores,
        evaluate_targets,
        format_targets,
        machine_summary,
        timestamp,
    )
    from inspo.bench.timing import TimingPolicy

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("inspo bench: --device cuda but torch sees no CUDA device")
    sections = _names(args.sections, SECTIONS, "section")
    op_names = _names(args.ops, tuple(OPS), "op")
    impls = tuple(_names(args.impls or ("ours,eager" if args.quick else "all"), IMPLEMENTATIONS, "implementation"))
    modes = tuple(_names(args.modes, MODES, "mode"))
    cores = available_cores()
    threads = args.threads or cores
    quick = args.quick

    if quick:
        sweep = dict(batch="1024", agents="2,8", actions="5")
        policy = TimingPolicy(warmup=1, min_repeats=3, max_repeats=20, min_time=0.02)
        bandwidth_bytes = 256 << 20
        iteration_shapes = [iteration_shape("quick", 64, 3, 5)]
        iteration_variants = ("eager", "ours")  # no compile: a first torch.compile takes a minute here
        batch_points, thread_size = [256, 1024], Size(1024, 4, 5)
    else:
        sweep = FULL_SWEEP if args.full else DEFAULT_SWEEP
        policy = TimingPolicy()
        bandwidth_bytes = max(1 << 30, 2 * last_level_cache_bytes())
        iteration_shapes = [iteration_shape(name) for name in _ints_or_names(args.iteration_shapes)]
        iteration_variants = (
            "eager",
            "ours",
            "ours/S5",
            "ours+compile",
            "ours+compile/S5",
            "ours/bf16",
            "ours+compile/bf16",
        )
        batch_points, thread_size = None, Size(65536, 8, 16)
    policy = TimingPolicy(
        warmup=policy.warmup if args.warmup is None else args.warmup,
        min_repeats=policy.min_repeats if args.repeats is None else args.repeats,
        max_repeats=policy.max_repeats,
        min_time=policy.min_time if args.min_time is None else args.min_time,
    )
    if args.bandwidth_mib:
        bandwidth_bytes = args.bandwidth_mib << 20
    if batch_points is None:  # the sweep's B values and the powers of 4 between them
        batches = _ints(args.batch or sweep["batch"])
        batch_points = sorted(set(batches) | {4**k for k in range(3, 12) if min(batches) < 4**k < max(batches)})
        thread_size = Size(max(b for b in batch_points if b <= 65536), 8, 16)
    sizes = [
        Size(b, n, a)
        for b in _ints(args.batch or sweep["batch"])
        for n in _ints(args.agents or sweep["agents"])
        for a in _ints(args.actions or sweep["actions"])
    ]
    # 1 -> all cores, whatever --threads the other sections run at
    thread_counts = sorted({1, threads, cores} | {t for t in (2, 4, 8, 16, 32, 64) if t < max(threads, cores)})
    if "compiled" in impls:
        # the trainer calls each op with a few argument variants (grad / no grad, ratio modes, N = 1):
        # room for all of them, so that no compiled op silently falls back to eager
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    started = timestamp()
    header = machine_summary(device)
    header.update(
        {
            "threads": str(threads),
            "started": started,
            "timing": f"median of >= {policy.min_repeats} repeats and >= {policy.min_time:g} s per row after "
            f"{policy.warmup} warm-up call(s) plus the first call; spread = interquartile range",
            "torch.compile": "dynamic=False (per shape)" if args.static_compile else "dynamic=True (one per op)",
        }
    )
    load = os.getloadavg()[0]
    if load > 0.5:
        header["warning"] = (
            f"load average {load:.1f} at start: other processes share the cores, so the "
            f"timings are noisy (multi-threaded rows most of all)"
        )
    print("inspo bench" + (" --quick (smoke run: not a measurement)" if quick else ""))
    for key, value in header.items():
        print(f"  {key}: {value}")

    torch.set_num_threads(threads)
    bandwidth = measure_bandwidth(device, bandwidth_bytes, policy)
    print(
        f"  memory bandwidth (copy of {bandwidth.buffer_bytes >> 20} MiB, read + write bytes): "
        f"{bandwidth.copy_gbps:.1f} GB/s (median {bandwidth.copy_median_gbps:.1f}); read-only "
        f"{bandwidth.read_gbps:.1f} GB/s"
    )
    header["memory bandwidth"] = (
        f"{bandwidth.copy_gbps:.1f} GB/s copy ({bandwidth.buffer_bytes >> 20} MiB, "
        f"read + write), {bandwidth.read_gbps:.1f} GB/s read-only"
    )

    settings = Settings(
        device=device,
        impls=impls,
        modes=modes,
        policy=policy,
        threads=threads,
        max_elements=int(args.max_elements),
        measure_memory=not args.no_memory,
        compile_dynamic=not args.static_compile,
        seed=args.seed,
    )
    bench = Bench(settings, bandwidth)
    if "ops" in sections:
        bench.op_sweep(op_names, sizes)
    if "batch" in sections and POLICY_LOSS in op_names:
        bench.batch_scaling(batch_points, thread_size.agents, thread_size.actions)
    if "threads" in sections and POLICY_LOSS in op_names and device.type == "cpu":
        bench.thread_scaling(thread_size, thread_counts)
    if "iteration" in sections:
        from inspo.bench.iteration import VARIANTS

        bench.iterations(iteration_shapes, tuple(v for v in VARIANTS if v.name in iteration_variants))

    if quick:  # tiny shapes under a smoke run's repeats: a verdict on them would mean nothing
        verdicts = ["targets not judged: --quick is a smoke run, not a measurement"]
    else:
        verdicts = format_targets(evaluate_targets(bench.rows, bench.floors))
    print("\n## targets (CPU, this run)\n")
    for line in verdicts:
        print("  " + line)
    header["load average (1 min) at end"] = f"{os.getloadavg()[0]:.2f}"
    header["finished"] = timestamp()

    out_dir = Path(args.out_dir)
    report.write_csv(bench.rows, out_dir / "bench.csv")
    plot_path = Path(args.plot) if args.plot else out_dir / "perf_speedup.png"
    plotted = report.plot_speedup(
        bench.rows, plot_path, title=f"inspo_ext speed-up, {header['cpu']}, {threads} threads ({device.type})"
    )
    (out_dir / "bench.md").write_text(report.markdown_report(header, bench.rows, verdicts))
    print(f"\nwrote {out_dir / 'bench.csv'}, {out_dir / 'bench.md'}" + (f", {plotted}" if plotted else ""))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="inspo bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
