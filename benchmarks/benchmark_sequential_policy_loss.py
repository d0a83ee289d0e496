"""Benchmark of `inspo_ext.sequential_policy_loss`: ours vs eager PyTorch vs torch.compile of the reference.

One setup for the kernel (`inspo.bench.ops.setup_sequential_policy_loss`: random inputs of the [B, N, A] sweep),
forward, backward and both (fwd+bwd); speed (median of repeats, interquartile spread, achieved GB/s and the
fraction of the measured copy bandwidth) and peak memory; the table grows as rows complete and the
CSV / Markdown land in runs/bench/sequential_policy_loss/. Any `inspo bench` option can follow, e.g.

    python benchmarks/benchmark_sequential_policy_loss.py --quick
    python benchmarks/benchmark_sequential_policy_loss.py --batch 16384 --agents 8 --actions 16 --threads 1
"""

import sys

from inspo.bench.cli import main

if __name__ == "__main__":
    sys.exit(
        main(
            [
                "--sections",
                "ops",
                "--ops",
                "sequential_policy_loss",
                "--out-dir",
                "runs/bench/sequential_policy_loss",
                *sys.argv[1:],
            ]
        )
    )
