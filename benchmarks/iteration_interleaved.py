"""The iteration variants of `inspo bench --sections iteration`, timed interleaved on a shared machine.

Each round times one iteration of every variant in turn, so that load from other processes falls on
all of them alike; medians over the rounds. Then a profile of the compiled iteration's top ops.

    python benchmarks/iteration_interleaved.py [--shape 2s3z] [--case fused|exact|omiga] [--rounds 30]
"""

import argparse
import statistics
import sys
import time

import torch

from inspo.bench.iteration import SHAPES, VARIANTS, make_case, ops_backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="2s3z", choices=sorted(SHAPES))
    parser.add_argument("--case", default="fused", choices=("fused", "exact", "omiga"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--profile", action="store_true", help="also profile the compiled one-seed iteration")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    shape = SHAPES[args.shape]
    algo, mode = ("omiga", "fused") if args.case == "omiga" else ("inspo", args.case)
    cases = {}
    for variant in VARIANTS:
        case = make_case(algo, mode, shape, variant.seeds, variant.compiled, torch.device("cpu"))
        with ops_backend(variant.reference_ops):
            start = time.perf_counter()
            case.region(case.prepare())  # compiles the compiled variants
            print(f"{variant.name}: first call {time.perf_counter() - start:.1f} s", flush=True)
        cases[variant] = case
    times = {variant: [] for variant in VARIANTS}
    for _ in range(args.rounds):
        for variant, case in cases.items():
            prepared = case.prepare()
            with ops_backend(variant.reference_ops):
                start = time.perf_counter()
                case.region(prepared)
                times[variant].append((time.perf_counter() - start) / variant.seeds)
    plain = statistics.median(times[VARIANTS[0]])
    print(f"\n{args.shape} {args.case}, 1 thread, medians of {args.rounds} interleaved rounds (per seed)")
    for variant, values in times.items():
        median = statistics.median(values)
        print(
            f"  {variant.name:16s} {1e3 * median:8.2f} ms  {shape.batch / median:9.0f} samples/s  "
            f"{plain / median:5.2f}x plain PyTorch"
        )
    if args.profile:
        case = cases[VARIANTS[2]]
        prepared = [case.prepare() for _ in range(5)]
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
            for item in prepared:
                case.region(item)
        print(profile.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    return 0


if __name__ == "__main__":
    sys.exit(main())
