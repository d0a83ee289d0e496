"""Environment registry: a name -> a factory taking the run's TrainConfig.

Names: `xor`, `mne`, `bridge`; a name `family:arg` (e.g. `smax:3m`) looks up `family` and passes
`arg` on. Registered families whose module is optional (SMAX) are imported only when asked for.
"""
from __future__ import annotations

import importlib
from typing import Callable, Optional

from inspo.config import TrainConfig
from inspo.envs.base import Env, PolicyFn
from inspo.envs.bridge import Bridge
from inspo.envs.matrix import MneGame, XorGame

# factory(config, arg) -> Env; arg is the part after ":" in the name (None without one)
EnvFactory = Callable[[TrainConfig, Optional[str]], Env]

ENVS: dict[str, EnvFactory] = {
    "xor": lambda config, arg: XorGame(variant=config.xor_variant),
    "mne": lambda config, arg: MneGame(diagonal=config.mne_diagonal, sampling=config.mne_sampling),
    "bridge": lambda config, arg: Bridge(),
}
# families provided by optional subpackages: family -> "module:function" with the EnvFactory signature
LAZY_ENVS: dict[str, str] = {"smax": "inspo.smax.env:make_env"}


def register_env(name: str, factory: EnvFactory) -> None:
    ENVS[name] = factory


def make_env(config: TrainConfig) -> Env:
    family, _, arg = config.env.partition(":")
    if family not in ENVS and family in LAZY_ENVS:
        module_name, function = LAZY_ENVS[family].split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            raise ValueError(f"environment {config.env!r} needs {module_name}, which is not installed "
                             f"({error})") from error
        ENVS[family] = getattr(module, function)
    if family not in ENVS:
        raise ValueError(f"unknown environment {config.env!r}; known: {sorted(ENVS) + sorted(LAZY_ENVS)}")
    return ENVS[family](config, arg or None)


__all__ = ["Env", "PolicyFn", "ENVS", "register_env", "make_env", "Bridge", "XorGame", "MneGame"]
