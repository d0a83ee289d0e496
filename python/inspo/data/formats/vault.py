"""OG-MARL Flashbax vaults, read and written with tensorstore (no JAX needed).

On disk (flashbax.vault.Vault, version 1.x) a vault is `<rel_dir>/<vault_name>/<vault_uid>/` holding
metadata.json (version, the experience tree's leaf shapes and dtypes as `structure_shape` /
`structure_dtype`, any extra metadata) and an OCDBT key-value store with one zarr array per leaf,
named by its tree path with a dot after each key ("observations.", "infos.legals."), each
[B, time, ...] along one long time axis, plus "vault_index" (the number of valid time steps).
OG-MARL's leaves:

    observations [B, T, N, O]   actions [B, T, N] (discrete)   rewards [B, T, N] (or [B, T])
    terminals, truncations [B, T, N] (or [B, T])   infos.legals [B, T, N, A]   infos.state [B, T, S]

Episodes end at a row whose terminal or truncation flag is set (any agent); the next row starts the
next episode, so a vault stores no observation after a truncated step and such a step has nothing to
bootstrap from (it is dropped, as any cut step without a next step). Our writer adds one leaf that
other readers ignore: `infos.bootstrap`, 1 on a row that holds the stored next step of the truncated
step before it (it carries truncation = 1, so a reader that does not know the leaf sees a one-step
episode); that is what makes npy -> vault -> npy keep every transition. Episode rewards: the agents'
rewards where they are equal, their sum where they differ (said in the dataset notes).

The vault is read lazily: the end flags, actions and rewards (a few bytes a row) in full, the
observations, states, legal-action masks and extra leaves a block of episodes at a time, or only the
rows of a minibatch for a memory-mapped run.
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from inspo.atomic import atomic_folder
from inspo.data.buffer import DatasetError
from inspo.data.formats import Dataset
from inspo.data.transitions import EPISODE_FIELDS, resolve_ends, select_transitions

METADATA_FILE = "metadata.json"
VAULT_VERSION = 1.2  # flashbax's on-disk version that the writer follows
TIME_AXIS_MAX_LENGTH = int(10e12)  # flashbax's upper bound of the time axis (zarr arrays are sparse)
COMPRESSION = {"id": "gzip", "level": 5}  # flashbax's default
READ_ROWS = 1 << 20  # rows per read of the small leaves
# decompressed chunks kept for the minibatch gathers of a memory-mapped run (shared by the leaves):
# random rows of a gzip-compressed zarr array would otherwise decompress whole chunks per draw
CACHE_BYTES = 1 << 30
CHUNK = 1024  # episodes per block written

# episode array -> vault leaf
LEAVES = {
    "obs": "observations",
    "actions": "actions",
    "reward": "rewards",
    "terminated": "terminals",
    "truncated": "truncations",
    "avail_actions": "infos.legals",
    "state": "infos.state",
}
BOOTSTRAP = "infos.bootstrap"


def _tensorstore():
    try:
        import tensorstore
    except ModuleNotFoundError as error:
        raise DatasetError("Flashbax vaults need tensorstore: pip install 'inspo[data]'") from error
    return tensorstore


def find_vault(path: Path, required: bool = True) -> Optional[Path]:
    """The vault-uid folder (holding metadata.json) at `path` or, when `path` is a vault-name folder,
    its one uid folder below."""
    if (path / METADATA_FILE).is_file():
        return path
    found = sorted(child for child in path.iterdir() if (child / METADATA_FILE).is_file()) if path.is_dir() else []
    if len(found) == 1:
        return found[0]
    if not required:
        return None
    if found:
        raise DatasetError(
            f"{path} (vault): holds {len(found)} vaults ({', '.join(p.name for p in found)}); name one of them"
        )
    raise DatasetError(f"{path} (vault): no {METADATA_FILE} here or one folder below")


def tensorstore_reason(error: BaseException) -> str:
    """tensorstore's message without the spec JSON and source locations it appends (hundreds of
    characters that say nothing to the user) and without its status code."""
    text = str(error).splitlines()[0] if str(error).strip() else type(error).__name__
    for cut in (" [tensorstore_spec=", " [source locations="):
        text = text.split(cut)[0]
    text = re.sub(r' in OCDBT database at local file "[^"]*"', "", text)  # the vault the error names already
    code, colon, rest = text.partition(": ")
    return rest if colon and code.replace("_", "").isalpha() and code.isupper() else text


def read_block(store, index, where: str) -> np.ndarray:
    """store[index] read; a truncated or missing data file of the vault as one DatasetError saying
    `where` ("field 'observations'", with the vault's label where no caller adds it)."""
    try:
        return store[index].read().result()
    except (ValueError, RuntimeError) as error:
        raise DatasetError(
            f"{where}: the vault's data cannot be read (a truncated or missing file under d/?): "
            f"{tensorstore_reason(error)}"
        ) from error


def _spec(base: Path, name: str) -> dict:
    return {"driver": "zarr", "kvstore": {"driver": "ocdbt", "base": f"file://{base}", "path": name}}


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{"infos.legals": leaf, ...} of a nested metadata dict (dots between keys, as in the store names)."""
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_leaves(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


class Episodes:
    """Where each episode's rows are: batch row, first row, rows (steps plus a stored next step)."""

    def __init__(self, batch: np.ndarray, start: np.ndarray, rows: np.ndarray):
        self.batch, self.start, self.rows = batch, start, rows
        self.length = int(rows.max()) + 1  # T+1: one padded step after the longest episode

    def cells(self, episodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in `episodes`, step) of every stored row of those episodes."""
        counts = self.rows[episodes]
        local = np.repeat(np.arange(len(episodes)), counts)
        step = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return local, step


class VaultArray:
    """One vault leaf seen as an episode array [E, T+1, ...]: slices read a block of episodes (one
    read of their rows' span per batch row), [episodes, steps] reads those rows only; padding is 0."""

    def __init__(
        self,
        store,
        episodes: Episodes,
        dtype: np.dtype,
        trailing: tuple[int, ...],
        transform: Callable[[np.ndarray], np.ndarray] = lambda rows: rows,
        leaf: str = "?",  # the vault's field, for errors
    ):
        self.store, self.episodes, self.transform, self.leaf = store, episodes, transform, leaf
        self.dtype = np.dtype(dtype)
        self.shape = (len(episodes.start), episodes.length, *trailing)
        self.ndim = len(self.shape)

    def _rows(self, batch: np.ndarray, row: np.ndarray) -> np.ndarray:
        out = np.zeros((len(row), *self.shape[2:]), self.dtype)
        for b in np.unique(batch):
            pick = batch == b
            low, high = int(row[pick].min()), int(row[pick].max()) + 1
            if high - low <= 4 * pick.sum():  # dense: one read of the span
                span = read_block(self.store, (int(b), slice(low, high)), f"field {self.leaf!r}")
                out[pick] = self.transform(span[row[pick] - low])
            else:
                out[pick] = self.transform(read_block(self.store, (int(b), row[pick]), f"field {self.leaf!r}"))
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, np.ndarray) for k in key):
            episode, step = key
            out = np.zeros((len(episode), *self.shape[2:]), self.dtype)
            stored = step < self.episodes.rows[episode]
            e = episode[stored]
            out[stored] = self._rows(self.episodes.batch[e], self.episodes.start[e] + step[stored])
            return out
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        if not isinstance(first, slice):
            raise TypeError(f"vault arrays take a slice of episodes or (episodes, steps), got {key!r}")
        chosen = np.arange(self.shape[0])[first]
        block = np.zeros((len(chosen), *self.shape[1:]), self.dtype)
        local, step = self.episodes.cells(chosen)
        e = chosen[local]
        block[local, step] = self._rows(self.episodes.batch[e], self.episodes.start[e] + step)
        return block[(slice(None), *rest)] if rest else block


def read(path: Path, *, mmap: bool) -> Dataset:
    ts = _tensorstore()
    base = find_vault(path).resolve()
    label = f"{path} (vault)"
    try:
        metadata = json.loads((base / METADATA_FILE).read_text())
        shapes = {name: tuple(ast.literal_eval(shape)) for name, shape in _leaves(metadata["structure_shape"]).items()}
        dtypes = {name: np.dtype(dtype) for name, dtype in _leaves(metadata["structure_dtype"]).items()}
    except (KeyError, ValueError, SyntaxError, TypeError) as error:
        raise DatasetError(
            f"{label}: {METADATA_FILE} has no readable structure_shape / structure_dtype ({error})"
        ) from error
    missing = [
        leaf for leaf in ("observations", "actions", "rewards", "terminals", "truncations") if leaf not in shapes
    ]
    if missing:
        raise DatasetError(f"{label}: missing field(s) {missing}; found {sorted(shapes)}")

    def fail(leaf: str, message: str) -> DatasetError:
        return DatasetError(f"{label}, field {leaf!r}: {message}")

    def rank(leaf: str, ranks: tuple[int, ...], dims: str) -> None:
        if len(shapes[leaf]) not in ranks:
            raise fail(leaf, f"must have shape {dims}, got {shapes[leaf]}")

    rank("observations", (4,), "[B, T, N, O]")
    batch_size, n_agents = shapes["observations"][0], shapes["observations"][2]
    rank(
        "actions", (3,), "[B, T, N] (discrete actions; continuous actions have a trailing dimension, InSPO is discrete)"
    )
    for leaf in ("rewards", "terminals", "truncations"):
        rank(leaf, (2, 3), "[B, T, N] or [B, T]")
    if "infos.legals" in shapes:
        rank("infos.legals", (4,), "[B, T, N, A]")
    if "infos.state" in shapes:
        rank("infos.state", (3,), "[B, T, S]")
    for leaf, shape in shapes.items():
        if shape[0] != batch_size or (
            leaf not in ("infos.state", BOOTSTRAP)
            and len(shape) >= 3
            and leaf in LEAVES.values()
            and shape[2] != n_agents
        ):
            raise fail(leaf, f"has shape {shape}, but observations have [B, T, N] = {shapes['observations'][:3]}")
    if dtypes["actions"].kind not in "iub":
        raise fail("actions", f"has dtype {dtypes['actions']}; expected integer (discrete) actions")
    for leaf, kinds in (
        ("observations", "fiub"),
        ("rewards", "fiub"),
        ("terminals", "fiub"),
        ("truncations", "fiub"),
        ("infos.legals", "fiub"),
        ("infos.state", "fiub"),
    ):
        if leaf in dtypes and dtypes[leaf].kind not in kinds:
            raise fail(leaf, f"has dtype {dtypes[leaf]}; expected a number type")
    if (base / "d").is_dir() and not (base / "manifest.ocdbt").is_file():
        raise DatasetError(
            f"{label}: manifest.ocdbt is missing (the index of the vault's data files under d/): "
            "an incomplete copy or write of the vault"
        )
    try:
        context = ts.Context({"cache_pool": {"total_bytes_limit": CACHE_BYTES}})
        stores = {leaf: ts.open(_spec(base, leaf + "."), context=context).result() for leaf in shapes}
        count = int(ts.open(_spec(base, "vault_index")).result().read().result()[0])
    except (ValueError, RuntimeError) as error:
        raise DatasetError(f"{label}: cannot open the vault's arrays ({tensorstore_reason(error)})") from error
    if count < 1:
        raise DatasetError(f"{label}: the vault is empty (vault_index = {count})")

    def whole(leaf: str) -> np.ndarray:
        return np.concatenate(
            [
                read_block(
                    stores[leaf], (slice(None), slice(start, min(start + READ_ROWS, count))), f"{label}, field {leaf!r}"
                )
                for start in range(0, count, READ_ROWS)
            ],
            axis=1,
        )

    def per_row(values: np.ndarray) -> np.ndarray:  # [B, T] or [B, T, N] -> [B, T] (any agent)
        return values.any(axis=2) if values.ndim == 3 else values

    terminal = per_row(whole("terminals") != 0)
    truncation = per_row(whole("truncations") != 0) & ~terminal
    bootstrap = whole(BOOTSTRAP) != 0 if BOOTSTRAP in stores else np.zeros_like(terminal)
    batches, starts, lengths, boot = [], [], [], []
    for b in range(batch_size):
        ends = np.nonzero((terminal[b] | truncation[b]) & ~bootstrap[b])[0]
        follow = np.minimum(ends + 1, count - 1)
        has_boot = bootstrap[b, follow] & (ends + 1 < count)
        begin = np.concatenate([[0], ends + 1 + has_boot])
        last = np.concatenate([ends, [count - 1]])
        if begin[-1] >= count:  # the vault ends with an episode end: no unfinished episode
            begin, last, has_boot = begin[:-1], last[:-1], has_boot
        else:
            has_boot = np.concatenate([has_boot, [False]])
        batches.append(np.full(len(begin), b))
        starts.append(begin)
        lengths.append(last - begin + 1)
        boot.append(has_boot)
    batch, start, length = np.concatenate(batches), np.concatenate(starts), np.concatenate(lengths)
    has_boot = np.concatenate(boot)
    episodes = Episodes(batch, start, length + has_boot)
    E, T1 = len(start), episodes.length
    local, step = episodes.cells(np.arange(E))
    rows_batch, rows_time = batch[local], start[local] + step

    def episode_array(values: np.ndarray, dtype) -> np.ndarray:  # small leaves, [B, T, ...] -> [E, T+1, ...]
        out = np.zeros((E, T1, *values.shape[2:]), dtype)
        out[local, step] = values[rows_batch, rows_time]
        return out

    last_step = (np.arange(E), length - 1)
    filled = np.zeros((E, T1, 1), np.uint8)
    filled[local, step, 0] = 1
    terminated = np.zeros((E, T1, 1), np.uint8)
    terminated[last_step + (0,)] = terminal[batch, start + length - 1]
    truncated = np.zeros((E, T1, 1), np.uint8)
    truncated[last_step + (0,)] = truncation[batch, start + length - 1]
    notes = [f"{E} episodes on {batch_size} batch row(s), {count} rows"]
    unfinished = int((~terminal[batch, start + length - 1] & ~truncation[batch, start + length - 1]).sum())
    if unfinished:
        notes.append(f"{unfinished} episode(s) unfinished at the end of the vault (cut, no next step)")
    rewards = whole("rewards").astype(dtypes["rewards"], copy=False)
    if rewards.ndim == 3:
        shared = bool((rewards == rewards[..., :1]).all())
        rewards = rewards[..., 0] if shared else rewards.sum(axis=2)
        notes.append(
            "team reward: the agents' shared reward"
            if shared
            else "team reward: the sum of the agents' rewards (they differ)"
        )
    actions = whole("actions")
    arrays: dict[str, Any] = dict(
        filled=filled,
        terminated=terminated,
        truncated=truncated,
        actions=episode_array(actions[..., None], actions.dtype),
        reward=episode_array(rewards[..., None], rewards.dtype),
        obs=VaultArray(
            stores["observations"],
            episodes,
            dtypes["observations"],
            shapes["observations"][2:],
            leaf="observations",
        ),
    )
    if "infos.legals" in shapes:
        legals = dtypes["infos.legals"]
        if legals.kind == "f":  # OG-MARL's SMAC environments store the legal-action mask as float32 0 / 1

            def legal_mask(rows: np.ndarray) -> np.ndarray:
                bad = (rows != 0) & (rows != 1)
                if bad.any():
                    raise fail("infos.legals", f"holds {rows[bad][0].item()!r}; legal-action flags must be 0 or 1")
                return rows != 0

            arrays["avail_actions"] = VaultArray(
                stores["infos.legals"], episodes, np.uint8, shapes["infos.legals"][2:], legal_mask, "infos.legals"
            )
        else:
            arrays["avail_actions"] = VaultArray(
                stores["infos.legals"], episodes, legals, shapes["infos.legals"][2:], leaf="infos.legals"
            )
    else:
        n_actions = int(metadata.get("n_actions", actions.max() + 1))
        arrays["avail_actions"] = np.broadcast_to(np.ones(1, np.uint8), (E, T1, n_agents, n_actions))
        notes.append(
            f"no infos.legals: all {n_actions} actions available "
            f"({'metadata n_actions' if 'n_actions' in metadata else 'the largest action + 1'})"
        )
    if "infos.state" in shapes:
        arrays["state"] = VaultArray(
            stores["infos.state"], episodes, dtypes["infos.state"], shapes["infos.state"][2:], leaf="infos.state"
        )
    else:
        obs_shape = shapes["observations"][2:]
        arrays["state"] = VaultArray(
            stores["observations"],
            episodes,
            dtypes["observations"],
            (int(np.prod(obs_shape)),),
            lambda rows: rows.reshape(len(rows), -1),
            "observations",
        )
        notes.append("no infos.state: the state is the agents' observations concatenated")
    for leaf in shapes:  # any other infos.* leaf rides along as an extra episode array
        name = leaf.removeprefix("infos.")
        if leaf.startswith("infos.") and leaf not in LEAVES.values() and leaf != BOOTSTRAP and name not in arrays:
            arrays[name] = VaultArray(stores[leaf], episodes, dtypes[leaf], shapes[leaf][2:], leaf=leaf)
    meta = {
        key: value
        for key, value in metadata.items()
        if key not in ("version", "structure_shape", "structure_dtype", "inspo_meta")
    }
    meta.update(metadata.get("inspo_meta", {}))
    fields = {**LEAVES, "filled": "terminals/truncations (episode ends)"}
    fields.update({name: f"infos.{name}" for name in arrays if name not in fields})
    return Dataset(path, "vault", arrays, meta, fields, notes)


def write(
    path: Path,
    arrays: dict[str, Any],
    meta: dict[str, Any],
    *,
    episode_limit: Optional[int],
    log: Callable[[str], None],
) -> None:
    """A vault (batch size 1) whose uid folder is `path`: one row per stored step, the ends decided by
    the source's rule (stored truncations, `episode_limit`, or PyMARL's convention) written as
    terminals / truncations; extra arrays [E, T+1, ...] as infos.<name> leaves."""
    ts = _tensorstore()
    extras = [
        name
        for name, array in arrays.items()
        if name not in EPISODE_FIELDS and tuple(array.shape[:2]) == tuple(arrays["filled"].shape[:2])
    ]
    skipped = sorted(set(arrays) - set(EPISODE_FIELDS) - set(extras))
    if skipped:
        log(f"vault: arrays {skipped} are not per step ([E, T+1, ...]) and are not written")
    n_agents = arrays["obs"].shape[2]
    leaves = {
        "observations": arrays["obs"].shape[2:],
        "actions": (n_agents,),
        "rewards": (n_agents,),
        "terminals": (n_agents,),
        "truncations": (n_agents,),
        "infos.legals": arrays["avail_actions"].shape[2:],
        "infos.state": arrays["state"].shape[2:],
        BOOTSTRAP: (),
    }
    dtypes = {
        "observations": arrays["obs"].dtype,
        "actions": arrays["actions"].dtype,
        "rewards": arrays["reward"].dtype,
        "terminals": np.dtype(bool),
        "truncations": np.dtype(bool),
        "infos.legals": arrays["avail_actions"].dtype,
        "infos.state": arrays["state"].dtype,
        BOOTSTRAP: np.dtype(bool),
    }
    for name in extras:
        leaves[f"infos.{name}"] = tuple(arrays[name].shape[2:])
        dtypes[f"infos.{name}"] = arrays[name].dtype
    leaves = {leaf: tuple(int(size) for size in shape) for leaf, shape in leaves.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(path) as tmp:
        stores = {
            leaf: ts.open(
                {**_spec(tmp, leaf + "."), "metadata": {"compressor": COMPRESSION}},
                create=True,
                dtype=dtypes[leaf].name,
                shape=(1, TIME_AXIS_MAX_LENGTH, *leaves[leaf]),
            ).result()
            for leaf in leaves
        }
        written = 0
        for start in range(0, arrays["filled"].shape[0], CHUNK):
            block = {
                name: np.asarray(array[start : start + CHUNK])
                for name, array in arrays.items()
                if name in EPISODE_FIELDS or name in extras
            }
            rows = _episode_rows(block, episode_limit)
            if not len(rows["episode"]):
                continue
            e, t = rows["episode"], rows["step"]
            values = {
                "observations": block["obs"][e, t],
                "actions": block["actions"][e, t, :, 0],
                "rewards": np.repeat(block["reward"][e, t], n_agents, axis=1),
                "terminals": np.repeat(rows["terminal"][:, None], n_agents, axis=1),
                "truncations": np.repeat(rows["truncation"][:, None], n_agents, axis=1),
                "infos.legals": block["avail_actions"][e, t],
                "infos.state": block["state"][e, t],
                BOOTSTRAP: rows["bootstrap"],
            }
            values.update({f"infos.{name}": block[name][e, t] for name in extras})
            for leaf, value in values.items():
                stores[leaf][0, written : written + len(e)].write(value.astype(dtypes[leaf], copy=False)).result()
            written += len(e)
        if written == 0:
            raise DatasetError(f"{path}: nothing to write (no real steps)")
        index = ts.open(_spec(tmp, "vault_index"), create=True, dtype="int32", shape=(1,)).result()
        index.write(np.array([written], np.int32)).result()

        def tree(values: dict[str, str]) -> dict:
            out: dict = {}
            for leaf, value in values.items():
                *parents, key = leaf.split(".")
                node = out
                for parent in parents:
                    node = node.setdefault(parent, {})
                node[key] = value
            return out

        metadata = {
            "version": VAULT_VERSION,
            "structure_shape": tree({leaf: str((1, written, *shape)) for leaf, shape in leaves.items()}),
            "structure_dtype": tree({leaf: dtypes[leaf].name for leaf in leaves}),
            "inspo_meta": meta,
        }
        (tmp / METADATA_FILE).write_text(json.dumps(metadata))


def _episode_rows(block: dict[str, np.ndarray], episode_limit: Optional[int]) -> dict[str, np.ndarray]:
    """The vault rows of a block of episodes, in order: (episode, step) of each row and its terminal,
    truncation and bootstrap flags. Each episode's steps up to its end: the terminal step; or the
    flagged cut step followed by its stored next step as a bootstrap row; or (PyMARL's convention,
    an unflagged cut) every real step, the last one flagged truncated. The transitions read back
    are the source's, one for one."""
    filled = block["filled"][..., 0] != 0
    truncated = block["truncated"][..., 0] if "truncated" in block else None
    episode, step, done, cut = select_transitions(filled, block["terminated"][..., 0], truncated, episode_limit)
    n_episodes = filled.shape[0]
    last = np.full(n_episodes, -1)
    np.maximum.at(last, episode, step)  # last transition of each episode (-1: none)
    terminal = np.zeros(n_episodes, bool)
    terminal[episode[done]] = True
    # a flagged end at the last transition (a stored truncation or the episode-limit rule)
    _, _, cut_flags = resolve_ends(filled, block["terminated"][..., 0], truncated, episode_limit)
    has_last = last >= 0
    flagged = np.zeros(n_episodes, bool)
    flagged[has_last] = cut_flags[np.nonzero(has_last)[0], last[has_last]]
    real_count = filled.sum(axis=1)
    out_e, out_t, out_term, out_trunc, out_boot = [], [], [], [], []
    for e in range(n_episodes):
        if terminal[e]:
            steps, boot_row = last[e] + 1, False
        elif has_last[e] and flagged[e]:
            steps, boot_row = last[e] + 1, True
        else:
            steps, boot_row = (last[e] + 2 if has_last[e] else int(real_count[e])), False
        if steps == 0:
            continue
        rows = steps + boot_row
        out_e.append(np.full(rows, e))
        out_t.append(np.arange(rows))
        term = np.zeros(rows, bool)
        trunc = np.zeros(rows, bool)
        boot = np.zeros(rows, bool)
        term[steps - 1] = terminal[e]
        trunc[steps - 1] = not terminal[e]
        if boot_row:
            trunc[steps] = boot[steps] = True
        out_term.append(term)
        out_trunc.append(trunc)
        out_boot.append(boot)
    if not out_e:
        return {"episode": np.zeros(0, int), "step": np.zeros(0, int)}
    return {
        "episode": np.concatenate(out_e),
        "step": np.concatenate(out_t),
        "terminal": np.concatenate(out_term),
        "truncation": np.concatenate(out_trunc),
        "bootstrap": np.concatenate(out_boot),
    }
