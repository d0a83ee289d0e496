"""Crash-safe file writes: a reader (or a resumed run) sees the old file or the new one, never half.

The bytes go to a temporary file in the target's folder, are flushed to disk, and the file is then
renamed over the target. mkstemp creates the temporary file 0600; it is given the mode an ordinary
`open` would have made (0666 minus the umask), so that a shared lab folder can read checkpoints,
results and datasets like it reads the logs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

TMP_SUFFIX = ".tmp"  # temporary files are .<target name>.<random>.tmp; `orphan_temporaries` finds them


def atomic_write(target: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> None:
    """`write(handle)` into a temporary file next to `target`, then rename it to `target`.

    Any error (or an interrupt) removes the temporary file and leaves `target` as it was.
    """
    with atomic_path(target) as tmp, open(tmp, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    atomic_write(target, lambda handle: handle.write(text.encode()))


@contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary file's path next to `target` for a library that writes by path (h5py, numpy.savez); renamed
    to `target` when the block ends without an error, removed otherwise."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@contextmanager
def atomic_folder(target: str | os.PathLike) -> Iterator[Path]:
    """A temporary folder next to `target` to fill; renamed to `target` (which must not exist) when the block
    ends without an error, removed otherwise: a reader never sees half a dataset."""
    target = Path(target)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)).resolve()
    try:
        yield tmp
        tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def orphan_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Temporary files `atomic_write` left in `folder` when its process was killed mid-write."""
    return sorted(Path(folder).glob(f".*{TMP_SUFFIX}"))


def current_umask() -> int:
    # the only portable way to read the umask is to set it and set it back
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
