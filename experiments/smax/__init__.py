"""SMAX experiments behind docs/RESULTS.md and docs/SMAX.md: the evaluation protocol and its campaigns
(`python -m experiments.smax`), and the campaign's compute plan (`python -m experiments.smax.plan`)."""
