"""sequential_policy_loss forward + backward on the CPU with its large outputs faulted in 4 KB pages (as
torch's CPU allocator hands them out) and advised into 2 MB pages first (inspo_ext._backend.prepare_output),
timed interleaved in one process, against the machine's copy bandwidth measured in the same run.

    python benchmarks/first_touch.py [--batch 65536] [--agents 8] [--actions 16] [--rounds 30]

One thread. Both variants run the same kernels; only the advice on the fresh gradient buffer (the forward's
logit gradient, B * N * A floats, which the backward of the summed loss hands to autograd as it is) differs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import inspo_ext
from inspo.bench.ops import OPS, Size, regions
from inspo.bench.roofline import last_level_cache_bytes, measure_bandwidth
from inspo.bench.timing import TimingPolicy
from inspo_ext import _backend


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--agents", type=int, default=8)
    parser.add_argument("--actions", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    size = Size(args.batch, args.agents, args.actions)
    op = OPS["sequential_policy_loss"]
    inputs = op.setup(size, device, torch.Generator().manual_seed(0))
    prepare, region = regions(op, inspo_ext, inputs, "full")

    def timed(advise: bool) -> float:
        _backend.advise_huge_pages_enabled = advise
        start = time.perf_counter()
        region(prepare())
        return time.perf_counter() - start

    for advise in (False, True):
        timed(advise)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.rounds):
        for advise in (False, True):
            times[advise].append(timed(advise))
    _backend.advise_huge_pages_enabled = True
    bandwidth = measure_bandwidth(device, max(4 * last_level_cache_bytes(), 256 << 20), TimingPolicy())
    nbytes = op.bytes_moved(size, "full")
    print(
        f"sequential_policy_loss fwd+bwd, {size.label}, 1 thread, medians of {args.rounds} interleaved rounds; "
        f"copy bandwidth {bandwidth.copy_gbps:.1f} GB/s (this run), {nbytes / 1e6:.0f} MB moved per call"
    )
    for advise, label in ((False, "4 KB pages (no advice)"), (True, "huge pages advised")):
        median = statistics.median(times[advise])
        gbps = nbytes / median / 1e9
        print(f"  {label:24s} {1e3 * median:8.2f} ms  {gbps:6.2f} GB/s  {100 * bandwidth.fraction(gbps):5.1f}% of copy")
    print(f"  speed-up of the advice: {statistics.median(times[False]) / statistics.median(times[True]):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
