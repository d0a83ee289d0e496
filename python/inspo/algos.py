"""Trainer registry: `inspo train --algo NAME` runs TRAINERS[NAME].

A trainer is `train(config, *, out_dir=None, resume=False, progress=True, on_step=None,
overwrite=False, allow_dataset_change=False) -> results` (the keywords of inspo.loop.train_seeds),
results holding at least "scores" (the environment's evaluation). Entries are "module:function"
strings imported on first use, so optional baselines cost nothing until asked for. An algorithm with
settings of its own names its option dataclass in `ALGO_OPTIONS` ("module:Class", inspo.options); the
run's config holds them as `algo_options` (`--set cfcql.alpha=0.1`).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

from inspo.options import NoOptions

Trainer = Callable[..., dict[str, Any]]

TRAINERS: dict[str, str | Trainer] = {
    "inspo": "inspo.trainer:train",  # modes exact / fused / simultaneous via config.mode
    "bc": "inspo.bc:train_bc",
    "omiga": "inspo.baselines.omiga:train",  # provided by the baselines subpackage
    "cfcql": "inspo.baselines.cfcql:train",
}


# the option dataclass of each algorithm with settings; the others take inspo.options.NoOptions
ALGO_OPTIONS: dict[str, str | type] = {
    "omiga": "inspo.baselines.omiga:OmigaOptions",
    "cfcql": "inspo.baselines.cfcql:CfcqlOptions",
}


def get_trainer(name: str) -> Trainer:
    if name not in TRAINERS:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(TRAINERS)}")
    entry = TRAINERS[name] = _resolve(name, TRAINERS[name])
    return entry


def algo_options_type(name: str) -> type:
    """The option dataclass of algorithm `name` (NoOptions for one without settings)."""
    if name not in TRAINERS:
        raise ValueError(f"unknown algorithm {name!r}; known: {sorted(TRAINERS)}")
    entry = ALGO_OPTIONS[name] = _resolve(name, ALGO_OPTIONS.get(name, NoOptions))
    return entry


def _resolve(name: str, entry: str | Any) -> Any:
    """A registry entry: "module:attribute" imported, anything else as it is."""
    if not isinstance(entry, str):
        return entry
    module_name, attribute = entry.split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        raise ValueError(f"algorithm {name!r} needs {module_name}, which is not installed ({error})") from error
    return getattr(module, attribute)
