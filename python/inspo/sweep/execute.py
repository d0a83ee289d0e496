"""What a sweep task does on the node that runs it: reuse a finished run, resume a matching checkpoint,
train the rest of its seed group, and hand back the run folders' small files.

No Ray here: a task is a plain function of plain data, so it runs (and is tested) the same in a Ray
worker and in this process.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

from inspo.atomic import atomic_write_text
from inspo.config import TrainConfig

KEY_FILE = "sweep_key.json"  # written last: a run folder holding it (and a matching key) is finished
# the files a task sends back, so that the driver's run folders are complete when the run trained on
# another machine (checkpoints stay where they were written)
COLLECTED_FILES = (
    "results.json",
    "eval.jsonl",
    "eval.csv",
    "metrics.jsonl",
    "metrics.csv",
    "final_eval.json",
    KEY_FILE,
)
# modules that write reports or drive runs: editing them changes no result, so the code version skips them
NOT_TRAINING_CODE = ("sweep/", "bench/", "cli/", "__main__.py")


def code_version() -> str:
    """A hash of the Python sources that training runs (inspo without its reporting modules, and
    inspo_ext) and of the native sources its compiled kernels were built from: a finished run is reused
    only under the code that made it."""
    import inspo
    import inspo_ext
    from inspo_ext import _backend

    python = source_hash(
        [("inspo", Path(inspo.__file__).parent, NOT_TRAINING_CODE), ("inspo_ext", Path(inspo_ext.__file__).parent, ())]
    )
    native = _backend.SOURCE_HASH or "no compiled module"  # a constant of _C: reading it never initializes CUDA
    return hashlib.sha256(f"{python}\0{native}".encode()).hexdigest()[:16]


def code_meaning(source: bytes) -> bytes:
    """What a module does, without its layout: the syntax tree less docstrings. Reformatting, comments and
    docstrings leave it unchanged, so a style pass does not invalidate every finished run."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body:
            first = body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree).encode()


def source_hash(packages: list[tuple[str, Path, tuple[str, ...]]]) -> str:
    """sha256 (16 hex digits) of what the *.py files under each (name, root, skipped path prefixes) do."""
    digest = hashlib.sha256()
    for name, root, skipped in packages:
        for path in sorted(root.rglob("*.py")):
            relative = path.relative_to(root).as_posix()
            if relative.startswith(skipped) or "__pycache__" in relative:
                continue
            digest.update(f"{name}/{relative}\0".encode())
            digest.update(code_meaning(path.read_bytes()))
    return digest.hexdigest()[:16]


def machine() -> dict[str, Any]:
    """The CPU model and core count of this machine (summaries say what trained them)."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return dict(cpu=model, cpus=os.cpu_count())


def run_key(config: TrainConfig, finish: Optional[list], version: str) -> dict[str, Any]:
    """What a finished run is reused by: its full resolved config, its finishing step ([function, kwargs]
    or None) and the code version."""
    return json.loads(json.dumps(dict(config=config.to_dict(), finish=finish, code_version=version)))


def finished_result(out_dir: Path, key: dict[str, Any]) -> Optional[dict[str, Any]]:
    """The results of the run in out_dir when it finished under `key`, else None."""
    try:
        stored = json.loads((out_dir / KEY_FILE).read_text())
        results = json.loads((out_dir / "results.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return results if stored == key else None


def resumable(config: TrainConfig, out_dir: Path) -> bool:
    """Whether out_dir holds an unfinished checkpoint of this very config; a stale, foreign or half-written
    run folder is removed (a fresh run starts clean: the logs append)."""
    from inspo.runfolder import CheckpointError, RunFolderError, in_use_message, load_checkpoint, run_folder_holder

    if out_dir.is_dir() and run_folder_holder(out_dir) is not None:  # never delete a live run's folder
        raise RunFolderError(in_use_message(out_dir))
    checkpoint = out_dir / "checkpoint.pt"
    resume = False
    if checkpoint.is_file():
        try:
            payload = load_checkpoint(checkpoint)
            resume = payload["config"] == config.to_dict() and payload["step"] < config.steps
        except CheckpointError:  # a checkpoint cut by a killed process: start over
            resume = False
    if not resume and out_dir.exists():
        shutil.rmtree(out_dir)
    return resume


def run_seed_group(configs: list[TrainConfig], out_dirs: list[Path]) -> list[dict[str, Any]]:
    """Train runs whose configs differ only in seed, batched in one process (`inspo.train_seeds`): the one
    place a sweep calls the training loop. The fresh runs train together; a run with a checkpoint to continue
    resumes on its own (its step differs from the others')."""
    from inspo.loop import train_seeds

    resume = [resumable(config, out_dir) for config, out_dir in zip(configs, out_dirs)]
    results: list[Optional[dict[str, Any]]] = [None] * len(configs)
    fresh = [i for i, flag in enumerate(resume) if not flag]
    if fresh:
        trained = train_seeds([configs[i] for i in fresh], [out_dirs[i] for i in fresh], progress=False)
        for i, result in zip(fresh, trained):
            results[i] = dict(result, resumed=False)
    for i in (i for i, flag in enumerate(resume) if flag):
        results[i] = dict(train_seeds([configs[i]], [out_dirs[i]], resume=True, progress=False)[0], resumed=True)
    return results


def call_finish(finish: list, out_dir: Path) -> None:
    """The step after training that makes part of a run's results ("module:function", kwargs), e.g. the SMAX
    final evaluation: function(out_dir, **kwargs)."""
    module_name, function = finish[0].split(":")
    getattr(importlib.import_module(module_name), function)(out_dir, **finish[1])


def sweep_task(
    runs: list[dict[str, Any]], version: str, threads: int, folders_last: Sequence[str] = ()
) -> list[dict[str, Any]]:
    """Run one seed group. `runs`: [{"config": dict, "out_dir": str, "finish": [fn, kwargs] | None}];
    `folders_last`: sys.path entries to move behind the installed packages before anything imports them.
    Returns per run {"results", "reused", "files": {name: text}}."""
    last = {os.path.realpath(folder) for folder in folders_last}
    sys.path[:] = sorted(sys.path, key=lambda entry: os.path.realpath(entry or os.curdir) in last)  # (stable)
    import torch

    torch.set_num_threads(max(1, threads))
    configs = [TrainConfig.from_dict(run["config"]) for run in runs]
    out_dirs = [Path(run["out_dir"]) for run in runs]
    finishes = [run.get("finish") for run in runs]
    keys = [run_key(config, finish, version) for config, finish in zip(configs, finishes)]
    found = [finished_result(out_dir, key) for out_dir, key in zip(out_dirs, keys)]
    pending = [i for i, result in enumerate(found) if result is None]
    cpu, wall = time.process_time(), time.perf_counter()
    trained = run_seed_group([configs[i] for i in pending], [out_dirs[i] for i in pending])
    resumed = {i: bool(result.get("resumed")) for i, result in zip(pending, trained)}
    for i in pending:
        if finishes[i] is not None:
            call_finish(finishes[i], out_dirs[i])
        atomic_write_text(out_dirs[i] / KEY_FILE, json.dumps(keys[i], indent=1) + "\n")
        found[i] = json.loads((out_dirs[i] / "results.json").read_text())
    # the process's CPU and wall time, shared by the runs it trained (their seeds trained batched)
    cost = dict(
        cpu_seconds=round((time.process_time() - cpu) / max(1, len(pending)), 1),
        wall_seconds=round((time.perf_counter() - wall) / max(1, len(pending)), 1),
        runs_in_process=len(pending),
        threads=threads,
        **machine(),
    )
    return [
        dict(
            results=found[i],
            reused=i not in resumed,
            resumed=resumed.get(i, False),
            files=collect_files(out_dirs[i]),
            cost=cost if i in resumed else None,
        )
        for i in range(len(runs))
    ]


def collect_files(out_dir: Path) -> dict[str, str]:
    return {name: (out_dir / name).read_text() for name in COLLECTED_FILES if (out_dir / name).is_file()}


def store_files(out_dir: Path, files: dict[str, str]) -> None:
    """Write a run's collected files into the driver's run folder (nothing to do where it trained here)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in COLLECTED_FILES:  # the key file last: only a complete folder counts as finished
        if name in files:
            path = out_dir / name
            if not path.is_file() or path.read_text() != files[name]:
                atomic_write_text(path, files[name])
