"""The algorithms `inspo train --algo NAME` runs: each name's options and its learner, in one table.

An algorithm's options are a small frozen dataclass (inspo.options) that a run's config holds as
`algo_options`, named SECTION.FIELD on the command line and in config files (`--set cfcql.alpha=0.1`). They
live here, below the learners, so that a config is built and checked without importing any learner. The
learner is named as "module:Class" and imported when a run of it starts (`learner_class`).

Adding an algorithm: its learner (a `inspo.learners.learner.Learner` in `inspo/learners/NAME.py`), its
options dataclass below (if it has settings), and one line in `ALGORITHMS`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from inspo.options import NoOptions, one_of


@dataclass(frozen=True)
class OmigaOptions:
    """`omiga.*` options of a run; the shared TrainConfig fields apply where they mean the same (networks,
    learning rates, Polyak, gamma)."""

    alpha: float = 10.0  # temperature of OMIGA's in-sample value loss (reward scale matters)
    mixer_hidden: int = 64  # hidden size of OMIGA's state-conditioned mixer weights w(s)

    def validate(self, name: str) -> None:
        if not self.alpha > 0:
            raise ValueError(f"{name}.alpha must be > 0, got {self.alpha}")
        if self.mixer_hidden < 1:
            raise ValueError(f"{name}.mixer_hidden must be >= 1, got {self.mixer_hidden}")


CFCQL_WEIGHTINGS = ("kl_softmax", "kl_argmax", "uniform")


@dataclass(frozen=True)
class CfcqlOptions:
    """`cfcql.*` options of a run (docs/BASELINES.md). The Q networks and the mixer train with the shared
    critic_lr, their targets with polyak."""

    alpha: float = 50.0  # weight of the counterfactual conservative penalty (official global_cql_alpha)
    # agent weights lambda_i of the per-agent penalties: "kl_softmax" softmax_i(temperature * KL_i) with
    # KL_i = KL(softmax_j Q_tot(s, j, a_-i) || mu_i) (the paper's), "kl_argmax" one-hot at the largest
    # KL_i (the official temperature=100 case), "uniform" 1/N (no behaviour policy fitted)
    weighting: str = "kl_softmax"
    temperature: float = 5.0  # the softmax temperature of "kl_softmax" (official softmax_temp)
    mixer_embed: int = 32  # QMIX mixer's embedding width (official mixing_embed_dim)
    hypernet_hidden: int = 64  # hidden width of the mixer's weight hypernetworks (official hypernet_embed)

    def validate(self, name: str) -> None:
        if self.alpha < 0:
            raise ValueError(f"{name}.alpha must be >= 0, got {self.alpha}")
        one_of(f"{name}.weighting", self.weighting, CFCQL_WEIGHTINGS)
        if not self.temperature > 0:
            raise ValueError(f"{name}.temperature must be > 0, got {self.temperature}")
        for field in ("mixer_embed", "hypernet_hidden"):
            if getattr(self, field) < 1:
                raise ValueError(f"{name}.{field} must be >= 1, got {getattr(self, field)}")


@dataclass(frozen=True)
class Algorithm:
    options: type  # its options dataclass (NoOptions: none)
    learner: str  # "module:Class" of its Learner, imported when a run starts


ALGORITHMS: dict[str, Algorithm] = {
    "inspo": Algorithm(NoOptions, "inspo.learners.inspo:InspoLearner"),
    "bc": Algorithm(NoOptions, "inspo.learners.bc:BCLearner"),
    "omiga": Algorithm(OmigaOptions, "inspo.learners.omiga:OmigaLearner"),
    "cfcql": Algorithm(CfcqlOptions, "inspo.learners.cfcql:CfcqlLearner"),
}


def algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise ValueError(f"config.algo: unknown algorithm {name!r}; known: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]


def learner_class(name: str) -> Any:
    """The Learner class of algorithm `name` (its module imported now)."""
    module_name, attribute = algorithm(name).learner.split(":")
    return getattr(importlib.import_module(module_name), attribute)
