"""The SMAX results grid: a sweep whose finished runs are reused, the table and marl-eval's JSON built
from the runs' files."""

import json

import numpy as np
import pytest

pytest.importorskip("jaxmarl")
import smax_testing  # noqa: F401  (fast compiles)
from experiments.smax import results
from inspo.sweep.execute import KEY_FILE
from inspo.sweep.runner import SweepOutcome


def fake_run(out, map_name, tier, algorithm, seed, greedy_wins, stochastic_wins, train_seconds=30.0):
    run_dir = out / map_name / tier / algorithm / f"seed{seed}"
    run_dir.mkdir(parents=True)
    rows = [
        dict(
            step=500 * k,
            greedy_return=0.1 * k,
            greedy_win_rate=0.05 * k,
            stochastic_return=0.2,
            stochastic_win_rate=0.0,
        )
        for k in (1, 2)
    ]
    (run_dir / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    final = dict(
        step=1000,
        episodes=len(greedy_wins),
        seed=10_000 + seed,
        greedy_win_rate=[float(w) for w in greedy_wins],
        greedy_return=[1.0 + w for w in greedy_wins],
        stochastic_win_rate=[float(w) for w in stochastic_wins],
        stochastic_return=[0.5 + w for w in stochastic_wins],
        train_seconds=train_seconds,  # the seed group's process: runs trained together record the same time
    )
    (run_dir / "final_eval.json").write_text(json.dumps(final))
    (run_dir / KEY_FILE).write_text("{}")  # finished by a sweep
    return run_dir


@pytest.fixture
def grid(tmp_path):
    grid = results.GridConfig(
        maps=("3m",),
        tiers=("expert", "medium"),
        algorithms=("inspo-fused", "bc"),
        seeds=(0, 1),
        data_root=tmp_path / "no-data",
        out=tmp_path / "runs",
    )
    fake_run(grid.out, "3m", "expert", "inspo-fused", 0, [1, 1, 0, 1], [1, 0, 0, 0])  # 0.75 / 0.25
    fake_run(grid.out, "3m", "expert", "inspo-fused", 1, [1, 0, 0, 0], [0, 0, 0, 0])  # 0.25 / 0.0
    fake_run(grid.out, "3m", "expert", "bc", 0, [0, 0, 0, 0], [1, 1, 1, 1], train_seconds=12.0)
    return grid


def test_table_reports_mean_std_over_seeds_and_missing_seeds(grid):
    text = results.markdown(grid)
    assert "not comparable with SMAC papers" in text
    greedy = text[text.index("Final greedy") : text.index("Final stochastic")]
    stochastic = text[text.index("Final stochastic") :]
    row = next(line for line in greedy.splitlines() if line.startswith("| 3m | expert"))
    # InSPO fused: wins 0.75 and 0.25 -> 0.50 ± 0.25, returns 1.75 and 1.25 -> 1.50; BC one seed of two
    assert row == "| 3m | expert | 0, 1 | 0.50 ± 0.25 (1.50) | 0.00 (1.00) [1 of 2 seeds] |"
    row = next(line for line in stochastic.splitlines() if line.startswith("| 3m | expert"))
    assert row == "| 3m | expert | 0, 1 | 0.12 ± 0.12 (0.62) | 1.00 (1.50) [1 of 2 seeds] |"
    assert "| 3m | medium |" not in greedy  # no finished run: no row
    grid.cell_seeds = {"3m/expert": (0,)}  # a cell with its own seeds: only seed 0 counts there
    row = next(line for line in results.markdown(grid).splitlines() if line.startswith("| 3m | expert | 0 |"))
    assert row == "| 3m | expert | 0 | 0.75 (1.75) | 0.00 (1.00) |"
    assert "| 3m | expert | not made |" in text  # the dataset table says how to make it


def test_compute_section_shares_a_batched_process_among_its_seeds_and_sums_the_invocations(grid):
    text = results.markdown(grid)
    # InSPO fused: seeds 0 and 1 trained in one process of 30 s -> 15 s per seed; BC one process of 12 s
    assert "| 3m | 15 | 12 |" in text
    assert "0.01 CPU-hours" in text  # (30 + 12) s
    assert "Invocations that trained runs" not in text  # none recorded
    outcome = SweepOutcome(results={("a", 0): {}, ("a", 1): {"reused": True}}, seconds=90.0, cpus=2.0)
    results._record_grid_time(grid, outcome)
    results._record_grid_time(grid, SweepOutcome(results={("a", 0): {"reused": True}}, seconds=5.0))  # trained none
    results._record_grid_time(grid, SweepOutcome(results={("b", 0): {}}, seconds=30.0, cpus=16.0))
    text = results.markdown(grid)
    assert ": 1 runs trained, 1 reused, 0 failed, on 2 CPUs: 1.5 min wall" in text
    assert ": 1 runs trained, 0 reused, 0 failed, on 16 CPUs: 0.5 min wall" in text
    assert "All of them together: 2.0 min wall." in text


def test_marl_eval_json_layout(grid):
    data = results.marl_eval_json(grid)
    runs = data["smax"]["3m-expert"]["inspo-fused"]
    assert sorted(runs) == ["run_0", "run_1"]
    assert runs["run_0"]["step_1"] == dict(
        step_count=1000, greedy_return=[0.2], greedy_win_rate=[0.1], stochastic_return=[0.2], stochastic_win_rate=[0.0]
    )
    absolute = runs["run_0"]["absolute_metrics"]
    assert absolute["greedy_win_rate"] == [1.0, 1.0, 0.0, 1.0] and len(absolute["stochastic_return"]) == 4
    assert data["smax"]["3m-medium"] == {}


def test_a_run_without_the_sweeps_key_file_is_not_counted(grid):
    (grid.out / "3m/expert/bc/seed0" / KEY_FILE).unlink()  # final_eval.json written, the sweep cut before the key
    assert results.marl_eval_json(grid)["smax"]["3m-expert"].get("bc") is None


def test_grid_runs_are_one_sweep_run_per_cell_and_seed_with_the_final_evaluation(grid, tmp_path):
    for tier in ("expert", "medium"):
        (tmp_path / "no-data" / "3m" / "seed0" / tier).mkdir(parents=True)
    (tmp_path / "no-data" / "3m" / "seed0" / "expert" / "meta.json").write_text("{}")  # medium: not made
    messages = []
    runs = results.grid_runs(grid, messages.append)
    assert [(run.name, run.seed) for run in runs] == [
        ("3m/expert/inspo-fused", 0),
        ("3m/expert/inspo-fused", 1),
        ("3m/expert/bc", 0),
        ("3m/expert/bc", 1),
    ]
    assert runs[1].out_dir == grid.out / "3m/expert/inspo-fused/seed1" and runs[1].config.dataset == "expert"
    assert runs[0].finish == ("experiments.smax.results:write_final_eval", (("episodes", 256), ("seed_offset", 10_000)))
    assert runs[0].group == runs[1].group != runs[2].group  # the seeds of a cell share one task
    assert messages == [
        f"skip 3m/medium: no dataset at {tmp_path / 'no-data/3m/seed0/medium'} "
        "(inspo data make --env smax:3m --tier medium)"
    ]


def test_finished_runs_are_reused_and_missing_data_is_skipped(grid):
    messages = []
    grid.algorithms = ("inspo-fused", "inspo-exact", "omiga", "bc")
    path = results.run_grid(grid, log=messages.append)  # nothing to train (so no Ray): every dataset is missing
    assert any("no dataset" in message for message in messages)
    assert path.read_text() == results.markdown(grid)
    assert json.loads((grid.out / "marl_eval.json").read_text()) == results.marl_eval_json(grid)
    assert np.isclose(
        np.mean(json.loads((grid.out / "3m/expert/bc/seed0/final_eval.json").read_text())["stochastic_win_rate"]), 1.0
    )
