"""The iteration variants of `inspo bench --sections iteration`, timed interleaved on a shared machine.

Each round times one iteration of every variant in turn, so that load from other processes falls on
all of them alike; medians over the rounds. Optionally a profile of one variant (default: the compiled
one-seed iteration), summed by kind of event.
On CUDA (`--device cuda`) the compiled variants are replayed as CUDA graphs, and the compiled one-seed
iteration without the graph ("ours+compile/nograph") is timed too; every call is timed to its
completion (torch.cuda.synchronize before and after). Last, the iteration's matmul FLOPs and its floor at the
GEMM rate of each precision among the variants (fp32; bf16 for the */bf16 variants).

    python benchmarks/iteration_interleaved.py [--shape 2s3z] [--case fused|exact|omiga] [--rounds 30]
        [--device cpu|cuda] [--variants eager,ours,...] [--profile [--profile-variant NAME]]
"""

import argparse
import statistics
import sys

import torch
import torch._inductor.config

from inspo.bench.iteration import (
    COMPILED_WITHOUT_GRAPH,
    OMIGA_HIDDEN,
    SHAPES,
    VARIANTS,
    gemm_rate,
    make_case,
    matmul_flops,
    ops_backend,
)
from inspo.bench.timing import Clock


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="2s3z", choices=sorted(SHAPES))
    parser.add_argument("--case", default="fused", choices=("fused", "exact", "omiga"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--variants", default=None, help="comma list of variant names (default: all)")
    parser.add_argument("--profile", action="store_true", help="also profile one variant's iteration (5 calls)")
    parser.add_argument(
        "--profile-variant", default="ours+compile", help="the variant --profile profiles (default ours+compile)"
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch sees no CUDA device")
    known = (*VARIANTS, COMPILED_WITHOUT_GRAPH) if device.type == "cuda" else VARIANTS
    chosen = [v.name for v in known] if args.variants is None else args.variants.split(",")
    unknown = sorted(set(chosen) - {v.name for v in known})
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {[v.name for v in known]}")
    variants = [v for v in known if v.name in chosen]
    torch.set_num_threads(1)
    if args.profile:  # name inductor's CPU kernels in the profile (set before anything compiles)
        torch._inductor.config.cpp.enable_kernel_profile = True
    shape = SHAPES[args.shape]
    algo, mode = ("omiga", "fused") if args.case == "omiga" else ("inspo", args.case)

    clock = Clock(device)

    def timed(variant, case, prepared) -> float:
        with ops_backend(variant.reference_ops):
            return clock.time(case.region, prepared)

    cases = {}
    for variant in variants:
        case = make_case(
            algo,
            mode,
            shape,
            variant.seeds,
            variant.compiled,
            device,
            cuda_graphs=variant.cuda_graphs,
            precision=variant.precision,
        )
        seconds = timed(variant, case, case.prepare())  # compiles the compiled variants
        seconds += timed(variant, case, case.prepare())  # and records the CUDA graph (its warm-up was the first)
        print(f"{variant.name}: first two calls {seconds:.1f} s", flush=True)
        cases[variant] = case
    times = {variant: [] for variant in variants}
    for _ in range(args.rounds):
        for variant, case in cases.items():
            times[variant].append(timed(variant, case, case.prepare()) / variant.seeds)
    plain = statistics.median(times[variants[0]])
    threads = "1 thread" if device.type == "cpu" else f"{torch.cuda.get_device_name(device)}"
    print(f"\n{args.shape} {args.case}, {threads}, medians of {args.rounds} interleaved rounds (per seed)")
    for variant, values in times.items():
        median = statistics.median(values)
        print(
            f"  {variant.name:21s} {1e3 * median:8.2f} ms  {shape.batch / median:10.0f} samples/s  "
            f"{plain / median:5.2f}x {variants[0].name}"
        )
    flops = matmul_flops(next(iter(cases.values())))
    print(f"matmul FLOPs per iteration (forward and backward): {flops / 1e9:.3f} GFLOP")
    for precision in sorted({variant.precision for variant in variants}):
        rate = gemm_rate(shape, shape.hidden[0] if algo == "inspo" else OMIGA_HIDDEN[0], device, precision=precision)
        print(f"  floor at the {precision} GEMM rate ({rate / 1e9:.0f} GFLOP/s): {1e3 * flops / rate:.2f} ms")
    if args.profile:
        profiled = [case for variant, case in cases.items() if variant.name == args.profile_variant]
        if not profiled:
            parser.error(f"--profile-variant {args.profile_variant!r} is not among the timed --variants")
        case = profiled[0]
        prepared = [case.prepare() for _ in range(5)]
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profile:
            for item in prepared:
                case.region(item)
        averages = profile.key_averages()
        print(averages.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=60))
        print_shares(averages, len(prepared))
    return 0


# Where the compiled iteration's time goes, by kind of event (self CPU time; on CPU inductor's kernels are
# named graph_<k>_cpp_fused_..., since --profile sets inductor.config.cpp.enable_kernel_profile)
SHARES = (
    ("matmuls (the networks' forward and backward)", ("aten::baddbmm", "aten::bmm", "aten::mm", "aten::addmm")),
    ("inductor's fused kernels", ("graph_",)),
    ("inductor's wrapper code (Python, between the kernels)", ("## Call CompiledFxGraph",)),
    ("our ops (inspo_ext)", ("inspo_ext::", "GeneratedBackwardFor_inspo_ext")),
    ("dynamo's guards", ("TorchDynamo Cache Lookup",)),
    ("copies", ("aten::copy_",)),
)


def print_shares(averages, iterations: int) -> None:
    total = sum(event.self_cpu_time_total for event in averages)
    print(f"\nper iteration under the profiler: {total / 1e3 / iterations:.2f} ms")
    for label, prefixes in SHARES:
        spent = sum(e.self_cpu_time_total for e in averages if e.key.startswith(prefixes))
        print(f"  {label:55s} {spent / 1e3 / iterations:7.2f} ms  {100 * spent / total:5.1f}%")


if __name__ == "__main__":
    sys.exit(main())
