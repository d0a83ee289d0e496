"""docs/RESULTS.md: the numbers are generated into its marked regions, the words around them are written
by hand. A region is

    <!-- generated: NAME -->
    ...
    <!-- end generated: NAME -->

and `python -m experiments.results` rewrites what lies between the two markers, nothing else. A RESULTS.md without
the markers of a region it writes is an error (add them where the region belongs).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np

from experiments.results.comparisons import DISCUSSION_REGIONS, discussion
from experiments.results.grid import OMIGA_ALPHA, STEPS, train_command
from experiments.results.scores import SCORES, CellResult, Table
from inspo.config import REGIMES, TrainConfig
from inspo.stats import format_interval, iqm_interval, probability_of_improvement

# every region of RESULTS.md, in the order of one made from nothing (skeleton): `python -m experiments.results` writes them
# all but smax-protocol, which `python -m experiments.smax --results-md` writes
REGIONS = (
    "provenance",
    "grid",
    "headline",
    "aggregates",
    *DISCUSSION_REGIONS,
    "cells",
    "figures",
    "smax-protocol",
    "runs",
)
HEADLINE_METHODS = ["BC", "OMIGA", "CFCQL", "InSPO fused", "InSPO exact", "InSPO simultaneous"]
# the tasks of each env in the headline tables: (dataset, variant)
HEADLINE_TASKS = {
    "xor": [(d, v) for v in ("penalty", "plain") for d in "abcd"],
    "mne": [("balanced", ""), ("imbalanced", "")],
    "bridge": [("optimal", ""), ("mixed", "")],
}
MARKER = re.compile(r"<!-- generated: (?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- end generated: (?P=name) -->", re.S)


def fill_regions(text: str, regions: dict[str, str], where: str = "RESULTS.md") -> str:
    """`text` with the body of every region in `regions` replaced (regions not given keep their body)."""
    found = {match["name"] for match in MARKER.finditer(text)}
    missing = [name for name in regions if name not in found]
    if missing:
        raise ValueError(
            f"{where} has no generated region {missing[0]!r}: add the lines "
            f"'<!-- generated: {missing[0]} -->' and '<!-- end generated: {missing[0]} -->' where it belongs"
        )

    def replace(match: re.Match) -> str:
        name = match["name"]
        if name not in regions:
            return match[0]
        body = regions[name].strip("\n")  # blank lines around it: a table or list ends before the marker
        return (
            f"<!-- generated: {name} -->\n\n{body}\n\n<!-- end generated: {name} -->"
            if body
            else f"<!-- generated: {name} -->\n<!-- end generated: {name} -->"
        )

    return MARKER.sub(replace, text)


def skeleton() -> str:
    """A RESULTS.md of headings and empty regions, for a --docs folder with none (and no template)."""
    parts = ["# Results: InSPO against BC and OMIGA, and its ablations", ""]
    for name in REGIONS:
        parts += [f"## {name}", "", f"<!-- generated: {name} -->", f"<!-- end generated: {name} -->", ""]
    return "\n".join(parts)


def template_text(path: Path) -> str:
    """The RESULTS.md to fill: the one at `path`, else the repository's docs/RESULTS.md (its prose), else
    the skeleton."""
    for candidate in (path, Path("docs/RESULTS.md"), Path(__file__).resolve().parents[2] / "docs" / "RESULTS.md"):
        if candidate.is_file():
            return candidate.read_text()
    return skeleton()


def machine_description() -> str:
    import torch

    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} logical cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, torch {torch.__version__}; {ops_backend()}"
    )


def ops_backend() -> str:
    try:
        import inspo_ext

        compiled = getattr(inspo_ext, "HAS_COMPILED", None)
        if compiled is None:
            import importlib.util

            compiled = importlib.util.find_spec("inspo_ext._C") is not None
        return "inspo_ext compiled ops" if compiled else "inspo_ext reference ops (no compiled module)"
    except ImportError:
        return "inspo_ext not importable"


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def results_table(rows: list[CellResult]) -> list[str]:
    """Markdown table of cells (all of one env): task, method, scores mean ± std, the headline's IQM with
    its 95% bootstrap interval, seeds, time per run."""
    env = rows[0].cell.env
    headline_title = SCORES[env][0][1]
    headers = [
        "task",
        "method",
        *[f"{title}" for _, title in SCORES[env]],
        f"{headline_title} IQM [95% CI]",
        "seeds",
        "s / seed",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        values = [str(row.stats(key)) for key, _ in SCORES[env]]
        lines.append(
            f"| {row.cell.task} | {row.cell.method} | "
            + " | ".join(values)
            + f" | {format_interval(row.headline.iqm)} | {row.headline.n} | {row.seconds.mean:.1f} |"
        )
    return lines


def pivot(table: Table, env: str, datasets: list[tuple[str, str]], methods: list[str]) -> list[str]:
    """Methods as rows, (dataset, variant) as columns, headline mean ± std."""
    headers = ["method", *[f"{d} ({v})" if v else d for d, v in datasets]]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(str(table.stats(env, d, method, v)) for d, v in datasets) + " |")
    return lines


def score_matrix(table: Table, env: str, method: str) -> np.ndarray:
    """The headline scores of a method on the env's headline tasks that it ran, as (seeds, tasks): the seeds
    every such task has (rliable's stratified bootstrap resamples seeds within each task)."""
    cells = [table.get(env, d, method, v) for d, v in HEADLINE_TASKS[env]]
    cells = [c for c in cells if c is not None and c.runs]
    if not cells:
        return np.zeros((0, 0))
    seeds = sorted(set.intersection(*(set(c.runs) for c in cells)))
    key = SCORES[env][0][0]
    return np.array([[c.runs[seed]["scores"][key] for c in cells] for seed in seeds])


def aggregates(table: Table) -> list[str]:
    """Per env and method: IQM over the env's headline tasks and seeds with its 95% stratified-bootstrap
    interval, and the probability that InSPO fused beats the method on a task (rliable)."""
    lines = ["| env | tasks | method | IQM [95% CI] | P(InSPO fused > method) [95% CI] |", "|---|---|---|---|---|"]
    for env in HEADLINE_TASKS:
        fused = score_matrix(table, env, "InSPO fused")
        for method in HEADLINE_METHODS:
            scores = score_matrix(table, env, method)
            if scores.size == 0:
                continue
            improvement = "—"
            if method != "InSPO fused" and fused.shape[1:] == scores.shape[1:] and fused.size:
                improvement = format_interval(probability_of_improvement(fused, scores), digits=2)
            lines.append(
                f"| {env} | {scores.shape[1]} | {method} | {format_interval(iqm_interval(scores))} | {improvement} |"
            )
    return lines


def grid_region(results: list[CellResult]) -> list[str]:
    lines = [
        f"Iterations per run: XOR {STEPS['xor'][0]}, M-NE {STEPS['mne'][0]}, Bridge {STEPS['bridge'][0]} "
        f"(--quick: {STEPS['xor'][1]}, {STEPS['mne'][1]}, {STEPS['bridge'][1]}); the full-update regime its own "
        f"{REGIMES['full-update'].get('steps', 'preset')}.",
        "",
    ]
    for group in dict.fromkeys(r.cell.group for r in results):
        tasks: dict[str, list[str]] = {}
        for r in results:
            if r.cell.group == group and r.runs:
                tasks.setdefault(r.cell.task, []).append(r.cell.method)
        lines += [f"* {group}: " + "; ".join(f"{task}: {', '.join(methods)}" for task, methods in tasks.items())]
    return lines


def runs_region(results: list[CellResult]) -> list[str]:
    lines = [f"* OMIGA on {env}: omiga.alpha = {alpha:g}: {reason}." for env, (alpha, reason) in OMIGA_ALPHA.items()]
    lines.append(f"* update regimes (inspo.config.REGIMES, on top of the env preset): {REGIMES}.")
    lines.append("* every run: eval_every = log_every = steps / 10 (learning curves), checkpoint_every = steps / 2.")
    lines.append("")
    for result in results:
        if not result.runs:
            continue
        config = TrainConfig.from_dict(result.runs[min(result.runs)]["config"])
        lines.append(
            f"* `{result.cell.key}` (seeds {', '.join(map(str, sorted(result.runs)))}): "
            f"`{train_command(result.cell, config)}`"
        )
    return lines


def cells_region(results: list[CellResult]) -> list[str]:
    lines: list[str] = []
    for group in dict.fromkeys(r.cell.group for r in results):
        for env in dict.fromkeys(r.cell.env for r in results if r.cell.group == group):
            rows = [r for r in results if r.cell.group == group and r.cell.env == env and r.runs]
            if rows:
                lines += [f"### {group}: {env}", ""] + results_table(rows) + [""]
    return lines


def write_results_md(
    path: Path,
    results: list[CellResult],
    *,
    command: str,
    wall_seconds: Optional[float],
    quick: bool,
    seeds: list[int],
    figures: list[str],
    notes: list[str],
) -> None:
    """Fill the generated regions of `path` (made from the template when it does not exist yet)."""
    table = Table(results)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    run_seconds = sum(r.batch_seconds for r in results)
    provenance = [
        f"Generated by `{command}` on {now} (git {git_commit()}), "
        f"{'quick (CI-sized) grid' if quick else 'full grid'}, seeds {', '.join(map(str, seeds))}, "
        + (
            f"wall time of this invocation {wall_seconds / 60:.1f} min."
            if wall_seconds is not None
            else "tables written from the finished runs (`--report-only`)."
        ),
        f"Machine: {machine_description()}.",
        "",
        *[f"* {note}" for note in notes],
        f"* Sum of the training times of all runs: {run_seconds / 60:.1f} min (one CPU each; a cell's seeds train "
        "batched in one process, whose time the *s / seed* columns divide among them).",
    ]
    headline: list[str] = []
    for env, tasks in HEADLINE_TASKS.items():
        headline += pivot(table, env, tasks, HEADLINE_METHODS) + [""]
    regions = {
        "provenance": provenance,
        "grid": grid_region(results),
        "headline": headline,
        "aggregates": aggregates(table),
        **discussion(table),
        "cells": cells_region(results),
        "figures": [f"![{Path(f).stem}]({f})" for f in figures],
        "runs": runs_region(results),
    }
    text = fill_regions(
        template_text(path), {name: "\n".join(lines) for name, lines in regions.items()}, where=str(path)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
