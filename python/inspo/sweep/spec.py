"""A sweep: a list of runs (configs x seeds), built in Python or read from a JSON / YAML spec file.

    name: xor-eta                # optional (default: the file name)
    out: runs/sweeps/xor-eta     # run folders <out>/<run name>/seed<k> (default runs/sweeps/<name>)
    seeds: 3                     # 0..2, or a list [0, 4, 7]
    set: {steps: 300}            # TrainConfig fields of every run
    runs:
      - {name: fused-eta0.1, env: xor, dataset: c, set: {inspo.mode: fused, inspo.eta: 0.1}}
      - {name: bc, env: xor, dataset: c, algo: bc}

A run entry takes env (required), dataset, algo (default inspo), regime (default one-step) and set
(any TrainConfig field); its config is inspo.config.make_config(env, regime, **fields).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from inspo.config import TrainConfig, make_config


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: `name` is its row (the same for every seed), out_dir its folder."""

    name: str
    config: TrainConfig
    out_dir: Path
    # a step after training whose output is part of the results: ("module:function", kwargs), called as
    # function(out_dir, **kwargs) on the node that trained the run
    finish: Optional[tuple[str, tuple[tuple[str, Any], ...]]] = None

    @property
    def seed(self) -> int:
        return self.config.seed

    @property
    def group(self) -> str:
        """Runs whose configs differ only in seed share a group (one task: their seeds train in one process)."""
        values = self.config.to_dict()
        values.pop("seed")
        return json.dumps([self.name, values, self.finish_spec], sort_keys=True, default=str)

    @property
    def finish_spec(self) -> Optional[list]:
        return [self.finish[0], dict(self.finish[1])] if self.finish else None


def seed_groups(runs: list[Run], seeds_per_process: Optional[int] = None) -> list[list[Run]]:
    """The runs grouped by `Run.group`, in the order of their first run; with `seeds_per_process`, each
    group cut into pieces of at most that many seeds (each piece trains in a process of its own)."""
    if seeds_per_process is not None and seeds_per_process < 1:
        raise ValueError(f"--seeds-per-process must be >= 1, got {seeds_per_process}")
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run.group, []).append(run)
    if seeds_per_process is None:
        return list(groups.values())
    return [
        group[i : i + seeds_per_process] for group in groups.values() for i in range(0, len(group), seeds_per_process)
    ]


SPEC_FIELDS = {"name", "out", "seeds", "set", "runs"}
RUN_FIELDS = {"name", "env", "dataset", "algo", "regime", "set"}


def load_spec(path: str | Path) -> tuple[str, Path, list[Run]]:
    """(name, out folder, runs) of a spec file; a mistake is a ValueError naming the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep spec at {path}")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError as error:
            raise ValueError(
                f"{path}: YAML specs need PyYAML (pip install pyyaml), or write the spec as JSON"
            ) from error
        try:
            spec = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ValueError(f"{path}: not valid YAML ({error})") from error
    else:
        try:
            spec = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON ({error})") from error
    return parse_spec(spec, where=str(path), default_name=path.stem)


def parse_spec(spec: Any, where: str = "spec", default_name: str = "sweep") -> tuple[str, Path, list[Run]]:
    if not isinstance(spec, dict):
        raise ValueError(f"{where}: a spec is a mapping with a 'runs' list")
    unknown = set(spec) - SPEC_FIELDS
    if unknown:
        raise ValueError(f"{where}: unknown field {sorted(unknown)[0]!r}; fields: {', '.join(sorted(SPEC_FIELDS))}")
    name = str(spec.get("name", default_name))
    out = Path(spec.get("out", f"runs/sweeps/{name}"))
    seeds = spec.get("seeds", 1)
    if isinstance(seeds, int) and not isinstance(seeds, bool) and seeds >= 1:
        seeds = list(range(seeds))
    elif not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        raise ValueError(f"{where}: seeds must be a count >= 1 or a non-empty list of integers, got {seeds!r}")
    shared = spec.get("set", {})
    if not isinstance(shared, dict):
        raise ValueError(f"{where}: set must be a mapping of TrainConfig fields")
    entries = spec.get("runs")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{where}: runs must be a non-empty list")
    runs: list[Run] = []
    names: set[str] = set()
    for index, entry in enumerate(entries):
        at = f"{where}: runs[{index}]"
        if not isinstance(entry, dict) or "env" not in entry:
            raise ValueError(f"{at}: a run is a mapping with at least 'env'")
        unknown = set(entry) - RUN_FIELDS
        if unknown:
            raise ValueError(f"{at}: unknown field {sorted(unknown)[0]!r}; fields: {', '.join(sorted(RUN_FIELDS))}")
        fields = {**shared, **(entry.get("set") or {})}
        for name_ in ("dataset", "algo"):
            if name_ in entry:
                fields[name_] = entry[name_]
        fields.setdefault("algo", "inspo")
        run_name = str(entry.get("name") or f"{entry['env']}-{fields.get('dataset', 'default')}-{fields['algo']}")
        if run_name in names:
            raise ValueError(f"{at}: the name {run_name!r} is used twice (give each run its own name)")
        names.add(run_name)
        for seed in seeds:
            try:
                config = make_config(
                    str(entry["env"]), regime=str(entry.get("regime", "one-step")), **{**fields, "seed": seed}
                )
            except (TypeError, ValueError) as error:
                raise ValueError(f"{at}: {error}") from error
            runs.append(Run(run_name, config, out / safe_name(run_name) / f"seed{seed}"))
    return name, out, runs


def safe_name(text: str) -> str:
    """A run name as a folder name."""
    return "".join(c if c.isalnum() or c in "-_.=" else "_" for c in text)
