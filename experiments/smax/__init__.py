"""SMAX experiments behind docs/RESULTS.md and docs/SMAX.md: the grid and the evaluation protocol
(`python -m experiments.smax`), and the campaign's compute plan (`python -m experiments.smax.plan`)."""
