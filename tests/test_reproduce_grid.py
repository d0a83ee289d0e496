"""`inspo reproduce`: the grid, a tiny end-to-end run (tables, figures, reuse), resume, parallel workers."""
import json

import pytest

from inspo.cli import main
from inspo.config import make_config
from inspo.reproduce import (Cell, Job, Stats, build_grid, cell_config, compare, run_jobs, run_one,
                             train_command)
from inspo.trainer import train

TINY = ["--steps", "20", "--set", "bc_steps=20", "--set", "eval_episodes=2", "--set", "hidden=16,16",
        "--set", "critic_hidden=16,16", "--workers", "1"]
# a few cells of every kind: baselines, the three modes, a full-update cell, M-NE, an OMIGA ablation
ONLY = ["main-xor-penalty-c", "full-update-xor-penalty-c-inspo_simultaneous", "main-mne-imbalanced-omiga",
        "entropy-mne-imbalanced-inspo_fused_beta0"]


def test_grid_covers_the_issue_and_its_commands_rebuild_the_configs():
    cells = build_grid()
    keys = [cell.key for cell in cells]
    assert len(set(keys)) == len(keys)
    main_cells = {(c.env, c.dataset, c.variant, c.method) for c in cells if c.group == "main"}
    methods = ("BC", "OMIGA", "InSPO fused", "InSPO exact", "InSPO simultaneous")
    for variant in ("penalty", "plain"):
        for dataset in "abcd":
            assert all(("xor", dataset, variant, m) in main_cells for m in methods)
    for env, dataset in (("mne", "balanced"), ("mne", "imbalanced"), ("bridge", "optimal"), ("bridge", "mixed")):
        assert all((env, dataset, "", m) in main_cells for m in methods)
    full = [c for c in cells if c.regime == "full-update"]
    assert {c.method for c in full if c.group == "full-update"} == {f"InSPO {m} (full-update)"
                                                                    for m in ("fused", "exact", "simultaneous")}
    assert all(cell_config(c, 0, False, None, {}).policy_steps > 1 for c in full)
    assert {c.key for c in cells if c.quick} < set(keys)
    # the printed `inspo train` command of a cell gives back its config
    from inspo.cli import build_parser
    from inspo.config import parse_overrides
    for cell in cells[::7]:
        config = cell_config(cell, 3, False, None, {})
        args = build_parser().parse_args(train_command(cell, config).split()[1:])
        overrides = parse_overrides(args.overrides)
        for name in ("mode", "regime", "seed", "steps"):
            if getattr(args, name) is not None:
                overrides[name] = getattr(args, name)
        rebuilt = make_config(args.env, dataset=args.dataset, algo=args.algo, **overrides)
        assert rebuilt == config, cell.key


def test_compare_needs_both_resolution_and_two_standard_errors():
    assert compare(Stats([1.0, 1.0]), Stats([0.5, 0.5]), "xor") == 1
    assert compare(Stats([0.5, 0.5]), Stats([1.0, 1.0]), "xor") == -1
    assert compare(Stats([1.0, 1.01]), Stats([1.0, 1.0]), "xor") == 0  # below the resolution
    assert compare(Stats([2.0, -1.0, 2.0]), Stats([0.0, 0.0, 0.0]), "xor") == 0  # within 2 standard errors
    assert compare(Stats([]), Stats([1.0]), "xor") == 0


def test_tiny_reproduce_writes_results_with_a_row_per_cell_and_reuses_runs(tmp_path, capsys):
    out = tmp_path / "runs"
    args = ["reproduce", "--quick", "--seeds", "1", "--out", str(out), "--docs", str(tmp_path / "docs"), *TINY]
    for text in ONLY:
        args += ["--only", text]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "SMAX rows skipped" in printed
    cells = [c for c in build_grid() if c.quick and any(text in c.key for text in ONLY)]
    assert len(cells) == 8
    text = (tmp_path / "docs" / "RESULTS.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and " ± " in line]
    for cell in cells:
        assert sum(line.startswith(f"| {cell.task} | {cell.method} |") for line in rows) == 1, cell.key
        assert f"`{cell.key}` (seeds 0)" in text
    assert "inspo reproduce --quick --seeds 1" in text and "Machine:" in text and "## Discussion" in text
    configs = json.loads((tmp_path / "docs" / "results" / "configs.json").read_text())
    assert set(configs) == {f"{c.key}/seed0" for c in cells}
    figures = sorted(p.name for p in (tmp_path / "docs" / "results").glob("*.png"))
    assert {"curves_xor_penalty.png", "joint_xor_penalty.png", "joint_xor_full_update.png", "joint_mne.png"} <= set(figures)
    assert all((tmp_path / "docs" / "results" / f).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in figures)

    # a second invocation trains nothing: every run's results are reused
    assert main(args) == 0
    assert capsys.readouterr().out.count("(reused)") == len(cells)


def test_an_interrupted_run_resumes_and_a_changed_config_reruns(tmp_path):
    config = make_config("xor", dataset="c", steps=20, checkpoint_every=10, log_every=5, hidden=(8, 8),
                         critic_hidden=(8, 8), bc_steps=10)

    class Stop(Exception):
        pass

    def stop_at_13(step):
        if step == 13:
            raise Stop

    with pytest.raises(Stop):
        train(config, out_dir=tmp_path / "cut", progress=False, on_step=stop_at_13)
    resumed = run_one(config.to_dict(), str(tmp_path / "cut"))
    assert resumed["resumed"] and not resumed["reused"]
    straight = train(config, out_dir=tmp_path / "straight", progress=False)
    assert resumed["scores"] == straight["scores"]
    assert run_one(config.to_dict(), str(tmp_path / "cut"))["reused"]
    changed = make_config("xor", dataset="c", steps=10, checkpoint_every=10, log_every=5, hidden=(8, 8),
                          critic_hidden=(8, 8), bc_steps=10)
    rerun = run_one(changed.to_dict(), str(tmp_path / "cut"))
    assert not rerun["reused"] and not rerun["resumed"] and rerun["steps"] == 10


def test_two_worker_processes_run_the_jobs(tmp_path):
    cell = Cell("main", "xor", "c", "BC", "bc")
    jobs = [Job(cell, seed, make_config("xor", dataset="c", algo="bc", seed=seed, bc_steps=10, hidden=(8, 8)),
                tmp_path / f"seed{seed}") for seed in (0, 1)]
    lines = []
    results = run_jobs(jobs, workers=2, log=lines.append)
    assert set(results) == {(cell.key, 0), (cell.key, 1)} and len(lines) == 2
    assert results[(cell.key, 0)]["config"]["seed"] == 0 and (tmp_path / "seed1" / "results.json").is_file()


def test_a_failing_run_is_reported_and_the_others_go_on(tmp_path):
    cell = Cell("main", "xor", "c", "BC", "bc")
    good = Job(cell, 0, make_config("xor", dataset="c", algo="bc", bc_steps=5, hidden=(8, 8)), tmp_path / "good")
    bad = Job(cell, 1, make_config("xor", dataset="c", algo="bc", seed=1, bc_steps=5, hidden=(8, 8),
                                   dataset_path=str(tmp_path / "missing")), tmp_path / "bad")
    failures = []
    results = run_jobs([bad, good], workers=1, log=lambda text: None, failures=failures)
    assert set(results) == {(cell.key, 0)}
    assert len(failures) == 1 and failures[0].startswith(f"{cell.key} seed 1:")
    with pytest.raises(Exception):
        run_jobs([bad], workers=1, log=lambda text: None)
