"""The one typed configuration of a training run (spec: docs/ALGORITHM.md).

Every hyperparameter and every reconstructed choice of the spec (marked "(choice)" there) is a named
field here, so that a later reading of the paper can switch it without a rewrite. Per-environment
defaults live in `PRESETS` and are applied by `make_config`; `--set key=value` on the command line
overrides any field last.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from inspo.extras import require

ALGOS = ("inspo", "bc", "omiga", "cfcql")
CFCQL_WEIGHTINGS = ("kl_softmax", "kl_argmax", "uniform")
MODES = ("fused", "exact", "simultaneous")
WEIGHTINGS = ("resample", "importance", "self_normalized")
RESAMPLE_METHODS = ("multinomial", "systematic")
DATASET_STORAGES = ("memory", "mapped")


@dataclass
class TrainConfig:
    """Hyperparameters and choices of one run. Defaults: docs/ALGORITHM.md#default-hyperparameters; see `PRESETS`."""

    # ---- what to train on ----
    # environment: a registry name (xor, mne, bridge; smax:<map> when installed), a user environment
    # "module:factory" (inspo.envs.make_env), or None for a dataset-only run (dataset_path, no evaluation)
    env: Optional[str] = "xor"
    dataset: str = "c"  # dataset name of the environment (see `inspo.envs`), unless dataset_path is set
    dataset_path: Optional[str] = None  # a dataset to train on instead: npy folder, HDF5 file or vault
    dataset_format: str = "auto"  # format of dataset_path: auto (detected), npy, h5, vault (inspo.data.formats)
    # time limit of dataset_path's episodes, for data that flags time-limit ends as terminal: an episode
    # that ran this many steps was cut there (truncated, bootstrapped); None = the data's own flags
    episode_limit: Optional[int] = None
    xor_variant: str = "penalty"  # XOR payoff of BB: "penalty" (-2) or "plain" (0)
    mne_diagonal: tuple[float, ...] = (10.0, 5.0, 8.0)  # M-NE payoff diag(R); off-diagonal 0
    # (choice) M-NE datasets: "stratified" = every joint action in exactly its product proportion,
    # "iid" = independent draws per sample (see inspo.envs.matrix.MneGame)
    mne_sampling: str = "stratified"
    dataset_seed: Optional[int] = None  # seed of the dataset generator; None = the run's seed
    # How the transitions are held while training (the same numbers either way): "memory" copies them
    # into tensors (the fastest minibatches); "mapped" memory-maps the files of dataset_path (.npy;
    # HDF5 and vaults are read lazily through chunk caches) and gathers each minibatch from them, for
    # datasets larger than RAM (in RAM: only
    # the row index, the joint actions and rewards, and the behaviour cache; inspo.data.MappedTransitions).
    dataset_storage: str = "memory"

    # ---- algorithm ----
    algo: str = "inspo"  # trainer in the `inspo.algos` registry: inspo, bc, omiga or cfcql
    mode: str = "fused"  # exact (Algorithm 1), fused (one pass, lookahead eta) or simultaneous (ablation)
    seed: int = 0
    steps: int = 2000  # training iterations K
    batch_size: int = 256
    gamma: float = 0.99
    alpha: float = 0.1  # reverse-KL weight toward mu
    beta: float = 0.1  # entropy weight (beta_0 when a schedule is set)
    # (choice) beta schedule: linear from `beta` to `beta_end` over the first `beta_anneal_fraction`
    # of training, constant afterwards; None keeps beta constant.
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
    # (choice) update regime: gradient steps per agent per iteration on the agent's (resampled) batch;
    # 1 is the usual deep-RL regime, a large value fits each agent to its target ("full update").
    policy_steps: int = 1
    # the named update regime (`REGIMES`) that `make_config` applied; a label for results tables,
    # its fields stay overridable one by one
    regime: str = "one-step"
    local_critic_steps: Optional[int] = None  # local-critic steps per iteration; None = policy_steps
    pi_init_from_mu: bool = True  # (choice) start pi as a copy of the behaviour policy mu
    # warm-up iterations at the start of the K iterations in which the centralized and local critics
    # train and the policy does not (so that the policy starts moving on fitted critics); 0 = none.
    critic_warmup_steps: int = 0
    # The agent value V is the exact log-sum-exp over the available actions
    # (docs/ALGORITHM.md#in-sample-weighted-policy-loss, a choice); the learned in-sample V-network alternative is not
    # implemented.

    # ---- OMIGA baseline (docs/ALGORITHM.md#omiga; the other fields above apply where they mean the same) ----
    omiga_alpha: float = 10.0  # temperature of OMIGA's in-sample value loss (reward scale matters)
    mixer_hidden: int = 64  # hidden size of OMIGA's state-conditioned mixer weights w(s)

    # ---- CFCQL baseline (docs/BASELINES.md; Q networks and mixer train with critic_lr, targets with polyak) ----
    cfcql_alpha: float = 50.0  # weight of the counterfactual conservative penalty (official global_cql_alpha)
    # agent weights lambda_i of the per-agent penalties: "kl_softmax" softmax_i(temperature * KL_i) with
    # KL_i = KL(softmax_j Q_tot(s, j, a_-i) || mu_i) (the paper's), "kl_argmax" one-hot at the largest
    # KL_i (the official temperature=100 case), "uniform" 1/N (no behaviour policy fitted)
    cfcql_weighting: str = "kl_softmax"
    cfcql_temperature: float = 5.0  # the softmax temperature of "kl_softmax" (official softmax_temp)
    cfcql_mixer_embed: int = 32  # QMIX mixer's embedding width (official mixing_embed_dim)
    cfcql_hypernet_hidden: int = 64  # hidden width of the mixer's weight hypernetworks (official hypernet_embed)

    # ---- networks and optimisation ----
    hidden: tuple[int, ...] = (64, 64)  # hidden sizes of the actors, mu, local critics
    critic_hidden: tuple[int, ...] = (128, 128)  # hidden sizes of the centralized critic Q(s, a)
    share_parameters: bool = False  # one network for all agents with an agent-id input
    lr: float = 5e-4  # actor learning rate (Adam)
    critic_lr: float = 5e-4  # centralized and local critics
    grad_clip: float = 1.0  # per-agent gradient-norm clip (per network for the centralized critic)
    polyak: float = 0.005  # target-critic rate
    bc_steps: int = 1000  # behaviour-cloning steps of mu
    bc_lr: float = 1e-3
    bc_batch_size: int = 1024

    # ---- evaluation, logging, checkpoints ----
    eval_episodes: int = 100  # rollout episodes per evaluation (Bridge; matrix games are exact)
    eval_every: int = 0  # evaluate every this many steps during training (0: only at the end)
    log_every: int = 100  # metrics row every this many steps
    checkpoint_every: int = 500  # atomic checkpoint every this many steps (0: only at the end)
    tensorboard: bool = False  # also write TensorBoard scalars (needs the tensorboard package)
    device: str = "cpu"
    # torch CPU threads; the networks here are tiny, so one thread beats several (and does not fight
    # other processes for cores); None leaves torch's default
    threads: Optional[int] = 1
    # run each training iteration as one torch.compile(fullgraph=True) graph (the first iterations pay
    # the compile time; see docs/PERFORMANCE.md for where it pays)
    compile: bool = False

    @property
    def tau(self) -> float:
        return self.alpha + self.beta

    def beta_at(self, step: int) -> float:
        """beta of iteration `step` (0-based) under the optional linear schedule."""
        if self.beta_end is None:
            return self.beta
        horizon = max(1, round(self.beta_anneal_fraction * self.steps))
        progress = min(1.0, step / horizon)
        return self.beta + (self.beta_end - self.beta) * progress

    def validate(self) -> "TrainConfig":
        """Check every field's type and range; raises ValueError naming the field."""
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            _check_type(item.name, getattr(self, item.name), hints[item.name])

        def one_of(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"config.{name} must be one of {allowed}, got {getattr(self, name)!r}")

        def at_least(minimum: int, *names: str) -> None:
            for name in names:
                if getattr(self, name) is not None and getattr(self, name) < minimum:
                    raise ValueError(f"config.{name} must be >= {minimum}, got {getattr(self, name)}")

        def positive(*names: str) -> None:
            for name in names:
                if not getattr(self, name) > 0:
                    raise ValueError(f"config.{name} must be > 0, got {getattr(self, name)}")

        from inspo.data.formats import FORMATS
        from inspo.envs import ENVS, LAZY_ENVS  # imported late: inspo.envs imports this module

        if self.env is None:
            if self.dataset_path is None:
                raise ValueError("config.env: a run without an environment needs dataset_path (a dataset-only run)")
        elif self.env.partition(":")[0] not in {**ENVS, **LAZY_ENVS} and not is_user_env(self.env):
            raise ValueError(
                f"config.env: unknown environment {self.env!r}; known: {sorted({**ENVS, **LAZY_ENVS})}, "
                f"or a user environment as module:factory"
            )
        one_of("dataset_format", ("auto", *FORMATS))
        at_least(1, "episode_limit")
        one_of("mode", MODES)
        one_of("dataset_storage", DATASET_STORAGES)
        one_of("weighting", WEIGHTINGS)
        one_of("resample_method", RESAMPLE_METHODS)
        one_of("regime", tuple(REGIMES))
        one_of("xor_variant", ("penalty", "plain"))
        one_of("mne_sampling", ("stratified", "iid"))
        at_least(
            1,
            "steps",
            "batch_size",
            "policy_steps",
            "local_critic_steps",
            "bc_steps",
            "bc_batch_size",
            "eval_episodes",
            "log_every",
            "mixer_hidden",
            "cfcql_mixer_embed",
            "cfcql_hypernet_hidden",
            "threads",
        )
        one_of("cfcql_weighting", CFCQL_WEIGHTINGS)
        at_least(0, "seed", "dataset_seed", "eval_every", "checkpoint_every")
        positive("lr", "critic_lr", "bc_lr", "grad_clip", "rho_max", "omiga_alpha", "cfcql_temperature")
        if self.cfcql_alpha < 0:
            raise ValueError(f"config.cfcql_alpha must be >= 0, got {self.cfcql_alpha}")
        if not 0 <= self.critic_warmup_steps < self.steps:
            raise ValueError(
                f"config.critic_warmup_steps must be in [0, steps = {self.steps}), got {self.critic_warmup_steps}"
            )
        for name in ("hidden", "critic_hidden"):
            if not getattr(self, name) or any(size < 1 for size in getattr(self, name)):
                raise ValueError(f"config.{name} must hold layer sizes >= 1 (one or more), got {getattr(self, name)}")
        check_device(self.device)
        if len(self.mne_diagonal) < 2:
            raise ValueError(f"config.mne_diagonal needs >= 2 actions, got {self.mne_diagonal}")
        for name in ("alpha", "beta", "beta_end"):
            if getattr(self, name) is not None and getattr(self, name) < 0:
                raise ValueError(f"config.{name} must be >= 0, got {getattr(self, name)}")
        if self.alpha + min(self.beta, self.beta if self.beta_end is None else self.beta_end) <= 0:
            raise ValueError("the temperature tau = alpha + beta must stay > 0 (alpha > 0 or beta > 0 throughout)")
        if self.compile and self.beta_end is not None:
            raise ValueError(
                "config.compile needs a constant beta (beta_end = None): the ops take beta as a "
                "number, so a schedule would recompile the step at every iteration"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"config.gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"config.eta must be in [0, 1], got {self.eta}")
        if not 0.0 < self.beta_anneal_fraction <= 1.0:
            raise ValueError(f"config.beta_anneal_fraction must be in (0, 1], got {self.beta_anneal_fraction}")
        if not 0.0 < self.polyak <= 1.0:
            raise ValueError(f"config.polyak must be in (0, 1], got {self.polyak}")
        return self

    @property
    def log_rho_max(self) -> float:
        return math.log(self.rho_max)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown config fields: {sorted(unknown)}")
        hints = typing.get_type_hints(cls)
        fixed = {k: tuple(v) if _is_tuple_type(hints[k]) and v is not None else v for k, v in values.items()}
        return cls(**fixed).validate()


# Per-environment defaults (ours, docs/ALGORITHM.md#default-hyperparameters: the temperature small against the reward
# scale).
PRESETS: dict[str, dict[str, Any]] = {
    "xor": dict(dataset="c", steps=1500, lr=1e-3, critic_lr=1e-3, bc_steps=300),
    # The data favour the sub-optimal CC; an annealed beta (10 -> 0 over 70%) lets the agents find AA.
    # Rewards 10x XOR's: the gradient clip scales with them (a tight clip biases the rare, heavily
    # weighted actions down). The critics warm up first so that the policy moves on fitted values.
    "mne": dict(
        dataset="imbalanced",
        steps=3000,
        lr=1e-3,
        critic_lr=1e-3,
        bc_steps=300,
        beta=10.0,
        beta_end=0.0,
        grad_clip=10.0,
        critic_warmup_steps=300,
    ),
    "bridge": dict(
        dataset="optimal",
        steps=3000,
        alpha=0.1,
        beta=0.01,
        gamma=0.99,
        batch_size=256,
        hidden=(128, 128),
        critic_hidden=(256, 256),
        bc_steps=1500,
        lr=1e-3,
        critic_lr=1e-3,
    ),
    # Every SMAX map (docs/SMAX.md). `inspo data make` makes datasets with data seed 0, so --dataset
    # <tier> reads those whatever the run's seed. docs/ALGORITHM.md#default-hyperparameters asks for alpha in [1, 10] at
    # SMAC's reward scale of ~20 per episode; SMAX pays ~2, so the temperatures (InSPO's alpha, OMIGA's) are
    # 10x smaller. 1500 iterations: what 2 shared CPU cores afford for the results grid
    # (inspo.smax.results), not a converged budget. CFCQL: the values of the official README's SMAC
    # command (global_cql_alpha=0.1, softmax_temp=0.5), not tuned here.
    "smax": dict(
        dataset="expert",
        dataset_seed=0,
        steps=1500,
        batch_size=256,
        alpha=0.1,
        beta=0.01,
        omiga_alpha=1.0,
        cfcql_alpha=0.1,
        cfcql_temperature=0.5,
        hidden=(128, 128),
        critic_hidden=(256, 256),
        bc_steps=1500,
        share_parameters=True,
    ),
}


# The update regimes (docs/ALGORITHM.md#update-regimes, a choice): fields applied by make_config(regime=...) on top of
# the env preset, before any override. "one-step" is the usual deep-RL regime: one small gradient
# step per agent per iteration (the env presets as they are). "full-update" fits each agent to its
# resampled closed-form target within the iteration, as the tabular check of docs/ALGORITHM.md#update-regimes does:
# * 100 local-critic and 100 policy steps per agent per iteration, at step sizes (3e-2) large enough
#   for the local critic to follow a teammate that changed completely and for the policy to reach
#   the target's near-deterministic probabilities: with 1e-2 either stops short, and partial updates
#   damp the simultaneous mode's oscillation (docs/ALGORITHM.md#update-regimes) into convergence within ~25
#   iterations, which is the one-step regime again;
# * so few iterations (100, the first 50 critic-only) that the target critic must follow faster
#   (Polyak 0.1) to be fitted when the policies start moving;
# * eta = 1: in the fused mode a predecessor is taken as fully updated to its closed-form target.
# Tuned on the matrix games (XOR, M-NE); on Bridge it is a configuration, not a tuned one.
REGIMES: dict[str, dict[str, Any]] = {
    "one-step": {},
    "full-update": dict(
        policy_steps=100, lr=3e-2, critic_lr=3e-2, polyak=0.1, steps=100, critic_warmup_steps=50, eta=1.0
    ),
}


def check_device(name: str) -> None:
    """A torch device this machine has: "cpu", or "cuda" / "cuda:N" where CUDA is available."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ValueError(f"config.device must be 'cpu', 'cuda' or 'cuda:N', got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"config.device is {name!r}, but CUDA is not available on this machine "
                "(torch.cuda.is_available() is False); use device=cpu"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"config.device is {name!r}, but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """The TrainConfig fields of a YAML (.yaml, .yml) or JSON (.json) file: a mapping of field names
    to values, read like `--set` reads them (strings are parsed as --set text, lists become tuples).
    Errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {path} {'is a folder' if path.is_dir() else 'does not exist'}")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"config file {path} must be .json, .yaml or .yml, got {suffix or 'no suffix'!r}")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"config file {path} cannot be read: {error}") from error
    if suffix == ".json":
        try:
            values = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {path} is not valid JSON: {error}") from error
    else:
        require("yaml", f"config file {path.name}", "pyyaml")
        import yaml

        try:
            values = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"config file {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if values is None:  # an empty file
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of config fields, got a {type(values).__name__}")
    hints = typing.get_type_hints(TrainConfig)
    fields = {}
    for name, value in values.items():
        if name not in hints:
            raise ValueError(f"config file {path}: unknown config field {name!r}; fields: {', '.join(sorted(hints))}")
        try:
            if isinstance(value, str):
                value = parse_value(name, value)
            elif isinstance(value, list) and _is_tuple_type(hints[name]):
                value = tuple(value)
            _check_type(name, value, hints[name])
        except ValueError as error:
            raise ValueError(f"config file {path}: {error}") from error
        fields[name] = value
    return fields


def is_user_env(name: str) -> bool:
    """`name` has the form module:factory (a user environment) rather than a registry family."""
    from inspo.envs import ENVS, LAZY_ENVS

    module, _, factory = name.partition(":")
    return bool(module and factory) and module not in {**ENVS, **LAZY_ENVS} and factory.isidentifier()


def _is_tuple_type(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(_is_tuple_type(a) for a in typing.get_args(hint))
    return origin is tuple or hint is tuple


def _check_type(name: str, value: Any, hint: Any) -> None:
    """value matches the field's annotation (ints pass as floats, bools never as numbers); floats finite."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        if value is None:
            return
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if _is_tuple_type(hint):
        if not isinstance(value, tuple):
            raise ValueError(f"config.{name} must be a tuple, got {value!r}")
        for item in value:
            _check_type(name, item, args[0])
        return
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        what = "a finite float" if hint is float else hint.__name__
        raise ValueError(f"config.{name} must be {what}, got {value!r} ({type(value).__name__})")


def parse_value(name: str, text: str) -> Any:
    """Parse the text of `--set name=text` into the type of field `name`."""
    hints = typing.get_type_hints(TrainConfig)
    if name not in hints:
        raise ValueError(f"unknown config field {name!r}; fields: {', '.join(sorted(hints))}")
    hint = hints[name]
    args = typing.get_args(hint)
    optional = typing.get_origin(hint) is typing.Union and type(None) in args
    if optional:
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if _is_tuple_type(hint):
            (item_type, _) = typing.get_args(hint)
            return tuple(item_type(x) for x in text.replace("(", "").replace(")", "").split(",") if x.strip())
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        return hint(text)
    except ValueError as error:
        raise ValueError(f"config field {name!r} expects {hint}, cannot parse {text!r}") from error


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """["key=value", ...] -> {key: typed value}."""
    overrides = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects key=value, got {pair!r}")
        key, text = pair.split("=", 1)
        overrides[key.strip()] = parse_value(key.strip(), text.strip())
    return overrides


def make_config(env: Optional[str] = "xor", regime: str = "one-step", **overrides: Any) -> TrainConfig:
    """TrainConfig for `env`: the dataclass defaults, then the env preset, then the update regime
    `REGIMES[regime]`, then `overrides` (any TrainConfig field)."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; known: {sorted(REGIMES)}")
    base_env = env.split(":", 1)[0] if env is not None else None
    values: dict[str, Any] = dict(PRESETS.get(base_env, {}))
    values.update(REGIMES[regime])
    values.update(env=env, regime=regime)
    values.update(overrides)
    return TrainConfig.from_dict(values)
