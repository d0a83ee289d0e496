"""The grid of docs/RESULTS.md: every algorithm x environment x dataset (a cell), its run configs, and the
sweep of its runs (one per cell and seed)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from inspo.config import TrainConfig, make_config
from inspo.sweep.spec import Run

# training iterations per run (full, quick); cut from the env presets (XOR 1500, M-NE 3000, Bridge 3000)
# after measuring where the learning curves flatten, so that the full grid fits in an hour on 2 cores
STEPS = {"xor": (600, 200), "mne": (1500, 400), "bridge": (2000, 400)}
# OMIGA's temperature per env, with its reason (printed in RESULTS.md); the other settings are the presets
OMIGA_ALPHA: dict[str, tuple[float, str]] = {
    "xor": (
        0.1,
        "OMIGA's alpha = 10 is tuned for SMAC's returns of ~20; XOR pays ~1, so alpha = 0.1, InSPO's own "
        "temperature scale (the OMIGA alpha sweep shows what alpha = 1 and 10 do)",
    ),
    "mne": (1.0, "M-NE pays ~10: alpha = 1, the same ratio to the reward scale as on XOR"),
    "bridge": (0.1, "Bridge pays about -0.1 to -0.5 per step (return ~-1.3): alpha = 0.1"),
}
# The update regimes (docs/ALGORITHM.md#update-regimes) are inspo.config.REGIMES, applied by make_config(regime=...):
# "one-step" (the presets) and "full-update" (each agent fitted to its resampled target within the
# iteration; the regime sets its own, shorter, number of iterations). Quick runs of the full-update
# regime are cut to this fraction of its iterations.
QUICK_FULL_UPDATE_FRACTION = 0.4
SEEDS = 5
QUICK_SEEDS = 2


@dataclass(frozen=True)
class Cell:
    """One row of the results: a method on one env and dataset (run for every seed)."""

    group: str  # the table it belongs to
    env: str
    dataset: str
    method: str  # label in the tables
    algo: str  # trainer in inspo.algorithms
    # TrainConfig fields and SECTION.FIELD options beyond the env preset and the grid settings
    overrides: tuple[tuple[str, Any], ...] = ()
    quick: bool = False  # also part of the --quick grid
    regime: str = "one-step"  # update regime (REGIMES)

    @property
    def variant(self) -> str:
        return dict(self.overrides).get("xor.variant", "penalty") if self.env == "xor" else ""

    @property
    def task(self) -> str:
        return f"{self.env} {self.dataset}" + (f" ({self.variant})" if self.variant else "")

    @property
    def key(self) -> str:
        """A file-name-safe unique name: group-env-variant-dataset-method."""
        parts = [self.group, self.env, self.variant, self.dataset, self.method]
        text = "-".join(p for p in parts if p).lower()
        for old, new in (
            ("β", "beta"),
            ("η", "eta"),
            ("α", "alpha"),
            ("→", "to"),
            (" ", "_"),
            ("=", ""),
            ("(", ""),
            (")", ""),
            ("/", "_"),
        ):
            text = text.replace(old, new)
        return text


def inspo_cell(
    group: str,
    env: str,
    dataset: str,
    mode: str,
    label: str = "",
    quick: bool = False,
    regime: str = "one-step",
    **overrides: Any,
) -> Cell:
    method = f"InSPO {mode}" + (f" {label}" if label else "") + (f" ({regime})" if regime != "one-step" else "")
    overrides = {"inspo.mode": mode, **overrides}
    return Cell(group, env, dataset, method, "inspo", tuple(sorted(overrides.items())), quick, regime)


def build_grid() -> list[Cell]:
    """Every cell of the full grid; cells with quick=True form the --quick grid."""
    cells: list[Cell] = []
    modes = ("fused", "exact", "simultaneous")

    def baselines(group: str, env: str, dataset: str, quick: bool, **overrides: Any) -> None:
        items = tuple(sorted(overrides.items()))
        cells.append(Cell(group, env, dataset, "BC", "bc", items, quick))
        cells.append(Cell(group, env, dataset, "OMIGA", "omiga", items, quick))
        cells.append(Cell(group, env, dataset, "CFCQL", "cfcql", items, quick))

    # XOR (a)-(d), both payoff variants: the baselines and the three modes in both update regimes
    for variant in ("penalty", "plain"):
        for dataset in "abcd":
            quick = dataset in "cd" and variant == "penalty"
            baselines("main", "xor", dataset, quick, **{"xor.variant": variant})
            for mode in modes:
                cells.append(inspo_cell("main", "xor", dataset, mode, quick=quick, **{"xor.variant": variant}))
                if dataset in "cd":  # (a) and (b) leave nothing to coordinate: one regime suffices there
                    cells.append(
                        inspo_cell(
                            "full-update",
                            "xor",
                            dataset,
                            mode,
                            quick=quick and dataset == "c",
                            regime="full-update",
                            **{"xor.variant": variant},
                        )
                    )
    # M-NE: the baselines and modes on both datasets; the entropy term (beta sweep) on imbalanced
    for dataset in ("balanced", "imbalanced"):
        baselines("main", "mne", dataset, dataset == "imbalanced")
        for mode in modes:
            cells.append(inspo_cell("main", "mne", dataset, mode, quick=dataset == "imbalanced" and mode == "fused"))
        cells.append(
            inspo_cell(
                "entropy",
                "mne",
                dataset,
                "fused",
                "β=0",
                quick=dataset == "imbalanced",
                **{"inspo.beta": 0.0, "inspo.beta_end": None},
            )
        )
    for beta in (0.1, 1.0, 3.0):
        cells.append(
            inspo_cell(
                "entropy",
                "mne",
                "imbalanced",
                "fused",
                f"β={beta:g} const",
                **{"inspo.beta": beta, "inspo.beta_end": None},
            )
        )
    cells.append(
        inspo_cell("entropy", "mne", "imbalanced", "fused", "β 3→0", **{"inspo.beta": 3.0, "inspo.beta_end": 0.0})
    )
    # (the preset, annealed 10 -> 0 over 70% of training, is the main "InSPO fused" cell)
    # Bridge: the baselines and modes on both datasets
    for dataset in ("optimal", "mixed"):
        baselines("main", "bridge", dataset, dataset == "optimal")
        for mode in modes:
            cells.append(inspo_cell("main", "bridge", dataset, mode, quick=dataset == "optimal" and mode == "fused"))
    # ablations of reconstructed choices, on the tasks where they can matter
    for env, dataset in (("xor", "c"), ("xor", "d"), ("mne", "imbalanced"), ("bridge", "mixed")):
        cells.append(
            inspo_cell("ablations", env, dataset, "fused", "self-normalized", **{"inspo.weighting": "self_normalized"})
        )
    cells.append(inspo_cell("ablations", "xor", "d", "fused", "β=0", **{"inspo.beta": 0.0}))
    cells.append(inspo_cell("ablations", "bridge", "mixed", "fused", "β=0", **{"inspo.beta": 0.0}))
    for eta in (0.1, 0.5, 1.0):  # the one-step default is 0.3
        cells.append(inspo_cell("ablations", "xor", "c", "fused", f"η={eta:g}", **{"inspo.eta": eta}))
    # Bridge optimal: the lookahead toward pi* ~ mu is what keeps fused mode's coordination modes mixed
    # (docs/ALGORITHM.md#measured-departures); eta = 0 takes the predecessors at their current policies
    for eta in (0.0, 0.1):
        cells.append(inspo_cell("ablations", "bridge", "optimal", "fused", f"η={eta:g}", **{"inspo.eta": eta}))
    # the full-update regime takes a predecessor as fully updated (eta = 1); the one-step default beside it
    cells.append(inspo_cell("ablations", "xor", "c", "fused", "η=0.3", regime="full-update", **{"inspo.eta": 0.3}))
    for env, dataset, alphas in (("xor", "c", (1.0, 10.0)), ("mne", "imbalanced", (0.1, 10.0))):
        for alpha in alphas:
            cells.append(Cell("ablations", env, dataset, f"OMIGA α={alpha:g}", "omiga", (("omiga.alpha", alpha),)))
    keys = [cell.key for cell in cells]
    assert len(set(keys)) == len(keys), "cell keys must be unique"
    return cells


def cell_config(cell: Cell, seed: int, quick: bool, steps: Optional[int], extra: dict[str, Any]) -> TrainConfig:
    """The TrainConfig of one run: env preset and update regime (make_config), the grid's number of
    iterations (the critic warm-up scaled with it), OMIGA's temperature, the cell, then --set."""
    base = make_config(cell.env, regime=cell.regime, dataset=cell.dataset)
    if steps is None:
        if cell.regime == "one-step":
            steps = STEPS[cell.env][1 if quick else 0]
        else:  # the regime's own length
            steps = max(2, round(base.steps * (QUICK_FULL_UPDATE_FRACTION if quick else 1.0)))
    values: dict[str, Any] = {"omiga.alpha": OMIGA_ALPHA[cell.env][0]} if cell.algo == "omiga" else {}
    values.update(
        steps=steps,
        seed=seed,
        algo=cell.algo,
        dataset=cell.dataset,
        eval_every=max(1, steps // 10),
        log_every=max(1, steps // 10),
        checkpoint_every=max(1, steps // 2),
    )
    if cell.algo == "inspo":  # the preset's critic warm-up, the same share of the run
        values["inspo.critic_warmup_steps"] = base.inspo.critic_warmup_steps * steps // base.steps
    values.update(dict(cell.overrides))
    values.update(extra)
    return make_config(cell.env, regime=cell.regime, **values)


def train_command(cell: Cell, config: TrainConfig) -> str:
    """The `inspo train` command line of a run (seed as given in the config)."""
    preset = make_config(cell.env, regime=config.regime, dataset=cell.dataset, algo=cell.algo).to_overrides()
    words = ["inspo", "train", "--env", cell.env, "--dataset", cell.dataset, "--algo", cell.algo]
    if cell.algo == "inspo":
        words += ["--mode", config.inspo.mode]
    if config.regime != "one-step":
        words += ["--regime", config.regime]
    words += ["--seed", str(config.seed), "--steps", str(config.steps)]
    for name, value in config.to_overrides().items():
        if name in ("env", "dataset", "algo", "inspo.mode", "regime", "seed", "steps") or value == preset[name]:
            continue
        text = ",".join(str(v) for v in value) if isinstance(value, (tuple, list)) else str(value)
        words += ["--set", f"{name}={text}"]
    return shlex.join(words)


def grid_runs(
    cells: list[Cell], seeds: list[int], quick: bool, steps: Optional[int], extra: dict[str, Any], out_root: Path
) -> list[Run]:
    """The sweep of the grid: one run per cell and seed, in <out_root>/<cell key>/seed<k>."""
    return [
        Run(cell.key, cell_config(cell, seed, quick, steps, extra), out_root / cell.key / f"seed{seed}")
        for cell in cells
        for seed in seeds
    ]
