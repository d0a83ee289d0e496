"""What one call of each op costs beyond its kernel on the CPU: the forward of the public function at a tiny shape
(B = 1, N = 1, A = 2, where the kernel is a few hundred nanoseconds) and at the SMAX 2s3z training shape
(B = 256, N = 5, A = 10), against `torch.ops.inspo_ext.OP` called directly (the custom op under the public
function: the call a compiled graph makes) and an empty `torch.ops.aten` op for scale.

    python benchmarks/call_overhead.py [--calls 2000] [--repeats 7]

One thread; each figure is the median over `repeats` of the mean time of `calls` calls, in microseconds.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Callable

import torch

import inspo_ext
from inspo.bench.ops import OPS, Size
from inspo.bench.runner import machine_summary
from inspo_ext._spec import OPS as SPECS

SHAPES = (("tiny", Size(1, 1, 2)), ("2s3z", Size(256, 5, 10)))


def per_call_us(fn: Callable[[], object], calls: int, repeats: int) -> float:
    for _ in range(min(calls, 100)):  # warm-up
        fn()
    means = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        means.append((time.perf_counter() - start) / calls * 1e6)
    return statistics.median(means)


def custom_op_call(name: str, inputs: dict) -> Callable[[], object]:
    """The custom op with the arguments the public function passes it (captured from one public call)."""
    spec = SPECS[name]
    captured = {}
    original = spec.op

    def capture(*args):
        captured["args"] = args
        return original(*args)

    spec.op = capture
    try:
        OPS[name].call(inspo_ext, inputs)
    finally:
        spec.op = original
    op = getattr(torch.ops.inspo_ext, name)
    args = captured["args"]
    return lambda: op(*args)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    for key, value in machine_summary(device).items():
        print(f"* {key}: {value}")
    print("* threads: 1")
    x = torch.zeros(4)
    empty = per_call_us(lambda: torch.ops.aten.alias(x), args.calls, args.repeats)
    print(f"an empty aten op (torch.ops.aten.alias): {empty:.1f} us\n")
    print("| op | shape | public function us | torch.ops.inspo_ext us |")
    print("|---|---|---|---|")
    for name, op in OPS.items():
        for label, size in SHAPES:
            inputs = {k: t.detach() for k, t in op.setup(size, device, torch.Generator().manual_seed(0)).items()}
            with torch.no_grad():
                public = per_call_us(functools.partial(op.call, inspo_ext, inputs), args.calls, args.repeats)
                direct = per_call_us(custom_op_call(name, inputs), args.calls, args.repeats)
            print(
                f"| {name} | {label} (B = {size.batch}, N = {size.agents}, A = {size.actions}) | {public:.1f} | {direct:.1f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
