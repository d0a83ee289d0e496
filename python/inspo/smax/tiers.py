"""Quality-tier datasets for SMAX maps, following CFCQL's recipe for its SMAC datasets.

A behaviour policy is trained online here (MAPPO by default, IPPO as an option; checkpoints kept).
With its checkpoints evaluated along the way, the tiers are defined by the return they achieve:

* expert: episodes of the final policy (never the best checkpoint);
* medium: episodes of the first checkpoint that reaches about half of the expert return (the one
  closest to half, among the checkpoints up to the first that reaches it);
* medium-replay: as many episodes as training played until the medium checkpoint, each window of
  training between two saved checkpoints (every ``checkpoint_every`` updates) played by the checkpoint
  that opens it (update 0: the initial parameters). CFCQL keeps the replay buffer itself; replaying
  training exactly would tie the data to the CPU (XLA's matrix products block by cache size, so the
  training trajectory's rounding differs between CPU models), while rollouts of saved parameters are
  reproducible wherever those parameters are (``export_behaviour`` writes the ones a map's tiers need);
* mixed: half medium, half expert episodes (medium first);
* scripted: no training at all, JaxMARL's scripted micro for our team with eps-random actions (for
  fast tests; it wins sometimes on 3m and 2s3z, never on the harder maps).

Behaviour policies act stochastically (sampling their softmax), as during training. Each dataset
is written in the episode-buffer format with a card in meta.json (see ``inspo.data.card``), padded
to the longest episode of the dataset (T+1 = its length + 1; the time limit stays in the card).

Layout under the data root (default ~/.cache/inspo/smax):
    <root>/<map>/seed<seed>/behaviour-<algorithm>/   config.json, ckpt_*.npz, progress.jsonl, final.json
    (or any behaviour run folder, trained or exported, given as DataConfig.behaviour_source)
    <root>/<map>/seed<seed>/<tier>/                  the episode buffer (+ meta.json with the card)
"""

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Callable, Optional

import jax
import numpy as np

from inspo.data import card as cards
from inspo.data.buffer import REQUIRED_ARRAYS, save_episode_buffer

from ._runtime import DATA_ROOT
from .env import make_core
from .ippo import PPOConfig, checkpoint_name, initial_params, is_complete, read_config, read_progress, train
from .policies import actor_critic_policy, actor_params, heuristic_policy, load_params, save_json, save_params
from .rollout import EpisodePlayer, EpisodeSink, buffer_bytes, rollout_batch

TIERS = ("expert", "medium", "medium-replay", "mixed", "scripted")
TRAINED_TIERS = ("expert", "medium", "medium-replay", "mixed")
DEFAULT_ROOT = DATA_ROOT / "smax"
IN_MEMORY_LIMIT = 1 << 30  # bytes; bigger datasets are assembled in memory-mapped files
_TIER_STREAM = {tier: i for i, tier in enumerate(TIERS)}  # separate random streams per tier


# CFCQL's recipe (thu-rllab/CFCQL, discrete/README.md): 5,000 episodes of the expert and of the medium
# policy each; mixed = its tools/mixed.py's merge of the two, here 2,500 + 2,500; medium-replay = the whole
# replay of training until the medium policy (no cap by default).
RECIPE_EPISODES = 5000

# Behaviour training per map (ours): environment steps of MAPPO. 2M steps reach a strong policy on 3m and
# 2s3z in minutes on 2 CPU cores (docs/SMAX.md) and a weak one on 3s_vs_5z (greedy 0.74, sampled 0.08).
# The harder maps get more: 10M on 6h_vs_8z (unchecked), 20M on 5m_vs_6m, whose stochastic win rate is
# 0.02 at 2M steps (the campaign's expert must be one: docs/SMAX.md, "The campaign"); --behaviour-steps
# overrides it.
BEHAVIOUR_PRESETS = {
    "3m": dict(total_env_steps=2_000_000),
    "2s3z": dict(total_env_steps=2_000_000),
    "3s_vs_5z": dict(total_env_steps=2_000_000),
    "5m_vs_6m": dict(total_env_steps=20_000_000),
    "6h_vs_8z": dict(total_env_steps=10_000_000),
}


def behaviour_config(map_name: str, seed: int, **overrides) -> PPOConfig:
    """PPOConfig of the behaviour policy of a map: the defaults, the map preset, then overrides."""
    values = dict(BEHAVIOUR_PRESETS.get(map_name, {}))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return PPOConfig(map_name=map_name, seed=seed, **values).validate()


@dataclass(frozen=True)
class DataConfig:
    map_name: str = "3m"
    tier: str = "expert"
    seed: int = 0
    episodes: int = RECIPE_EPISODES  # per dataset (medium-replay: all recorded episodes, capped by replay_episodes)
    root: Path = DEFAULT_ROOT
    out: Optional[Path] = None  # the dataset directory; default <root>/<map>/seed<seed>/<tier>
    eps: float = 0.2  # scripted tier: probability of a uniformly random available action
    medium_fraction: float = 0.5  # medium = about this fraction of the expert return
    replay_episodes: Optional[int] = None  # cap on medium-replay episodes (None: all of them)
    behaviour: Optional[PPOConfig] = None  # None: behaviour_config(map_name, seed)
    overwrite: bool = False
    # a finished behaviour run folder to use instead of <root>/<map>/seed<seed>/behaviour-<algorithm>
    # (trained elsewhere, or exported by export_behaviour); never trained into
    behaviour_source: Optional[Path] = None

    def __post_init__(self):
        if self.behaviour is None:
            object.__setattr__(self, "behaviour", behaviour_config(self.map_name, self.seed))

    def validate(self) -> "DataConfig":
        if self.tier not in TIERS:
            raise ValueError(f"tier: expected one of {TIERS}, got {self.tier!r}")
        if self.episodes < 1:
            raise ValueError(f"episodes: must be >= 1, got {self.episodes}")
        if not 0.0 <= self.eps <= 1.0:
            raise ValueError(f"eps: must be in [0, 1], got {self.eps}")
        if not 0.0 < self.medium_fraction < 1.0:
            raise ValueError(f"medium_fraction: must be in (0, 1), got {self.medium_fraction}")
        if self.replay_episodes is not None and self.replay_episodes < 1:
            raise ValueError(f"replay_episodes: must be >= 1 or None, got {self.replay_episodes}")
        if self.behaviour.map_name != self.map_name or self.behaviour.seed != self.seed:
            raise ValueError("behaviour config must have the dataset's map_name and seed")
        self.behaviour.validate()
        return self

    @property
    def run_dir(self) -> Path:
        return Path(self.root).expanduser() / self.map_name / f"seed{self.seed}"

    @property
    def behaviour_dir(self) -> Path:
        if self.behaviour_source is not None:
            return Path(self.behaviour_source).expanduser()
        return self.run_dir / f"behaviour-{self.behaviour.algorithm}"

    @property
    def dataset_dir(self) -> Path:
        return Path(self.out).expanduser() if self.out is not None else self.run_dir / self.tier


def ensure_behaviour(config: DataConfig, log: Callable[[str], None] = print) -> Path:
    """Train the behaviour policy unless a finished run with the same config is there."""
    directory = config.behaviour_dir
    if config.behaviour_source is not None and not is_complete(directory):
        raise ValueError(f"--behaviour {directory}: not a finished behaviour run (it needs config.json and final.json)")
    if config.behaviour_source is not None and (directory / "files.json").is_file():  # an export: check its files
        for name, digest in json.loads((directory / "files.json").read_text()).items():
            if not (directory / name).is_file() or cards.file_digest(directory / name) != digest:
                raise ValueError(f"--behaviour {directory}: {name} is missing or differs from files.json")
    if is_complete(directory):
        found = read_config(directory)
        if found != config.behaviour:
            raise ValueError(
                f"{directory} holds a behaviour run with a different config:\n  found    {found}\n"
                f"  expected {config.behaviour}\nuse another --root or remove it"
            )
        log(f"behaviour policy: reusing {directory}")
        return directory
    started = (directory / "progress.jsonl").is_file() and read_progress(directory)
    if started and read_config(directory) == config.behaviour:
        log(f"behaviour policy: resuming the interrupted run in {directory}")
        train(config.behaviour, directory, resume=True, log=log)
        return directory
    if started:
        raise ValueError(
            f"{directory} holds an unfinished behaviour run of another config: use another --root or remove it"
        )
    log(f"behaviour policy: training {config.behaviour.algorithm} on {config.map_name} -> {directory}")
    train(config.behaviour, directory, log=log)
    return directory


def pick_medium(progress: list, fraction: float) -> dict:
    """The checkpoint at about ``fraction`` of the final (expert) return: among the checkpoints up
    to the first that reaches it, the one whose stochastic return is closest to it."""
    target = fraction * progress[-1]["stochastic_return"]
    reached = [i for i, row in enumerate(progress) if row["stochastic_return"] >= target]
    candidates = progress[: reached[0] + 1] if reached else progress
    return min(candidates, key=lambda row: abs(row["stochastic_return"] - target))


def _checkpoint_card(directory: Path, row: dict, algorithm: str) -> dict:
    path = directory / row["checkpoint"]
    return dict(
        kind=algorithm,
        checkpoint=str(path),
        checkpoint_sha256=cards.file_digest(path),
        update=row["update"],
        env_steps=row["env_steps"],
        eval_stochastic_return=row["stochastic_return"],
        eval_stochastic_win_rate=row["stochastic_win_rate"],
        eval_greedy_return=row["greedy_return"],
        eval_greedy_win_rate=row["greedy_win_rate"],
    )


def replay_windows(progress: list, medium: dict) -> list[tuple[str, int]]:
    """The medium-replay recipe: (checkpoint, episodes) per window of training up to the medium checkpoint.
    Each progress row counts the episodes played since the checkpoint before it, which opens the window."""
    rows = [row for row in progress if row["update"] <= medium["update"]]
    opening = [checkpoint_name(0)] + [row["checkpoint"] for row in rows[:-1]]
    return [(name, int(row["training_episodes"])) for name, row in zip(opening, rows)]


def _record_replay(config: DataConfig, player: EpisodePlayer, key, windows: list, sink: EpisodeSink, log) -> None:
    """Play each window's episodes with the checkpoint that opens it (or, when the sink holds fewer episodes
    than training played, a uniformly drawn subset of them: a multivariate hypergeometric draw per window)."""
    counts = np.array([count for _, count in windows], np.int64)
    if sink.capacity < counts.sum():
        counts = np.random.default_rng(config.seed).multivariate_hypergeometric(counts, sink.capacity)
    log(f"medium-replay: {int(counts.sum())} episodes from {len(windows)} checkpoints up to {windows[-1][0]}")
    for i, ((name, _), count) in enumerate(zip(windows, counts)):
        if count:
            network = _load_checkpoint(config.behaviour_dir, name)
            player.fill(sink, actor_params(network, greedy=False), jax.random.fold_in(key, i), int(count))
    if not sink.full:
        raise RuntimeError(f"medium-replay recorded {sink.count} episodes, expected {sink.capacity}")


def _load_checkpoint(directory: Path, name: str):
    path = directory / name
    if not path.is_file():
        raise ValueError(
            f"behaviour run {directory}: checkpoint {name} is missing (an export keeps only the ones the tiers need)"
        )
    return load_params(path)


ROLLOUT_CHECK_EPISODES = 16


def rollout_check(directory: Path) -> str:
    """sha256 of 16 episodes played by a behaviour run's final checkpoint from a fixed key: cheap to recompute,
    and equal wherever the run's tiers regenerate bit for bit (a different CPU may round differently)."""
    config = read_config(directory)
    core = make_core(config.map_name, config.episode_limit)
    player = EpisodePlayer(core, actor_critic_policy(), batch=ROLLOUT_CHECK_EPISODES)
    network = _load_checkpoint(Path(directory), read_progress(directory)[-1]["checkpoint"])
    arrays, wins = player.play(actor_params(network, greedy=False), jax.random.PRNGKey(0))
    digest = hashlib.sha256()
    for name in sorted(arrays):
        digest.update(name.encode() + np.ascontiguousarray(arrays[name]).tobytes())
    digest.update(np.asarray(wins).tobytes())
    return digest.hexdigest()


def export_behaviour(source: Path, target: Path, medium_fraction: float = 0.5) -> list[str]:
    """Copy what the trained tiers need from a finished behaviour run into `target` (small enough to commit):
    config.json, progress.jsonl, final.json, the checkpoints of every medium-replay window, the medium and the
    final checkpoint, and files.json (their sha256). Returns the copied file names. A regeneration from the
    export (DataConfig.behaviour_source) rolls out these parameters and trains nothing."""
    source, target = Path(source).expanduser(), Path(target).expanduser()
    if not is_complete(source):
        raise ValueError(f"{source}: not a finished behaviour run (no final.json)")
    progress = read_progress(source)
    medium = pick_medium(progress, medium_fraction)
    needed = [name for name, _ in replay_windows(progress, medium)] + [medium["checkpoint"], progress[-1]["checkpoint"]]
    target.mkdir(parents=True, exist_ok=True)
    names = ["config.json", "progress.jsonl", "final.json"]
    for name in names:
        shutil.copyfile(source / name, target / name)
    for name in dict.fromkeys(needed):
        if name == checkpoint_name(0) and not (source / name).is_file():  # runs trained before update 0 was saved
            save_params(target / name, initial_params(read_config(source)))
        else:
            shutil.copyfile(source / name, target / name)
        names.append(name)
    save_json(target / "files.json", {name: cards.file_digest(target / name) for name in names})
    return names


def build_dataset(config: DataConfig, log: Callable[[str], None] = print, staging: Optional[Path] = None):
    """Generate one tier -> (arrays, meta with the card). Big datasets are assembled in
    memory-mapped files under ``staging`` (arrays are then np.memmap views of them)."""
    config.validate()
    started = time.time()
    core = make_core(config.map_name, config.behaviour.episode_limit)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1000 + _TIER_STREAM[config.tier])

    def new_sink(capacity: int) -> EpisodeSink:
        big = buffer_bytes(core.spec, capacity) > IN_MEMORY_LIMIT
        return EpisodeSink(core.spec, capacity, staging if big else None)

    if config.tier == "scripted":
        sink = new_sink(config.episodes)
        player = EpisodePlayer(core, heuristic_policy(core), batch=rollout_batch(config.episodes))
        player.fill(sink, np.float32(config.eps), key, config.episodes)
        behaviour_card = dict(kind="jaxmarl-heuristic", eps=config.eps, attack_mode="closest")
    else:
        directory = ensure_behaviour(config, log)
        progress = read_progress(directory)
        algorithm = config.behaviour.algorithm
        expert_row, medium_row = progress[-1], pick_medium(progress, config.medium_fraction)
        log(
            f"expert = {expert_row['checkpoint']} (eval return {expert_row['stochastic_return']:.3f}), "
            f"medium = {medium_row['checkpoint']} (eval return {medium_row['stochastic_return']:.3f})"
        )
        player = EpisodePlayer(core, actor_critic_policy(), batch=rollout_batch(config.episodes))
        if config.tier == "medium-replay":
            windows = replay_windows(progress, medium_row)
            episodes = sum(count for _, count in windows)
            sink = new_sink(min(episodes, config.replay_episodes or episodes))
            _record_replay(config, player, key, windows, sink, log)
            behaviour_card = dict(
                kind=f"{algorithm}-checkpoint-replay",
                behaviour_dir=str(directory),
                until=_checkpoint_card(directory, medium_row, algorithm),
                windows=[dict(checkpoint=name, training_episodes=count) for name, count in windows],
                recorded_of_total=[sink.count, episodes],
            )
        else:
            half = config.episodes // 2
            parts = {
                "expert": [(expert_row, config.episodes)],
                "medium": [(medium_row, config.episodes)],
                "mixed": [(medium_row, half), (expert_row, config.episodes - half)],
            }[config.tier]
            sink = new_sink(config.episodes)
            for i, (row, count) in enumerate(parts):
                network = _load_checkpoint(directory, row["checkpoint"])
                player.fill(sink, actor_params(network, greedy=False), jax.random.fold_in(key, i), count)
            behaviour_card = dict(
                kind=algorithm,
                behaviour_dir=str(directory),
                parts=[dict(_checkpoint_card(directory, row, algorithm), episodes=count) for row, count in parts],
            )
    # pad to the longest episode, not to the time limit: SMAX battles are often far shorter
    padded_length = int(sink.lengths[: sink.count].max()) + 1
    arrays = {name: array[:, :padded_length] for name, array in sink.result().items()}
    statistics = cards.episode_statistics(arrays)
    if not np.array_equal(statistics["wins"], sink.wins[: sink.count]):
        raise AssertionError("the reward-based win rule disagrees with the environment's win flag")
    summary = cards.summarize(**statistics)
    spec = core.spec
    card = dict(
        version=cards.CARD_VERSION,
        generator=cards.GENERATOR,
        env=spec.env_name,
        map=spec.map_name,
        tier=config.tier,
        seed=config.seed,
        n_agents=spec.n_agents,
        obs_dim=spec.obs_dim,
        state_dim=spec.state_dim,
        n_actions=spec.n_actions,
        episode_limit=spec.episode_limit,
        padded_length=padded_length,
        behaviour=behaviour_card,
        behaviour_config=asdict(config.behaviour),
        **summary,
        versions={name: metadata.version(name) for name in ("jaxmarl", "jax", "jaxlib", "numpy")},
        seconds=round(time.time() - started, 1),
        note="SMAX returns lie in [0, ~2] (damage + 1 for a win); not comparable with SMAC numbers",
    )
    meta = dict(
        env=spec.env_name,
        dataset=config.tier,
        seed=config.seed,
        n_agents=spec.n_agents,
        n_actions=spec.n_actions,
        episode_limit=spec.episode_limit,
        card=card,
    )
    log(
        f"{spec.env_name} {config.tier}: {summary['episodes']} episodes, {summary['transitions']} transitions, "
        f"return {summary['return_mean']:.3f} +- {summary['return_std']:.3f}, win rate {summary['win_rate']:.3f} "
        f"({card['seconds']} s)"
    )
    return arrays, meta


def make_dataset(config: DataConfig, log: Callable[[str], None] = print) -> Path:
    """Generate one tier and write it to ``config.dataset_dir``; returns that directory. An existing
    dataset there is an error unless ``overwrite``."""
    target = config.dataset_dir
    if (target / "meta.json").exists() and not config.overwrite:
        raise FileExistsError(f"{target} already holds a dataset (pass --overwrite to replace it)")
    staging = target.parent / f".{target.name}.staging"
    try:
        arrays, meta = build_dataset(config, log, staging)
        save_episode_buffer(target, arrays, meta)
        del arrays
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    # the card also lists each array file's size and digest, known only once they are written
    written = json.loads((target / "meta.json").read_text())
    written["card"]["files"] = cards.file_table(target, REQUIRED_ARRAYS)
    save_json(target / "meta.json", written)
    cards.load_dataset(target)  # what a reader will see must pass the card check
    log(f"wrote {target}")
    return target


def make_tiers(config: DataConfig, tiers=TRAINED_TIERS, log: Callable[[str], None] = print) -> list:
    """Several tiers from one behaviour run (trained once)."""
    return [make_dataset(replace(config, tier=tier, out=None), log) for tier in tiers]
