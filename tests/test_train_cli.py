"""The `inspo` command line, run in-process: train on a tiny step count, eval its checkpoint, errors."""

import json

import pytest
import torch

from cli_testing import tiny_args, training_state
from inspo.cli import main

TINY = tiny_args(eval_episodes=3, critic_warmup_steps=0)


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
        "policy_steps=2",
        "--out",
        str(out),
        *TINY,
    ]
    assert main(argv) == 0
    config = torch.load(out / "checkpoint.pt", weights_only=False)["config"]
    assert (config["regime"], config["mode"], config["dataset"], config["steps"]) == ("full-update", "exact", "d", 3)
    assert config["policy_steps"] == 2  # --set wins over the regime
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
        (["train", "--env", "xor", "--set", "alpha=nan"], "config.alpha must be a finite float"),
        (["train", "--env", "xor", "--set", "steps=many"], "config field 'steps' expects"),
        (["train", "--env", "xor", "--set", "steps"], "--set expects key=value"),
        (
            ["train", "--env", "mne", "--steps", "100", "--set", "critic_warmup_steps=300"],
            "critic_warmup_steps must be in [0, steps = 100), got 300 (--set critic_warmup_steps=N sets it)",
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
