"""The in-memory transition store (s, o, a, r, s', o', a', d, avail, avail') of spec section 1.

Built from episode-buffer arrays: transition t of an episode is kept when step t is real (filled),
no earlier step of the episode terminated, and either step t terminated or step t+1 is real (a' is
the next joint action of the same episode, needed for in-sample evaluation). A step whose episode was
cut by a time limit without a stored next step has no a' and is dropped. For terminal transitions the
next-step fields repeat step t (never read by the losses, but finite and valid).
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from inspo.data.buffer import DatasetError, validate_episode_arrays


@dataclass
class TransitionBatch:
    state: Tensor  # [B, S]
    obs: Tensor  # [B, N, O]
    actions: Tensor  # [B, N] int64
    reward: Tensor  # [B]
    next_state: Tensor  # [B, S]
    next_obs: Tensor  # [B, N, O]
    next_actions: Tensor  # [B, N] int64
    done: Tensor  # [B] float, 1 where the episode terminated at this step
    avail: Tensor  # [B, N, A] bool
    next_avail: Tensor  # [B, N, A] bool
    log_mu: Optional[Tensor] = None  # [B, N, A] cached behaviour log-probs (after BC)
    next_log_mu: Optional[Tensor] = None

    def index(self, rows: Tensor) -> "TransitionBatch":
        return TransitionBatch(**{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows]
                                  for f in fields(self)})

    def __len__(self) -> int:
        return self.reward.shape[0]


class TransitionStore(TransitionBatch):
    """All transitions of a dataset as tensors, plus the behaviour log-prob cache once mu is fitted."""

    @property
    def n_agents(self) -> int:
        return self.obs.shape[1]

    @property
    def n_actions(self) -> int:
        return self.avail.shape[2]

    @property
    def obs_dim(self) -> int:
        return self.obs.shape[2]

    @property
    def state_dim(self) -> int:
        return self.state.shape[1]

    @classmethod
    def from_episode_buffer(cls, arrays: dict[str, np.ndarray], device: str | torch.device = "cpu") -> "TransitionStore":
        sizes = validate_episode_arrays(arrays, exact_dtypes=False)
        length = sizes["T+1"]
        episode, step, done = select_transitions(arrays["filled"][..., 0], arrays["terminated"][..., 0])
        if episode.size == 0:
            raise DatasetError(NO_TRANSITIONS)
        next_step = np.where(done, step, np.minimum(step + 1, length - 1))

        def take(name: str, at: np.ndarray) -> np.ndarray:
            return np.asarray(arrays[name][episode, at])  # fancy indexing reads only these rows

        actions = take("actions", step)[..., 0].astype(np.int64)
        next_actions = take("actions", next_step)[..., 0].astype(np.int64)
        avail = take("avail_actions", step) != 0
        next_avail = take("avail_actions", next_step) != 0
        _check_actions("actions", actions, avail, episode, step)
        _check_actions("next actions (a')", next_actions, next_avail, episode, next_step)
        values = dict(
            state=take("state", step), obs=take("obs", step), reward=take("reward", step)[..., 0],
            next_state=take("state", next_step), next_obs=take("obs", next_step),
        )
        for name, value in values.items():
            check_finite(name, value, episode, next_step if name.startswith("next_") else step)

        def tensor(x: np.ndarray, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(x)).to(device=device, dtype=dtype)

        return cls(
            state=tensor(values["state"], torch.float32), obs=tensor(values["obs"], torch.float32),
            actions=tensor(actions, torch.int64), reward=tensor(values["reward"], torch.float32),
            next_state=tensor(values["next_state"], torch.float32), next_obs=tensor(values["next_obs"], torch.float32),
            next_actions=tensor(next_actions, torch.int64), done=tensor(done, torch.float32),
            avail=tensor(avail, torch.bool), next_avail=tensor(next_avail, torch.bool),
        )

    @torch.no_grad()
    def cache_behaviour(self, log_probs_fn, chunk: int = 65536) -> None:
        """Store log mu(.|o) and log mu(.|o') for every transition; `log_probs_fn(obs, avail) -> [B, N, A]`."""
        def run(obs: Tensor, avail: Tensor) -> Tensor:
            return torch.cat([log_probs_fn(obs[i:i + chunk], avail[i:i + chunk]) for i in range(0, len(obs), chunk)])

        self.log_mu = run(self.obs, self.avail)
        self.next_log_mu = run(self.next_obs, self.next_avail)


NO_TRANSITIONS = "dataset has no usable transitions (no real step with a next step or a terminal flag)"


def select_transitions(filled: np.ndarray, terminated: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The transitions of episodes [E, T+1] (filled and terminated flags, any dtype): (episode, step,
    done) of every real step that has a next step or ends the episode."""
    filled, terminated = np.asarray(filled) != 0, np.asarray(terminated) != 0
    # steps after a terminal step (PyMARL marks the stored final state as filled) are not real
    terminated_before = np.cumsum(terminated, axis=1) - terminated > 0
    next_filled = np.zeros_like(filled)
    next_filled[:, :-1] = filled[:, 1:]
    episode, step = np.nonzero(filled & ~terminated_before & (terminated | next_filled))
    return episode, step, terminated[episode, step]


def check_finite(name: str, value: np.ndarray, episode: np.ndarray, step: np.ndarray) -> None:
    """DatasetError naming the first transition whose `name` values (rows of `value`) are not all finite."""
    bad = ~np.isfinite(value).reshape(value.shape[0], -1).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(f"{name} has non-finite values (episode {episode[i]}, step {step[i]})")


def _check_actions(what: str, actions: np.ndarray, avail: np.ndarray, episode: np.ndarray, step: np.ndarray) -> None:
    n_actions = avail.shape[-1]
    out_of_range = (actions < 0) | (actions >= n_actions)
    if out_of_range.any():
        e, n = np.argwhere(out_of_range)[0]
        raise DatasetError(f"{what}: action {actions[e, n]} of agent {n} outside [0, {n_actions}) "
                           f"(episode {episode[e]}, step {step[e]})")
    if not avail.any(axis=-1).all():
        e, n = np.argwhere(~avail.any(axis=-1))[0]
        raise DatasetError(f"{what}: agent {n} has no available action (episode {episode[e]}, step {step[e]})")
    taken = np.take_along_axis(avail, actions[..., None], axis=-1)[..., 0]
    if not taken.all():
        e, n = np.argwhere(~taken)[0]
        raise DatasetError(f"{what}: action {actions[e, n]} of agent {n} is not available under the mask "
                           f"(episode {episode[e]}, step {step[e]})")
