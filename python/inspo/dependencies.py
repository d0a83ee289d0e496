"""Optional dependencies: check for one before the work that needs it starts, and say how to get it."""

from __future__ import annotations

import importlib.util


class MissingExtraError(ValueError):
    """A feature was asked for whose optional package is not installed."""


def require(module: str, feature: str, install: str) -> None:
    """Raise MissingExtraError unless `module` can be imported; `install` is what to `pip install`
    (e.g. "'inspo[plots]'")."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtraError(f"{feature} needs the {module} package, which is not installed: pip install {install}")
