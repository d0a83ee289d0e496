"""The results grid behind docs/RESULTS.md (XOR, M-NE, Bridge): `python -m experiments.results`."""
