"""Dataset cards: what an episode-buffer dataset holds, written into its meta.json and checked on load
(general dataset code: SMAX's tiers, ``inspo.smax.tiers``, write cards today; any generator may).

The card states episodes, transitions, return mean +- std, win rate, the behaviour policy, seed and
generator version. ``verify_card`` recomputes the numbers from the arrays, so a truncated or
swapped file is an error rather than a smaller dataset. Pure numpy: checking a dataset does not
need JAX.

A win is read from the rewards: SMAX pays 1.0 on the step the last enemy dies (with an ally alive)
on top of the damage reward, which is < 1 on any other step; generation asserts that this rule
agrees with the environment's own win flag for every episode.
"""

import hashlib
import os
from pathlib import Path
from typing import Optional

import numpy as np

from inspo.data.buffer import DatasetError, load_episode_buffer

CARD_VERSION = 1
GENERATOR = "inspo.smax.tiers/4"  # bump when the data a given command produces changes
# /2: PPO treats the time limit as terminal; /3: datasets of < 256 episodes are rolled out in
# smaller batches (inspo.smax.rollout.rollout_batch), so their episodes differ from /2's; /4: medium-replay
# rolls out the saved checkpoints of each training window instead of replaying training (inspo.smax.tiers)
WIN_REWARD = 1.0
RETURN_TOLERANCE = 1e-3  # float32 sums in a different order


def episode_statistics(arrays: dict, chunk: int = 4096) -> dict:
    """Episodes, transitions, returns, wins and lengths computed from buffer arrays (reads only the
    small reward / filled arrays, in chunks, so memory-mapped datasets stay on disk)."""
    episodes = arrays["filled"].shape[0]
    returns = np.zeros(episodes, np.float64)
    wins = np.zeros(episodes, bool)
    lengths = np.zeros(episodes, np.int64)
    for start in range(0, episodes, chunk):
        rows = slice(start, start + chunk)
        filled = np.asarray(arrays["filled"][rows, :, 0]) != 0
        reward = np.asarray(arrays["reward"][rows, :, 0], np.float64) * filled
        returns[rows] = reward.sum(axis=1)
        lengths[rows] = filled.sum(axis=1)
        last = np.maximum(lengths[rows] - 1, 0)
        wins[rows] = (lengths[rows] > 0) & (reward[np.arange(len(last)), last] >= WIN_REWARD)
    return dict(returns=returns, wins=wins, lengths=lengths)


def summarize(returns: np.ndarray, wins: np.ndarray, lengths: np.ndarray) -> dict:
    return dict(
        episodes=int(len(returns)),
        transitions=int(lengths.sum()),
        return_mean=float(returns.mean()),
        return_std=float(returns.std()),
        wins=int(wins.sum()),
        win_rate=float(wins.mean()),
        episode_length_mean=float(lengths.mean()),
        episode_length_max=int(lengths.max()),
    )


def file_digest(path: Path, block: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def file_table(directory: Path, names) -> dict:
    """{array name: {"bytes": size, "sha256": digest}} of the .npy files of a dataset."""
    return {
        name: {"bytes": os.path.getsize(directory / f"{name}.npy"), "sha256": file_digest(directory / f"{name}.npy")}
        for name in names
    }


def verify_card(arrays: dict, meta: dict, directory: Optional[Path] = None, *, hashes: bool = False) -> dict:
    """Check a loaded dataset against its card; returns the recomputed summary.

    Raises DatasetError naming the first disagreement. With ``directory``, file sizes are checked
    too, and with ``hashes=True`` the sha256 of every array file (slow for big datasets).
    """
    card = meta.get("card")
    if not isinstance(card, dict) or card.get("version") != CARD_VERSION:
        raise DatasetError(f"meta.json has no dataset card of version {CARD_VERSION} (found {card!r:.80})")
    if directory is not None:
        for name, expected in card.get("files", {}).items():
            path = Path(directory) / f"{name}.npy"
            if not path.is_file():
                raise DatasetError(f"dataset card lists {name}.npy, which is missing from {directory}")
            size = os.path.getsize(path)
            if size != expected["bytes"]:
                raise DatasetError(
                    f"{path} has {size} bytes, the dataset card says {expected['bytes']} (truncated or replaced file)"
                )
            if hashes and file_digest(path) != expected["sha256"]:
                raise DatasetError(f"{path} does not match the sha256 in the dataset card")
    expected_dims = dict(
        n_agents=arrays["obs"].shape[2],
        obs_dim=arrays["obs"].shape[3],
        state_dim=arrays["state"].shape[2],
        n_actions=arrays["avail_actions"].shape[3],
        padded_length=arrays["obs"].shape[1],
    )
    for name, actual in expected_dims.items():
        if card.get(name) != actual:
            raise DatasetError(f"dataset card says {name} = {card.get(name)}, the arrays have {actual}")
    summary = summarize(**episode_statistics(arrays))
    for name in ("episodes", "transitions", "wins"):
        if summary[name] != card.get(name):
            raise DatasetError(f"dataset card says {name} = {card.get(name)}, the arrays hold {summary[name]}")
    for name in ("return_mean", "return_std"):
        if abs(summary[name] - card.get(name, np.nan)) > RETURN_TOLERANCE or np.isnan(card.get(name, np.nan)):
            raise DatasetError(f"dataset card says {name} = {card.get(name)}, the arrays give {summary[name]:.6f}")
    return summary


def load_dataset(path, *, mmap: bool = True, hashes: bool = False) -> tuple[dict, dict]:
    """Load a SMAX dataset (memory-mapped by default) and check it against its card."""
    arrays, meta = load_episode_buffer(path, mmap_mode="r" if mmap else None)
    verify_card(arrays, meta, Path(path), hashes=hashes)
    return arrays, meta


def summary_table(root: Path) -> str:
    """Markdown table of the cards of every dataset under ``root`` (``<map>/seed<S>/<tier>/meta.json``);
    each dataset is checked against its card first."""
    import json

    lines = [
        "| map | tier | seed | episodes | transitions | return | win rate | behaviour | generator |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for meta_path in sorted(Path(root).glob("*/seed*/*/meta.json")):
        card = json.loads(meta_path.read_text()).get("card")
        if not isinstance(card, dict):
            continue
        try:
            load_dataset(meta_path.parent)
            status = ""
        except DatasetError as error:
            status = f" **fails its card check: {error}**"
        behaviour = card["behaviour"]
        if "parts" in behaviour:
            source = " + ".join(
                f"{p['kind']} update {p['update']} ({p['env_steps']:,} steps) x {p['episodes']}"
                for p in behaviour["parts"]
            )
        elif "until" in behaviour:
            source = f"{behaviour['kind']} until update {behaviour['until']['update']}"
        else:
            source = f"{behaviour['kind']} eps {behaviour.get('eps')}"
        lines.append(
            f"| {card['map']} | {card['tier']} | {card['seed']} | {card['episodes']:,} | "
            f"{card['transitions']:,} | {card['return_mean']:.3f} ± {card['return_std']:.3f} | "
            f"{card['win_rate']:.3f} | {source}{status} | {card['generator']} |"
        )
    return "\n".join(lines) + "\n"
