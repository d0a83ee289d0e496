"""The in-memory transition store (s, o, a, r, s', o', a', d, avail, avail'; docs/ALGORITHM.md#setting-and-data).

Built from episode-buffer arrays: transition t of an episode is kept when step t is real (filled),
the episode did not end before it, and either step t is terminal or step t+1 is real (a' is the next
joint action of the same episode, needed for in-sample evaluation). For terminal transitions the
next-step fields repeat step t (never read by the losses, but finite and valid).

Terminals and truncations stay apart: ``done`` is 1 only where the episode terminated; ``truncated``
is 1 on the last transition of an episode cut by a time limit, which bootstraps through its stored
next step like any other. A step cut without a stored next step has no a' and is dropped. Which
ends are time-limit ends (`EndRule`): the dataset's own ``truncated`` array where it has one
(OG-MARL vaults); else, with an explicit ``episode_limit``, every episode that ran episode_limit
steps was cut there, even if its last step is flagged terminated (AlberDICE's data flags them so);
else PyMARL's convention: ``terminated`` as stored, an end without the flag is a cut.

The store is built chunk by chunk of episodes, so lazy arrays (memory maps, HDF5 datasets, vault
views) are read once, a block at a time, never whole.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional, Sequence

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
    truncated: Optional[Tensor] = None  # [B] float, 1 on the last transition of a time-limit-cut episode

    def index(self, rows: Tensor) -> "TransitionBatch":
        return TransitionBatch(
            **{f.name: None if getattr(self, f.name) is None else getattr(self, f.name)[rows] for f in fields(self)}
        )

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
    def from_episode_buffer(
        cls,
        arrays: dict[str, np.ndarray],
        device: str | torch.device = "cpu",
        episode_limit: Optional[int] = None,
        chunk: int = 4096,
    ) -> "TransitionStore":
        sizes = validate_episode_arrays(arrays, exact_dtypes=False)
        length = sizes["T+1"]
        parts: dict[str, list[np.ndarray]] = {}
        for start in range(0, sizes["E"], chunk):
            block = {name: np.asarray(arrays[name][start : start + chunk]) for name in EPISODE_FIELDS if name in arrays}
            episode, step, done, truncated = select_transitions(
                block["filled"][..., 0],
                block["terminated"][..., 0],
                block["truncated"][..., 0] if "truncated" in block else None,
                episode_limit,
                first_episode=start,
            )
            local = episode - start
            next_step = np.where(done, step, np.minimum(step + 1, length - 1))

            def take(name: str, at: np.ndarray, block=block, local=local) -> np.ndarray:
                return block[name][local, at]

            actions = take("actions", step)[..., 0].astype(np.int64)
            next_actions = take("actions", next_step)[..., 0].astype(np.int64)
            avail = take("avail_actions", step) != 0
            next_avail = take("avail_actions", next_step) != 0
            _check_actions("actions", actions, avail, episode, step)
            _check_actions("next actions (a')", next_actions, next_avail, episode, next_step)
            values = dict(
                state=take("state", step),
                obs=take("obs", step),
                reward=take("reward", step)[..., 0],
                next_state=take("state", next_step),
                next_obs=take("obs", next_step),
            )
            for name, value in values.items():
                check_finite(name, value, episode, next_step if name.startswith("next_") else step)
            values.update(
                actions=actions,
                next_actions=next_actions,
                avail=avail,
                next_avail=next_avail,
                done=done,
                truncated=truncated,
            )
            for name, value in values.items():
                parts.setdefault(name, []).append(value)
        if sum(len(part) for part in parts["done"]) == 0:
            raise DatasetError(NO_TRANSITIONS)

        def tensor(name: str, dtype: torch.dtype) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(np.concatenate(parts[name]))).to(device=device, dtype=dtype)

        floats = ("state", "obs", "reward", "next_state", "next_obs", "done", "truncated")
        return cls(
            **{name: tensor(name, torch.float32) for name in floats},
            **{name: tensor(name, torch.int64) for name in ("actions", "next_actions")},
            **{name: tensor(name, torch.bool) for name in ("avail", "next_avail")},
        )

    @torch.no_grad()
    def cache_behaviour(self, log_probs_fn, chunk: int = 65536) -> None:
        """Store log mu(.|o) and log mu(.|o') for every transition; `log_probs_fn(obs, avail) -> [B, N, A]`."""

        def run(obs: Tensor, avail: Tensor) -> Tensor:
            return torch.cat(
                [log_probs_fn(obs[i : i + chunk], avail[i : i + chunk]) for i in range(0, len(obs), chunk)]
            )

        self.log_mu = run(self.obs, self.avail)
        self.next_log_mu = run(self.next_obs, self.next_avail)


NO_TRANSITIONS = "dataset has no usable transitions (no real step with a next step or a terminal flag)"


# the episode arrays the transition store reads
EPISODE_FIELDS = ("obs", "state", "actions", "reward", "terminated", "filled", "avail_actions", "truncated")


def end_rule(has_truncated: bool, episode_limit: Optional[int]) -> str:
    """How a dataset's time-limit ends are told from its terminals (the rule of select_transitions)."""
    if has_truncated:
        return "truncations as stored (the dataset keeps them apart from terminals)"
    if episode_limit is not None:
        return (
            f"episode_limit = {episode_limit}: an episode that ran {episode_limit} steps was cut there "
            f"(truncated, even if flagged terminated)"
        )
    return "PyMARL convention: terminated as stored, an episode end without the flag is a time-limit cut"


def resolve_ends(
    filled: np.ndarray,
    terminated: np.ndarray,
    truncated: Optional[np.ndarray] = None,
    episode_limit: Optional[int] = None,
    first_episode: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(filled, terminal, cut) bool [E, T+1] under the dataset's end rule (`end_rule`): a step is
    terminal or cut (a time-limit end), never both. Flags other than 0 and 1 are refused (`check_flags`)."""
    for name, flags in (("filled", filled), ("terminated", terminated), ("truncated", truncated)):
        if flags is not None:
            check_flags(name, flags, first_episode)
    filled, terminal = np.asarray(filled) != 0, np.asarray(terminated) != 0
    if truncated is not None:
        return filled, terminal, (np.asarray(truncated) != 0) & ~terminal  # both flags: terminal
    cut = np.zeros_like(filled)
    if episode_limit is not None:
        # steps after a terminal step (PyMARL marks the stored final state as filled) are not real
        real = filled & ~(np.cumsum(terminal, axis=1) - terminal > 0)
        beyond = real[:, episode_limit + 1 :].any(axis=1)  # index episode_limit may hold the final state
        if beyond.any():
            e = int(np.argmax(beyond)) + first_episode
            raise DatasetError(
                f"episode {e} has real steps after episode_limit = {episode_limit}; "
                f"the limit must be at least the longest episode",
                "filled",
            )
        if episode_limit <= filled.shape[1]:
            cut[:, episode_limit - 1] = filled[:, episode_limit - 1]
            terminal = terminal & ~cut
    return filled, terminal, cut


def select_transitions(
    filled: np.ndarray,
    terminated: np.ndarray,
    truncated: Optional[np.ndarray] = None,
    episode_limit: Optional[int] = None,
    first_episode: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The transitions of episodes [E, T+1] (filled, terminated and optional truncated flags, any dtype):
    (episode, step, done, truncated) of every real step that has a next step or is terminal. done and
    truncated are bool; truncated marks the last transition of an episode that did not terminate.
    first_episode offsets the episode numbers (of a chunk) in the result and in errors."""
    filled, terminal, cut = resolve_ends(filled, terminated, truncated, episode_limit, first_episode)
    end = terminal | cut
    ended_before = np.cumsum(end, axis=1) - end > 0
    next_filled = np.zeros_like(filled)
    next_filled[:, :-1] = filled[:, 1:]
    keep = filled & ~ended_before & (terminal | next_filled)
    kept_next = np.zeros_like(keep)
    kept_next[:, :-1] = keep[:, 1:]
    episode, step = np.nonzero(keep)
    done = terminal[episode, step]
    return episode + first_episode, step, done, ~done & ~kept_next[episode, step]


# The largest reward magnitude a dataset may hold: a return of 1e15 / (1 - gamma) <= 1e18 (gamma <= 0.999)
# squared in the critic's TD loss stays inside float32 (3.4e38); larger rewards overflow the losses.
REWARD_LIMIT = 1e15


def check_finite(name: str, value: np.ndarray, episode: np.ndarray, step: np.ndarray) -> None:
    """DatasetError naming the first transition whose `name` values (rows of `value`) are not all finite,
    or, for rewards, beyond +-REWARD_LIMIT."""
    rows = np.asarray(value).reshape(value.shape[0], int(np.prod(value.shape[1:])))
    bad = ~np.isfinite(rows).all(axis=1)
    if bad.any():
        i = int(np.argmax(bad))
        raise DatasetError(
            f"{name} has non-finite values (episode {episode[i]}, step {step[i]})", name.removeprefix("next_")
        )
    if name == "reward":
        huge = (np.abs(rows) > REWARD_LIMIT).any(axis=1)
        if huge.any():
            i = int(np.argmax(huge))
            raise DatasetError(
                f"reward {rows[i][np.argmax(np.abs(rows[i]))]:.3g} is beyond "
                f"+-{REWARD_LIMIT:.0e} (episode {episode[i]}, step {step[i]}): the critic's losses would overflow "
                "float32; rescale the rewards",
                "reward",
            )


def check_flags(name: str, flags: np.ndarray, first_episode: int = 0) -> None:
    """DatasetError naming the first entry of a flag array [E, T+1] (filled, terminated, truncated) that is
    neither 0 nor 1: a 7 would otherwise read as true."""
    flags = np.asarray(flags)
    if flags.dtype == np.bool_:
        return
    bad = (flags != 0) & (flags != 1)
    if bad.any():
        e, t = np.argwhere(bad)[0]
        raise DatasetError(
            f"{name} holds {flags[e, t].item()!r} at episode {e + first_episode}, step {t}; a flag must be 0 or 1", name
        )


def _check_actions(what: str, actions: np.ndarray, avail: np.ndarray, episode: np.ndarray, step: np.ndarray) -> None:
    n_actions = avail.shape[-1]
    out_of_range = (actions < 0) | (actions >= n_actions)
    if out_of_range.any():
        e, n = np.argwhere(out_of_range)[0]
        raise DatasetError(
            f"{what}: action {actions[e, n]} of agent {n} outside [0, {n_actions}) "
            f"(episode {episode[e]}, step {step[e]})",
            "actions",
        )
    if not avail.any(axis=-1).all():
        e, n = np.argwhere(~avail.any(axis=-1))[0]
        raise DatasetError(
            f"{what}: agent {n} has no available action (episode {episode[e]}, step {step[e]})", "avail_actions"
        )
    taken = np.take_along_axis(avail, actions[..., None], axis=-1)[..., 0]
    if not taken.all():
        e, n = np.argwhere(~taken)[0]
        raise DatasetError(
            f"{what}: action {actions[e, n]} of agent {n} is not available under the mask "
            f"(episode {episode[e]}, step {step[e]})",
            "avail_actions",
        )


def stack_batches(batches: Sequence[TransitionBatch]) -> TransitionBatch:
    """The seeds' minibatches as one [S, ...] batch (of one seed: views, no copy)."""

    def stacked(values: list[Optional[Tensor]]) -> Optional[Tensor]:
        if values[0] is None:
            return None
        return values[0].unsqueeze(0) if len(values) == 1 else torch.stack(values)

    return TransitionBatch(**{f.name: stacked([getattr(b, f.name) for b in batches]) for f in fields(TransitionBatch)})


def minibatch(store: Any, rows: Tensor, names: Optional[tuple[str, ...]] = None) -> TransitionBatch:
    """Transitions `rows` of a store (in memory or mapped): every field, or only the fields `names` (the others None)."""
    if names is None:
        return store.index(rows)
    here = rows.to(store.reward.device)
    return TransitionBatch(
        **{f.name: getattr(store, f.name)[here] if f.name in names else None for f in fields(TransitionBatch)}
    )
