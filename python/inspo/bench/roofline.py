"""The machine's memory bandwidth, measured in the same run as the ops (the roofline's limit).

`copy` is a large tensor copy, counted as STREAM counts it: bytes read + bytes written (the
write-allocate traffic a CPU also pays is not counted, so the true bus traffic is higher). `read`
is a reduction over the same buffer (bytes read only), printed for reference: ops that read much
more than they write can go above the copy figure. The buffer is chosen larger than the last-level
cache so that the figure is DRAM's, not the cache's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from inspo.bench.timing import Stats, TimingPolicy, measure


@dataclass(frozen=True)
class Bandwidth:
    copy_gbps: float  # best of the repeats (the limit each row is compared with)
    copy_median_gbps: float
    read_gbps: float
    buffer_bytes: int

    def fraction(self, gbps: float) -> float:
        return gbps / self.copy_gbps


def _gbps(nbytes: int, stats: Stats, best: bool) -> float:
    seconds = stats.p25 if best else stats.median
    return nbytes / seconds / 1e9


def measure_bandwidth(device: torch.device, buffer_bytes: int, policy: TimingPolicy) -> Bandwidth:
    elements = buffer_bytes // 4
    source = torch.rand(elements, device=device)
    target = torch.empty_like(source)
    copy = measure(lambda _: target.copy_(source), lambda: None, device, policy)
    read = measure(lambda _: source.sum(), lambda: None, device, policy)
    nbytes = elements * 4
    # "best" is the first quartile, not the minimum: one lucky repeat should not set the limit.
    return Bandwidth(
        copy_gbps=_gbps(2 * nbytes, copy, best=True),
        copy_median_gbps=_gbps(2 * nbytes, copy, best=False),
        read_gbps=_gbps(nbytes, read, best=True),
        buffer_bytes=nbytes,
    )


def last_level_cache_bytes() -> int:
    """Size of the largest CPU cache (sysfs), 0 when unknown."""
    largest = 0
    try:
        from pathlib import Path

        for entry in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
            text = entry.read_text().strip()
            scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(text[-1], 1)
            largest = max(largest, int(text.rstrip("KMG")) * scale)
    except (OSError, ValueError):
        return 0
    return largest
