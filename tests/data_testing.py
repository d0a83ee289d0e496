"""Datasets for the format tests, written with each format's own library (numpy, h5py, flashbax), never
with inspo's writers."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from inspo.data.transitions import TransitionBatch

# the fields a reader fills (the behaviour log-prob caches come later, from BC)
STORE_FIELDS = tuple(f.name for f in dataclasses.fields(TransitionBatch) if not f.name.endswith("log_mu"))


def small_episodes(
    seed: int = 0,
    episodes: int = 12,
    limit: int = 7,
    agents: int = 3,
    actions: int = 4,
    obs_dim: int = 5,
    state_dim: int = 6,
) -> dict[str, np.ndarray]:
    """Episode arrays [E, limit+1, ...] in PyMARL's layout: random lengths, every other episode
    terminal (the rest cut at the limit with the final state stored, terminated = 0), random masks
    that allow the taken action, and the stored final step filled after every episode."""
    rng = np.random.default_rng(seed)
    length = limit + 1
    arrays = {
        "obs": rng.normal(size=(episodes, length, agents, obs_dim)).astype(np.float32),
        "state": rng.normal(size=(episodes, length, state_dim)).astype(np.float32),
        "actions": rng.integers(0, actions, size=(episodes, length, agents, 1)),
        "reward": rng.normal(size=(episodes, length, 1)).astype(np.float32),
        "terminated": np.zeros((episodes, length, 1), np.uint8),
        "filled": np.zeros((episodes, length, 1), np.int64),
        "avail_actions": (rng.random((episodes, length, agents, actions)) < 0.6).astype(np.int32),
    }
    np.put_along_axis(arrays["avail_actions"], arrays["actions"], 1, axis=-1)
    for e in range(episodes):
        steps = int(rng.integers(2, limit)) if e % 2 == 0 else limit
        if e % 2 == 0:
            arrays["terminated"][e, steps - 1] = 1
        arrays["filled"][e, : steps + 1] = 1  # the final state after the last step is stored
        arrays["reward"][e, steps:] = 0
    return arrays


def write_npy(directory: Path, arrays: dict[str, np.ndarray], meta: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        np.save(directory / f"{name}.npy", array)
    (directory / "meta.json").write_text(json.dumps(meta or {}))
    return directory


def write_h5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """CFCQL's layout: one resizable, chunked dataset per field of the episode batch."""
    import h5py

    with h5py.File(path, "w") as file:
        for name, array in arrays.items():
            file.create_dataset(name, data=array, chunks=True, maxshape=(None, *array.shape[1:]))
    return path


def vault_rows(arrays: dict[str, np.ndarray]) -> dict:
    """OG-MARL's experience on one time axis (batch row 0) from episode arrays: each episode's real
    steps (up to its terminal step, else every filled step), terminals at the terminal step,
    truncations at the last step of the others; per-agent rewards and flags."""
    filled, terminated = arrays["filled"][..., 0] != 0, arrays["terminated"][..., 0] != 0
    rows: dict[str, list] = {key: [] for key in ("e", "t", "term", "trunc")}
    for e in range(filled.shape[0]):
        ends = np.nonzero(terminated[e])[0]
        steps = ends[0] + 1 if len(ends) else int(filled[e].sum())
        rows["e"] += [e] * steps
        rows["t"] += list(range(steps))
        rows["term"] += [False] * (steps - 1) + [bool(len(ends))]
        rows["trunc"] += [False] * (steps - 1) + [not len(ends)]
    e, t = np.array(rows["e"]), np.array(rows["t"])
    agents = arrays["obs"].shape[2]

    def per_agent(flags):
        return np.repeat(np.array(flags)[:, None], agents, axis=1)[None]

    return {
        "observations": arrays["obs"][e, t][None],
        "actions": arrays["actions"][e, t, :, 0][None].astype(np.int32),
        "rewards": np.repeat(arrays["reward"][e, t], agents, axis=1)[None],
        "terminals": per_agent(rows["term"]),
        "truncations": per_agent(rows["trunc"]),
        "infos": {"legals": arrays["avail_actions"][e, t][None] != 0, "state": arrays["state"][e, t][None]},
    }


def og_marl_experience(arrays: dict[str, np.ndarray]) -> dict:
    """`vault_rows` with the dtypes OG-MARL's SMAC environment (og_marl/environments/smacv1.py) records:
    infos.legals as float32 0 / 1 (np.array(get_avail_agent_actions(i), "float32")), infos.state float32,
    rewards float32, int32 actions, terminals and truncations as bools."""
    rows = vault_rows(arrays)
    rows["infos"]["legals"] = rows["infos"]["legals"].astype(np.float32)
    rows["infos"]["state"] = rows["infos"]["state"].astype(np.float32)
    rows["rewards"] = rows["rewards"].astype(np.float32)
    return rows


def write_vault(
    rel_dir: Path, experience: dict, name: str = "data", uid: str = "run0", rows: int | None = None
) -> Path:
    """A Flashbax vault at rel_dir/name/uid holding `experience` ([1, T, ...] leaves), written by flashbax."""
    import jax
    import jax.numpy as jnp
    from flashbax.buffers.trajectory_buffer import TrajectoryBufferState
    from flashbax.vault import Vault

    tree = jax.tree.map(jnp.asarray, experience)
    vault = Vault(vault_name=name, experience_structure=tree, rel_dir=str(rel_dir), vault_uid=uid)
    count = jax.tree_util.tree_leaves(tree)[0].shape[1] if rows is None else rows
    vault.write(TrajectoryBufferState(experience=tree, current_index=jnp.array(count), is_full=jnp.array(False)))
    return rel_dir / name / uid
