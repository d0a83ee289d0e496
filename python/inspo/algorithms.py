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
import math
from dataclasses import dataclass
from typing import Any, Optional

from inspo.options import NoOptions, one_of

INSPO_MODES = ("fused", "exact", "simultaneous")
INSPO_WEIGHTINGS = ("resample", "importance", "self_normalized")
RESAMPLE_METHODS = ("multinomial", "systematic")


@dataclass(frozen=True)
class InspoOptions:
    """`inspo.*` options of a run: InSPO's update (docs/ALGORITHM.md; every "(choice)" there is a field here,
    so that a later reading of the paper can switch it). The shared TrainConfig fields (networks, learning
    rates, Polyak, gamma, behaviour cloning) apply as to every algorithm."""

    mode: str = "fused"  # exact (Algorithm 1), fused (one pass, lookahead eta) or simultaneous (ablation)
    alpha: float = 0.1  # reverse-KL weight toward mu
    beta: float = 0.1  # entropy weight (beta_0 when a schedule is set)
    # (choice) beta schedule: linear from `beta` to `beta_end` over the first `beta_anneal_fraction` of
    # training, constant afterwards; None keeps beta constant.
    beta_end: Optional[float] = None
    beta_anneal_fraction: float = 0.7
    # (choice) how the teammate ratio rho and the critic's next-step ratio rho' enter the losses:
    # "resample" (the paper's choice) draws each agent's batch with probability rho / sum rho;
    # "importance" weights the loss by rho / B; "self_normalized" by rho / sum rho.
    weighting: str = "resample"
    resample_method: str = "multinomial"  # (choice) multinomial with replacement, or systematic
    rho_max: float = 100.0  # (choice) clip of the teammate / next-step ratios
    log_w_max: float = 10.0  # (choice) clip of the in-sample weight, log w <= log_w_max (w_max = e^10)
    eta: float = 0.3  # (choice) fused mode: step of a predecessor toward its closed-form target
    # (choice) update regime: gradient steps per agent per iteration on the agent's (resampled) batch; 1 is the
    # usual deep-RL regime, a large value fits each agent to its target ("full update", config.REGIMES).
    policy_steps: int = 1
    local_critic_steps: Optional[int] = None  # local-critic steps per iteration; None = policy_steps
    pi_init_from_mu: bool = True  # (choice) start pi as a copy of the behaviour policy mu
    # warm-up iterations at the start of the run in which the centralized and local critics train and the
    # policy does not (so that the policy starts moving on fitted critics); 0 = none.
    critic_warmup_steps: int = 0
    # The agent value V is the exact log-sum-exp over the available actions
    # (docs/ALGORITHM.md#in-sample-weighted-policy-loss, a choice); the learned in-sample V-network
    # alternative is not implemented.

    def validate(self, name: str) -> None:
        one_of(f"{name}.mode", self.mode, INSPO_MODES)
        one_of(f"{name}.weighting", self.weighting, INSPO_WEIGHTINGS)
        one_of(f"{name}.resample_method", self.resample_method, RESAMPLE_METHODS)
        for field in ("alpha", "beta", "beta_end", "critic_warmup_steps"):
            if getattr(self, field) is not None and getattr(self, field) < 0:
                raise ValueError(f"{name}.{field} must be >= 0, got {getattr(self, field)}")
        if self.alpha + min(self.beta, self.beta if self.beta_end is None else self.beta_end) <= 0:
            raise ValueError(
                f"the temperature tau = {name}.alpha + {name}.beta must stay > 0 (alpha > 0 or beta > 0 throughout)"
            )
        for field in ("policy_steps", "local_critic_steps"):
            if getattr(self, field) is not None and getattr(self, field) < 1:
                raise ValueError(f"{name}.{field} must be >= 1, got {getattr(self, field)}")
        if not self.rho_max > 0:
            raise ValueError(f"{name}.rho_max must be > 0, got {self.rho_max}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"{name}.eta must be in [0, 1], got {self.eta}")
        if not 0.0 < self.beta_anneal_fraction <= 1.0:
            raise ValueError(f"{name}.beta_anneal_fraction must be in (0, 1], got {self.beta_anneal_fraction}")

    def beta_at(self, step: int, steps: int) -> float:
        """beta of iteration `step` (0-based) of a run of `steps` iterations, under the optional linear schedule."""
        if self.beta_end is None:
            return self.beta
        horizon = max(1, round(self.beta_anneal_fraction * steps))
        progress = min(1.0, step / horizon)
        return self.beta + (self.beta_end - self.beta) * progress

    @property
    def log_rho_max(self) -> float:
        return math.log(self.rho_max)


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
    "inspo": Algorithm(InspoOptions, "inspo.learners.inspo:InspoLearner"),
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
