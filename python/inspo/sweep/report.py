"""What every sweep writes beside its run folders: marl-eval's JSON of all runs, and a summary table
(mean ± std and IQM with its 95% bootstrap interval over seeds, per run name and score)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional

import numpy as np

from inspo.config import TrainConfig
from inspo.stats import format_interval, iqm_interval


@dataclass(frozen=True)
class Entry:
    """One finished run as marl-eval files it: env -> task -> algorithm -> run_<seed>."""

    config: TrainConfig
    task: str
    algorithm: str
    run_dir: Path
    results: dict[str, Any]

    @property
    def env(self) -> str:
        return self.config.env

    @property
    def seed(self) -> int:
        return self.config.seed


def marl_eval_json(entries: Iterable[Entry]) -> dict:
    """marl-eval's raw-data layout: step_k holds the k-th evaluation during training (step_count and each
    score as a one-element list), absolute_metrics the final scores of the run."""
    data: dict = {}
    for entry in entries:
        run: dict[str, Any] = {}
        eval_log = entry.run_dir / "eval.jsonl"
        rows = (
            [json.loads(line) for line in eval_log.read_text().splitlines() if line.strip()]
            if eval_log.is_file()
            else []
        )
        for k, row in enumerate(rows):
            run[f"step_{k}"] = {
                "step_count": row["step"],
                **{key: [value] for key, value in row.items() if key != "step" and _number(value)},
            }
        run["absolute_metrics"] = {key: [value] for key, value in entry.results["scores"].items() if _number(value)}
        data.setdefault(entry.env, {}).setdefault(entry.task, {}).setdefault(entry.algorithm, {})[
            f"run_{entry.seed}"
        ] = run
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def score_columns(entry: Entry) -> list[tuple[str, str]]:
    """(key, title) of the scores the run's env reports in its tables (Env.score_columns)."""
    from inspo.envs import make_env

    return [(key, title) for key, title in make_env(entry.config).score_columns if key in entry.results["scores"]]


def summary_markdown(entries: list[Entry]) -> str:
    """Per run name: seeds, then each score's mean ± std and IQM [95% CI] over the seeds."""
    names: dict[tuple[str, str, str], list[Entry]] = {}
    for entry in entries:
        names.setdefault((entry.env, entry.task, entry.algorithm), []).append(entry)
    lines = []
    for env in dict.fromkeys(entry.env for entry in entries):
        rows = {key: group for key, group in names.items() if key[0] == env}
        columns = score_columns(next(iter(rows.values()))[0])
        lines += [
            f"### {env}",
            "",
            "| task | run | seeds | "
            + " | ".join(f"{title} mean ± std | {title} IQM [95% CI]" for _, title in columns)
            + " |",
            "|---|---|---|" + "---|---|" * len(columns),
        ]
        for (_, task, algorithm), group in rows.items():
            cells = []
            for key, _ in columns:
                values = [entry.results["scores"][key] for entry in group if key in entry.results["scores"]]
                cells += [mean_std(values), format_interval(iqm_interval(values))]
            lines.append(f"| {task} | {algorithm} | {len(group)} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def mean_std(values: list[float], digits: int = 3) -> str:
    """Mean ± sample std over seeds (no ± from one seed)."""
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def write_outputs(out: Path, entries: list[Entry], title: Optional[str] = None) -> tuple[Path, Path]:
    """<out>/marl_eval.json and <out>/summary.md."""
    out.mkdir(parents=True, exist_ok=True)
    marl_eval = out / "marl_eval.json"
    marl_eval.write_text(json.dumps(marl_eval_json(entries), indent=1) + "\n")
    summary = out / "summary.md"
    summary.write_text((f"# {title}\n\n" if title else "") + summary_markdown(entries))
    return marl_eval, summary
