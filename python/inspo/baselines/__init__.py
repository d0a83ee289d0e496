"""Baselines InSPO is compared with (spec: shared/spec/baselines.md). BC lives in `inspo.bc`."""
