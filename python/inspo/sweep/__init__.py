"""Sweeps on Ray: a list of runs (configs x seeds), each seed group one Ray task (`inspo sweep`, `python -m experiments.results`)."""
