"""Transitions served straight from a memory-mapped episode buffer (datasets of millions of steps).

``TransitionStore`` copies every transition (and its next step) into tensors. For a dataset of 1M
transitions on a 5-agent map that is ~6 GB of RAM before training starts. ``MappedTransitions``
keeps in RAM only the row index (episode, step, next step: 24 bytes per transition), the joint
actions, rewards and end flags (the behaviour-cloning loss reads every action) and the behaviour
cache; a minibatch gathers its observations, states and masks from the mapped files: the data is
read once per draw, never copied per epoch. It selects exactly the transitions
``TransitionStore.from_episode_buffer`` selects, makes the same checks, and gives the same
``TransitionBatch`` and the same fields (``store.obs[rows]``, ``store.actions``, ...), so every trainer
takes either (tests/test_data_mapped.py checks that row by row).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from inspo.data.buffer import DatasetError, validate_episode_arrays
from inspo.data.transitions import NO_TRANSITIONS, TransitionBatch, check_finite, select_transitions
from inspo.data.transitions import _check_actions as check_actions  # the store's own rule

# batch field read from the files -> (episode array, read at the next step?, dtype)
MAPPED_FIELDS: dict[str, tuple[str, bool, torch.dtype]] = {
    "state": ("state", False, torch.float32),
    "obs": ("obs", False, torch.float32),
    "next_state": ("state", True, torch.float32),
    "next_obs": ("obs", True, torch.float32),
    "next_actions": ("actions", True, torch.int64),
    "avail": ("avail_actions", False, torch.bool),
    "next_avail": ("avail_actions", True, torch.bool),
}


class MappedColumn:
    """One field of every transition, read from the mapped files on indexing: ``store.obs[rows]``
    as with ``TransitionStore``, where the field is a tensor."""

    def __init__(self, store: "MappedTransitions", field: str):
        self.store, self.field = store, field

    def __getitem__(self, rows: Tensor) -> Tensor:
        return self.store.read(self.field, rows)


class MappedTransitions:
    """All transitions of an episode buffer whose arrays may be memory-mapped (np.load(mmap_mode="r"))."""

    def __init__(
        self,
        arrays: dict,
        device: str | torch.device = "cpu",
        chunk: int = 8192,
        check: bool = True,
        episode_limit: Optional[int] = None,
    ):
        sizes = validate_episode_arrays(arrays, exact_dtypes=False)
        self.arrays = arrays
        self.device = torch.device(device)
        self.n_agents, self.n_actions = sizes["N"], sizes["A"]
        self.obs_dim, self.state_dim = sizes["O"], sizes["S"]
        length = sizes["T+1"]
        episodes, steps, dones, truncations = [], [], [], []
        for start in range(0, sizes["E"], chunk):  # TransitionStore's selection rule, chunk by chunk
            rows = slice(start, start + chunk)
            episode, step, done, truncated = select_transitions(
                arrays["filled"][rows, :, 0],
                arrays["terminated"][rows, :, 0],
                arrays["truncated"][rows, :, 0] if "truncated" in arrays else None,
                episode_limit,
                first_episode=start,
            )
            episodes.append(episode)
            steps.append(step)
            dones.append(done)
            truncations.append(truncated)
        self.episode = np.concatenate(episodes)
        self.step = np.concatenate(steps)
        done = np.concatenate(dones)
        if self.episode.size == 0:
            raise DatasetError(NO_TRANSITIONS)
        self.next_step = np.where(done, self.step, np.minimum(self.step + 1, length - 1))
        self.done = torch.from_numpy(done.astype(np.float32)).to(self.device)
        self.truncated = torch.from_numpy(np.concatenate(truncations).astype(np.float32)).to(self.device)
        actions, reward = self._scan(chunk, check)
        self.actions = torch.from_numpy(actions).to(self.device)  # [T, N] int64
        self.reward = torch.from_numpy(reward).to(device=self.device, dtype=torch.float32)  # [T]
        for field in MAPPED_FIELDS:  # store.obs[rows], ... as with TransitionStore's tensors
            setattr(self, field, MappedColumn(self, field))
        self.log_mu: Optional[Tensor] = None
        self.next_log_mu: Optional[Tensor] = None

    def _scan(self, chunk: int, check: bool) -> tuple[np.ndarray, np.ndarray]:
        """One pass over the files in chunks of transitions: the actions and rewards kept in RAM and,
        with ``check``, the checks of TransitionStore (actions in range and available under the mask,
        a and a', finite observations, states and rewards)."""
        actions, rewards = [], []
        for start in range(0, len(self), chunk):
            rows = slice(start, start + chunk)
            episode, step, next_step = self.episode[rows], self.step[rows], self.next_step[rows]
            actions.append(self._gather("actions", episode, step)[..., 0].astype(np.int64))
            rewards.append(self._gather("reward", episode, step)[..., 0])
            if not check:
                continue
            avail = self._gather("avail_actions", episode, step) != 0
            check_actions("actions", actions[-1], avail, episode, step)
            next_actions = self._gather("actions", episode, next_step)[..., 0].astype(np.int64)
            next_avail = self._gather("avail_actions", episode, next_step) != 0
            check_actions("next actions (a')", next_actions, next_avail, episode, next_step)
            values = [
                ("obs", step, self._gather("obs", episode, step)),
                ("obs", next_step, self._gather("obs", episode, next_step)),
                ("state", step, self._gather("state", episode, step)),
                ("state", next_step, self._gather("state", episode, next_step)),
                ("reward", step, rewards[-1]),
            ]
            for name, at, value in values:
                check_finite(name, value, episode, at)
        return np.concatenate(actions), np.concatenate(rewards)

    def __len__(self) -> int:
        return len(self.episode)

    def _gather(self, name: str, episode: np.ndarray, step: np.ndarray) -> np.ndarray:
        # sort the reads by file position (episode-major), then put the rows back in order; the lazy
        # arrays of the HDF5 and vault readers take the same (episodes, steps) index
        order = np.lexsort((step, episode))
        rows = np.empty((len(order),) + tuple(self.arrays[name].shape[2:]), self.arrays[name].dtype)
        rows[order] = self.arrays[name][episode[order], step[order]]
        return rows

    def read(self, field: str, rows: Tensor) -> Tensor:
        """Field ``field`` (a key of MAPPED_FIELDS) of the transitions ``rows``, gathered from the files."""
        name, at_next, dtype = MAPPED_FIELDS[field]
        picked = rows.cpu().numpy()
        at = (self.next_step if at_next else self.step)[picked]
        value = self._gather(name, self.episode[picked], at)
        if name == "actions":
            value = value[..., 0]
        elif name == "avail_actions":
            value = value != 0
        return torch.from_numpy(np.ascontiguousarray(value)).to(device=self.device, dtype=dtype)

    def index(self, rows: Tensor) -> TransitionBatch:
        """The minibatch of transitions ``rows`` (a 1-D index tensor)."""
        here = rows.to(self.device)
        batch = TransitionBatch(
            actions=self.actions[here],
            reward=self.reward[here],
            done=self.done[here],
            truncated=self.truncated[here],
            **{field: self.read(field, rows) for field in MAPPED_FIELDS},
        )
        if self.log_mu is not None:
            batch.log_mu = self.log_mu[rows.to(self.log_mu.device)]
            batch.next_log_mu = self.next_log_mu[rows.to(self.next_log_mu.device)]
        return batch

    @torch.no_grad()
    def cache_behaviour(self, log_probs_fn: Callable[[Tensor, Tensor], Tensor], chunk: int = 65536) -> None:
        """Store log mu(.|o) and log mu(.|o') for every transition (in RAM: 2 x [T, N, A] floats), in
        the same chunks as TransitionStore.cache_behaviour (so the same numbers)."""
        log_mu, next_log_mu = [], []
        for start in range(0, len(self), chunk):
            rows = torch.arange(start, min(start + chunk, len(self)))
            log_mu.append(log_probs_fn(self.read("obs", rows), self.read("avail", rows)))
            next_log_mu.append(log_probs_fn(self.read("next_obs", rows), self.read("next_avail", rows)))
        self.log_mu, self.next_log_mu = torch.cat(log_mu), torch.cat(next_log_mu)
