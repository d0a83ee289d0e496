"""Benchmark of one full training iteration (InSPO fused and exact, OMIGA), as a user runs it.

`inspo bench --sections iteration` (see `inspo.bench.iteration`): plain PyTorch (the reference ops),
our ops eager, 5 seeds batched eager, our compiled iteration, and the compiled iteration with 5 seeds
batched (per seed), at the SMAX 2s3z shape and at B = 4k, N = 8, A = 16.

    python benchmarks/benchmark_iteration.py [--quick] [--iteration-shapes 2s3z,4k] [--threads 1]
"""

import sys

from inspo.cli.bench import main

if __name__ == "__main__":
    sys.exit(main(["--sections", "iteration", "--out-dir", "runs/bench/iteration", *sys.argv[1:]]))
