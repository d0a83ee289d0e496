"""Baselines InSPO is compared with (docs/ALGORITHM.md#baselines). BC lives in `inspo.bc`."""
