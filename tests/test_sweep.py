"""The sweep's parts that need no Ray: spec files, the run key (config + code version), reuse, resume
and the seed groups, the progress line and the statistics."""

import io
import sys

import numpy as np
import pytest

from inspo.config import make_config
from inspo.loop import train
from inspo.sweep import execute
from inspo.sweep.runner import Progress
from inspo.sweep.spec import load_spec, parse_spec, seed_groups

TINY = dict(
    steps=20, checkpoint_every=10, log_every=5, hidden=(8, 8), critic_hidden=(8, 8), bc_steps=10, eval_episodes=2
)


def payload(config, out_dir):
    return dict(config=config.to_dict(), out_dir=str(out_dir), finish=None)


def test_spec_files_expand_runs_by_seed_and_group_the_seeds(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "out: OUT\nseeds: [3, 5]\nset: {steps: 7}\nruns:\n"
        "  - {name: f, env: xor, dataset: d, set: {inspo.mode: exact, inspo.eta: 0.5}}\n"
        "  - {env: mne, algo: bc, set: {bc_steps: 2}}\n".replace("OUT", str(tmp_path / "runs"))
    )
    name, out, runs = load_spec(path)
    assert name == "s" and out == tmp_path / "runs" and len(runs) == 4
    first = runs[0]
    assert first.config == make_config(
        "xor", dataset="d", steps=7, seed=3, algo="inspo", **{"inspo.mode": "exact", "inspo.eta": 0.5}
    )
    assert first.out_dir == tmp_path / "runs" / "f" / "seed3"
    assert runs[2].name == "mne-default-bc" and runs[2].config.algo == "bc"
    groups = seed_groups(runs)
    assert [[run.seed for run in group] for group in groups] == [[3, 5], [3, 5]]
    assert [group[0].name for group in groups] == ["f", "mne-default-bc"]
    pieces = seed_groups(runs, seeds_per_process=1)  # a process per seed
    assert [[(run.name, run.seed) for run in group] for group in pieces] == [
        [("f", 3)],
        [("f", 5)],
        [("mne-default-bc", 3)],
        [("mne-default-bc", 5)],
    ]
    assert seed_groups(runs, seeds_per_process=2) == groups
    with pytest.raises(ValueError, match="--seeds-per-process must be >= 1, got 0"):
        seed_groups(runs, seeds_per_process=0)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"runs": []}, "runs must be a non-empty list"),
        ({"runs": [{"dataset": "c"}]}, "runs[0]: a run is a mapping with at least 'env'"),
        ({"runs": [{"env": "xor", "steps": 3}]}, "runs[0]: unknown field 'steps'"),
        ({"runs": [{"env": "xor", "set": {"nope": 1}}]}, "runs[0]: unknown config fields: ['nope']"),
        ({"runs": [{"env": "xor"}, {"env": "xor"}]}, "runs[1]: the name 'xor-default-inspo' is used twice"),
        ({"seeds": 0, "runs": [{"env": "xor"}]}, "seeds must be a count >= 1"),
        ({"runz": []}, "unknown field 'runz'"),
    ],
)
def test_spec_mistakes_name_the_field(spec, message):
    with pytest.raises(
        ValueError,
        match="^spec: .*" + message.replace("[", r"\[").replace("]", r"\]").replace("(", r"\(").replace(")", r"\)"),
    ):
        parse_spec(spec)


def test_a_spec_file_that_does_not_parse_names_the_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{runs: ")
    with pytest.raises(ValueError, match="bad.json: not valid JSON"):
        load_spec(path)
    with pytest.raises(FileNotFoundError, match="no sweep spec at"):
        load_spec(tmp_path / "missing.json")


def test_a_task_moves_the_folders_ray_puts_first_behind_the_installed_packages(tmp_path, monkeypatch):
    """Ray puts the driver's current and script folders first on a worker's sys.path; a repository root there
    would hide the installed inspo_ext behind its source folder, so the task moves them to the end first."""
    from inspo.sweep.runner import folders_ray_puts_first

    monkeypatch.chdir(tmp_path)
    assert folders_ray_puts_first()[0] == str(tmp_path)
    root = tmp_path / "checkout"
    root.mkdir()
    monkeypatch.setattr(sys, "path", [str(root), *sys.path])
    config = make_config("xor", dataset="c", algo="bc", **TINY)
    execute.sweep_task([payload(config, tmp_path / "run")], "v1", threads=1, folders_last=[str(root)])
    assert sys.path[-1] == str(root) and str(root) not in sys.path[:-1]


def test_a_finished_run_is_reused_only_under_the_same_config_and_code(tmp_path):
    config = make_config("xor", dataset="c", algo="bc", **TINY)
    out = tmp_path / "run"
    first = execute.sweep_task([payload(config, out)], "v1", threads=1)[0]
    assert not first["reused"] and (out / execute.KEY_FILE).is_file()
    assert set(first["files"]) >= {"results.json", "eval.jsonl", execute.KEY_FILE}
    again = execute.sweep_task([payload(config, out)], "v1", threads=1)[0]
    assert again["reused"] and again["results"] == first["results"]
    assert not execute.sweep_task([payload(config, out)], "v2", threads=1)[0]["reused"]  # other code
    changed = make_config("xor", dataset="c", algo="bc", **{**TINY, "bc_steps": 12})
    rerun = execute.sweep_task([payload(changed, out)], "v2", threads=1)[0]
    assert not rerun["reused"] and rerun["results"]["config"]["bc_steps"] == 12


def test_an_interrupted_run_resumes_from_its_checkpoint_and_matches_a_straight_run(tmp_path):
    config = make_config("xor", dataset="c", **TINY)

    class Stop(Exception):
        pass

    def stop_at_13(step):
        if step == 13:
            raise Stop

    with pytest.raises(Stop):
        train(config, out_dir=tmp_path / "cut", progress=False, on_step=stop_at_13)
    resumed = execute.sweep_task([payload(config, tmp_path / "cut")], "v", threads=1)[0]
    assert resumed["resumed"] and not resumed["reused"]
    straight = train(config, out_dir=tmp_path / "straight", progress=False)
    assert resumed["results"]["scores"] == straight["scores"]


def test_the_code_version_follows_the_training_sources_only(tmp_path):
    (tmp_path / "sweep").mkdir()
    (tmp_path / "trainer.py").write_text("STEP = 1\n")
    (tmp_path / "sweep" / "report.py").write_text("TITLE = 'a'\n")
    packages = [("inspo", tmp_path, execute.NOT_TRAINING_CODE)]
    before = execute.source_hash(packages)
    (tmp_path / "sweep" / "report.py").write_text("TITLE = 'b'\n")  # a report module: same version
    assert execute.source_hash(packages) == before
    (tmp_path / "trainer.py").write_text('"""Steps."""\n\n# one step\nSTEP = (\n    1\n)\n')  # layout only
    assert execute.source_hash(packages) == before
    (tmp_path / "trainer.py").write_text("STEP = 2\n")
    assert execute.source_hash(packages) != before
    assert execute.code_version() == execute.code_version() and len(execute.code_version()) == 16


def test_store_files_completes_the_drivers_run_folder(tmp_path):
    execute.store_files(tmp_path / "run", {"results.json": "{}", execute.KEY_FILE: "{}", "stray.txt": "x"})
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["results.json", execute.KEY_FILE]


def test_progress_prints_plain_lines_off_a_terminal_and_only_when_the_counts_change():
    stream = io.StringIO()
    progress = Progress(10, stream)
    for _ in range(3):
        progress.show(progress.line(2, 1, 4, 1))
    progress.trained = 1
    progress.show(progress.line(3, 1, 4, 1))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("sweep: 2/10 done (1 reused), 4 running, 1 failed, 3 left, ETA -")
    assert len(lines) == 2 and lines[1].startswith("sweep: 3/10 done (1 reused), 4 running, 1 failed, 2 left, ETA ")
    assert "\r" not in stream.getvalue()


def test_iqm_and_intervals_come_from_rliable():
    pytest.importorskip("rliable")
    from scipy.stats import trim_mean

    from inspo.stats import iqm_interval, probability_of_improvement

    values = np.array([0.1, 0.5, 0.2, 0.9, 0.4, 0.3, 0.8, 0.7])
    point, low, high = iqm_interval(values)
    assert point == pytest.approx(trim_mean(values, 0.25)) and low < point < high
    assert iqm_interval(values) == (point, low, high)  # a fixed bootstrap seed: the same interval every time
    # rliable resamples from numpy's global generator: whatever state it is in, five seeds (where the
    # percentiles move with the draw) give the same interval, and the global state is left as it was
    five = np.array([0.1, 0.5, 0.3, 0.9, 0.7])
    np.random.seed(1)
    expected_draw = np.random.random()
    np.random.seed(1)
    first = iqm_interval(five)
    assert np.random.random() == expected_draw
    np.random.seed(2)
    assert iqm_interval(five) == first
    assert iqm_interval([2.0]) == (2.0, 2.0, 2.0)
    p, low, high = probability_of_improvement(values + 1.0, values)
    assert p == 1.0 and high == 1.0
    p, _, _ = probability_of_improvement([1.0, 2.0], [1.5, 1.5])
    assert p == pytest.approx(0.5)


def test_without_ray_the_commands_say_which_extra_to_install(tmp_path, monkeypatch, capsys):
    import sys

    from inspo.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    spec = tmp_path / "s.json"
    spec.write_text('{"out": "%s", "runs": [{"env": "xor", "algo": "bc"}]}' % (tmp_path / "runs"))
    assert main(["sweep", str(spec)]) == 2
    assert capsys.readouterr().err.strip() == (
        "inspo sweep: error: sweeps run on Ray, which is not installed: pip install 'inspo[sweep]'"
    )
    from experiments.results.__main__ import main as reproduce

    assert reproduce(["--quick", "--only", "main-xor-penalty-c-bc", "--out", str(tmp_path / "r")]) == 2
    assert "python -m experiments.results: error: sweeps run on Ray" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["sweep", "spec.json"], ["reproduce", "--quick"]])
def test_seeds_per_process_below_one_is_a_one_line_usage_error(command, capsys):
    from experiments.results.__main__ import main as reproduce
    from inspo.cli import main

    with pytest.raises(SystemExit) as exit_info:
        if command[0] == "reproduce":
            reproduce([*command[1:], "--seeds-per-process", "0"])
        else:
            main([*command, "--seeds-per-process", "0"])
    assert exit_info.value.code == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .splitlines()[-1]
        .endswith("error: argument --seeds-per-process: must be >= 1, got 0")
    )


def test_a_sweep_out_folder_inside_a_file_names_the_file(tmp_path, capsys, monkeypatch):
    from inspo.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\nout: afile/sub\nseeds: 1\nset: {steps: 2}\nruns:\n  - {name: a, env: xor, dataset: c}\n")
    assert main(["sweep", str(spec)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("inspo sweep: error: cannot use afile/sub") and error.endswith(
        "afile is a file, not a folder"
    ), error
    assert "Errno" not in error
