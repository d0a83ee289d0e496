"""The EPyMARL / PyMARL episode-buffer directory format (spec: shared/spec/environments.md).

A dataset is a directory of .npy arrays, episode-major and padded to a common length T+1:

    obs            [E, T+1, N, O]  float32
    state          [E, T+1, S]     float32
    actions        [E, T+1, N, 1]  int64
    reward         [E, T+1, 1]     float32
    terminated     [E, T+1, 1]     uint8
    filled         [E, T+1, 1]     int64   (1 on real steps)
    avail_actions  [E, T+1, N, A]  int32

plus meta.json (PyMARL writes buffer_index, episodes_in_buffer, buffer_size), and optionally

    truncated      [E, T+1, 1]     uint8   (1 where the episode was cut by a time limit, not terminal)

which readers of formats that store truncations apart (OG-MARL vaults) fill. Other arrays found in
the directory (e.g. PyMARL's actions_onehot) are loaded and saved too, unchanged. The writer insists
on the exact dtypes above; the reader accepts any float dtype for the float arrays and any integer
or bool dtype for the others, so datasets of other projects load unchanged.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

# name -> (dtype written, dtype kind accepted on load, trailing shape described by names)
ARRAY_SPECS: dict[str, tuple[np.dtype, str, tuple[str, ...]]] = {
    "obs": (np.dtype(np.float32), "f", ("E", "T+1", "N", "O")),
    "state": (np.dtype(np.float32), "f", ("E", "T+1", "S")),
    "actions": (np.dtype(np.int64), "iub", ("E", "T+1", "N", "1")),
    "reward": (np.dtype(np.float32), "f", ("E", "T+1", "1")),
    "terminated": (np.dtype(np.uint8), "iub", ("E", "T+1", "1")),
    "filled": (np.dtype(np.int64), "iub", ("E", "T+1", "1")),
    "avail_actions": (np.dtype(np.int32), "iub", ("E", "T+1", "N", "A")),
}
REQUIRED_ARRAYS = tuple(ARRAY_SPECS)
# optional arrays the transition store reads when present
OPTIONAL_SPECS: dict[str, tuple[np.dtype, str, tuple[str, ...]]] = {
    "truncated": (np.dtype(np.uint8), "iub", ("E", "T+1", "1")),
}
META_FILE = "meta.json"


class DatasetError(ValueError):
    """A dataset that cannot be used as it is (missing array, wrong shape or dtype, bad values).

    `field` names the episode array at fault (obs, actions, ...) where there is one, so that a reader
    of another format can name that format's own field."""

    def __init__(self, message: str, field: Optional[str] = None):
        super().__init__(message)
        self.field = field


def validate_episode_arrays(arrays: dict[str, np.ndarray], *, exact_dtypes: bool) -> dict[str, int]:
    """Check names, ranks, dtypes and the shared sizes E, T+1, N of the episode arrays.

    Returns the sizes {"E", "T+1", "N", "O", "S", "A"}. Raises DatasetError naming the array.
    """
    missing = [name for name in REQUIRED_ARRAYS if name not in arrays]
    if missing:
        raise DatasetError(f"episode buffer is missing array(s) {missing}; found {sorted(arrays)}", missing[0])
    sizes: dict[str, int] = {}
    specs = {**ARRAY_SPECS, **{name: spec for name, spec in OPTIONAL_SPECS.items() if name in arrays}}
    for name, (dtype, kinds, dims) in specs.items():
        array = arrays[name]
        # numpy arrays, memory maps, and the lazy arrays of the streaming readers (shape, dtype, slicing)
        if not (hasattr(array, "shape") and hasattr(array, "dtype")):
            raise DatasetError(f"array {name!r} must be a numpy array, got {type(array).__name__}", name)
        if exact_dtypes and array.dtype != dtype:
            raise DatasetError(f"array {name!r} must have dtype {dtype}, got {array.dtype}", name)
        if array.dtype.kind not in kinds:
            raise DatasetError(f"array {name!r} has dtype {array.dtype}; expected kind {kinds!r} ({dtype})", name)
        shape = tuple(array.shape)
        if len(shape) != len(dims):
            raise DatasetError(
                f"array {name!r} must have shape [{', '.join(dims)}] (rank {len(dims)}), got {shape}", name)
        for dim, size in zip(dims, shape):
            if dim == "1":
                if size != 1:
                    raise DatasetError(f"array {name!r} must have shape [{', '.join(dims)}], got {shape}", name)
            elif sizes.setdefault(dim, size) != size:
                raise DatasetError(
                    f"array {name!r} has {dim} = {size} but earlier arrays have {dim} = {sizes[dim]} "
                    f"(shape {shape}, expected [{', '.join(dims)}])", name)
    if sizes["E"] == 0 or sizes["T+1"] < 2:
        raise DatasetError(f"episode buffer is empty: E = {sizes['E']} episodes of T+1 = {sizes['T+1']} steps")
    return sizes


def save_episode_buffer(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` (the seven required ones with their exact dtypes, plus any extra) and meta.json.

    meta gets the PyMARL keys buffer_index / episodes_in_buffer / buffer_size when absent. Each file
    is written to a temporary name and renamed, so a crash never leaves a half-written array.
    """
    sizes = validate_episode_arrays(arrays, exact_dtypes=True)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta.setdefault("buffer_index", 0)
    meta.setdefault("episodes_in_buffer", sizes["E"])
    meta.setdefault("buffer_size", sizes["E"])
    for name, array in arrays.items():
        _atomic_write(directory / f"{name}.npy", lambda f, a=array: np.save(f, a, allow_pickle=False))
    _atomic_write(directory / META_FILE, lambda f: f.write(json.dumps(meta, indent=2).encode()))


def load_episode_buffer(
    path: str | os.PathLike, *, mmap_mode: Optional[str] = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an episode-buffer directory -> (arrays, meta).

    mmap_mode="r" memory-maps the arrays instead of reading them (for datasets of millions of
    transitions). When meta.json says fewer episodes are in the buffer than the arrays hold
    (PyMARL preallocates), the arrays are cut to `episodes_in_buffer` (a view, never a copy).
    """
    directory = Path(path)
    if not directory.is_dir():
        raise DatasetError(f"episode-buffer directory {str(directory)!r} does not exist")
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise DatasetError(f"episode-buffer directory {str(directory)!r} has no {META_FILE}")
    meta = json.loads(meta_path.read_text())
    arrays = {}
    for file in sorted(directory.glob("*.npy")):
        try:
            arrays[file.stem] = np.load(file, mmap_mode=mmap_mode, allow_pickle=False)
        except ValueError as error:
            raise DatasetError(f"array {file.stem!r} ({file}) cannot be read: {error}") from error
    sizes = validate_episode_arrays(arrays, exact_dtypes=False)
    stored = meta.get("episodes_in_buffer")
    if stored is not None:
        if not 0 < int(stored) <= sizes["E"]:
            raise DatasetError(
                f"{META_FILE} says episodes_in_buffer = {stored} but the arrays hold E = {sizes['E']} episodes")
        if int(stored) < sizes["E"]:
            arrays = {name: array[: int(stored)] for name, array in arrays.items()}
    return arrays, meta


def _atomic_write(target: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
