"""Trainer registry: `inspo train --algo NAME` runs TRAINERS[NAME].

A trainer is `train(config, *, out_dir=None, resume=False, progress=True, on_step=None) -> results`,
results holding at least "scores" (the environment's evaluation). Entries are "module:function"
strings imported on first use, so optional baselines cost nothing until asked for.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

Trainer = Callable[..., dict[str, Any]]

TRAINERS: dict[str, str | Trainer] = {
    "inspo": "inspo.trainer:train",  # modes exact / fused / simultaneous via config.mode
    "bc": "inspo.bc:train_bc",
    "omiga": "inspo.baselines.omiga:train",  # provided by the baselines subpackage
    "cfcql": "inspo.baselines.cfcql:train",
}


def register(name: str, trainer: str | Trainer) -> None:
    TRAINERS[name] = trainer


def get_trainer(name: str) -> Trainer:
    if name not in TRAINERS:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(TRAINERS)}")
    entry = TRAINERS[name]
    if isinstance(entry, str):
        module_name, function = entry.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ValueError(f"algorithm {name!r} needs {module_name}, which is not installed ({error})") from error
        entry = TRAINERS[name] = getattr(module, function)
    return entry
