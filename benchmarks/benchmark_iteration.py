"""Benchmark of one full InSPO training iteration (`inspo.trainer.InspoStep`), exact vs fused mode.

One setup (`inspo.bench.iteration.make_case`: a synthetic dataset of the requested size, fresh
networks per implementation): the critic step and the agent pass, timed end to end with the trainer
calling ours, the eager reference or the compiled reference ops; then fused vs exact against N.

    python benchmarks/benchmark_iteration.py [--quick] [--iteration-batch 4096] [--threads 1]
"""
import sys

from inspo.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["--sections", "iteration", "--out-dir", "runs/bench/iteration", *sys.argv[1:]]))
