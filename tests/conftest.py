"""Fixtures every test module can ask for by name: `backend` (ops_testing) and `float64` (train_testing)."""

pytest_plugins = ["ops_testing", "train_testing"]
