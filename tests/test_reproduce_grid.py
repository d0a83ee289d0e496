"""`python -m experiments.results`: the grid, the generated regions of RESULTS.md, and a tiny end-to-end run on local Ray
(tables, verdicts, figures, marl-eval JSON, reuse, a failing run)."""

import argparse
import json
import re

import pytest

from experiments.results.__main__ import main as reproduce
from experiments.results.comparisons import DISCUSSION_REGIONS, discussion
from experiments.results.grid import build_grid, cell_config, grid_runs, train_command
from experiments.results.report import REGIONS, fill_regions, skeleton
from experiments.results.scores import CellResult, Stats, Table, compare
from inspo.config import make_config

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it

TINY = [
    "--steps",
    "20",
    "--set",
    "bc_steps=20",
    "--set",
    "eval_episodes=2",
    "--set",
    "hidden=16,16",
    "--set",
    "critic_hidden=16,16",
    "--num-cpus",
    "2",
]
# a few cells of every kind: baselines, the three modes, a full-update cell, M-NE, an OMIGA ablation
ONLY = [
    "main-xor-penalty-c",
    "full-update-xor-penalty-c-inspo_simultaneous",
    "main-mne-imbalanced-omiga",
    "entropy-mne-imbalanced-inspo_fused_beta0",
]


def test_grid_covers_the_issue_and_its_commands_rebuild_the_configs():
    cells = build_grid()
    keys = [cell.key for cell in cells]
    assert len(set(keys)) == len(keys)
    main_cells = {(c.env, c.dataset, c.variant, c.method) for c in cells if c.group == "main"}
    methods = ("BC", "OMIGA", "CFCQL", "InSPO fused", "InSPO exact", "InSPO simultaneous")
    for variant in ("penalty", "plain"):
        for dataset in "abcd":
            assert all(("xor", dataset, variant, m) in main_cells for m in methods)
    for env, dataset in (("mne", "balanced"), ("mne", "imbalanced"), ("bridge", "optimal"), ("bridge", "mixed")):
        assert all((env, dataset, "", m) in main_cells for m in methods)
    full = [c for c in cells if c.regime == "full-update"]
    assert {c.method for c in full if c.group == "full-update"} == {
        f"InSPO {m} (full-update)" for m in ("fused", "exact", "simultaneous")
    }
    assert all(cell_config(c, 0, False, None, {}).inspo.policy_steps > 1 for c in full)
    assert {c.key for c in cells if c.quick} < set(keys)
    # the printed `inspo train` command of a cell gives back its config
    from inspo.cli import train as train_command_line
    from inspo.config import parse_overrides

    for cell in cells[::7]:
        config = cell_config(cell, 3, False, None, {})
        parser = argparse.ArgumentParser()
        train_command_line.add_arguments(parser)
        args = parser.parse_args(train_command(cell, config).split()[2:])
        overrides = parse_overrides(args.overrides)
        for name in ("regime", "seed", "steps"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        if args.mode is not None:
            overrides["inspo.mode"] = args.mode
        rebuilt = make_config(args.env, dataset=args.dataset, algo=args.algo, **overrides)
        assert rebuilt == config, cell.key


def test_compare_needs_both_resolution_and_two_standard_errors():
    assert compare(Stats([1.0, 1.0]), Stats([0.5, 0.5]), "xor") == 1
    assert compare(Stats([0.5, 0.5]), Stats([1.0, 1.0]), "xor") == -1
    assert compare(Stats([1.0, 1.01]), Stats([1.0, 1.0]), "xor") == 0  # below the resolution
    assert compare(Stats([2.0, -1.0, 2.0]), Stats([0.0, 0.0, 0.0]), "xor") == 0  # within 2 standard errors
    assert compare(Stats([]), Stats([1.0]), "xor") == 0


def test_the_discussion_tables_are_computed_from_the_runs():
    """On made-up runs: each table row carries the runs' mean ± std and the rule's comparison, and the claims
    table counts the seeds (greedy joint actions from the per-action probabilities)."""
    cells = {c.key: c for c in build_grid()}

    def result(key, payoffs, greedy=None):
        scores = [{"expected_payoff": value} for value in payoffs]
        for score in scores:  # greedy joint action (agent 1, agent 2), as the matrix games report it
            first, second = greedy or (0, 0)
            score.update({f"p1_{a}": float(i == first) for i, a in enumerate("AB")})
            score.update({f"p2_{a}": float(i == second) for i, a in enumerate("AB")})
        return CellResult(cells[key], {seed: {"scores": score} for seed, score in enumerate(scores)})

    table = Table(
        [
            result("main-xor-penalty-c-inspo_fused", [0.97, 0.98, 0.99]),
            result("main-xor-penalty-c-inspo_exact", [0.98, 0.98, 0.98]),
            result("main-xor-penalty-c-inspo_simultaneous", [0.97, 0.97, 0.98]),
            result("main-xor-penalty-c-omiga", [-2.0, -2.0, -2.0], greedy=(1, 1)),
            result("main-xor-penalty-c-bc", [0.2, 0.22, 0.24]),
            result("main-xor-penalty-c-cfcql", [0.96, 0.99, 0.99]),
        ]
    )
    regions = discussion(table)
    assert set(regions) == set(DISCUSSION_REGIONS)
    baselines = [line for line in regions["baselines"] if line.startswith("| XOR c (penalty) |")]
    assert baselines == [
        "| XOR c (penalty) | 0.980 ± 0.010 | 0.980 ± 0.000 | -2.000 ± 0.000 | 0.980 ± 0.017 | 0.220 ± 0.020 "
        "| above | level | above |"
    ]
    assert "| c | 0/3 | 3/3 | 0/3 | 0/3 | 0/3 | 0/3 |" in regions["baselines"]
    assert "| InSPO beats OMIGA and BC | fused above both on 1 of 1 tasks |" in regions["claims"]
    claim = "Sequential in-sample updates avoid out-of-data joint actions (XOR c)"
    assert any(line.startswith(f"| {claim} |") and "OMIGA 3/3 seeds" in line for line in regions["claims"])
    assert (
        "| one-step | XOR c (penalty) | 0.980 ± 0.000 | 0.980 ± 0.010 | 0.973 ± 0.006 | level |" in regions["sequence"]
    )
    assert regions["entropy"] == []  # no M-NE cell ran: no table


def test_regions_are_rewritten_between_their_markers_and_the_prose_stays():
    text = (
        "# Results\n\nHand-written intro.\n\n<!-- generated: headline -->\nold table\n"
        "<!-- end generated: headline -->\n\nProse about it.\n<!-- generated: runs -->\nold\n"
        "<!-- end generated: runs -->\n"
    )
    filled = fill_regions(text, {"headline": "| new | table |"})
    assert filled == text.replace("old table", "\n| new | table |\n")  # the runs region, not given, keeps its body
    assert fill_regions(filled, {"headline": "| new | table |"}) == filled
    with pytest.raises(ValueError, match="RESULTS.md has no generated region 'cells'"):
        fill_regions(text, {"cells": "x"})
    assert set(REGIONS) >= set(DISCUSSION_REGIONS)
    assert fill_regions(skeleton(), {name: name.upper() for name in REGIONS}).count("<!-- generated:") == len(REGIONS)


def test_the_committed_results_md_has_every_region_with_prose_outside_them():
    from pathlib import Path

    from experiments.results.report import MARKER

    text = (Path(__file__).resolve().parents[1] / "docs" / "RESULTS.md").read_text()
    assert [match["name"] for match in MARKER.finditer(text)] == list(REGIONS)
    prose = MARKER.sub("", text)
    assert "the behaviour policy is a fixed point of every mode" in prose  # an explanation: hand-written
    assert "IGM makes B greedy for both" in prose


@pytest.fixture(scope="module")
def local_ray():
    """Ray on this machine for the module (each `python -m experiments.results` below joins it instead of starting its own)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("rliable")
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_tiny_reproduce_writes_results_with_a_row_per_cell_and_reuses_runs(local_ray, tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["--quick", "--seeds", "1", "--out", str(out), "--docs", str(tmp_path / "docs"), *TINY]
    for text in ONLY:
        args += ["--only", text]
    assert reproduce(args) == 0
    captured = capsys.readouterr()
    assert "sweep: 9/9 done (0 reused), 0 running, 0 failed, 0 left" in captured.err
    cells = [c for c in build_grid() if c.quick and any(text in c.key for text in ONLY)]
    assert len(cells) == 9
    text = (tmp_path / "docs" / "RESULTS.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and " ± " in line]
    for cell in cells:
        matching = [line for line in rows if line.startswith(f"| {cell.task} | {cell.method} |")]
        assert len(matching) == 1, cell.key
        assert re.search(r" \| (-?\d+\.\d{3}) \[\1, \1\] \| 1 \| ", matching[0]), matching[0]  # IQM of one seed
        assert f"`{cell.key}` (seeds 0)" in text
    assert "python -m experiments.results --quick --seeds 1" in text and "Machine:" in text
    assert "| claim | measured |" in text and "| xor | 1 | InSPO fused |" in text  # claims, aggregates
    assert "the behaviour policy is a fixed point of every mode" in text  # the prose of docs/RESULTS.md
    configs = json.loads((tmp_path / "docs" / "results" / "configs.json").read_text())
    assert set(configs) == {f"{c.key}/seed0" for c in cells}
    figures = sorted(p.name for p in (tmp_path / "docs" / "results").glob("*.png"))
    assert {"curves_xor_penalty.png", "joint_xor_penalty.png", "joint_xor_full_update.png", "joint_mne.png"} <= set(
        figures
    )
    assert all((tmp_path / "docs" / "results" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)
    marl_eval = json.loads((out / "marl_eval.json").read_text())
    run = marl_eval["xor"]["xor c (penalty)"]["InSPO fused"]["run_0"]
    assert run["absolute_metrics"]["expected_payoff"] == [configs_score(out, "main-xor-penalty-c-inspo_fused", 0)]
    assert [run[f"step_{k}"]["step_count"] for k in range(3)] == [2, 4, 6]  # eval_every = steps / 10

    # a second invocation trains nothing: every run is reused, and the hand edits outside the regions stay
    (tmp_path / "docs" / "RESULTS.md").write_text(text.replace("## The grid", "## The grid\n\nA hand edit."))
    assert reproduce(args) == 0
    assert "sweep: 9/9 done (9 reused)" in capsys.readouterr().err
    assert "A hand edit." in (tmp_path / "docs" / "RESULTS.md").read_text()


def configs_score(out, key, seed):
    return json.loads((out / key / f"seed{seed}" / "results.json").read_text())["scores"]["expected_payoff"]


def test_a_failing_run_is_retried_reported_and_the_others_go_on(local_ray, tmp_path):
    from inspo.sweep.runner import run_sweep
    from inspo.sweep.spec import Run

    good = Run("good", make_config("xor", dataset="c", algo="bc", bc_steps=5, hidden=(8, 8)), tmp_path / "good")
    bad = Run(
        "bad",
        make_config("xor", dataset="c", algo="bc", bc_steps=5, hidden=(8, 8), dataset_path=str(tmp_path / "missing")),
        tmp_path / "bad",
    )
    outcome = run_sweep([bad, good], retries=1)
    assert set(outcome.results) == {("good", 0)}
    assert len(outcome.retries) == 1 and outcome.retries[0].startswith("bad seeds 0: attempt 1 failed (")
    assert len(outcome.failures) == 1 and outcome.failures[0].startswith("bad seeds 0: failed 2 times; last: ")
    assert "missing" in outcome.failures[0]


def test_grid_runs_group_the_seeds_of_a_cell():
    from pathlib import Path

    from inspo.sweep.spec import seed_groups

    cells = [c for c in build_grid() if c.quick][:3]
    runs = grid_runs(cells, [0, 1, 2], True, None, {}, Path("runs/x"))
    groups = seed_groups(runs)
    assert [[run.seed for run in group] for group in groups] == [[0, 1, 2]] * 3
    assert runs[4].out_dir == Path("runs/x") / cells[1].key / "seed1" and runs[4].name == cells[1].key


def test_the_seeds_of_one_batch_share_its_training_time():
    from experiments.results.scores import batch_sizes

    # seeds 0 and 1 trained batched (their folders record the process's 10 s), seed 2 alone in 4 s
    runs = [{"seconds": 10.0}, {"seconds": 10.0}, {"seconds": 4.0}]
    assert [(run["seconds"], size) for run, size in batch_sizes(runs)] == [(10.0, 2), (10.0, 2), (4.0, 1)]


def test_the_precision_comparison_reads_both_grids_run_folders(tmp_path, capsys):
    from experiments.results.precision import main as compare_precision

    def write(root, key, payoffs):
        for seed, payoff in enumerate(payoffs):
            folder = root / key / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "results.json").write_text(json.dumps({"scores": {"expected_payoff": payoff}}))

    write(tmp_path / "fp32", "main-xor-penalty-c-inspo_fused", [0.97, 0.98, 0.99])
    write(tmp_path / "bf16", "main-xor-penalty-c-inspo_fused", [0.975, 0.98, 0.985])
    write(tmp_path / "fp32", "main-xor-penalty-d-inspo_fused", [0.99, 0.99, 0.99])
    write(tmp_path / "bf16", "main-xor-penalty-d-inspo_fused", [0.5, 0.5, 0.5])
    write(tmp_path / "fp32", "main-xor-penalty-a-bc", [1.0])  # in one grid only: not compared
    out = tmp_path / "precision.md"
    argv = ["--fp32", str(tmp_path / "fp32"), "--bf16", str(tmp_path / "bf16"), "--out", str(out)]
    assert compare_precision(argv) == 0
    text = out.read_text()
    assert text.startswith("# bf16 against fp32 on the results grid\n")  # the page's header, then the table
    assert "| main-xor-penalty-c-inspo_fused | 0.980 ± 0.010 | 0.980 ± 0.005 | level | yes |" in text
    assert "| main-xor-penalty-d-inspo_fused | 0.990 ± 0.000 | 0.500 ± 0.000 | below | no |" in text
    assert "1 of 2 cells level" in text and "penalty-a-bc" not in text
    (tmp_path / "empty").mkdir()
    assert compare_precision(["--fp32", str(tmp_path / "fp32"), "--bf16", str(tmp_path / "empty")]) == 2
    assert "no cell has finished runs in both grids" in capsys.readouterr().err
