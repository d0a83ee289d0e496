"""The one typed configuration of a training run (spec: docs/ALGORITHM.md).

`TrainConfig` holds what every algorithm shares (task, networks, optimisation, evaluation, files). Settings
that only one environment family or one algorithm reads are that component's options, a small frozen
dataclass (inspo.options): `env_options` (inspo.envs.ENV_OPTIONS: `xor.variant`, `mne.diagonal`, ...) and
`algo_options` (inspo.algorithms: `inspo.*`, InSPO's update and every reconstructed choice of the spec;
`omiga.*`, `cfcql.*`). They are named SECTION.FIELD in `--set`, config files and `make_config`
(`make_config("xor", **{"inspo.eta": 0.5})`, or `make_config("xor", inspo={"eta": 0.5})`).

Per-environment defaults live in `PRESETS` and are applied by `make_config`, then the update regime
(`REGIMES`); `--set key=value` on the command line overrides any field last. A field that became an option
(`mode`, `eta`, `cfcql_alpha`, ...: `RENAMED_FIELDS`) is refused with its new name.
"""

from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

from inspo.algorithms import ALGORITHMS, InspoOptions, algorithm
from inspo.data.formats import FORMATS
from inspo.dependencies import require
from inspo.envs import ENV_OPTIONS, ENVS, LAZY_ENVS, env_family, env_options_type, is_user_env
from inspo.options import build_options, check_options, check_type, field_hints, is_tuple_type, parse_text

PRECISIONS = ("fp32", "bf16")  # config.precision (inspo.nets.set_precision)
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
    # the options of the env's family (`xor.*`, `mne.*`: inspo.envs.ENV_OPTIONS; a family without
    # options, a user environment and a dataset-only run take inspo.options.NoOptions); None = defaults
    env_options: Any = None
    dataset_seed: Optional[int] = None  # seed of the dataset generator; None = the run's seed
    # How the transitions are held while training (the same numbers either way): "memory" copies them
    # into tensors (the fastest minibatches); "mapped" memory-maps the files of dataset_path (.npy;
    # HDF5 and vaults are read lazily through chunk caches) and gathers each minibatch from them, for
    # datasets larger than RAM (in RAM: only
    # the row index, the joint actions and rewards, and the behaviour cache; inspo.data.MappedTransitions).
    dataset_storage: str = "memory"

    # ---- algorithm ----
    algo: str = "inspo"  # an algorithm of `inspo.algorithms.ALGORITHMS`: inspo, bc, omiga or cfcql
    seed: int = 0
    steps: int = 2000  # training iterations K
    batch_size: int = 256
    gamma: float = 0.99
    # the named update regime (`REGIMES`) that `make_config` applied; a label for results tables,
    # its fields stay overridable one by one
    regime: str = "one-step"

    # the options of the algorithm (`inspo.*`: inspo.algorithms.InspoOptions, `omiga.*`: OmigaOptions, `cfcql.*`:
    # CfcqlOptions); the other fields apply to every algorithm where they mean the same. None = the algorithm's
    # defaults
    algo_options: Any = None

    # ---- networks and optimisation ----
    hidden: tuple[int, ...] = (64, 64)  # hidden sizes of the actors, mu, local critics
    critic_hidden: tuple[int, ...] = (128, 128)  # hidden sizes of the centralized critic Q(s, a)
    share_parameters: bool = False  # one network for all agents with an agent-id input
    lr: float = 5e-4  # actor learning rate (Adam)
    critic_lr: float = 5e-4  # centralized and local critics
    grad_clip: float = 1.0  # per-agent gradient-norm clip (per network for the centralized critic)
    # the networks' matmuls: "fp32", or "bf16" (torch.autocast; the networks' outputs, the ops, the targets,
    # the parameters and the optimizer state stay float32)
    precision: str = "fp32"
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

    def __post_init__(self) -> None:
        if self.env_options is None:
            self.env_options = env_options_type(self.env)()
        if self.algo_options is None and self.algo in ALGORITHMS:  # an unknown algo: validate() says so
            self.algo_options = algorithm(self.algo).options()

    @property
    def inspo(self) -> Any:
        """The InSPO options of an InSPO run (config.algo_options); an error for another algorithm's run."""
        if self.algo != "inspo":
            raise ValueError(f"config.inspo: a run of {self.algo!r} has no InSPO options")
        return self.algo_options

    def validate(self) -> "TrainConfig":
        """Check every field's type and range; raises ValueError naming the field."""
        hints = typing.get_type_hints(type(self))
        for item in dataclasses.fields(self):
            if item.name not in OPTION_FIELDS:
                check_type(f"config.{item.name}", getattr(self, item.name), hints[item.name])

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

        if self.algo not in ALGORITHMS:
            raise ValueError(f"config.algo: unknown algorithm {self.algo!r}; known: {sorted(ALGORITHMS)}")
        if self.env is None:
            if self.dataset_path is None:
                raise ValueError("config.env: a run without an environment needs dataset_path (a dataset-only run)")
        else:
            check_env_name(self.env)
        one_of("dataset_format", ("auto", *FORMATS))
        at_least(1, "episode_limit")
        one_of("precision", PRECISIONS)
        one_of("dataset_storage", DATASET_STORAGES)
        one_of("regime", tuple(REGIMES))
        env_section, algo_section = option_sections(self.env, self.algo)
        for field, section, expected in (
            ("env_options", env_section, env_options_type(self.env)),
            ("algo_options", algo_section, algorithm(self.algo).options),
        ):
            options = getattr(self, field)
            if type(options) is not expected:
                raise ValueError(
                    f"config.{field} must be {expected.__name__} (the options of {field[:-8]} "
                    f"{section or self.env!r}), got {options!r}"
                )
            check_options(options, expected, f"config.{section}")
        at_least(
            1,
            "steps",
            "batch_size",
            "bc_steps",
            "bc_batch_size",
            "eval_episodes",
            "log_every",
            "threads",
        )
        at_least(0, "seed", "dataset_seed", "eval_every", "checkpoint_every")
        positive("lr", "critic_lr", "bc_lr", "grad_clip")
        if self.algo == "inspo" and not self.algo_options.critic_warmup_steps < self.steps:
            raise ValueError(
                f"config.inspo.critic_warmup_steps must be in [0, steps = {self.steps}), got "
                f"{self.algo_options.critic_warmup_steps} (--set inspo.critic_warmup_steps=N sets it)"
            )
        for name in ("hidden", "critic_hidden"):
            if not getattr(self, name) or any(size < 1 for size in getattr(self, name)):
                raise ValueError(f"config.{name} must hold layer sizes >= 1 (one or more), got {getattr(self, name)}")
        check_device(self.device)
        if self.compile and self.algo == "inspo" and self.algo_options.beta_end is not None:
            raise ValueError(
                "config.compile needs a constant beta (inspo.beta_end = None): the ops take beta as a "
                "number, so a schedule would recompile the step at every iteration"
            )
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"config.gamma must be in [0, 1], got {self.gamma}")
        if not 0.0 < self.polyak <= 1.0:
            raise ValueError(f"config.polyak must be in (0, 1], got {self.polyak}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """Every field (config.json); env_options and algo_options as {SECTION: {FIELD: value}}, e.g.
        "env_options": {"xor": {"variant": "penalty"}} ({} without options)."""
        values = dataclasses.asdict(self)
        for field, section in zip(OPTION_FIELDS, option_sections(self.env, self.algo)):
            values[field] = {section: values[field]} if values[field] else {}
        return values

    def to_overrides(self) -> dict[str, Any]:
        """Every setting as `--set` names it: the fields, then the options as SECTION.FIELD."""
        values: dict[str, Any] = {}
        for name, value in self.to_dict().items():
            if name in OPTION_FIELDS:  # in the field's place
                for section, options in value.items():
                    values.update({f"{section}.{field}": item for field, item in options.items()})
            else:
                values[name] = value
        return values

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainConfig":
        """A config from the fields of `to_dict` (config.json, a checkpoint's config), also with SECTION.FIELD
        options. The stored options of another env or algorithm than `values` names are left out:
        `{**config.to_dict(), "algo": "bc"}` is a BC run with BC's options."""
        env, algo = values.get("env", DEFAULTS["env"]), values.get("algo", DEFAULTS["algo"])
        return _build(_as_dotted(values, *option_sections(env, algo)))


OPTION_FIELDS = ("env_options", "algo_options")  # in the order of option_sections
DEFAULTS = {item.name: item.default for item in dataclasses.fields(TrainConfig)}
# the flat TrainConfig fields that became options: old name -> SECTION.FIELD (refused, naming the new one)
RENAMED_FIELDS = {
    "xor_variant": "xor.variant",
    "mne_diagonal": "mne.diagonal",
    "mne_sampling": "mne.sampling",
    "omiga_alpha": "omiga.alpha",
    "mixer_hidden": "omiga.mixer_hidden",
    "cfcql_alpha": "cfcql.alpha",
    "cfcql_weighting": "cfcql.weighting",
    "cfcql_temperature": "cfcql.temperature",
    "cfcql_mixer_embed": "cfcql.mixer_embed",
    "cfcql_hypernet_hidden": "cfcql.hypernet_hidden",
    # InSPO's knobs were TrainConfig fields of the same names
    **{item.name: f"inspo.{item.name}" for item in dataclasses.fields(InspoOptions)},
}


def check_not_renamed(name: str) -> None:
    if name in RENAMED_FIELDS:
        raise ValueError(
            f"config field {name!r} is now the option {RENAMED_FIELDS[name]!r} "
            f"(--set {RENAMED_FIELDS[name]}=VALUE; in a config file {RENAMED_FIELDS[name].split('.')[0]}: "
            f"{{{RENAMED_FIELDS[name].split('.')[1]}: VALUE}})"
        )


def check_env_name(name: str) -> None:
    """`name` is a registered env (family[:arg]) or a user environment module:factory."""
    if env_family(name) not in {**ENVS, **LAZY_ENVS} and not is_user_env(name):
        raise ValueError(
            f"config.env: unknown environment {name!r}; known: {sorted({**ENVS, **LAZY_ENVS})}, "
            f"or a user environment as module:factory"
        )


def option_sections(env: Optional[str], algo: str) -> tuple[Optional[str], str]:
    """The SECTIONs of a run's SECTION.FIELD options: its env's family (None for a dataset-only run and
    a user environment) and its algorithm."""
    return (None if env is None or is_user_env(env) else env_family(env)), algo


def section_options_type(section: str) -> type:
    """The option dataclass that SECTION.FIELD names refer to: an env family's or an algorithm's."""
    if section in {**ENVS, **LAZY_ENVS, **ENV_OPTIONS}:
        return env_options_type(section)
    if section in ALGORITHMS:
        return algorithm(section).options
    known = sorted({**ENVS, **LAZY_ENVS, **ALGORITHMS})
    raise ValueError(
        f"unknown option section {section!r}: neither an environment nor an algorithm ({', '.join(known)})"
    )


def field_hint(name: str) -> tuple[str, Any]:
    """(the name errors use, the annotation) of a field or SECTION.FIELD option."""
    check_not_renamed(name)
    section, dot, field = name.partition(".")
    if not dot:
        hints = typing.get_type_hints(TrainConfig)
        if name not in hints or name in OPTION_FIELDS:
            raise ValueError(
                f"unknown config field {name!r}; fields: {', '.join(sorted(set(hints) - set(OPTION_FIELDS)))}, "
                "and options as SECTION.FIELD (inspo train --help lists them)"
            )
        return f"config.{name}", hints[name]
    hints = field_hints(section_options_type(section))
    if field not in hints:
        known = ", ".join(f"{section}.{option}" for option in hints) or "none"
        raise ValueError(f"unknown option {name!r}; the options of {section} are: {known}")
    return f"config.{name}", hints[field]


def fields_help() -> str:
    """The TrainConfig fields with their dataclass defaults (part of the epilog of `inspo train --help`;
    the env preset changes some of them, docs/ALGORITHM.md#default-hyperparameters)."""
    lines = ["config fields (--set FIELD=VALUE, or FIELD: VALUE in a --config file; an env preset changes some):"]
    for item in dataclasses.fields(TrainConfig):
        if item.name not in OPTION_FIELDS:
            lines.append(f"  {item.name} (default {item.default!r})")
    return "\n".join(lines)


def options_help() -> str:
    """The SECTION.FIELD options of the built-in environments and algorithms with their defaults (the
    epilog of `inspo train --help`)."""
    lines = ["options of an environment or algorithm (--set SECTION.FIELD=VALUE; in a config file also"]
    lines.append("SECTION: {FIELD: VALUE}); each applies to the runs of its env / algo only:")
    for section in sorted(ENV_OPTIONS) + sorted(name for name in ALGORITHMS if name not in ENV_OPTIONS):
        options = section_options_type(section)()
        for field in dataclasses.fields(options):
            lines.append(f"  {section}.{field.name} (default {getattr(options, field.name)!r})")
    return "\n".join(lines)


def _as_dotted(values: Mapping[str, Any], env_section: Optional[str], algo_section: str) -> dict[str, Any]:
    """`values` with env_options / algo_options and SECTION={FIELD: value} mappings spelled as SECTION.FIELD, in
    their order. env_options / algo_options: an option instance (the run's section), or to_dict's
    {SECTION: {FIELD: value}}, whose sections other than the run's are left out (options stored for another
    env or algorithm: `{**config.to_dict(), "algo": "bc"}` is a BC run). A renamed field is refused."""
    dotted: dict[str, Any] = {}
    for name, value in values.items():
        if name in OPTION_FIELDS:
            section = env_section if name == "env_options" else algo_section
            if value is None:
                continue
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                value = {section: dataclasses.asdict(value)}
            if not isinstance(value, Mapping) or not all(isinstance(item, Mapping) for item in value.values()):
                raise ValueError(
                    f"config.{name} must be an option dataclass or a mapping {{SECTION: {{FIELD: value}}}}, got {value!r}"
                )
            for stored_section, options in value.items():
                if stored_section == section:
                    dotted.update({f"{section}.{field}": item for field, item in options.items()})
        elif name in RENAMED_FIELDS:
            check_not_renamed(name)
        elif isinstance(value, Mapping) and "." not in name and name not in DEFAULTS:  # inspo={"eta": 0.5}
            dotted.update({f"{name}.{field}": item for field, item in value.items()})
        else:
            dotted[name] = value
    return dotted


def _build(values: Mapping[str, Any]) -> TrainConfig:
    """TrainConfig from fields and SECTION.FIELD options (every section the run's env or algorithm),
    validated."""
    fields: dict[str, Any] = {}
    sections: dict[str, dict[str, Any]] = {}
    for name, value in values.items():
        section, dot, field = name.partition(".")
        if dot:
            sections.setdefault(section, {})[field] = value
        else:
            fields[name] = value
    unknown = sorted(set(fields) - set(DEFAULTS) - set(OPTION_FIELDS))
    if unknown:
        raise ValueError(f"unknown config fields: {unknown}")
    hints = typing.get_type_hints(TrainConfig)
    fields = {k: tuple(v) if is_tuple_type(hints[k]) and isinstance(v, list) else v for k, v in fields.items()}
    env, algo = fields.get("env", DEFAULTS["env"]), fields.get("algo", DEFAULTS["algo"])
    if isinstance(env, str):  # (the options of an unknown env would be reported first otherwise)
        check_env_name(env)
    env_section, algo_section = option_sections(env, algo)
    if algo not in ALGORITHMS:
        raise ValueError(f"config.algo: unknown algorithm {algo!r}; known: {sorted(ALGORITHMS)}")
    for section, options in sections.items():
        if section not in (env_section, algo_section):
            names = ", ".join(f"{section}.{field}" for field in options)
            raise ValueError(
                f"config.{names}: options of {section!r}, but this run's env is {env!r} and its algo {algo!r}"
            )
    fields["env_options"] = build_options(
        env_options_type(env), sections.get(env_section, {}) if env_section else {}, f"config.{env_section}"
    )
    fields["algo_options"] = build_options(algorithm(algo).options, sections.get(algo_section, {}), f"config.{algo}")
    return TrainConfig(**fields).validate()


def task_name(config: TrainConfig) -> str:
    """ENV/DATASET of a run, as tables and progress displays name it (a dataset path by its name)."""
    data = Path(config.dataset_path).name if config.dataset_path else config.dataset
    return f"{config.env or 'dataset'}/{data}"


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
        grad_clip=10.0,
        **{"inspo.beta": 10.0, "inspo.beta_end": 0.0, "inspo.critic_warmup_steps": 300},
    ),
    "bridge": dict(
        dataset="optimal",
        steps=3000,
        gamma=0.99,
        batch_size=256,
        hidden=(128, 128),
        critic_hidden=(256, 256),
        bc_steps=1500,
        lr=1e-3,
        critic_lr=1e-3,
        **{"inspo.alpha": 0.1, "inspo.beta": 0.01},
    ),
    # Every SMAX map (docs/SMAX.md). `inspo data make` makes datasets with data seed 0, so --dataset
    # <tier> reads those whatever the run's seed. docs/ALGORITHM.md#default-hyperparameters asks for alpha in [1, 10] at
    # SMAC's reward scale of ~20 per episode; SMAX pays ~2, so the temperatures (InSPO's alpha, OMIGA's) are
    # 10x smaller. 1500 iterations: a single run's default (minutes on a CPU core), not a converged budget;
    # the SMAX protocol (experiments.smax.protocol) sets its own step budget per map. CFCQL: alpha 15, the
    # middle of the SMAX campaign's grid (the official README's SMAC value, 0.1, learned nothing here:
    # docs/SMAX.md, "The campaign"), and the README's softmax_temp=0.5. A preset's SECTION.FIELD options apply
    # to the runs of that algorithm only.
    "smax": dict(
        dataset="expert",
        dataset_seed=0,
        steps=1500,
        batch_size=256,
        **{"inspo.alpha": 0.1, "inspo.beta": 0.01, "omiga.alpha": 1.0, "cfcql.alpha": 15.0, "cfcql.temperature": 0.5},
        hidden=(128, 128),
        critic_hidden=(256, 256),
        bc_steps=1500,
        share_parameters=True,
    ),
}


# The update regimes (docs/ALGORITHM.md#update-regimes, a choice): fields applied by make_config(regime=...) on top of
# the env preset, before any override (its inspo.* options to InSPO's runs only). "one-step" is the usual deep-RL regime: one small gradient
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
        lr=3e-2,
        critic_lr=3e-2,
        polyak=0.1,
        steps=100,
        **{"inspo.policy_steps": 100, "inspo.critic_warmup_steps": 50, "inspo.eta": 1.0},
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
    """The config of a YAML (.yaml, .yml) or JSON (.json) file: a mapping of TrainConfig fields and
    options (SECTION.FIELD keys, or a SECTION: {FIELD: value} mapping; env_options / algo_options as
    config.json holds them; the older flat names) to values, read like `--set` reads them (strings are
    parsed as --set text, lists become tuples). Errors name the file and the field."""
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
            values = json.loads(text, object_pairs_hook=_unique_keys)
        except json.JSONDecodeError as error:
            raise ValueError(f"config file {path} is not valid JSON: {error}") from error
        except DuplicateKey as error:
            raise ValueError(f"config file {path}: {error.key!r} {_json_duplicate_line(text, error.key)}") from None
    else:
        require("yaml", f"config file {path.name}", "pyyaml")
        import yaml

        try:
            values = yaml.load(text, Loader=_unique_key_loader())
        except DuplicateKey as error:
            raise ValueError(f"config file {path}: {error.key!r} is given twice (again on line {error.line})") from None
        except yaml.YAMLError as error:
            raise ValueError(f"config file {path} is not valid YAML: {' '.join(str(error).split())}") from error
    if values is None:  # an empty file
        values = {}
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of config fields, got a {type(values).__name__}")
    fields: dict[str, Any] = {}
    try:
        for name, value in values.items():
            if name in OPTION_FIELDS and isinstance(value, dict):  # as config.json: {SECTION: {FIELD: value}}
                for section, options in value.items():
                    if not isinstance(options, dict):
                        raise ValueError(f"{name}.{section} must be a mapping of option fields, got {options!r}")
                    fields.update(_read_values({f"{section}.{field}": item for field, item in options.items()}))
            elif isinstance(value, dict) and name not in DEFAULTS:  # SECTION: {FIELD: value, ...}
                fields.update(_read_values({f"{name}.{field}": item for field, item in value.items()}))
            else:
                fields.update(_read_values({name: value}))
    except ValueError as error:
        raise ValueError(f"config file {path}: {error}") from error
    return fields


class DuplicateKey(Exception):
    """A key given twice in one mapping of a config file (the parsers would keep the last silently)."""

    def __init__(self, key: Any, line: Optional[int] = None):
        super().__init__(key)
        self.key, self.line = key, line


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: the object, or DuplicateKey for its first repeated key."""
    values: dict[str, Any] = {}
    for key, value in pairs:
        if key in values:
            raise DuplicateKey(key)
        values[key] = value
    return values


def _json_duplicate_line(text: str, key: str) -> str:
    """Where a JSON text gives `key` the second time (json reports no position to its hook)."""
    import re

    starts = [match.start() for match in re.finditer(re.escape(json.dumps(key)) + r"\s*:", text)]
    if len(starts) < 2:
        return "is given twice"
    return f"is given twice (again on line {text.count(chr(10), 0, starts[1]) + 1})"


def _unique_key_loader() -> type:
    """yaml.SafeLoader that raises DuplicateKey (with the line) for a key repeated in one mapping."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if key in seen:
                    raise DuplicateKey(key, key_node.start_mark.line + 1)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def _read_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """{name: value} of a config file, type-checked: strings parsed as --set text, lists as tuples."""
    read = {}
    for name, value in values.items():
        label, hint = field_hint(name)
        if isinstance(value, str):
            value = parse_value(name, value)
        elif isinstance(value, list) and is_tuple_type(hint):
            value = tuple(value)
        check_type(label, value, hint)
        read[name] = value
    return read


def parse_value(name: str, text: str) -> Any:
    """Parse the text of `--set name=text` into the type of field or option `name` (SECTION.FIELD)."""
    return parse_text(name, text, field_hint(name)[1])


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
    `REGIMES[regime]`, then `overrides` (any TrainConfig field, and options as SECTION.FIELD:
    `make_config("xor", **{"xor.variant": "plain"})`, as a section's mapping: `inspo={"mode": "exact"}`, or
    `env_options=XorOptions("plain")`). The preset's and the regime's options of other algorithms than the
    run's are left out."""
    if regime not in REGIMES:
        raise ValueError(f"unknown regime {regime!r}; known: {sorted(REGIMES)}")
    preset = PRESETS.get(env_family(env), {}) if env is not None else {}
    algo = overrides.get("algo", preset.get("algo", DEFAULTS["algo"]))
    sections = option_sections(env, algo)

    def own(values: Mapping[str, Any]) -> dict[str, Any]:  # the fields, and the options of this run's sections
        return {name: value for name, value in values.items() if "." not in name or name.split(".")[0] in sections}

    values: dict[str, Any] = {**own(preset), **own(REGIMES[regime]), "env": env, "regime": regime}
    given = _as_dotted({"env": env, **overrides}, *sections)
    warmup = "inspo.critic_warmup_steps"
    if "steps" in given and warmup not in given and values.get(warmup):
        values[warmup] = scaled_warmup(values[warmup], values.get("steps", DEFAULTS["steps"]), given["steps"])
    values.update(given)
    return _build(values)


def scaled_warmup(warmup: int, preset_steps: int, steps: Any) -> Any:
    """A preset's (or regime's) critic warm-up for a run of `steps` instead of `preset_steps`: the same
    share of the run, fewer steps than the run (a run of 1 step has none)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        return warmup  # validate() names the bad steps
    return min(steps - 1, warmup * steps // preset_steps)
