"""Bad datasets, bad command lines, missing extras, Ctrl-C and the progress display: each a one-line `inspo CMD: error: ...` (exit 2) or the documented behaviour, never a traceback."""

import importlib.util
import io
import json

import numpy as np
import pytest
import torch

from cli_testing import interrupt_at_step, main_interrupted, tiny_args
from inspo.cli import main
from inspo.data import DatasetError, TransitionStore, load_episode_buffer, save_episode_buffer
from inspo.envs.matrix import XorGame
from inspo.progress import LineProgress, progress_bar

TINY = tiny_args(eval_episodes=3)


@pytest.fixture
def dataset(tmp_path):
    """An XOR dataset in the episode-buffer format, as files to spoil."""
    path = tmp_path / "ds"
    save_episode_buffer(path, *XorGame().generate_dataset("c", seed=0))
    return path


def train_on(path, capsys):
    out = path.parent / "run"  # never the default runs/ under the working directory
    code = main(["train", "--env", "xor", "--dataset-path", str(path), "--out", str(out), "--steps", "2", *TINY])
    return code, capsys.readouterr().err


# ---- datasets ----


@pytest.mark.parametrize(
    "meta, message",
    [
        ("{not json", r"meta.json cannot be read as JSON: Expecting property name"),
        ('{"episodes_in_buffer": "abc"}', r"meta.json: episodes_in_buffer = 'abc', but it must be an integer in \[1, "),
        ("[1, 2]", "meta.json must hold a JSON object, got a list"),
    ],
)
def test_a_bad_meta_json_is_named(dataset, meta, message, capsys):
    (dataset / "meta.json").write_text(meta)
    with pytest.raises(DatasetError, match=message):
        load_episode_buffer(dataset)
    code, err = train_on(dataset, capsys)
    assert code == 2 and err.startswith("inspo train: error: ") and str(dataset / "meta.json") in err
    assert len(err.splitlines()) == 1


def test_an_empty_npy_file_is_named(dataset, capsys):
    (dataset / "reward.npy").write_bytes(b"")
    with pytest.raises(DatasetError, match=f"array 'reward' \\({dataset / 'reward.npy'}\\) cannot be read"):
        load_episode_buffer(dataset)
    code, err = train_on(dataset, capsys)
    assert code == 2 and "reward.npy" in err


def test_a_folder_named_like_an_array_is_named(dataset):
    (dataset / "obs.npy").unlink()
    (dataset / "obs.npy").mkdir()
    with pytest.raises(DatasetError, match=f"array 'obs': {dataset / 'obs.npy'} is a folder, not a .npy file"):
        load_episode_buffer(dataset)


def test_big_endian_arrays_load_in_native_order(dataset):
    native, _ = load_episode_buffer(dataset)
    np.save(dataset / "obs.npy", native["obs"].astype(">f4"))
    np.save(dataset / "actions.npy", native["actions"].astype(">i8"))
    arrays, _ = load_episode_buffer(dataset)
    assert arrays["obs"].dtype.isnative and np.array_equal(arrays["obs"], native["obs"])
    store, reference = TransitionStore.from_episode_buffer(arrays), TransitionStore.from_episode_buffer(native)
    assert torch.equal(store.obs, reference.obs) and torch.equal(store.actions, reference.actions)
    with pytest.raises(DatasetError, match=r"array 'actions' .* has byte order '>i8', which cannot be memory-mapped"):
        load_episode_buffer(dataset, mmap_mode="r")


def test_a_dataset_path_that_is_a_file_says_so(dataset, capsys):
    code, err = train_on(dataset / "obs.npy", capsys)
    assert code == 2 and "is a file, not an episode-buffer directory" in err


# ---- the command line ----


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--set", "device=nosuch"], "config.device must be 'cpu', 'cuda' or 'cuda:N', got 'nosuch'"),
        (["--set", "device=meta"], "config.device must be 'cpu', 'cuda' or 'cuda:N', got 'meta'"),
        (["--set", "hidden="], "config.hidden must hold layer sizes >= 1 (one or more), got ()"),
        (["--set", "critic_hidden=0"], "config.critic_hidden must hold layer sizes >= 1 (one or more), got (0,)"),
    ],
)
def test_bad_fields_are_one_line(argv, message, tmp_path, capsys):
    assert main(["train", "--env", "xor", "--steps", "2", "--out", str(tmp_path), *argv, "--quiet"]) == 2
    assert capsys.readouterr().err == f"inspo train: error: {message}\n"


def test_cuda_without_cuda_is_one_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--env", "xor", "--steps", "2", "--set", "device=cuda", "--out", str(tmp_path)]) == 2
    assert "config.device is 'cuda', but CUDA is not available on this machine" in capsys.readouterr().err


def test_env_through_set_is_the_env(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--set", "env=bridge", "--steps", "2", "--out", str(out), *TINY]) == 0
    assert "bridge/optimal" in capsys.readouterr().out
    assert json.loads((out / "config.json").read_text())["env"] == "bridge"


@pytest.mark.parametrize("episodes", ["0", "-3"])
def test_eval_needs_a_positive_episode_count(episodes, tmp_path, capsys):
    assert main(["eval", str(tmp_path), "--episodes", episodes]) == 2
    assert capsys.readouterr().err == f"inspo eval: error: --episodes must be >= 1, got {episodes}\n"


@pytest.fixture
def without(monkeypatch):
    """Pretend an optional package is not installed."""

    def hide(*modules):
        find_spec = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda name, *args: None if name in modules else find_spec(name, *args)
        )

    return hide


def test_a_missing_tensorboard_is_named_before_training(without, tmp_path, capsys):
    without("tensorboard")
    assert main(["train", "--env", "xor", "--steps", "2", "--tensorboard", "--out", str(tmp_path / "run")]) == 2
    assert capsys.readouterr().err == (
        "inspo train: error: --tensorboard needs the tensorboard package, which is "
        "not installed: pip install 'inspo[tensorboard]'\n"
    )
    assert not (tmp_path / "run").exists()


def test_a_missing_matplotlib_stops_reproduce_before_any_run(without, tmp_path, capsys):
    from experiments.results.__main__ import main as reproduce

    without("matplotlib")
    argv = [
        "--quick",
        "--only",
        "main-xor-penalty-c-bc",
        "--seeds",
        "1",
        "--steps",
        "2",
        "--num-cpus",
        "1",
        "--out",
        str(tmp_path / "runs"),
    ]
    assert reproduce(argv) == 2
    assert "needs the matplotlib package, which is not installed: pip install 'inspo[plots]'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_ctrl_c_is_one_line_saying_how_to_continue(monkeypatch, tmp_path, capsys):
    out = tmp_path / "run"
    interrupt_at_step(monkeypatch, 3)
    argv = [
        "train",
        "--env",
        "xor",
        "--steps",
        "6",
        "--set",
        "log_every=1",
        "--set",
        "checkpoint_every=2",
        "--out",
        str(out),
        *TINY,
    ]
    assert main_interrupted(argv) == 130
    assert capsys.readouterr().err == f"inspo train: interrupted; continue with: inspo train --out {out} --resume\n"
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--resume", "--quiet"]) == 0
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_ctrl_c_before_the_run_starts_offers_no_resume(monkeypatch, tmp_path, capsys):
    from inspo.runfolder import RunFiles

    def interrupted(self, config):
        raise KeyboardInterrupt

    monkeypatch.setattr(RunFiles, "write_config", interrupted)
    assert main_interrupted(["train", "--env", "xor", "--out", str(tmp_path / "run"), "--quiet"]) == 130
    assert capsys.readouterr().err == f"inspo train: interrupted; nothing was written to {tmp_path / 'run'} yet\n"


# ---- progress outside a terminal ----


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_outside_a_terminal_progress_is_a_plain_line_every_few_percent():
    stream = io.StringIO()
    bar = progress_bar(1000, initial=100, desc="xor/c fused", stream=stream)
    assert isinstance(bar, LineProgress)
    for _ in range(900):
        bar.set_postfix({"ess": "0.5"})
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue() and len(lines) == 18  # 150, 200, ..., 1000
    assert lines[0].startswith("xor/c fused: 150/1000 (15%) ") and lines[0].endswith(" ess=0.5")
    assert lines[-1].startswith("xor/c fused: 1000/1000 (100%) ")


def test_in_a_terminal_progress_is_a_bar_and_disabled_is_silent():
    terminal = Terminal()
    bar = progress_bar(10, desc="run", stream=terminal)
    assert not isinstance(bar, LineProgress)
    bar.update(10)
    bar.close()
    assert "\r" in terminal.getvalue()
    quiet = io.StringIO()
    bar = progress_bar(10, stream=quiet, enabled=False)
    bar.update(10)
    bar.close()
    assert quiet.getvalue() == ""


def test_training_into_a_log_writes_lines_and_the_table_starts_its_own(tmp_path, capfd):
    argv = ["train", "--env", "xor", "--steps", "40", "--out", str(tmp_path / "run"), *TINY[:-1]]
    assert main(argv) == 0
    captured = capfd.readouterr()
    assert "\r" not in captured.err and "\r" not in captured.out
    cloning = [line for line in captured.err.splitlines() if line.startswith("xor/c fused: behaviour cloning: ")]
    progress = [line for line in captured.err.splitlines() if line.startswith("xor/c fused: ") and line not in cloning]
    assert len(progress) == 20 and progress[-1].startswith("xor/c fused: 40/40 (100%)")
    assert cloning and cloning[-1].startswith("xor/c fused: behaviour cloning: 5/5 (100%)")  # the phase before
    assert captured.out.startswith("task ")


def test_a_run_whose_dataset_fails_leaves_no_run_folder(dataset, tmp_path, capsys):
    (dataset / "obs.npy").unlink()
    out = tmp_path / "runs" / "never"
    code = main(["train", "--env", "xor", "--dataset-path", str(dataset), "--out", str(out), "--steps", "2", *TINY])
    assert code == 2 and "obs" in capsys.readouterr().err
    assert not out.exists()
