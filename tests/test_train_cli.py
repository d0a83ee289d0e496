"""The `inspo` command line, run in-process: train on a tiny step count, eval its checkpoint, errors."""

import json
from pathlib import Path

import pytest
import torch

from cli_testing import tiny_args, training_state
from inspo.cli import main

TINY = tiny_args(eval_episodes=3, **{"inspo.critic_warmup_steps": 0})
# a child runs outside the repository root, whose source folder inspo_ext/ would hide the installed package
CHILD_FOLDER = Path(__file__).resolve().parent


def test_train_writes_a_run_folder_and_eval_reproduces_its_scores(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--env", "bridge", "--steps", "6", "--seed", "3", "--out", str(out), *TINY]) == 0
    printed = capsys.readouterr().out
    assert "bridge/optimal" in printed and "inspo fused" in printed and "greedy return" in printed
    results = json.loads((out / "results.json").read_text())
    checkpoint = torch.load(out / "checkpoint.pt", weights_only=False)
    assert checkpoint["step"] == 6 and checkpoint["config"]["seed"] == 3 and checkpoint["config"]["hidden"] == (8, 8)
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [6]

    # the same evaluation seed and step as the end of training: the same rollouts, the same scores
    assert main(["eval", str(out), "--seed", "3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == results["scores"]
    assert main(["eval", str(out / "checkpoint.pt"), "--seed", "4", "--episodes", "5"]) == 0
    assert "stochastic_return" in capsys.readouterr().out


def test_regime_and_overrides_reach_the_config(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "train",
        "--env",
        "xor",
        "--dataset",
        "d",
        "--mode",
        "exact",
        "--regime",
        "full-update",
        "--steps",
        "3",
        "--set",
        "inspo.policy_steps=2",
        "--out",
        str(out),
        *TINY,
    ]
    assert main(argv) == 0
    config = torch.load(out / "checkpoint.pt", weights_only=False)["config"]
    options = config["algo_options"]["inspo"]
    assert (config["regime"], options["mode"], config["dataset"], config["steps"]) == ("full-update", "exact", "d", 3)
    assert options["policy_steps"] == 2  # --set wins over the regime
    assert "inspo exact (full-update)" in capsys.readouterr().out


def test_the_main_job_trains_its_three_tasks_and_prints_one_table(tmp_path, capsys):
    assert main(["train", "--steps", "2", "--out", str(tmp_path), *TINY]) == 0
    printed = capsys.readouterr().out
    for task in ("xor/c (penalty)", "mne/imbalanced", "bridge/optimal"):
        assert task in printed
    assert printed.count("inspo fused") == 2 and printed.count("inspo exact") == 1  # Bridge: exact (cli.DEFAULT_JOB)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge-optimal", "job.json", "mne-imbalanced", "xor-c"]


def test_resume_steps_extends_a_finished_run_to_the_run_it_would_have_been(tmp_path, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    common = ["train", "--env", "xor", "--set", "checkpoint_every=4", *TINY]
    assert main([*common, "--steps", "8", "--out", str(whole)]) == 0
    assert main([*common, "--steps", "4", "--out", str(cut)]) == 0
    assert main(["train", "--out", str(cut), "--resume", "--quiet"]) == 2  # finished: nothing to continue
    assert "is finished (4 of 4 steps); --resume --steps N (N > 4) extends it" in capsys.readouterr().err
    assert main(["train", "--out", str(cut), "--resume", "--steps", "8", "--quiet"]) == 0
    scores = [json.loads((d / "results.json").read_text())["scores"] for d in (whole, cut)]
    assert scores[0] == scores[1]
    final = [torch.load(d / "checkpoint.pt", weights_only=False) for d in (whole, cut)]
    assert final[1]["step"] == 8 and final[1]["config"] == final[0]["config"]
    assert training_state(whole) == training_state(cut)  # every tensor, the optimizers and the RNG states
    assert json.loads((cut / "config.json").read_text())["steps"] == 8


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--env", "nosuch"], "unknown environment 'nosuch'"),
        (["train", "--env", "xor", "--dataset", "z"], "not 'z'"),
        (["train", "--env", "xor", "--set", "etta=1"], "unknown config field 'etta'"),
        (["train", "--env", "xor", "--set", "lr=-1"], "config.lr must be > 0"),
        (["train", "--env", "xor", "--set", "inspo.alpha=nan"], "config.inspo.alpha must be a finite float"),
        (["train", "--env", "xor", "--set", "steps=many"], "config field 'steps' expects"),
        (["train", "--env", "xor", "--set", "steps"], "--set expects key=value"),
        (
            ["train", "--env", "mne", "--steps", "100", "--set", "inspo.critic_warmup_steps=300"],
            "inspo.critic_warmup_steps must be in [0, steps = 100), got 300 (--set inspo.critic_warmup_steps=N sets it)",
        ),
        (["train", "--env", "xor", "--algo", "nosuch"], "unknown algorithm 'nosuch'"),
        (["train", "--env", "xor", "--dataset-path", "/nonexistent/ds"], "'/nonexistent/ds' does not exist"),
        (["train", "--resume"], "--resume needs --out"),
        (["eval", "/nonexistent/run"], "no checkpoint at /nonexistent/run"),
    ],
)
def test_bad_input_is_a_clear_error(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_unknown_regime_or_mode_is_refused_by_the_parser(capsys):
    for argv in (["train", "--regime", "half-update"], ["train", "--mode", "sequential"]):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2
    assert "half-update" in capsys.readouterr().err


# ---- a preset's schedule on a short run -------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["inspo", "bc", "omiga", "cfcql"])
def test_a_short_run_of_a_preset_with_a_critic_warm_up_trains(tmp_path, capsys, algo):
    out = tmp_path / "run"
    assert main(["train", "--env", "mne", "--algo", algo, "--steps", "100", "--out", str(out), *tiny_args()]) == 0
    config = json.loads((out / "config.json").read_text())
    if algo != "bc":  # (BC's --steps are its behaviour-cloning steps)
        assert config["steps"] == 100  # the preset's warm-up, 300 of 3000, scaled with the steps (InSPO's option)
        warmup = config["algo_options"].get("inspo", {}).get("critic_warmup_steps")
        assert warmup == (10 if algo == "inspo" else None)


def test_a_preset_or_regime_warm_up_keeps_its_share_of_the_run():
    from inspo.config import make_config

    assert make_config("mne").inspo.critic_warmup_steps == 300
    assert make_config("mne", steps=100).inspo.critic_warmup_steps == 10
    assert make_config("mne", steps=1).inspo.critic_warmup_steps == 0
    assert make_config("xor", regime="full-update", steps=20).inspo.critic_warmup_steps == 10  # 50 of 100
    assert (
        make_config("mne", steps=100, **{"inspo.critic_warmup_steps": 40}).inspo.critic_warmup_steps == 40
    )  # the user's own


# ---- the main job, interrupted, continues as its advice says -----------------------------------------------
def test_an_interrupted_main_job_resumes_as_the_advice_says(tmp_path, capsys, monkeypatch):
    from cli_testing import interrupt_at_step, main_interrupted

    monkeypatch.chdir(tmp_path)
    argv = ["train", "--steps", "4", *tiny_args(log_every=1, eval_episodes=3, **{"inspo.critic_warmup_steps": 0})]
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 2)  # in the first task, xor
        assert main_interrupted(argv) == 130
    advice = capsys.readouterr().err.strip().splitlines()[-1]
    assert advice == "inspo train: interrupted; continue with: inspo train --out runs/default --resume"
    assert main(argv) == 2  # the main job again, over the one that stopped
    assert capsys.readouterr().err.strip() == (
        "inspo train: error: the main job in runs/default has run there before: inspo train --resume "
        "continues it, --overwrite starts it over, or choose another --out"
    )
    assert main(["train", "--resume", "--quiet"]) == 0  # no --out: the main job's folder
    printed = capsys.readouterr().out
    for task in ("xor/c (penalty)", "mne/imbalanced", "bridge/optimal"):
        assert task in printed
    for task in ("xor-c", "mne-imbalanced", "bridge-optimal"):
        assert json.loads((tmp_path / "runs/default" / task / "results.json").read_text())["steps"] == 4
    assert main(["train", "--out", "runs/default", "--resume", "--quiet"]) == 0  # finished: its table again
    assert capsys.readouterr().out.count("inspo ") == 3
    assert main([*argv, "--overwrite"]) == 0  # and started over


def test_resume_without_out_and_without_a_main_job_says_what_it_needs(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--resume"]) == 2
    assert capsys.readouterr().err.strip() == (
        "inspo train: error: --resume needs --out, the folder of the run to continue (there is no main job in "
        "runs/default to continue)"
    )


# ---- what the tables and flags say -------------------------------------------------------------------------
def test_bc_trains_the_steps_it_is_given(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        main(["train", "--env", "xor", "--algo", "bc", "--steps", "7", "--out", str(out), *tiny_args(log_every=1)]) == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["steps"] == 7 and results["config"]["bc_steps"] == 7
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == list(range(1, 8))


def test_eval_shows_the_runs_seed_and_no_training_time(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--env", "xor", "--steps", "3", "--seed", "3", "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    assert main(["eval", str(out), "--seed", "11"]) == 0
    lines = capsys.readouterr().out.splitlines()
    row = lines[2].split()
    assert row[:6] == ["xor/c", "(penalty)", "inspo", "fused", "3", "-"], lines[2]
    assert lines[3] == "  evaluated at step 3: 3 episodes, evaluation seed 11"


def test_a_resumed_runs_time_counts_the_time_before_the_interruption(tmp_path, capsys, monkeypatch):
    from cli_testing import interrupt_at_step, main_interrupted

    out = tmp_path / "run"
    argv = ["train", "--env", "xor", "--steps", "8", "--out", str(out), *tiny_args(log_every=1, checkpoint_every=4)]
    with monkeypatch.context() as patch:
        interrupt_at_step(patch, 6)
        assert main_interrupted(argv) == 130
    before = torch.load(out / "checkpoint.pt", weights_only=False)["seconds"]
    assert before > 0
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    seconds = [json.loads(line)["seconds"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert seconds == sorted(seconds) and seconds[4] >= before  # row 5 (after the resume) counts on
    assert json.loads((out / "results.json").read_text())["seconds"] >= seconds[-1]


def test_the_progress_of_a_dataset_only_run_names_the_dataset(tmp_path, capfd):
    from data_testing import small_episodes, write_npy

    data = write_npy(tmp_path / "mydata", small_episodes(agents=2, actions=2, obs_dim=2, state_dim=2))
    argv = ["train", "--dataset-path", str(data), "--steps", "3", "--out", str(tmp_path / "run")]
    assert main([*argv, *tiny_args()[:-1]]) == 0  # (without --quiet)
    err = capfd.readouterr().err
    assert "dataset/mydata fused: 3/3" in err and "None/" not in err


def test_train_help_lists_the_config_fields(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    printed = capsys.readouterr().out
    assert "config fields (--set FIELD=VALUE" in printed
    for field in ("inspo.critic_warmup_steps (default 0)", "bc_steps (default 1000)", "lr (default 0.0005)"):
        assert field in printed


def test_a_closed_stdout_ends_quietly(tmp_path):
    import subprocess
    import sys

    from data_testing import small_episodes, write_npy

    data = write_npy(tmp_path / "data", small_episodes())
    # `true` reads nothing and exits at once: every write of the summary meets a closed pipe
    command = f"set -o pipefail; {sys.executable} -m inspo data info --json {data} | true"
    done = subprocess.run(["bash", "-c", command], cwd=CHILD_FOLDER, capture_output=True, text=True)
    assert done.stderr == ""
    assert done.returncode == 141  # as any tool the pipe's end stops (128 + SIGPIPE)
