"""What every trainer shares: the environment, the dataset, the seeded generator, the run folder.

`prepare_run` builds the environment and the transition store (from the env's seeded generator or an
episode-buffer directory; in tensors or memory-mapped, config.dataset_storage); `RunFiles` writes
metrics (CSV + JSONL, optional TensorBoard) and atomic checkpoints, and on resume cuts the logs back
to the checkpoint's step so they read as one run.
"""
from __future__ import annotations

import csv
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from tqdm import tqdm

from inspo.config import TrainConfig
from inspo.data import MappedTransitions, TransitionStore
from inspo.envs import Env, make_env

CHECKPOINT = "checkpoint.pt"


@dataclass
class RunContext:
    config: TrainConfig
    env: Env
    store: TransitionStore | MappedTransitions  # the same fields, batches and numbers
    dataset_meta: dict[str, Any]
    generator: torch.Generator  # minibatches, permutations, resampling: the only training randomness


def prepare_run(config: TrainConfig) -> RunContext:
    """Seed everything, build the env and its dataset's transition store."""
    config.validate()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)  # network initialization
    random.seed(config.seed)
    np.random.seed(config.seed)
    env = make_env(config)
    mapped = config.dataset_storage == "mapped"
    if config.dataset_path:
        arrays, meta = env.load_dataset(config.dataset_path, mmap=mapped)
    else:
        env.check_dataset_name(config.dataset)
        seed = config.seed if config.dataset_seed is None else config.dataset_seed
        arrays, meta = env.generate_dataset(config.dataset, seed)
    if mapped:
        store = MappedTransitions(arrays, device=config.device)
    else:
        store = TransitionStore.from_episode_buffer(arrays, device=config.device)
    expected = (env.n_agents, env.n_actions, env.obs_dim, env.state_dim)
    found = (store.n_agents, store.n_actions, store.obs_dim, store.state_dim)
    if expected != found:
        raise ValueError(f"dataset has (agents, actions, obs dim, state dim) = {found}, but {config.env} "
                         f"expects {expected}")
    generator = torch.Generator(device=config.device).manual_seed(config.seed)
    return RunContext(config, env, store, meta, generator)


def eval_generator(config: TrainConfig, step: int) -> torch.Generator:
    """A generator of its own for each evaluation, so evaluating never moves the training randomness."""
    return torch.Generator().manual_seed(config.seed * 1_000_003 + step)


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    return dict(generator=generator.get_state(), torch=torch.get_rng_state(), numpy=np.random.get_state(),
                python=random.getstate())


def set_rng_state(generator: torch.Generator, state: dict[str, Any]) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


class RunFiles:
    """The output folder of a run: metrics.{csv,jsonl}, eval.{csv,jsonl}, checkpoint.pt, results.json."""

    def __init__(self, out_dir: Optional[str | os.PathLike], tensorboard: bool = False):
        self.dir = Path(out_dir) if out_dir is not None else None
        self.writer = None
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter
                except ImportError as error:
                    raise RuntimeError("tensorboard=True needs the tensorboard package "
                                       "(pip install 'inspo[tensorboard]')") from error
                self.writer = SummaryWriter(str(self.dir / "tensorboard"))

    def log(self, kind: str, row: dict[str, Any]) -> None:
        """Append `row` (must hold "step") to {kind}.jsonl and {kind}.csv."""
        if self.dir is None:
            return
        with open(self.dir / f"{kind}.jsonl", "a") as handle:
            handle.write(json.dumps(row) + "\n")
        csv_path = self.dir / f"{kind}.csv"
        new = not csv_path.exists() or csv_path.stat().st_size == 0
        with open(csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{kind}/{key}", value, row["step"])

    def truncate_logs(self, last_step: int) -> None:
        """Drop log rows written after `last_step` (an interrupted run's tail past its checkpoint)."""
        if self.dir is None:
            return
        for kind in ("metrics", "eval"):
            jsonl = self.dir / f"{kind}.jsonl"
            if jsonl.exists():
                lines = [line for line in jsonl.read_text().splitlines() if line.strip()]
                _atomic_text(jsonl, "".join(line + "\n" for line in lines if json.loads(line)["step"] <= last_step))
            csv_path = self.dir / f"{kind}.csv"
            if csv_path.exists():
                with open(csv_path, newline="") as handle:
                    rows = list(csv.reader(handle))
                step_column = rows[0].index("step")
                keep = [rows[0]] + [row for row in rows[1:] if int(row[step_column]) <= last_step]
                fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{kind}.csv.", suffix=".tmp")
                with os.fdopen(fd, "w", newline="") as handle:
                    csv.writer(handle).writerows(keep)
                os.replace(tmp, csv_path)

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return None if self.dir is None else self.dir / CHECKPOINT

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """torch.save to a temporary file in the same folder, then an atomic rename."""
        if self.dir is None:
            return
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".checkpoint.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(payload, handle)
            os.replace(tmp, self.checkpoint_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def load_checkpoint(self) -> dict[str, Any]:
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from in {self.dir}")
        return torch.load(self.checkpoint_path, weights_only=False)

    def write_results(self, results: dict[str, Any]) -> None:
        if self.dir is not None:
            _atomic_text(self.dir / "results.json", json.dumps(results, indent=2) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def progress_bar(*, total: int, initial: int, label: str, enabled: bool) -> tqdm:
    """The training progress bar (the one place that makes it)."""
    return tqdm(total=total, initial=initial, desc=label, disable=not enabled, leave=False, dynamic_ncols=True)


def _atomic_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.replace(tmp, path)
