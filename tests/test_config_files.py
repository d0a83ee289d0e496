"""Config files and run records: --config FILE under --set, config.json before the
first step, --resume --steps N extends a run, and a run folder is never silently mixed."""

import json

import pytest
import torch

from cli_testing import interrupt_at_step, main_interrupted, training_state
from inspo.cli import main
from inspo.config import load_config_file, make_config
from inspo.loop import train

TINY = ["--set", "bc_steps=5", "--set", "batch_size=32", "--set", "eval_episodes=3", "--quiet"]
YAML = """\
env: bridge
steps: 3
hidden: [8, 8]
critic_hidden: [8, 8]
lr: 1e-3          # YAML 1.1 reads this as a string; it is parsed like --set lr=1e-3
inspo:
  beta_end: null
share_parameters: yes
"""


def checkpoint_config(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)["config"]


def test_a_yaml_config_file_sets_fields_and_set_and_flags_win(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(YAML)
    out = tmp_path / "run"
    argv = [
        "train",
        "--config",
        str(tmp_path / "run.yaml"),
        "--set",
        "steps=4",
        "--seed",
        "2",
        "--set",
        "seed=1",
        "--out",
        str(out),
        *TINY,
    ]
    assert main(argv) == 0
    config = checkpoint_config(out)
    assert (config["env"], config["dataset"], config["steps"], config["seed"]) == ("bridge", "optimal", 4, 2)
    assert (
        config["hidden"],
        config["lr"],
        config["algo_options"]["inspo"]["beta_end"],
        config["share_parameters"],
    ) == (
        (8, 8),
        1e-3,
        None,
        True,
    )
    assert config["critic_lr"] == make_config("bridge").critic_lr  # the preset under the file
    assert "bridge/optimal" in capsys.readouterr().out


def test_a_json_config_file_reads_like_the_yaml_one(tmp_path):
    (tmp_path / "run.json").write_text(
        json.dumps(
            dict(
                env="bridge",
                steps=3,
                hidden=[8, 8],
                critic_hidden=[8, 8],
                lr="1e-3",
                inspo={"beta_end": None},
                share_parameters=True,
            )
        )
    )
    (tmp_path / "run.yaml").write_text(YAML)
    assert load_config_file(tmp_path / "run.json") == load_config_file(tmp_path / "run.yaml")


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("a.yaml", "etta: 1\n", "unknown config field 'etta'"),
        ("a.yaml", "steps: many\n", "config field 'steps' expects"),
        ("a.yaml", "inspo: {alpha: [1, 2]}\n", "config.inspo.alpha must be a finite float"),
        ("a.yaml", "alpha: 1\n", "config field 'alpha' is now the option 'inspo.alpha'"),
        ("a.yaml", "- steps\n", "must hold a mapping of config fields, got a list"),
        ("a.yaml", "steps: [1\n", "is not valid YAML"),
        ("a.json", "{steps: 1}", "is not valid JSON"),
        ("a.toml", "steps = 1", "must be .json, .yaml or .yml"),
    ],
)
def test_a_bad_config_file_is_one_line_naming_it(tmp_path, capsys, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"inspo train: error: config file {path}") and message in err and err.count("\n") == 1


def test_a_missing_config_file_is_named(tmp_path, capsys):
    assert main(["train", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert f"config file {tmp_path / 'nope.yaml'} does not exist" in capsys.readouterr().err


def test_the_resolved_config_is_in_the_run_folder_before_the_first_step(tmp_path):
    config = make_config("xor", steps=3, bc_steps=5, batch_size=32, hidden=(8, 8), critic_hidden=(8, 8))
    seen = []

    def look(step):
        if step == 1:
            seen.append(json.loads((tmp_path / "config.json").read_text()))

    train(config, out_dir=tmp_path, progress=False, on_step=look)
    assert seen == [json.loads(json.dumps(config.to_dict()))]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_config(tmp_path, capsys, monkeypatch):
    argv = ["--env", "xor", "--steps", "6", "--set", "log_every=1", "--set", "checkpoint_every=0", *TINY]
    assert main(["train", *argv, "--out", str(tmp_path / "whole")]) == 0
    interrupt_at_step(monkeypatch, 4)
    assert main_interrupted(["train", *argv, "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "checkpoint.pt").exists()
    assert main(["train", "--out", str(tmp_path / "cut"), "--resume", "--quiet"]) == 0
    assert training_state(tmp_path / "whole") == training_state(tmp_path / "cut")
    assert [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()] == [
        1,
        2,
        3,
        4,
        5,
        6,
    ]


def test_resume_steps_extends_an_interrupted_run(tmp_path, monkeypatch):
    common = ["--env", "xor", "--set", "log_every=1", "--set", "checkpoint_every=2", *TINY]
    assert main(["train", *common, "--steps", "10", "--out", str(tmp_path / "whole")]) == 0
    interrupt_at_step(monkeypatch, 5)
    assert main_interrupted(["train", *common, "--steps", "6", "--out", str(tmp_path / "cut")]) == 130
    monkeypatch.undo()
    assert main(["train", "--out", str(tmp_path / "cut"), "--resume", "--steps", "10", "--quiet"]) == 0
    final = [torch.load(tmp_path / d / "checkpoint.pt", weights_only=False) for d in ("whole", "cut")]
    assert final[1]["step"] == 10 and training_state(tmp_path / "whole") == training_state(tmp_path / "cut")


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "2"], "--steps 2 is below the 4 steps the run in"),
        (["--set", "lr=1"], "--resume continues the run with its own config; only --steps can change it (got --set)"),
        (["--mode", "exact", "--config", "x.yaml"], "only --steps can change it (got --mode, --config)"),
    ],
)
def test_resume_refuses_what_it_cannot_do(tmp_path, capsys, extra, message):
    assert main(["train", "--env", "xor", "--steps", "4", "--set", "hidden=8", "--out", str(tmp_path), *TINY]) == 0
    assert main(["train", "--out", str(tmp_path), "--resume", *extra]) == 2
    assert message in capsys.readouterr().err


def test_resume_of_an_empty_folder_names_what_is_missing(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--resume"]) == 2
    assert f"no checkpoint (or config.json) to resume from in {tmp_path}" in capsys.readouterr().err


def test_a_fresh_run_into_a_used_folder_is_refused_and_overwrite_starts_over(tmp_path, capsys):
    argv = [
        "train",
        "--env",
        "xor",
        "--steps",
        "3",
        "--set",
        "log_every=1",
        "--set",
        "hidden=8",
        "--out",
        str(tmp_path),
        *TINY,
    ]
    assert main(argv) == 0
    before = (tmp_path / "checkpoint.pt").read_bytes()
    assert main(argv) == 2
    assert capsys.readouterr().err == (
        f"inspo train: error: run folder {tmp_path} is not empty: --resume continues "
        "the run there, --overwrite starts it over, or choose another --out\n"
    )
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    assert checkpoint_config(tmp_path)["seed"] == 1


def test_overwrite_never_deletes_files_that_are_not_a_run(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    argv = ["train", "--env", "xor", "--steps", "2", "--out", str(tmp_path), "--overwrite", "--quiet"]
    assert main(argv) == 2
    assert "holds files that are not a run's (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_the_main_job_checks_every_folder_before_training(tmp_path, capsys):
    (tmp_path / "bridge-optimal").mkdir()
    (tmp_path / "bridge-optimal" / "metrics.jsonl").write_text("")
    assert (
        main(["train", "--steps", "2", "--set", "inspo.critic_warmup_steps=0", "--out", str(tmp_path), "--quiet"]) == 2
    )
    assert f"run folder {tmp_path / 'bridge-optimal'} is not empty" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bridge-optimal"]
