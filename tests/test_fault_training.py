"""SIGKILL a training process at random points (before its first checkpoint, after one, in the middle
of a checkpoint write, in the middle of a log line) and check that `inspo train --resume` finishes the
very run an uninterrupted process trains: the same final checkpoint (its checksum covers every tensor,
the optimizers and the RNG states), the same scores, the same log rows.

The kill points are drawn from INSPO_FAULT_SEED (default 0); INSPO_FAULT_CASES=N draws N per kind
(default 1) for a longer local run. The child kills itself from a hook in the run-folder writes, so
the point is exact and the test deterministic for a given seed.
"""

import json
import os
import random
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from cli_testing import tiny_args, training_state
from inspo.cli import main

# a child runs outside the repository root, whose source folder inspo_ext/ would hide the installed package
CHILD_FOLDER = Path(__file__).resolve().parent

pytestmark = pytest.mark.slow  # over a few seconds a module: `pytest -m "not slow"` skips it

STEPS, CHECKPOINT_EVERY = 12, 4
ARGV = ["--env", "xor", "--steps", str(STEPS)] + tiny_args(
    checkpoint_every=CHECKPOINT_EVERY, log_every=1, eval_every=4, **{"inspo.beta": 0.5, "inspo.beta_end": 0.0}
)
SEED = int(os.environ.get("INSPO_FAULT_SEED", "0"))
CASES = int(os.environ.get("INSPO_FAULT_CASES", "1"))

CHILD = textwrap.dedent("""
    import io, json, os, signal, sys
    import torch
    from inspo.runfolder import RunFiles

    kind, at, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    log, save = RunFiles.log, torch.save
    if kind == "after step":  # a clean kill between two steps, once row `at` is logged
        def hooked_log(self, name, row):
            log(self, name, row)
            if name == "metrics" and row["step"] == at:
                die()
        RunFiles.log = hooked_log
    elif kind == "during a log line":  # half of row `at` reaches the file
        def hooked_log(self, name, row):
            if name == "metrics" and row["step"] == at:
                line = json.dumps(row) + "\\n"
                with open(self.dir / "metrics.jsonl", "a") as handle:
                    handle.write(line[: len(line) // 2])
                die()
            log(self, name, row)
        RunFiles.log = hooked_log
    elif kind == "during a checkpoint write":  # half of the `at`-th checkpoint reaches its temporary file
        writes = []
        def hooked_save(payload, handle, *args, **kwargs):
            writes.append(1)
            if len(writes) == at:
                buffer = io.BytesIO()
                save(payload, buffer)
                handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                handle.flush()
                die()
            save(payload, handle, *args, **kwargs)
        torch.save = hooked_save
    from inspo.cli import main
    sys.exit(main(argv))
""")


def kill_points():
    """(kind, at) cases: `at` a step for the step kinds, the index of the checkpoint write otherwise."""
    draw = random.Random(SEED)
    cases = []
    for _ in range(CASES):
        cases += [
            ("after step", draw.randrange(1, CHECKPOINT_EVERY)),  # before the first checkpoint
            ("after step", draw.randrange(CHECKPOINT_EVERY + 1, STEPS)),  # after one
            ("during a log line", draw.randrange(1, STEPS + 1)),
            ("during a checkpoint write", draw.randrange(1, STEPS // CHECKPOINT_EVERY + 1)),
        ]
    return cases


def rows(path):
    return [{k: v for k, v in json.loads(line).items() if k != "seconds"} for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    assert main(["train", *ARGV, "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("kind, at", kill_points())
def test_resume_after_sigkill_is_bit_identical(tmp_path, uninterrupted, kind, at):
    out = tmp_path / "run"
    child = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(at), "train", *ARGV, "--out", str(out)],
        cwd=CHILD_FOLDER,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == -9, f"seed {SEED}: the child was to be killed ({kind} {at}): {child.stderr}"
    if kind == "during a checkpoint write":
        assert [p.name for p in out.iterdir() if p.name.startswith(".checkpoint.pt.")]  # the orphan temporary
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0, f"seed {SEED}: {kind} {at}"
    final = [torch.load(d / "checkpoint.pt", weights_only=False) for d in (uninterrupted, out)]
    assert final[1]["step"] == STEPS and training_state(uninterrupted) == training_state(out), (
        f"seed {SEED}: {kind} {at}"
    )
    results = [json.loads((d / "results.json").read_text()) for d in (uninterrupted, out)]
    assert results[0]["scores"] == results[1]["scores"]
    for log in ("metrics.jsonl", "eval.jsonl"):
        assert rows(uninterrupted / log) == rows(out / log), f"seed {SEED}: {kind} {at}: {log}"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# ---- two writers, one run folder --------------------------------------------------------------------------
LONG = ["train", "--env", "xor", "--steps", "100000"] + tiny_args(log_every=1, checkpoint_every=50)


def start_training(out, *extra):
    """A child process training a long run into `out`; returns it once it holds the folder and trains."""
    child = subprocess.Popen(
        [sys.executable, "-m", "inspo", *LONG, "--out", str(out), *extra],
        cwd=CHILD_FOLDER,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ((out / "metrics.jsonl").is_file() and (out / "checkpoint.pt").is_file()):
        assert child.poll() is None, f"the child ended: {child.stderr.read()}"
        assert time.monotonic() < deadline, "the child did not start training"
        time.sleep(0.1)
    return child


def metric_steps(out):
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(
    "argv",
    [
        ["train", "--env", "xor", "--steps", "20"],  # a second fresh run into the folder
        ["train", "--resume", "--steps", "100"],  # --resume of the run that is still going
        ["train", "--env", "xor", "--steps", "20", "--overwrite"],  # --overwrite of it
    ],
    ids=["fresh", "resume", "overwrite"],
)
def test_a_live_run_owns_its_folder_and_a_killed_one_does_not(tmp_path, capsys, argv):
    out = tmp_path / "run"
    child = start_training(out)
    try:
        capsys.readouterr()
        assert main([*argv, "--out", str(out), "--quiet"]) == 2
        error = capsys.readouterr().err.strip()
        assert error == (
            f"inspo train: error: run folder {out} is in use: process {child.pid} is training there; "
            "wait for it to end, stop it, or choose another --out"
        )
        steps = metric_steps(out)
        assert len(steps) == len(set(steps)) and steps == sorted(steps)  # nothing of a second writer went in
    finally:
        child.kill()
        child.wait()
    # the kernel drops a killed process's lock: the run resumes
    assert main(["train", "--out", str(out), "--resume", "--steps", str(max(metric_steps(out)) + 5), "--quiet"]) == 0
    steps = metric_steps(out)
    assert len(steps) == len(set(steps))


def test_two_runs_started_together_into_one_folder_one_is_refused(tmp_path):
    out = tmp_path / "c"
    argv = ["-m", "inspo", "train", "--env", "xor", "--steps", "300", "--out", str(out)] + tiny_args(log_every=1)
    children = [
        subprocess.Popen(
            [sys.executable, *argv, "--seed", str(seed)], cwd=CHILD_FOLDER, stderr=subprocess.PIPE, text=True
        )
        for seed in (1, 2)
    ]
    results = [(child.wait(timeout=300), child.stderr.read()) for child in children]
    assert sorted(code for code, _ in results) == [0, 2], results
    refused = next(text for code, text in results if code == 2).strip().splitlines()
    assert len(refused) == 1 and f"run folder {out} " in refused[0], refused
    assert refused[0].endswith("choose another --out")  # in use by the other, or holding its run already
    steps = metric_steps(out)
    assert steps == list(range(1, 301))  # one run's rows, each once
    winner = 1 + [code for code, _ in results].index(0)
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == winner


# ---- resume on the dataset the checkpoint was trained on --------------------------------------------------
def changed_dataset(data, change):
    import numpy as np

    if change == "rewards x10":
        np.save(data / "reward.npy", np.load(data / "reward.npy") * 10)
    elif change == "fewer episodes":
        meta = json.loads((data / "meta.json").read_text())
        (data / "meta.json").write_text(json.dumps({**meta, "episodes_in_buffer": 6}))
    else:  # another dataset of the same shapes in its place
        from data_testing import small_episodes, write_npy

        write_npy(data, small_episodes(seed=9, agents=2, actions=2, obs_dim=2, state_dim=2))


@pytest.mark.parametrize("change", ["rewards x10", "fewer episodes", "another dataset"])
def test_resume_refuses_a_dataset_that_changed_unless_asked(tmp_path, capsys, change):
    from data_testing import small_episodes, write_npy

    data = write_npy(tmp_path / "data", small_episodes(agents=2, actions=2, obs_dim=2, state_dim=2))
    out = tmp_path / "run"
    assert main(["train", "--dataset-path", str(data), "--steps", "4", "--out", str(out), *tiny_args()]) == 0
    before = torch.load(out / "checkpoint.pt", weights_only=False)["dataset"]
    capsys.readouterr()
    changed_dataset(data, change)
    assert main(["train", "--out", str(out), "--resume", "--steps", "8", "--quiet"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"inspo train: error: the dataset changed since the checkpoint in {out} was written")
    assert f"{data}: sha256 {before['sha256'][:12]}" in error and "--allow-dataset-change" in error
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 4  # nothing trained
    assert main(["train", "--out", str(out), "--resume", "--steps", "8", "--allow-dataset-change", "--quiet"]) == 0
    after = torch.load(out / "checkpoint.pt", weights_only=False)
    assert after["step"] == 8 and after["dataset"]["sha256"] != before["sha256"]  # the data it now trains on


def test_resume_on_the_same_dataset_is_not_refused(tmp_path):
    from data_testing import small_episodes, write_npy

    data = write_npy(tmp_path / "data", small_episodes(agents=2, actions=2, obs_dim=2, state_dim=2))
    out = tmp_path / "run"
    assert main(["train", "--dataset-path", str(data), "--steps", "4", "--out", str(out), *tiny_args()]) == 0
    os.utime(data / "reward.npy")  # touched, not changed: the contents are what count
    assert main(["train", "--out", str(out), "--resume", "--steps", "8", "--quiet"]) == 0


# ---- config files with a key given twice ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, text, line",
    [
        ("c.yaml", "env: xor\nlr: 0.1\nlr: 5.0\n", 3),
        ("c.json", '{"env": "xor",\n "lr": 0.1,\n "lr": 5.0}\n', 3),
        ("c.yaml", "env: xor\nxor:\n  variant: plain\n  variant: penalty\n", 4),
    ],
)
def test_a_key_given_twice_in_a_config_file_is_refused(tmp_path, capsys, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "--config", str(path), "--out", str(out), *tiny_args()]) == 2
    key = "variant" if "variant" in text else "lr"
    assert capsys.readouterr().err.strip() == (
        f"inspo train: error: config file {path}: {key!r} is given twice (again on line {line})"
    )
    assert not out.exists()


# ---- extreme finite data ------------------------------------------------------------------------------------
def bridge_buffer(tmp_path, **edits):
    from inspo.config import make_config
    from inspo.data.buffer import save_episode_buffer
    from inspo.envs import make_env

    arrays, meta = make_env(make_config("bridge")).generate_dataset("optimal", 0)
    for name, (index, value) in edits.items():
        arrays[name][index] = value
    save_episode_buffer(tmp_path / "bridge", arrays, meta)
    return tmp_path / "bridge"


@pytest.mark.parametrize(
    "edits, message",
    [
        (
            {"reward": ((3, 2, 0), 1e30)},
            "field 'reward.npy': reward 1e+30 is beyond +-1e+15 (episode 3, step 2): the critic's losses would "
            "overflow float32; rescale the rewards",
        ),
        (
            {"reward": ((5, 0, 0), -2e15)},
            "field 'reward.npy': reward -2e+15 is beyond +-1e+15 (episode 5, step 0)",
        ),
        ({"terminated": ((4, 1, 0), 7)}, "field 'terminated.npy': terminated holds 7 at episode 4, step 1"),
        ({"filled": ((2, 0, 0), 2)}, "field 'filled.npy': filled holds 2 at episode 2, step 0; a flag must be 0 or 1"),
    ],
)
@pytest.mark.parametrize("command", ["train", "data info"])
def test_extreme_finite_data_is_refused_by_training_and_data_info(tmp_path, capsys, edits, message, command):
    data = bridge_buffer(tmp_path, **edits)
    if command == "train":
        argv = ["train", "--env", "bridge", "--dataset-path", str(data), "--steps", "30", "--out", str(tmp_path / "r")]
        argv += tiny_args(log_every=1)
    else:
        argv = ["data", "info", str(data)]
    assert main(argv) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and message in error, error


def test_rewards_within_the_bound_train_to_finite_losses(tmp_path, capsys):
    data = bridge_buffer(tmp_path, reward=((3, 2, 0), 1e6))
    out = tmp_path / "r"
    argv = ["train", "--env", "bridge", "--dataset-path", str(data), "--steps", "30", "--out", str(out)]
    assert main([*argv, *tiny_args(log_every=1)]) == 0
    losses = [json.loads(line)["critic_loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(loss) < float("inf") for loss in losses)


def test_a_loss_that_turns_non_finite_stops_the_run_naming_step_and_loss(tmp_path, capsys, monkeypatch):
    from inspo.learners.inspo import InspoLearner

    update = InspoLearner.update

    def overflowing_update(self, batch, draws, step):
        metrics = update(self, batch, draws, step)
        if step + 1 >= 7:  # from step 7 on, as a reward scale the data allow could make it
            metrics["critic_loss"] = metrics["critic_loss"] * float("inf")
        return metrics

    monkeypatch.setattr(InspoLearner, "update", overflowing_update)
    out = tmp_path / "r"
    argv = ["train", "--env", "xor", "--steps", "20", "--out", str(out)]
    assert main([*argv, *tiny_args(log_every=5, checkpoint_every=5)]) == 2
    assert capsys.readouterr().err.strip() == (
        "inspo train: error: training stopped: critic_loss of seed 0 is not finite at step 7 (the data's scale "
        "or the learning rates make the losses overflow); the checkpoint before that step is kept"
    )
    assert torch.load(out / "checkpoint.pt", weights_only=False)["step"] == 5
    assert metric_steps(out) == [5]  # no row of a non-finite loss


# ---- vaults as OG-MARL writes them --------------------------------------------------------------------------
def test_a_vault_written_as_og_marl_writes_it_trains(tmp_path, capsys):
    pytest.importorskip("flashbax")
    from data_testing import og_marl_experience, small_episodes, write_vault
    from inspo.data.formats import build_store, read_dataset
    from inspo.data.transitions import TransitionStore

    arrays = small_episodes()
    vault = write_vault(tmp_path / "vaults", og_marl_experience(arrays))
    store = build_store(read_dataset(vault))
    expected = TransitionStore.from_episode_buffer(arrays)
    assert torch.equal(store.avail, expected.avail) and torch.equal(store.actions, expected.actions)
    assert torch.equal(store.reward, expected.reward) and torch.equal(store.done, expected.done)
    capsys.readouterr()
    out = tmp_path / "run"
    assert main(["train", "--dataset-path", str(vault), "--steps", "4", "--out", str(out), *tiny_args()]) == 0
    assert main(["data", "info", str(vault)]) == 0


def test_float_legals_other_than_0_and_1_are_refused(tmp_path, capsys):
    pytest.importorskip("flashbax")
    from data_testing import og_marl_experience, small_episodes, write_vault

    experience = og_marl_experience(small_episodes())
    experience["infos"]["legals"][0, 5, 1, 2] = 0.5
    vault = write_vault(tmp_path / "vaults", experience)
    capsys.readouterr()
    assert main(["data", "info", str(vault)]) == 2
    error = capsys.readouterr().err.strip()
    assert "field 'infos.legals': holds 0.5; legal-action flags must be 0 or 1" in error and len(error) < 300
