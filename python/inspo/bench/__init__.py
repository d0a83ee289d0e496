"""Benchmarks of the fused ops and of a training iteration: `inspo bench` or `inspo bench`."""
