"""Environment registry: a name -> a factory taking the family's options and the name's argument.

Names: `xor`, `mne`, `bridge`; a name `family:arg` (e.g. `smax:3m`) looks up `family` and passes
`arg` on. A family with settings of its own declares them as an option dataclass (`ENV_OPTIONS`:
`xor.variant`, `mne.diagonal`, `mne.sampling`; inspo.options), which the run's config holds as
`env_options`. Registered families whose module is optional (SMAX) are imported only when asked for.
Any other `module:factory` is a user environment: `factory(config)` from that module (importable,
or a file module.py in the current folder) returns an object with `n_agents`, `n_actions`,
`obs_dim`, `state_dim` and `evaluate(policy, *, episodes, generator) -> {score: value}` (the
evaluation part of `Env`; it needs no datasets of its own). Agents with fewer actions than
`n_actions` mark the rest unavailable in the masks they pass the policy, as the datasets do.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, Callable, Optional, Protocol

from inspo.envs.base import Env, PolicyFn
from inspo.envs.bridge import Bridge
from inspo.envs.matrix import MneGame, MneOptions, XorGame, XorOptions
from inspo.options import NoOptions

# factory(options, arg) -> Env; options: the family's option dataclass (ENV_OPTIONS), arg the part
# after ":" in the name (None without one)
EnvFactory = Callable[[Any, Optional[str]], Env]

ENVS: dict[str, EnvFactory] = {
    "xor": lambda options, arg: XorGame(variant=options.variant),
    "mne": lambda options, arg: MneGame(diagonal=options.diagonal, sampling=options.sampling),
    "bridge": lambda options, arg: Bridge(),
}
# families provided by optional subpackages: family -> "module:function" with the EnvFactory signature
LAZY_ENVS: dict[str, str] = {"smax": "inspo.smax.task:make_env"}
# the option dataclass of each family with settings (inspo.options); the others take NoOptions
ENV_OPTIONS: dict[str, type] = {"xor": XorOptions, "mne": MneOptions}


class EnvChoice(Protocol):
    """What make_env reads of a run's config (inspo.config.TrainConfig)."""

    env: Optional[str]
    env_options: Any


def env_family(name: str) -> str:
    """The registry family of an environment name: "smax:3m" -> "smax", "xor" -> "xor"."""
    return name.partition(":")[0]


def env_options_type(name: Optional[str]) -> type:
    """The option dataclass of environment `name` (NoOptions for families without settings, user
    environments and a dataset-only run, None)."""
    if name is None or is_user_env(name):
        return NoOptions
    return ENV_OPTIONS.get(env_family(name), NoOptions)


def is_user_env(name: str) -> bool:
    """`name` has the form module:factory (a user environment) rather than a registry family."""
    module, _, factory = name.partition(":")
    return bool(module and factory) and module not in {**ENVS, **LAZY_ENVS} and factory.isidentifier()


def make_env(config: EnvChoice) -> Env:
    """The environment of a run's config: a registry family built from config.env_options, or a
    user environment's factory(config)."""
    if config.env is None:
        raise ValueError("no environment: this is a dataset-only run (give --env NAME or --env module:factory)")
    family, _, arg = config.env.partition(":")
    if family not in ENVS and family in LAZY_ENVS:
        module_name, function = LAZY_ENVS[family].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ValueError(
                f"environment {config.env!r} needs {module_name}, which is not installed ({error})"
            ) from error
        ENVS[family] = getattr(module, function)
    if family in ENVS:
        return ENVS[family](config.env_options, arg or None)
    if is_user_env(config.env):
        return make_user_env(config)
    raise ValueError(
        f"unknown environment {config.env!r}; known: {sorted(ENVS) + sorted(LAZY_ENVS)}, "
        f"or a user environment as module:factory"
    )


USER_ENV_SIZES = ("n_agents", "n_actions", "obs_dim", "state_dim")


def make_user_env(config: EnvChoice) -> Env:
    """`factory(config)` of the user environment config.env = "module:factory", checked."""
    module_name, factory_name = config.env.split(":")
    if os.getcwd() not in sys.path:  # `inspo` (the console script) does not put the current folder first
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name and module_name.startswith(error.name):
            raise ValueError(
                f"environment {config.env!r}: no module {module_name!r} (neither installed nor "
                f"{module_name.replace('.', '/')}.py in the current folder)"
            ) from error
        raise
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ValueError(f"environment {config.env!r}: module {module_name!r} has no factory {factory_name!r}")
    env = factory(config)
    for name in USER_ENV_SIZES:
        value = getattr(env, name, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"environment {config.env!r}: {name} must be an int >= 1, got {value!r}")
    if not callable(getattr(env, "evaluate", None)):
        raise ValueError(f"environment {config.env!r}: has no evaluate(policy, *, episodes, generator) method")
    return env


__all__ = [
    "Env",
    "PolicyFn",
    "ENVS",
    "ENV_OPTIONS",
    "make_env",
    "env_options_type",
    "is_user_env",
    "Bridge",
    "XorGame",
    "XorOptions",
    "MneGame",
    "MneOptions",
]
