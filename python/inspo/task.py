"""What a run trains on: its environment, its dataset's transition store and its seeded generator.

`prepare_task` builds the environment and the transition store (from the env's seeded generator or a
dataset of any format, inspo.data.formats; in tensors or memory-mapped, config.dataset_storage; a
dataset-only run, config.env None, has no environment). `dataset_fingerprint` records what a run trains
on, so that a resume on changed data is refused; `rng_state` is the randomness a checkpoint keeps.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from inspo.config import TrainConfig
from inspo.data import MappedTransitions, TransitionStore
from inspo.data.formats import Dataset, build_store, detect_format, read_dataset
from inspo.envs import Env, make_env
from inspo.runfolder import feed_digest


@dataclass
class Task:
    config: TrainConfig
    env: Optional[Env]  # None: a dataset-only run, evaluation skipped
    store: TransitionStore | MappedTransitions  # the same fields, batches and numbers
    generator: torch.Generator  # minibatches, permutations, resampling: the only training randomness
    dataset_fingerprint: dict[str, Any]  # what the run trains on (`dataset_fingerprint`), kept in its checkpoints


def prepare_task(config: TrainConfig) -> Task:
    """Seed everything, build the env and its dataset's transition store."""
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # network initialization
    random.seed(config.seed)
    np.random.seed(config.seed)
    env = make_env(config) if config.env is not None else None
    mapped = config.dataset_storage == "mapped"
    if config.dataset_path:
        format = detect_format(config.dataset_path) if config.dataset_format == "auto" else config.dataset_format
        if isinstance(env, Env) and format == "npy":  # the env's own checks (SMAX's dataset cards)
            arrays, meta = env.load_dataset(config.dataset_path, mmap=mapped)
            dataset = Dataset(Path(config.dataset_path), "npy", arrays, meta, {name: f"{name}.npy" for name in arrays})
        else:
            dataset = read_dataset(config.dataset_path, format, mmap=mapped)
    else:
        env.check_dataset_name(config.dataset)
        seed = config.seed if config.dataset_seed is None else config.dataset_seed
        dataset = Dataset(
            Path(f"{config.env}/{config.dataset}"), "generated", *env.generate_dataset(config.dataset, seed), fields={}
        )
    store = build_store(dataset, mapped=mapped, device=config.device, episode_limit=config.episode_limit)
    found = (store.n_agents, store.n_actions, store.obs_dim, store.state_dim)
    if env is not None and (env.n_agents, env.n_actions, env.obs_dim, env.state_dim) != found:
        expected = (env.n_agents, env.n_actions, env.obs_dim, env.state_dim)
        raise ValueError(
            f"dataset has (agents, actions, obs dim, state dim) = {found}, but {config.env} expects {expected}"
        )
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    return Task(config, env, store, generator, dataset_fingerprint(dataset))


FINGERPRINT_CHUNK = 1 << 20  # bytes hashed at a time: a dataset larger than RAM is streamed


def dataset_fingerprint(dataset: Dataset) -> dict[str, Any]:
    """The sha256 of what a run trains on: the files a dataset path's reader reads (an npy folder's .npy
    files and meta.json; an HDF5 file; every file of a vault), each by its relative name, size and
    contents, streamed; of a generated dataset, its arrays. {"sha256", "files", "bytes"} (a few seconds
    per GB: hashing runs at disk or memory speed)."""
    digest = hashlib.sha256()
    if dataset.format == "generated":
        for name in sorted(dataset.arrays):
            feed_digest(digest, name)
            feed_digest(digest, np.asarray(dataset.arrays[name]))
        return {"sha256": digest.hexdigest(), "files": 0, "bytes": 0}
    root = Path(dataset.path)
    if root.is_file():
        files = [root]
    elif dataset.format == "npy":
        files = sorted([*root.glob("*.npy"), root / "meta.json"])
    else:
        files = sorted(path for path in root.rglob("*") if path.is_file())
    files = [path for path in files if path.is_file()]
    total = 0
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.relative_to(root).as_posix() if path != root else path.name} {size}:".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(FINGERPRINT_CHUNK):
                digest.update(chunk)
        total += size
    return {"sha256": digest.hexdigest(), "files": len(files), "bytes": total}


def check_dataset_unchanged(checkpoint: dict[str, Any], now: dict[str, Any], out_dir: Any) -> None:
    """Refuse to resume the run of `checkpoint` (in `out_dir`) on a dataset whose fingerprint changed."""
    before = checkpoint.get("dataset")
    if before is None or before["sha256"] == now["sha256"]:  # (checkpoints from before fingerprints: none)
        return

    def described(fingerprint: dict[str, Any]) -> str:
        files = f", {fingerprint['files']} files, {fingerprint['bytes']:,} bytes" if fingerprint["files"] else ""
        return f"sha256 {fingerprint['sha256'][:12]}{files}"

    data = checkpoint["config"].get("dataset_path") or "the generated dataset"
    raise ValueError(
        f"the dataset changed since the checkpoint in {out_dir} was written ({data}: {described(before)} then, "
        f"{described(now)} now); --allow-dataset-change resumes on it anyway, --overwrite starts over"
    )


def eval_generator(config: TrainConfig, step: int) -> torch.Generator:
    """A generator of its own for each evaluation, so evaluating never moves the training randomness."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    return dict(
        generator=generator.get_state(),
        torch=torch.get_rng_state(),
        numpy=np.random.get_state(),
        python=random.getstate(),
    )


def set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
