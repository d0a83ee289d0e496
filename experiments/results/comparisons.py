"""The tables of RESULTS.md's discussion, region by region (`DISCUSSION_REGIONS`): every number and every
comparison ("above" / "below" / "level", by the rule of `scores.compare`) is computed from the runs. What the
numbers say about the paper's claims is prose written by hand around the regions."""

from __future__ import annotations

from typing import Callable

from experiments.results.grid import OMIGA_ALPHA
from experiments.results.scores import ENV_NAMES, RESOLUTION, Stats, Table, compare, greedy_joint, out_of_data
from inspo.config import make_config

DISCUSSION_REGIONS = ("claims", "baselines", "sequence", "entropy", "xor-b", "choices")
# the tasks every comparison of InSPO with the baselines is made on: (env, dataset, XOR variant)
MAIN_TASKS = (
    ("xor", "c", "penalty"),
    ("xor", "d", "penalty"),
    ("xor", "c", "plain"),
    ("xor", "d", "plain"),
    ("mne", "imbalanced", ""),
    ("bridge", "optimal", ""),
    ("bridge", "mixed", ""),
)
XOR_CD = (("c", "penalty"), ("c", "plain"), ("d", "penalty"), ("d", "plain"))
MODES = ("InSPO fused", "InSPO exact", "InSPO simultaneous")
ENTROPY_SWEEP = (
    ("β = 0", "InSPO fused β=0"),
    ("β = 0.1 constant", "InSPO fused β=0.1 const"),
    ("β = 1 constant", "InSPO fused β=1 const"),
    ("β = 3 constant", "InSPO fused β=3 const"),
    ("β 3 → 0", "InSPO fused β 3→0"),
    ("β 10 → 0 (the M-NE preset)", "InSPO fused"),
)


def task_name(env: str, dataset: str, variant: str = "") -> str:
    return f"{ENV_NAMES[env]} {dataset}" + (f" ({variant})" if variant else "")


def relation(a: Stats, b: Stats, env: str) -> str:
    """How a compares with b by the rule (`scores.compare`); "–" without runs on either side."""
    if not (a.values and b.values):
        return "–"
    return {1: "above", -1: "below", 0: "level"}[compare(a, b, env)]


def markdown_table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    """A markdown table; [] when there are no rows (the grid did not run those cells)."""
    if not rows:
        return []
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows),
        "",
    ]


def seeds_where(
    table: Table, env: str, dataset: str, method: str, test: Callable[[dict], bool], variant: str = ""
) -> str:
    """k/n: the seeds of a cell whose results pass `test` (– without runs)."""
    found = table.get(env, dataset, method, variant)
    if found is None or not found.runs:
        return "–"
    return f"{sum(bool(test(run)) for run in found.runs.values())}/{len(found.runs)}"


def greedy_bb(run: dict) -> bool:
    """Whether a run's greedy joint action on XOR is BB (on XOR (c), the one joint action outside the data)."""
    return greedy_joint(run["scores"], 2) == (1, 1)


def discussion(table: Table) -> dict[str, list[str]]:
    """The generated regions of the discussion: {region: markdown lines}."""
    s = table.stats
    regions: dict[str, list[str]] = {}

    # InSPO against the baselines, and the greedy joint actions outside the data (XOR)
    rows, beats = [], []  # beats: (task, fused above OMIGA and above BC)
    for env, dataset, variant in MAIN_TASKS:
        fused, exact, omiga, cfcql, bc = (
            s(env, dataset, m, variant) for m in ("InSPO fused", "InSPO exact", "OMIGA", "CFCQL", "BC")
        )
        if fused.values and omiga.values and bc.values:
            beats.append(relation(fused, omiga, env) == relation(fused, bc, env) == "above")
            rows.append(
                (
                    task_name(env, dataset, variant),
                    fused,
                    exact,
                    omiga,
                    cfcql,
                    bc,
                    relation(fused, omiga, env),
                    relation(fused, cfcql, env),
                    relation(fused, bc, env),
                )
            )
    header = ("task", "InSPO fused", "InSPO exact", "OMIGA", "CFCQL", "BC", "fused vs OMIGA", "fused vs CFCQL")
    regions["baselines"] = markdown_table((*header, "fused vs BC"), rows)
    methods = ("BC", "OMIGA", "CFCQL", *MODES)
    ood = []
    for dataset in "abc":
        found = [table.get("xor", dataset, m, "penalty") for m in methods]
        if any(f is not None and f.runs for f in found):
            ood.append(
                (
                    dataset,
                    *(f"{out_of_data(f)}/{len(f.runs)}" if f and f.runs else "–" for f in found),
                )
            )
    if ood:
        regions["baselines"] += [
            "Seeds whose greedy joint action lies outside the dataset's joint actions:",
            "",
            *markdown_table(("XOR data (penalty variant)", *methods), ood),
        ]

    # the sequence: exact against the simultaneous ablation, in both update regimes
    rows, sequence_counts = [], {}
    for regime, suffix in (("one-step", ""), ("full-update", " (full-update)")):
        for dataset, variant in XOR_CD:
            exact, fused, simultaneous = (
                s("xor", dataset, f"InSPO {m}{suffix}", variant) for m in ("exact", "fused", "simultaneous")
            )
            if exact.values and simultaneous.values:
                word = relation(exact, simultaneous, "xor")
                sequence_counts.setdefault(regime, []).append(word == "above")
                rows.append((regime, task_name("xor", dataset, variant), exact, fused, simultaneous, word))
    for env, dataset in (("mne", "imbalanced"), ("bridge", "optimal"), ("bridge", "mixed")):
        exact, fused, simultaneous = (s(env, dataset, m) for m in ("InSPO exact", "InSPO fused", "InSPO simultaneous"))
        if exact.values and simultaneous.values:
            rows.append(
                ("one-step", task_name(env, dataset), exact, fused, simultaneous, relation(exact, simultaneous, env))
            )
    regions["sequence"] = markdown_table(
        ("regime", "task", "exact", "fused", "simultaneous", "exact vs simultaneous"), rows
    )

    # the entropy term on M-NE imbalanced: AA = 10 is optimal, CC = 8 the data's favourite
    preset = s("mne", "imbalanced", "InSPO fused")
    rows = []
    for label, method in ENTROPY_SWEEP:
        found = table.get("mne", "imbalanced", method)
        if found is None or not found.runs:
            continue
        greedy = [greedy_joint(run["scores"], 3) for run in found.runs.values()]
        rows.append(
            (
                label,
                found.headline,
                f"{sum(g == (0, 0) for g in greedy)}/{len(greedy)}",
                f"{sum(g == (2, 2) for g in greedy)}/{len(greedy)}",
                "–" if method == "InSPO fused" else relation(preset, found.headline, "mne"),
            )
        )
    regions["entropy"] = markdown_table(
        ("β", "E[payoff]", "seeds greedy AA", "seeds greedy CC", "the preset (10 → 0) vs this"), rows
    )

    # XOR (b) = {AB, BA}: the factorized behaviour value, and who stays at it
    rows = []
    for variant, behaviour_value in (("penalty", 0.0), ("plain", 0.5)):
        values = [(m, s("xor", "b", m, variant)) for m in ("BC", "OMIGA", *MODES)]
        if any(st.values for _, st in values):
            cells = [
                f"{st} ({'stays' if abs(st.mean - behaviour_value) <= max(0.05, 2 * st.std) else 'leaves'})"
                if st.values
                else "–"
                for _, st in values
            ]
            rows.append((variant, f"{behaviour_value:g}", *cells))
    regions["xor-b"] = markdown_table(("variant", "behaviour value", "BC", "OMIGA", *MODES), rows)

    # the reconstructed choices
    choices: list[str] = []
    rows = []
    for env, dataset, variant in (
        ("xor", "c", "penalty"),
        ("xor", "d", "penalty"),
        ("mne", "imbalanced", ""),
        ("bridge", "mixed", ""),
    ):
        base, alternative = (
            s(env, dataset, "InSPO fused", variant),
            s(env, dataset, "InSPO fused self-normalized", variant),
        )
        if base.values and alternative.values:
            rows.append((task_name(env, dataset, variant), base, alternative, relation(base, alternative, env)))
    choices += markdown_table(("task", "resampling", "self-normalized weights", "resampling vs self-normalized"), rows)
    rows = []
    for regime in ("one-step", "full-update"):
        default_eta = make_config("xor", regime=regime).inspo.eta  # a cell without its own inspo.eta
        for r in table.results:
            if (
                r.runs
                and (r.cell.env, r.cell.dataset, r.cell.variant, r.cell.regime) == ("xor", "c", "penalty", regime)
                and r.cell.method.startswith("InSPO fused")
                and set(dict(r.cell.overrides)) <= {"inspo.mode", "xor.variant", "inspo.eta"}
            ):
                eta = dict(r.cell.overrides).get("inspo.eta", default_eta)
                rows.append((regime, f"{eta:g}", r.headline))
    choices += markdown_table(("regime (XOR c, penalty)", "fused lookahead η", "E[payoff]"), sorted(rows, key=str))
    rows = []
    for env, dataset, variant in MAIN_TASKS:
        fused, exact = s(env, dataset, "InSPO fused", variant), s(env, dataset, "InSPO exact", variant)
        if fused.values and exact.values:
            rows.append((task_name(env, dataset, variant), fused, exact, relation(fused, exact, env)))
    choices += markdown_table(("task", "fused", "exact", "fused vs exact"), rows)
    rows = []
    for env, dataset, variant in (("xor", "d", "penalty"), ("bridge", "mixed", "")):
        base, zero = s(env, dataset, "InSPO fused", variant), s(env, dataset, "InSPO fused β=0", variant)
        if base.values and zero.values:
            rows.append((task_name(env, dataset, variant), base, zero, relation(base, zero, env)))
    choices += markdown_table(("task", "the preset's β", "β = 0", "preset vs β = 0"), rows)
    rows = []
    for env, dataset, variant, alphas in (("xor", "c", "penalty", (1.0, 10.0)), ("mne", "imbalanced", "", (0.1, 10.0))):
        inspo = s(env, dataset, "InSPO fused", variant)
        for alpha, method in ((OMIGA_ALPHA[env][0], "OMIGA"), *((a, f"OMIGA α={a:g}") for a in alphas)):
            omiga = s(env, dataset, method, variant)
            if omiga.values:
                label = f"{alpha:g}" + (" (the grid's)" if method == "OMIGA" else "")
                rows.append((task_name(env, dataset, variant), label, omiga, inspo, relation(omiga, inspo, env)))
    choices += markdown_table(("task", "OMIGA α", "OMIGA", "InSPO fused", "OMIGA vs InSPO fused"), rows)
    regions["choices"] = choices

    # the measurements behind each of the paper's claims
    rows = []
    if beats:
        rows.append(("InSPO beats OMIGA and BC", f"fused above both on {sum(beats)} of {len(beats)} tasks"))
    bb = {m: seeds_where(table, "xor", "c", m, greedy_bb, "penalty") for m in ("OMIGA", *MODES)}
    if bb["OMIGA"] != "–":
        rows.append(
            (
                "Sequential in-sample updates avoid out-of-data joint actions (XOR c)",
                "greedy BB (payoff −2, not in the data): OMIGA "
                + bb["OMIGA"]
                + " seeds; InSPO fused, exact, simultaneous "
                + ", ".join(bb[m] for m in MODES),
            )
        )
    for regime, claim in (
        ("one-step", "With one small step per iteration, sequential and simultaneous updates behave alike"),
        ("full-update", "With full updates the sequence prevents miscoordination"),
    ):
        if regime in sequence_counts:
            hits = sequence_counts[regime]
            rows.append((claim, f"exact above simultaneous on {sum(hits)} of {len(hits)} XOR (c), (d) tasks"))
    aa = {
        m: seeds_where(table, "mne", "imbalanced", m, lambda run: greedy_joint(run["scores"], 3) == (0, 0))
        for m in ("InSPO fused", "InSPO fused β=0")
    }
    if "–" not in aa.values():
        rows.append(
            (
                "The entropy term avoids the sub-optimal equilibrium (M-NE imbalanced)",
                f"greedy AA: annealed β {aa['InSPO fused']} seeds, β = 0 {aa['InSPO fused β=0']}",
            )
        )
    for dataset in ("optimal", "mixed"):
        for method in ("InSPO exact", "InSPO fused"):
            found = table.get("bridge", dataset, method)
            if found is None or not found.runs:
                continue
            optimal = seeds_where(table, "bridge", dataset, method, lambda run: run["scores"]["greedy_optimal"] >= 0.99)
            success = seeds_where(table, "bridge", dataset, method, lambda run: run["scores"]["greedy_success"] >= 0.99)
            rows.append(
                (
                    f"InSPO solves Bridge's coordination ({dataset} data), {method.split()[1]}",
                    f"greedy return {found.headline}; greedy policy optimal (return ≥ −1.27) in {optimal} seeds, both "
                    f"goals reached (return ≥ −1.3) in {success}; stochastic return {found.stats('stochastic_return')}",
                )
            )
    regions["claims"] = markdown_table(("claim", "measured"), rows) + [
        'Every "above" / "below" in these tables: the difference of the means exceeds both twice its standard error '
        "(sample std over seeds) and a resolution of "
        + ", ".join(f"{v:g} ({k})" for k, v in RESOLUTION.items())
        + '; otherwise "level".'
    ]
    return regions
