"""Transitions served straight from a memory-mapped episode buffer (datasets of millions of steps).

``inspo.data.TransitionStore`` copies every transition (and its next step) into tensors. For a
dataset of 1M transitions on a 5-agent map that is ~6 GB of RAM before training starts.
``MappedTransitions`` keeps only the row index in RAM (episode, step, next step: 24 bytes per
transition) plus the behaviour cache, and a minibatch gathers its rows from the mapped files: the
data is read once per draw, never copied per epoch. It selects exactly the transitions
``TransitionStore.from_episode_buffer`` selects and returns the same ``TransitionBatch``
(tests/test_smax_store.py checks that row by row).
"""

from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from inspo.data.buffer import DatasetError, validate_episode_arrays
from inspo.data.transitions import TransitionBatch
from inspo.data.transitions import _check_actions as check_actions  # the store's own rule


class MappedTransitions:
    def __init__(self, arrays: dict, device: str = "cpu", chunk: int = 8192, check: bool = True):
        sizes = validate_episode_arrays(arrays, exact_dtypes=False)
        self.arrays = arrays
        self.device = torch.device(device)
        self.n_agents, self.n_actions = sizes["N"], sizes["A"]
        self.obs_dim, self.state_dim = sizes["O"], sizes["S"]
        length = sizes["T+1"]
        episodes, steps, dones = [], [], []
        for start in range(0, sizes["E"], chunk):  # the same selection rule as TransitionStore
            filled = np.asarray(arrays["filled"][start:start + chunk, :, 0]) != 0
            terminated = np.asarray(arrays["terminated"][start:start + chunk, :, 0]) != 0
            terminated_before = np.cumsum(terminated, axis=1) - terminated > 0
            next_filled = np.zeros_like(filled)
            next_filled[:, :-1] = filled[:, 1:]
            episode, step = np.nonzero(filled & ~terminated_before & (terminated | next_filled))
            episodes.append(episode + start)
            steps.append(step)
            dones.append(terminated[episode, step])
        self.episode = np.concatenate(episodes)
        self.step = np.concatenate(steps)
        done = np.concatenate(dones)
        if self.episode.size == 0:
            raise DatasetError("dataset has no usable transitions")
        self.next_step = np.where(done, self.step, np.minimum(self.step + 1, length - 1))
        self.done = torch.from_numpy(done.astype(np.float32)).to(self.device)
        if check:
            self._check(chunk)
        self.log_mu: Optional[Tensor] = None
        self.next_log_mu: Optional[Tensor] = None

    def _check(self, chunk: int) -> None:
        """The checks of TransitionStore, one pass over the files in chunks of transitions: actions in
        range and available under the mask (a and a'), finite observations, states and rewards."""
        for start in range(0, len(self), chunk):
            rows = slice(start, start + chunk)
            episode, step, next_step = self.episode[rows], self.step[rows], self.next_step[rows]
            for what, at in (("actions", step), ("next actions (a')", next_step)):
                actions = self._gather("actions", episode, at)[..., 0].astype(np.int64)
                avail = self._gather("avail_actions", episode, at) != 0
                check_actions(what, actions, avail, episode, at)
            for name in ("obs", "state", "reward"):
                for at in ((step, next_step) if name != "reward" else (step,)):
                    value = self._gather(name, episode, at)
                    bad = ~np.isfinite(value).reshape(len(value), -1).all(axis=1)
                    if bad.any():
                        i = int(np.argmax(bad))
                        raise DatasetError(f"{name} has non-finite values (episode {episode[i]}, step {at[i]})")

    def __len__(self) -> int:
        return len(self.episode)

    def _gather(self, name: str, episode: np.ndarray, step: np.ndarray) -> np.ndarray:
        # sort the reads by file position (episode-major), then put the rows back in order
        order = np.lexsort((step, episode))
        rows = np.empty((len(order),) + self.arrays[name].shape[2:], self.arrays[name].dtype)
        rows[order] = self.arrays[name][episode[order], step[order]]
        return rows

    def _tensor(self, x: np.ndarray, dtype: torch.dtype) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).to(device=self.device, dtype=dtype)

    def index(self, rows: Tensor) -> TransitionBatch:
        """The minibatch of transitions ``rows`` (a 1-D index tensor), read from the mapped arrays."""
        picked = rows.cpu().numpy()
        episode, step, next_step = self.episode[picked], self.step[picked], self.next_step[picked]
        read = lambda name, at: self._gather(name, episode, at)  # noqa: E731
        batch = TransitionBatch(
            state=self._tensor(read("state", step), torch.float32),
            obs=self._tensor(read("obs", step), torch.float32),
            actions=self._tensor(read("actions", step)[..., 0], torch.int64),
            reward=self._tensor(read("reward", step)[..., 0], torch.float32),
            next_state=self._tensor(read("state", next_step), torch.float32),
            next_obs=self._tensor(read("obs", next_step), torch.float32),
            next_actions=self._tensor(read("actions", next_step)[..., 0], torch.int64),
            done=self.done[rows.to(self.device)],
            avail=self._tensor(read("avail_actions", step) != 0, torch.bool),
            next_avail=self._tensor(read("avail_actions", next_step) != 0, torch.bool),
        )
        if self.log_mu is not None:
            batch.log_mu = self.log_mu[rows.to(self.log_mu.device)]
            batch.next_log_mu = self.next_log_mu[rows.to(self.next_log_mu.device)]
        return batch

    @torch.no_grad()
    def cache_behaviour(self, log_probs_fn: Callable[[Tensor, Tensor], Tensor], chunk: int = 65536) -> None:
        """Store log mu(.|o) and log mu(.|o') for every transition (in RAM: 2 x [T, N, A] floats)."""
        log_mu, next_log_mu = [], []
        for start in range(0, len(self), chunk):
            batch = self.index(torch.arange(start, min(start + chunk, len(self))))
            log_mu.append(log_probs_fn(batch.obs, batch.avail))
            next_log_mu.append(log_probs_fn(batch.next_obs, batch.next_avail))
        self.log_mu, self.next_log_mu = torch.cat(log_mu), torch.cat(next_log_mu)
