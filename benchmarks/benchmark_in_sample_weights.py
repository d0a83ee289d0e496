"""Benchmark of `inspo_ext.in_sample_weights`: ours vs eager PyTorch vs torch.compile of the reference.

One setup for the kernel (`inspo.bench.ops.setup_in_sample_weights`: random inputs of the [B, N, A] sweep),
forward (the op carries no gradient); speed (median of repeats, interquartile spread, achieved GB/s and the
fraction of the measured copy bandwidth) and peak memory; the table grows as rows complete and the
CSV / Markdown land in runs/bench/in_sample_weights/. Any `inspo bench` option can follow, e.g.

    python benchmarks/benchmark_in_sample_weights.py --quick
    python benchmarks/benchmark_in_sample_weights.py --batch 16384 --agents 8 --actions 16 --threads 1
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
                "in_sample_weights",
                "--out-dir",
                "runs/bench/in_sample_weights",
                *sys.argv[1:],
            ]
        )
    )
