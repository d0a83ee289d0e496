"""The EPyMARL / PyMARL episode-buffer directory format (docs/ALGORITHM.md#episode-buffer-format).

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
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import numpy as np

from inspo.atomic import atomic_write

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
NPY_MAGIC = b"\x93NUMPY"  # the first bytes of every .npy file


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
                f"array {name!r} must have shape [{', '.join(dims)}] (rank {len(dims)}), got {shape}", name
            )
        for dim, size in zip(dims, shape):
            if dim == "1" and size != 1:
                raise DatasetError(f"array {name!r} must have shape [{', '.join(dims)}], got {shape}", name)
    # a size the arrays disagree on: the array that differs from the others is named (the most common
    # size wins; on a tie, the first array's)
    sizes: dict[str, int] = {}
    for dim in ("E", "T+1", "N", "O", "S", "A"):
        found = [
            (name, tuple(arrays[name].shape)[dims.index(dim)]) for name, (_, _, dims) in specs.items() if dim in dims
        ]
        counts = Counter(size for _, size in found)
        sizes[dim] = max(counts, key=lambda size: (counts[size], -[s for _, s in found].index(size)))
        odd = next(((name, size) for name, size in found if size != sizes[dim]), None)
        if odd is not None:
            name, size = odd
            others = [other for other, other_size in found if other_size == sizes[dim]]
            raise DatasetError(
                f"array {name!r} has {dim} = {size} but {', '.join(map(repr, others))} "
                f"{'have' if len(others) > 1 else 'has'} {dim} = {sizes[dim]} "
                f"(shape {tuple(arrays[name].shape)}, expected [{', '.join(specs[name][2])}])",
                name,
            )
    if sizes["E"] == 0 or sizes["T+1"] < 2:
        raise DatasetError(f"episode buffer is empty: E = {sizes['E']} episodes of T+1 = {sizes['T+1']} steps")
    return sizes


def save_episode_buffer(path: str | os.PathLike, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write `arrays` (the seven required ones with their exact dtypes, plus any extra) and meta.json.

    meta gets the PyMARL keys buffer_index / episodes_in_buffer / buffer_size when absent. Each file
    is written atomically (inspo.atomic), so a crash never leaves a half-written array.
    """
    sizes = validate_episode_arrays(arrays, exact_dtypes=True)
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    meta = dict(meta)
    meta.setdefault("buffer_index", 0)
    meta.setdefault("episodes_in_buffer", sizes["E"])
    meta.setdefault("buffer_size", sizes["E"])
    for name, array in arrays.items():
        atomic_write(directory / f"{name}.npy", lambda f, a=array: np.save(f, a, allow_pickle=False))
    atomic_write(directory / META_FILE, lambda f: f.write(json.dumps(meta, indent=2).encode()))


def load_episode_buffer(
    path: str | os.PathLike, *, mmap_mode: Optional[str] = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read an episode-buffer directory -> (arrays, meta).

    mmap_mode="r" memory-maps the arrays instead of reading them (for datasets of millions of
    transitions). When meta.json says fewer episodes are in the buffer than the arrays hold
    (PyMARL preallocates), the arrays are cut to `episodes_in_buffer` (a view, never a copy).
    """
    directory = Path(path)
    if directory.is_file():
        raise DatasetError(f"dataset path {str(directory)!r} is a file, not an episode-buffer directory")
    if not directory.is_dir():
        raise DatasetError(f"episode-buffer directory {str(directory)!r} does not exist")
    meta = _read_meta(directory / META_FILE)
    arrays = {}
    for file in sorted(directory.glob("*.npy")):
        arrays[file.stem] = _read_array(file, mmap_mode)
    sizes = validate_episode_arrays(arrays, exact_dtypes=False)
    stored = meta.get("episodes_in_buffer")
    if isinstance(stored, float) and stored.is_integer():
        stored = int(stored)
    if stored is not None:
        if not isinstance(stored, int) or isinstance(stored, bool) or not 0 < stored <= sizes["E"]:
            raise DatasetError(
                f"{directory / META_FILE}: episodes_in_buffer = {stored!r}, but it must be an "
                f"integer in [1, {sizes['E']}] (the arrays hold E = {sizes['E']} episodes)"
            )
        if stored < sizes["E"]:
            arrays = {name: array[:stored] for name, array in arrays.items()}
    return arrays, meta


def _read_meta(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DatasetError(f"episode-buffer directory {str(path.parent)!r} has no {META_FILE}")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"{path} cannot be read as JSON: {error}") from error
    if not isinstance(meta, dict):
        raise DatasetError(f"{path} must hold a JSON object, got a {type(meta).__name__}")
    return meta


def _read_array(file: Path, mmap_mode: Optional[str]) -> np.ndarray:
    """One .npy file; in the machine's byte order (the format allows any, torch takes only the native
    one), which memory-mapping cannot convert without reading the whole array."""
    if file.is_dir():
        raise DatasetError(f"array {file.stem!r}: {file} is a folder, not a .npy file")
    try:
        with open(file, "rb") as handle:
            magic = handle.read(len(NPY_MAGIC))
    except OSError as error:
        raise DatasetError(f"array {file.stem!r} ({file}) cannot be read: {error.strerror or error}") from error
    if not magic:
        raise DatasetError(f"array {file.stem!r} ({file}) cannot be read: the file is empty", file.stem)
    if magic != NPY_MAGIC:
        raise DatasetError(
            f"array {file.stem!r} ({file}) is not a .npy file: it does not start with the .npy signature "
            "(another format, or damaged bytes)",
            file.stem,
        )
    try:
        array = np.load(file, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        reason = str(error) or f"{type(error).__name__} (empty or truncated file)"
        raise DatasetError(f"array {file.stem!r} ({file}) cannot be read: {reason}") from error
    if not array.dtype.isnative:
        if mmap_mode is not None:
            raise DatasetError(
                f"array {file.stem!r} ({file}) has byte order {array.dtype.str!r}, which cannot be "
                "memory-mapped; load it with dataset_storage=memory or save it in native byte order"
            )
        array = array.astype(array.dtype.newbyteorder("="))
    return array
