"""The results grid behind docs/RESULTS.md (XOR, M-NE, Bridge; SMAX rows): `python -m experiments.results`."""
