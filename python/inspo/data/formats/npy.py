"""The episode-buffer folder (.npy + meta.json), read by inspo.data.buffer; written here a block of
episodes at a time with each array's own dtype (a conversion changes no value and no dtype)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from inspo.atomic import atomic_folder
from inspo.data.buffer import META_FILE, DatasetError, load_episode_buffer
from inspo.data.formats import Dataset

CHUNK = 1024  # episodes per block written


def read(path: Path, *, mmap: bool) -> Dataset:
    try:
        arrays, meta = load_episode_buffer(path, mmap_mode="r" if mmap else None)
    except DatasetError as error:
        raise DatasetError(f"{path} (npy): {error}", error.field) from error
    return Dataset(path, "npy", arrays, meta, {name: f"{name}.npy" for name in arrays})


def write(
    path: Path,
    arrays: dict[str, Any],
    meta: dict[str, Any],
    *,
    episode_limit: Optional[int],
    log: Callable[[str], None],
) -> None:
    """All arrays into a temporary folder next to `path`, then one rename: never a half-written dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_folder(path) as tmp:
        for name, array in arrays.items():
            out = np.lib.format.open_memmap(tmp / f"{name}.npy", mode="w+", dtype=array.dtype, shape=tuple(array.shape))
            for start in range(0, array.shape[0], CHUNK):
                out[start : start + CHUNK] = np.asarray(array[start : start + CHUNK])
            out.flush()
            del out
        meta = dict(meta)
        episodes = int(arrays["filled"].shape[0])
        meta.update(buffer_index=0, episodes_in_buffer=episodes, buffer_size=episodes)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
