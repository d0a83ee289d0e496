"""Run summaries that outlive the machine: one small JSON file per finished run, made to be committed.

A sweep given a store (`run_sweep(runs, store=SummaryStore(...))`) counts a run whose summary is in the store
under the same key as finished, whatever is left of its run folder, and writes the summary of every run it
finishes as soon as its seed group returns: losing the machine loses the runs in flight, nothing else. The
key is the run's full resolved config, its finishing step, the code version, the commit that trained it and
the fingerprint of its dataset; a summary under another key is not reused (the run trains again and its new
summary replaces the old one). A summary that does not parse, lacks a field, belongs to another run or whose
checksum disagrees with its content (a torn write, a hand edit, a merge gone wrong) is refused with a
SummaryError naming the file: it is never read as a result.

A summary holds: the key; the run's results.json (scores, steps, transitions, seconds); its evaluations during
training (eval.jsonl rows: the learning curve); its final evaluation (final_eval.json: per-episode results);
what it cost (CPU seconds and wall seconds, its share of the process that trained its seed group, and the
machine); and the sha256 of all of that.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from inspo.atomic import TMP_SUFFIX, atomic_write_text
from inspo.config import TrainConfig
from inspo.sweep.execute import run_key
from inspo.sweep.spec import Run

SCHEMA = "inspo.run-summary/1"
FIELDS = ("schema", "name", "seed", "key", "results", "curve", "final", "cost", "sha256")


class SummaryError(ValueError):
    """A summary file that cannot be trusted (torn, edited, foreign): the message names the file."""


def canonical(payload: Any) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def checksum(summary: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({k: v for k, v in summary.items() if k != "sha256"})).hexdigest()


def read_summary(path: Path, name: Optional[str] = None, seed: Optional[int] = None) -> dict[str, Any]:
    """A summary file, checked: it parses, has every field and the schema, matches its checksum and (when
    given) belongs to run `name`, seed `seed`. Anything else is a SummaryError naming the file."""
    try:
        summary = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise SummaryError(
            f"{path}: not a complete summary (torn or edited JSON: {error.msg} at line {error.lineno})"
        ) from None
    except UnicodeDecodeError:
        raise SummaryError(f"{path}: not a summary (binary content)") from None
    if not isinstance(summary, dict) or summary.get("schema") != SCHEMA:
        found = summary.get("schema") if isinstance(summary, dict) else type(summary).__name__
        raise SummaryError(f"{path}: not a run summary of schema {SCHEMA} (found {found!r})")
    missing = [field for field in FIELDS if field not in summary]
    if missing:
        raise SummaryError(f"{path}: summary lacks {', '.join(missing)}")
    if summary["sha256"] != checksum(summary):
        raise SummaryError(f"{path}: summary content does not match its sha256 (torn or edited)")
    if (name is not None and summary["name"] != name) or (seed is not None and summary["seed"] != seed):
        raise SummaryError(
            f"{path}: the summary of run {summary['name']!r} seed {summary['seed']} is filed as {name!r} seed {seed}"
        )
    return summary


def git_commit(path: Path) -> str:
    """The commit checked out where `path` lies, with "+dirty" when tracked files differ from it; "unknown"
    outside a git checkout (an installed wheel)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(path), *args], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class SummaryStore:
    """Summaries under `root`: <root>/<run name>/seed<k>.json. `commit`: the commit the runs train from;
    `fingerprint(config)`: the content hash of the dataset a run trains on."""

    root: Path
    commit: str
    fingerprint: Callable[[TrainConfig], str]

    def path(self, run: Run) -> Path:
        return Path(self.root) / run.name / f"seed{run.seed}.json"

    def key(self, run: Run, version: str) -> dict[str, Any]:
        return dict(
            run_key(run.config, run.finish_spec, version), commit=self.commit, dataset=self.fingerprint(run.config)
        )

    def finished(self, run: Run, version: str) -> Optional[dict[str, Any]]:
        """The run's summary when it is in the store under this key; None when absent or under another key."""
        path = self.path(run)
        if not path.is_file():
            return None
        summary = read_summary(path, run.name, run.seed)
        return summary if summary["key"] == self.key(run, version) else None

    def record(self, run: Run, version: str, files: dict[str, str], cost: dict[str, Any]) -> dict[str, Any]:
        """Write the summary of a finished run from its run folder's collected files (results.json, eval.jsonl,
        final_eval.json) and its cost."""
        if "results.json" not in files:
            raise SummaryError(f"{run.name} seed {run.seed}: no results.json to summarize")
        results = json.loads(files["results.json"])
        results.pop("config", None)  # the key holds it
        summary = dict(
            schema=SCHEMA,
            name=run.name,
            seed=run.seed,
            key=self.key(run, version),
            results=results,
            curve=[json.loads(line) for line in files.get("eval.jsonl", "").splitlines() if line.strip()],
            final=json.loads(files["final_eval.json"]) if "final_eval.json" in files else None,
            cost=cost,
        )
        summary["sha256"] = checksum(summary)
        path = self.path(run)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(summary, indent=1, sort_keys=True, allow_nan=False) + "\n")
        return summary


def read_store(root: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Every summary under `root`, checked, by (run name, seed). A file that is not a trustworthy summary
    stops the read (SummaryError naming it); so does a temporary file a killed writer left behind."""
    root = Path(root)
    if not root.is_dir():
        raise SummaryError(f"{root}: no summary store there")
    found = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        relative = path.relative_to(root)
        if path.name.startswith(".") and path.name.endswith(TMP_SUFFIX):  # a write a killed process left
            continue
        if path.suffix != ".json" or not path.stem.startswith("seed") or not path.stem[4:].isdigit():
            raise SummaryError(f"{path}: not a summary file (expected <run name>/seed<k>.json under {root})")
        name, seed = relative.parent.as_posix(), int(path.stem[4:])
        found[(name, seed)] = read_summary(path, name, seed)
    return found
