"""Episode batches in one HDF5 file: one dataset per field ([E, T+1, ...], `filled` marking the real
steps), as CFCQL stores its SMAC datasets (keys of PyMARL's scheme; other datasets such as `probs`
or `actions_onehot` kept as extra arrays). Metadata: the file's attributes (the JSON attribute
`inspo_meta` where we wrote it).

Read with h5py, lazily: the store and `data info` read blocks of episodes, a minibatch of a
memory-mapped run reads only its rows (through HDF5's chunk cache); the file is never loaded whole.
Mapped runs gather far faster from .npy files (`inspo data convert FILE DIR --to npy`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from inspo.atomic import atomic_path
from inspo.data.buffer import DatasetError
from inspo.data.formats import Dataset

CHUNK = 1024  # episodes per block written
META_ATTR = "inspo_meta"
CHUNK_CACHE_BYTES = 128 << 20  # HDF5's cache of decompressed chunks, per dataset (its default is 1 MiB)


def _h5py():
    try:
        import h5py
    except ModuleNotFoundError as error:
        raise DatasetError("HDF5 datasets need h5py: pip install 'inspo[data]'") from error
    return h5py


class H5Array:
    """An HDF5 dataset indexed like the episode arrays: slices pass through; [episodes, steps] (two
    index arrays, as the memory-mapped store gathers) reads the span of episodes once when the rows
    cover it densely (the store's scan, chunk by chunk), else one read per distinct row (a random
    minibatch; h5py's own point selection is far slower)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.shape, self.dtype, self.ndim = tuple(dataset.shape), dataset.dtype, dataset.ndim

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, np.ndarray) for k in key):
            episode, step = key
            if not len(episode):
                return np.zeros((0, *self.shape[2:]), self.dtype)
            low, high = int(episode.min()), int(episode.max()) + 1
            if len(episode) * 8 >= (high - low) * self.shape[1]:
                return self.dataset[low:high][episode - low, step]
            cells, inverse = np.unique(np.stack(key, axis=1), axis=0, return_inverse=True)
            return np.stack([self.dataset[int(e), int(t)] for e, t in cells])[inverse.reshape(-1)]
        return self.dataset[key]


def read(path: Path, *, mmap: bool) -> Dataset:
    h5py = _h5py()
    try:
        file = h5py.File(path, "r", rdcc_nbytes=CHUNK_CACHE_BYTES, rdcc_nslots=100_003)
    except OSError as error:
        raise DatasetError(f"{path} (h5): cannot be read as HDF5: {error}") from error
    arrays = {name: H5Array(item) for name, item in file.items() if isinstance(item, h5py.Dataset)}
    if META_ATTR in file.attrs:
        try:
            meta = json.loads(file.attrs[META_ATTR])
        except (TypeError, ValueError) as error:  # (json's errors are ValueErrors; bytes of another encoding too)
            file.close()
            raise DatasetError(f"{path} (h5): attribute {META_ATTR!r} is not a JSON object: {error}") from error
        if not isinstance(meta, dict):
            file.close()
            raise DatasetError(
                f"{path} (h5): attribute {META_ATTR!r} must hold a JSON object, got {type(meta).__name__}"
            )
    else:
        meta = {key: value.item() if isinstance(value, np.generic) else value for key, value in file.attrs.items()}
        meta = {key: value for key, value in meta.items() if isinstance(value, (int, float, str, bool))}
    return Dataset(path, "h5", arrays, meta, {name: f"/{name}" for name in arrays})


def write(
    path: Path,
    arrays: dict[str, Any],
    meta: dict[str, Any],
    *,
    episode_limit: Optional[int],
    log: Callable[[str], None],
) -> None:
    h5py = _h5py()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as file:
        for name, array in arrays.items():
            out = file.create_dataset(
                name, shape=tuple(array.shape), dtype=array.dtype, chunks=True, maxshape=(None, *array.shape[1:])
            )
            for start in range(0, array.shape[0], CHUNK):
                out[start : start + CHUNK] = np.asarray(array[start : start + CHUNK])
        file.attrs[META_ATTR] = json.dumps(dict(meta))
