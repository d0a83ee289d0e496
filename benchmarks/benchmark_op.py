"""Benchmark of one `inspo_ext` op: ours vs eager PyTorch vs torch.compile of the reference.

    python benchmarks/benchmark_op.py OP [inspo bench options]

The op's setup, call and bytes come from its OpSpec (`inspo.bench.ops.OPS`: random inputs of the [B, N, A]
sweep); forward, and backward and both (fwd+bwd) for a differentiable op; speed (median of repeats,
interquartile spread, achieved GB/s and the fraction of the measured copy bandwidth) and peak memory; the
table grows as rows complete and the CSV / Markdown land in runs/bench/OP/. Any `inspo bench` option can
follow, e.g.

    python benchmarks/benchmark_op.py sequential_policy_loss --quick
    python benchmarks/benchmark_op.py resample --batch 16384 --agents 8 --actions 16 --threads 1
"""

import sys

from inspo.bench.ops import OPS
from inspo.cli.bench import main

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in OPS:
        given = repr(sys.argv[1]) if len(sys.argv) > 1 else "none"
        print(
            f"benchmark_op.py: error: the first argument is the op, one of {sorted(OPS)} (got {given})", file=sys.stderr
        )
        sys.exit(2)
    op = sys.argv[1]
    sys.exit(main(["--sections", "ops", "--ops", op, "--out-dir", f"runs/bench/{op}", *sys.argv[2:]]))
