"""A run's folder: `RunFiles` writes the config, metrics (CSV + JSONL, optional TensorBoard) and atomic, checksummed checkpoints, and on
resume cuts the logs back to the checkpoint's step so they read as one run. Every checkpoint is read
through `load_checkpoint`, which refuses a damaged one naming the file. A live run owns its folder:
it holds an OS lock on the folder's run.lock for as long as it runs (the kernel drops it when the
process ends, killed or not), and a second writer is refused naming the process; a fresh run is kept
out of a folder that holds another (`claim_run_folder`). `dataset_fingerprint` records what a run
trains on, so that a resume on changed data is refused.
"""

from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from inspo.atomic import atomic_write, atomic_write_text, orphan_temporaries
from inspo.config import TrainConfig
from inspo.dependencies import require

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
RESULTS = "results.json"
# the file a live run holds an exclusive flock on (and writes its PID into); never deleted, since a
# new file would be a new lock beside the one a live run holds
LOCK = "run.lock"
LOG_KINDS = ("metrics", "eval")
# everything a run writes into its folder (what --overwrite deletes)
RUN_ENTRIES = (
    CONFIG,
    CHECKPOINT,
    RESULTS,
    "tensorboard",
    *(f"{kind}.{suffix}" for kind in LOG_KINDS for suffix in ("jsonl", "csv")),
)
CHECKPOINT_KEYS = frozenset({"config", "algo", "step"})  # what every trainer's checkpoint holds
CHECKSUM = "checksum"  # the payload key of the checkpoint's sha256 (payload_digest)


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked: a file, not writable, full, or holding another run."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, truncated, corrupt, or not an inspo checkpoint."""


class RunFiles:
    """The output folder of a run: config.json, metrics.{csv,jsonl}, eval.{csv,jsonl}, checkpoint.pt,
    results.json. Every file but the appended logs is written atomically (`inspo.atomic`); a write
    that fails (full disk, read-only folder) raises RunFolderError naming the file, and the file it
    would have replaced stays as it was. Temporary files a killed run left behind are removed.

    Opening the folder takes its lock (`LOCK`) until `close`: a folder another process (or another
    RunFiles of this one) writes is refused, naming the process. A fresh run (not `resume`) then needs
    an empty folder, or `overwrite`, which deletes the run files there (`claim_run_folder`'s rule)."""

    def __init__(
        self,
        out_dir: Optional[str | os.PathLike],
        tensorboard: bool = False,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ):
        self.dir = Path(out_dir) if out_dir is not None else None
        self.writer = None
        self._lock: Optional[int] = None  # the file descriptor holding the folder's flock
        if self.dir is None:
            return
        if self.dir.exists() and not self.dir.is_dir():
            raise RunFolderError(f"run folder {self.dir} is a file, not a folder")
        self.created = not self.dir.exists()  # by this run: a failed set-up takes it away again
        with _writing("run folder", self.dir):
            self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = lock_run_folder(self.dir)
        try:
            if not resume:
                claim_run_folder(self.dir, overwrite=overwrite, locked=True)
            for orphan in orphan_temporaries(self.dir):
                orphan.unlink(missing_ok=True)
            if tensorboard:
                require("tensorboard", "tensorboard=True", "'inspo[tensorboard]'")
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(self.dir / "tensorboard"))
        except BaseException:
            self.close()
            raise

    def discard_if_created(self) -> None:
        """Remove the folder again when this run created it and nothing but its config.json went in: a
        run whose set-up failed (a bad dataset, say) leaves no folder that a retry would find in its way."""
        if self.dir is None or not self.created or not self.dir.is_dir():
            return
        if {entry.name for entry in self.dir.iterdir()} <= {CONFIG, LOCK}:
            shutil.rmtree(self.dir, ignore_errors=True)

    def write_config(self, config: TrainConfig) -> None:
        """config.json: the full resolved config, written before the first step (a record of the run
        even if it dies before its first checkpoint, and what `--resume` restarts it from then)."""
        if self.dir is not None:
            with _writing("config", self.dir / CONFIG):
                atomic_write_text(self.dir / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")

    def log(self, kind: str, row: dict[str, Any]) -> None:
        """Append `row` (must hold "step") to {kind}.jsonl and {kind}.csv."""
        if self.dir is None:
            return
        jsonl = self.dir / f"{kind}.jsonl"
        with _writing("log", jsonl), open(jsonl, "a") as handle:
            handle.write(json.dumps(row) + "\n")
        csv_path = self.dir / f"{kind}.csv"
        new = not csv_path.exists() or csv_path.stat().st_size == 0
        with _writing("log", csv_path), open(csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(row), extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.writer.add_scalar(f"{kind}/{key}", value, row["step"])

    def truncate_logs(self, last_step: int) -> None:
        """Drop log rows written after `last_step` (an interrupted run's tail past its checkpoint), and a
        torn last line (the run was killed while writing it: every row ends in a newline)."""
        if self.dir is None:
            return
        for kind in LOG_KINDS:
            jsonl = self.dir / f"{kind}.jsonl"
            if jsonl.exists():
                kept = [
                    line for number, line in _complete_lines(jsonl) if _jsonl_step(jsonl, number, line) <= last_step
                ]
                with _writing("log", jsonl):
                    atomic_write_text(jsonl, "".join(line + "\n" for line in kept))
            csv_path = self.dir / f"{kind}.csv"
            if csv_path.exists():
                lines = _complete_lines(csv_path)
                rows = list(csv.reader(line for _, line in lines))
                if rows:  # rows[0] is the header
                    if "step" not in rows[0]:
                        raise RunFolderError(f"log {csv_path} has no step column in its header {rows[0]}")
                    column = rows[0].index("step")
                    rows = rows[:1] + [
                        row
                        for (number, _), row in zip(lines[1:], rows[1:])
                        if _csv_step(csv_path, number, row, column) <= last_step
                    ]
                text = io.StringIO()
                csv.writer(text).writerows(rows)
                with _writing("log", csv_path):
                    atomic_write_text(csv_path, text.getvalue())

    @property
    def checkpoint_path(self) -> Optional[Path]:
        return None if self.dir is None else self.dir / CHECKPOINT

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """torch.save `payload` and its checksum (see `load_checkpoint`), atomically."""
        if self.dir is None:
            return
        payload = {**payload, CHECKSUM: payload_digest(payload)}
        with _writing("checkpoint", self.checkpoint_path, "; the previous checkpoint is intact"):
            atomic_write(self.checkpoint_path, lambda handle: torch.save(payload, handle))

    def load_checkpoint(self) -> dict[str, Any]:
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            raise FileNotFoundError(f"no checkpoint to resume from in {self.dir}")
        return load_checkpoint(self.checkpoint_path)

    def write_results(self, results: dict[str, Any]) -> None:
        if self.dir is not None:
            with _writing("results", self.dir / RESULTS):
                atomic_write_text(self.dir / RESULTS, json.dumps(results, indent=2) + "\n")

    def close(self) -> None:
        """Close the TensorBoard writer and give up the folder's lock (again: nothing)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops its flock
            self._lock = None


def policy_state(payload: dict[str, Any]) -> dict[str, Any]:
    """The policy network of a checkpoint (every algorithm saves it as "actor")."""
    if "actor" not in payload:
        raise ValueError(f"checkpoint holds no policy (keys: {sorted(payload)})")
    return payload["actor"]


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The payload of a checkpoint file (or of a run folder's checkpoint.pt), checked before use.

    Refused with one CheckpointError naming the file: an empty, truncated or unreadable file, one that
    holds something other than a checkpoint dict, one whose checksum (stored by
    `RunFiles.save_checkpoint`) does not match its contents, and one holding non-finite tensors.
    (Checkpoints written before checksums were stored have none and are checked for the rest.)
    """
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        payload = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as error:  # torch, zipfile and pickle each fail differently on a damaged file
        reason = str(error).strip().splitlines()[0][:120] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} cannot be read (truncated, corrupt or not a torch file): {reason}"
        ) from error
    if not isinstance(payload, dict) or not CHECKPOINT_KEYS <= set(payload):
        held = (
            f"a dict with keys {sorted(map(str, payload))}"
            if isinstance(payload, dict)
            else f"a {type(payload).__name__}"
        )
        raise CheckpointError(
            f"checkpoint {path} is not an inspo checkpoint: it holds {held}, "
            f"expected a dict with {sorted(CHECKPOINT_KEYS)}"
        )
    stored = payload.pop(CHECKSUM, None)
    if stored is not None and stored != payload_digest(payload):
        raise CheckpointError(f"checkpoint {path} fails its checksum: the file is corrupt")
    bad = next(
        (
            name
            for name, tensor in _tensors(payload)
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ),
        None,
    )
    if bad is not None:
        raise CheckpointError(f"checkpoint {path} holds non-finite values (in {bad})")
    return payload


def payload_digest(payload: Any) -> str:
    """sha256 of a checkpoint payload: every tensor's dtype, shape and bytes, and the rest by repr."""
    digest = hashlib.sha256()
    feed_digest(digest, payload)
    return digest.hexdigest()


def lock_run_folder(folder: Path) -> int:
    """Take the exclusive lock of run folder `folder` (its `LOCK` file) and write this process's PID
    into it; returns the descriptor that holds it (os.close gives it up; so does the end of the process,
    however it ends). A lock held elsewhere is refused with RunFolderError naming the process."""
    path = folder / LOCK
    with _writing("lock", path):
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as error:
        os.close(descriptor)
        if error.errno not in (errno.EAGAIN, errno.EACCES):
            raise RunFolderError(f"cannot lock run folder {folder}: {error.strerror or error}") from error
        raise RunFolderError(in_use_message(folder)) from None
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)
    return descriptor


def run_folder_holder(folder: str | os.PathLike) -> Optional[str]:
    """Who holds the lock of run folder `folder` ("process PID"), or None when no live run does."""
    path = Path(folder) / LOCK
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file: no run has written there since runs lock their folders
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(path)
    finally:
        os.close(descriptor)
    return None


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    if not pid.isdigit():
        return "another process"
    return f"process {pid}" + (" (this process)" if int(pid) == os.getpid() else "")


def in_use_message(folder: Path) -> str:
    """The error of a run folder a live run holds, naming the process."""
    return (
        f"run folder {folder} is in use: {_holder(folder / LOCK)} is training there; "
        "wait for it to end, stop it, or choose another --out"
    )


def claim_run_folder(path: str | os.PathLike, *, overwrite: bool, locked: bool = False) -> None:
    """Make sure a fresh run may write into `path`: refuse a folder a live run holds (unless `locked`:
    the caller holds its lock), and a non-empty folder unless `overwrite`, which then deletes the run
    files there when `locked` (an unlocked call only checks) and refuses when the folder holds anything
    that is not a run's."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise RunFolderError(f"run folder {folder} is a file, not a folder")
    if not folder.is_dir():
        return
    if not locked and run_folder_holder(folder) is not None:
        raise RunFolderError(in_use_message(folder))
    if not any(entry.name != LOCK for entry in folder.iterdir()):
        return
    if not overwrite:
        raise RunFolderError(
            f"run folder {folder} is not empty: --resume continues the run there, "
            "--overwrite starts it over, or choose another --out"
        )
    foreign = sorted(
        p.name for p in folder.iterdir() if p.name not in (*RUN_ENTRIES, LOCK) and p not in orphan_temporaries(folder)
    )
    if foreign:
        raise RunFolderError(
            f"run folder {folder} holds files that are not a run's ({', '.join(foreign[:5])}); "
            "--overwrite does not delete them: choose another --out"
        )
    if locked:
        clear_run_files(folder)


def clear_run_files(folder: str | os.PathLike) -> None:
    """Delete a run's files (those of RUN_ENTRIES and orphan temporaries) in `folder`."""
    folder = Path(folder)
    with _writing("run folder", folder):
        for entry in [folder / name for name in RUN_ENTRIES] + orphan_temporaries(folder):
            if entry.is_dir():
                shutil.rmtree(entry)
            elif entry.exists():
                entry.unlink()


def read_run_config(folder: str | os.PathLike) -> TrainConfig:
    """The config.json of a run folder (written before its first step)."""
    path = Path(folder) / CONFIG
    try:
        values = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunFolderError(f"{path} cannot be read: {error}") from error
    if not isinstance(values, dict):
        raise RunFolderError(f"{path} must hold a JSON object of config fields, got {type(values).__name__}")
    try:
        return TrainConfig.from_dict(values)
    except ValueError as error:
        raise RunFolderError(f"{path}: {error}") from error


def resume_config(checkpoint: dict[str, Any], config: TrainConfig) -> TrainConfig:
    """The config a resumed run continues with: the checkpoint's, except `steps`, which is config's
    (so that a finished or interrupted run can be extended)."""
    if config.steps < checkpoint["step"]:
        raise ValueError(f"cannot resume to steps = {config.steps}: the checkpoint is at step {checkpoint['step']}")
    return TrainConfig.from_dict({**checkpoint["config"], "steps": config.steps})


@contextmanager
def _writing(what: str, path: Optional[Path], consequence: str = "") -> Iterator[None]:
    """Turn a failed write of `path` into one RunFolderError naming it and saying why."""
    try:
        yield
    except OSError as error:
        raise RunFolderError(f"cannot write {what} {path}: {error.strerror or error}{consequence}") from error
    except RuntimeError as error:  # torch.save reports a short write (a full disk) as a RuntimeError
        if not any(mark in str(error) for mark in ("inline_container", "PytorchStreamWriter")):
            raise
        raise RunFolderError(
            f"cannot write {what} {path}: the write stopped short (is the disk full?){consequence}"
        ) from error


def _complete_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-blank lines of a log that end in a newline; a last line without
    one was torn by a kill during its write."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise RunFolderError(f"cannot read log {path}: {error.strerror or error}") from error
    lines = text.split("\n")[:-1]  # the piece after the last newline is "" or a torn line
    return [(number, line) for number, line in enumerate(lines, 1) if line.strip()]


def _jsonl_step(path: Path, number: int, line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError) as error:
        raise RunFolderError(f"log {path} line {number} is not a row with a step ({error}): {line[:80]!r}") from error


def _csv_step(path: Path, number: int, row: list[str], column: int) -> int:
    try:
        return int(row[column])
    except (ValueError, IndexError) as error:
        raise RunFolderError(f"log {path} line {number} has no step in column {column + 1}: {row[:4]}") from error


def feed_digest(digest: Any, value: Any) -> None:  # digest: a hashlib hash object
    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        digest.update(f"tensor {tensor.dtype} {tuple(tensor.shape)}:".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, np.ndarray):
        digest.update(f"ndarray {value.dtype.str} {value.shape}:".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}:".encode())
        for key, item in value.items():
            feed_digest(digest, key)
            feed_digest(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__} {len(value)}:".encode())
        for item in value:
            feed_digest(digest, item)
    else:
        digest.update(f"{type(value).__name__} {value!r};".encode())


def _tensors(value: Any, name: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(dotted name, tensor) of every tensor in a nested payload."""
    if isinstance(value, torch.Tensor):
        yield name, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{name}.{index}" if name else str(index))
