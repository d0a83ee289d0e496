"""One small call of every op on CUDA, for compute-sanitizer (benchmarks/gpu_check.sh runs it under memcheck,
racecheck and initcheck):

    compute-sanitizer --tool memcheck --error-exitcode 1 python benchmarks/sanitizer_cases.py

Each op runs forward and, where it has a gradient, backward, on the random inputs of `inspo bench` at
B = 2,100 samples (three scan tiles per resample column), N = 3 agents, A = 40 actions (a row group of 16
lanes); then resample on a column without a positive weight, whose error path must not read the scan it
never wrote. Exit code 0 when every call ran (the sanitizer's own exit code reports what it found).
"""

from __future__ import annotations

import math
import sys

import torch

import inspo_ext
from inspo.bench.ops import OPS, Size, regions


def main() -> int:
    if not torch.cuda.is_available() or not inspo_ext.build_info()["cuda"]:
        print("sanitizer_cases: error: needs a CUDA device and a CUDA build of inspo_ext", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    generator = torch.Generator().manual_seed(0)
    size = Size(2100, 3, 40)
    for name, op in OPS.items():
        inputs = op.setup(size, device, generator)
        prepare, region = regions(op, inspo_ext, inputs, op.modes[-1])  # fwd+bwd where there is a backward
        region(prepare())
        torch.cuda.synchronize()
        print(f"{name}: {op.modes[-1]} at {size.label}")
    log_rho = torch.randn(size.batch, size.agents, device=device)
    log_rho[:, 1] = -math.inf
    try:
        inspo_ext.resample(log_rho)
    except ValueError as error:  # the expected error: a column of zero weights
        print(f"resample error path: {error}")
    else:
        print("sanitizer_cases: error: resample accepted a column without a positive weight", file=sys.stderr)
        return 1
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
