"""Dataset formats: read any of them into episode arrays, write any of them from episode arrays.

    npy    PyMARL / EPyMARL episode batches, a folder of .npy + meta.json (inspo.data.buffer; AlberDICE's)
    h5     the same episode batches in one HDF5 file, one dataset per field (CFCQL's SMAC datasets)
    vault  OG-MARL Flashbax vaults: observations, actions, rewards, terminals, truncations,
           infos.legals, infos.state on one long time axis

Every reader returns a `Dataset`: episode arrays [E, T+1, ...] in the episode-buffer layout (numpy
arrays, memory maps, or lazy views that read the file a block of episodes at a time), its metadata,
and which of the file's fields each array comes from, so that an error names the file and the field.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from inspo.data.buffer import DatasetError, validate_episode_arrays

FORMATS = ("npy", "h5", "vault")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


@dataclass
class Dataset:
    path: Path
    format: str
    arrays: dict[str, Any]  # episode arrays [E, T+1, ...]; lazy ones support slicing and [episodes, steps]
    meta: dict[str, Any]
    fields: dict[str, str]  # episode array name -> the file's own name of that field
    notes: list[str] = field(default_factory=list)  # how the reader mapped the file (printed by `data info`)

    def error(self, error: DatasetError) -> DatasetError:
        """`error` prefixed with the file and, where it names an array, the file's field."""
        where = f"{self.path} ({self.format})"
        if error.field is not None and error.field in self.fields:
            where += f", field {self.fields[error.field]!r}"
        return DatasetError(f"{where}: {error}", error.field)


def detect_format(path: str | os.PathLike) -> str:
    """npy, h5 or vault, from what is at `path`; DatasetError when it is none of them."""
    path = Path(path)
    if path.is_file():
        with open(path, "rb") as handle:
            if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return "h5"
        raise DatasetError(
            f"dataset path {str(path)!r} is a file, not an episode-buffer directory, and not an HDF5 file either"
        )
    if not path.is_dir():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    if (path / "meta.json").is_file() or any(path.glob("*.npy")):
        return "npy"
    from inspo.data.formats.vault import find_vault

    if find_vault(path, required=False) is not None:
        return "vault"
    raise DatasetError(
        f"{path}: cannot tell the dataset format (no meta.json or .npy files, no vault "
        f"metadata.json); give --dataset-format {{{','.join(FORMATS)}}}"
    )


def read_dataset(path: str | os.PathLike, format: str = "auto", *, mmap: bool = True) -> Dataset:
    """Open the dataset at `path` (format auto-detected unless given). With `mmap`, .npy arrays are
    memory-mapped; HDF5 and vault arrays are always read lazily. Raises DatasetError naming the file."""
    if not Path(path).exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    if format == "auto":
        format = detect_format(path)
    if format not in FORMATS:
        raise DatasetError(f"unknown dataset format {format!r}; known: auto, {', '.join(FORMATS)}")
    reader = _module(format).read
    dataset = reader(Path(path), mmap=mmap)
    try:
        validate_episode_arrays(dataset.arrays, exact_dtypes=False)
    except DatasetError as error:
        raise dataset.error(error) from error
    return dataset


def build_store(dataset: Dataset, *, mapped: bool = False, device: str = "cpu", episode_limit: Optional[int] = None):
    """The transition store of `dataset` (memory-mapped with `mapped`); its errors name the file and field."""
    from inspo.data.mapped import MappedTransitions
    from inspo.data.transitions import TransitionStore

    try:
        if mapped:
            return MappedTransitions(dataset.arrays, device=device, episode_limit=episode_limit)
        return TransitionStore.from_episode_buffer(dataset.arrays, device=device, episode_limit=episode_limit)
    except DatasetError as error:
        raise dataset.error(error) from error


def write_dataset(
    path: str | os.PathLike,
    arrays: dict[str, Any],
    meta: dict[str, Any],
    format: str,
    *,
    episode_limit: Optional[int] = None,
    log: Callable[[str], None] = lambda message: None,
) -> None:
    """Write episode arrays (numpy or lazy) as `format` at `path`, a block of episodes at a time.
    `episode_limit` is the time-limit rule of the source (the vault stores the ends it decides)."""
    if format not in FORMATS:
        raise DatasetError(f"unknown dataset format {format!r}; known: {', '.join(FORMATS)}")
    validate_episode_arrays(arrays, exact_dtypes=False)
    _module(format).write(Path(path), arrays, meta, episode_limit=episode_limit, log=log)


def _module(format: str):
    import importlib

    return importlib.import_module(f"inspo.data.formats.{format}")


__all__ = ["Dataset", "FORMATS", "build_store", "detect_format", "read_dataset", "write_dataset"]
