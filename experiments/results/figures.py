"""The figures of docs/RESULTS.md: learning curves (mean ± std over seeds) and final joint-action heatmaps."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from experiments.results.scores import SCORES, CellResult


def read_curve(run_dir: Path, key: str) -> tuple[np.ndarray, np.ndarray]:
    path = run_dir / "eval.jsonl"
    if not path.is_file():
        return np.zeros(0), np.zeros(0)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return np.array([r["step"] for r in rows]), np.array([r.get(key, np.nan) for r in rows])


def plot_curves(
    results: list[CellResult],
    out_root: Path,
    figure_dir: Path,
    name: str,
    env: str,
    groups: tuple[str, ...],
    variant: str = "",
    score: int = 0,
) -> Optional[str]:
    """Learning curves (mean ± std over seeds of the env's score SCORES[env][score]), one panel per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r
        for r in results
        if r.cell.env == env and r.cell.group in groups and r.runs and (not variant or r.cell.variant == variant)
    ]
    datasets = list(dict.fromkeys(r.cell.dataset for r in rows))
    if not datasets:
        return None
    key, title = SCORES[env][score]
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for row in (r for r in rows if r.cell.dataset == dataset):
            curves = [read_curve(out_root / row.cell.key / f"seed{seed}", key) for seed in sorted(row.runs)]
            if row.cell.algo == "bc":  # one point: a horizontal line at the behaviour value
                ax.axhline(row.stats(key).mean, color="grey", linestyle="--", label="BC")
                continue
            length = min(len(c[0]) for c in curves)
            if length == 0:
                continue
            steps = curves[0][0][:length]
            values = np.stack([c[1][:length] for c in curves])
            mean, std = values.mean(0), values.std(0)
            (line,) = ax.plot(steps, mean, label=row.cell.method)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.15, color=line.get_color())
        ax.set_title(f"{env} {dataset}" + (f" ({variant})" if variant else ""))
        ax.set_xlabel("iteration")
        ax.set_ylabel(title)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    figure_dir.mkdir(parents=True, exist_ok=True)
    path = figure_dir / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def plot_heatmaps(
    results: list[CellResult],
    figure_dir: Path,
    name: str,
    env: str,
    variant: str = "",
    groups: tuple[str, ...] = ("main",),
) -> Optional[str]:
    """Final joint-action distribution pi^1 x pi^2 (mean over seeds): datasets as rows, methods as columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [
        r
        for r in results
        if r.cell.env == env and r.cell.group in groups and r.runs and (not variant or r.cell.variant == variant)
    ]
    datasets = list(dict.fromkeys(r.cell.dataset for r in rows))
    methods = list(dict.fromkeys(r.cell.method for r in rows))
    if not rows:
        return None
    n_actions = 2 if env == "xor" else 3
    letters = "ABC"[:n_actions]
    fig, axes = plt.subplots(
        len(datasets), len(methods), figsize=(1.9 * len(methods), 1.9 * len(datasets)), squeeze=False
    )
    for i, dataset in enumerate(datasets):
        for j, method in enumerate(methods):
            ax = axes[i][j]
            ax.set_xticks(range(n_actions), letters)
            ax.set_yticks(range(n_actions), letters)
            if i == 0:
                ax.set_title(method.replace("InSPO ", "InSPO\n"), fontsize=8)
            found = next((r for r in rows if r.cell.dataset == dataset and r.cell.method == method), None)
            if found is None:
                ax.axis("off")  # (the title stays)
                continue
            joint = np.mean(
                [
                    np.outer([run["scores"][f"p1_{a}"] for a in letters], [run["scores"][f"p2_{a}"] for a in letters])
                    for run in found.runs.values()
                ],
                axis=0,
            )
            ax.imshow(joint, vmin=0, vmax=1, cmap="viridis")
            for (r, c), value in np.ndenumerate(joint):
                ax.text(
                    c,
                    r,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if value > 0.5 else "white",
                )
            if j == 0:
                ax.set_ylabel(f"{dataset}\nagent 1", fontsize=8)
    fig.suptitle(
        f"{env}{f' ({variant})' if variant else ''}: final joint-action distribution (rows agent 1, columns agent 2)",
        fontsize=9,
    )
    fig.tight_layout()
    figure_dir.mkdir(parents=True, exist_ok=True)
    path = figure_dir / f"{name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def make_figures(results: list[CellResult], out_root: Path, figure_dir: Path) -> list[str]:
    made = [
        plot_curves(results, out_root, figure_dir, "curves_xor_penalty", "xor", ("main",), "penalty"),
        plot_curves(results, out_root, figure_dir, "curves_xor_plain", "xor", ("main",), "plain"),
        plot_curves(results, out_root, figure_dir, "curves_xor_full_update", "xor", ("full-update",), "penalty"),
        plot_curves(results, out_root, figure_dir, "curves_mne", "mne", ("main",)),
        plot_curves(results, out_root, figure_dir, "curves_mne_entropy", "mne", ("entropy", "main")),
        plot_curves(results, out_root, figure_dir, "curves_bridge", "bridge", ("main",)),
        plot_curves(results, out_root, figure_dir, "curves_bridge_stochastic", "bridge", ("main",), score=2),
        plot_heatmaps(results, figure_dir, "joint_xor_penalty", "xor", "penalty"),
        plot_heatmaps(results, figure_dir, "joint_xor_plain", "xor", "plain"),
        plot_heatmaps(results, figure_dir, "joint_xor_full_update", "xor", "penalty", ("full-update",)),
        plot_heatmaps(results, figure_dir, "joint_mne", "mne", groups=("main", "entropy")),
    ]
    return [name for name in made if name]
