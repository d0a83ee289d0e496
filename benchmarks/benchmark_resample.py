"""Benchmark of `inspo_ext.resample`: ours vs eager PyTorch vs torch.compile of the reference.

One setup for the kernel (`inspo.bench.ops.setup_resample`: random inputs of the [B, N, A] sweep),
forward (the op carries no gradient); speed (median of repeats, interquartile spread, achieved GB/s and the
fraction of the measured copy bandwidth) and peak memory; the table grows as rows complete and the
CSV / Markdown land in runs/bench/resample/. Any `inspo bench` option can follow, e.g.

    python benchmarks/benchmark_resample.py --quick
    python benchmarks/benchmark_resample.py --batch 16384 --agents 8 --actions 16 --threads 1
"""

import sys

from inspo.bench.cli import main

if __name__ == "__main__":
    sys.exit(main(["--sections", "ops", "--ops", "resample", "--out-dir", "runs/bench/resample", *sys.argv[1:]]))
