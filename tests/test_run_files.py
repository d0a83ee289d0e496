"""The run folder under faults: torn log lines, damaged checkpoints, orphan temporaries, file modes,
failed writes. Each fault is met with one line naming the file, never a
traceback or a silently wrong run."""

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import torch

from inspo.cli import main
from inspo.config import make_config
from inspo.data import save_episode_buffer
from inspo.envs.matrix import XorGame
from inspo.loop import train
from inspo.runfolder import CheckpointError, RunFiles, RunFolderError, load_checkpoint

# a child runs outside the repository root, whose source folder inspo_ext/ would hide the installed package
CHILD_FOLDER = Path(__file__).resolve().parent

TINY = dict(bc_steps=5, batch_size=32, hidden=(8, 8), critic_hidden=(8, 8), log_every=1)


def tiny(**overrides):
    return make_config("xor", **{**TINY, **overrides})


def interrupted_run(out, *, steps=6, checkpoint_every=2, stop_after=5):
    """A run of `steps` steps stopped (as by Ctrl-C) after step `stop_after`; returns its config."""
    config = tiny(steps=steps, checkpoint_every=checkpoint_every)

    def stop(step):
        if step == stop_after:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, out_dir=out, progress=False, on_step=stop)
    return config


def log_steps(path):
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


# ---- a torn last log line ----


def test_a_torn_last_log_line_is_dropped_on_resume(tmp_path):
    config = interrupted_run(tmp_path / "cut")
    train(config, out_dir=tmp_path / "whole", progress=False)
    # what a kill in the middle of writing row 6 leaves behind
    with open(tmp_path / "cut" / "metrics.jsonl", "a") as handle:
        handle.write('{"step": 6, "critic_lo')
    with open(tmp_path / "cut" / "metrics.csv", "a") as handle:
        handle.write("6,0.01")
    resumed = train(config, out_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed["scores"] == json.loads((tmp_path / "whole" / "results.json").read_text())["scores"]
    assert log_steps(tmp_path / "cut" / "metrics.jsonl") == [1, 2, 3, 4, 5, 6]
    csv_lines = [(tmp_path / d / "metrics.csv").read_text().splitlines() for d in ("whole", "cut")]
    assert [line.split(",")[0] for line in csv_lines[1]] == ["step", "1", "2", "3", "4", "5", "6"]
    assert len(csv_lines[0]) == len(csv_lines[1])


def test_a_damaged_log_line_before_the_end_is_named(tmp_path):
    config = interrupted_run(tmp_path)
    jsonl = tmp_path / "metrics.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[1] = lines[1][:10]
    jsonl.write_text("\n".join(lines) + "\n")
    with pytest.raises(RunFolderError, match=f"log {jsonl} line 2 is not a row with a step"):
        train(config, out_dir=tmp_path, resume=True, progress=False)


# ---- damaged checkpoints ----


def _flip_middle(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 64]) + data[middle + 64 :]


DAMAGES = {
    "flipped": (lambda data: _flip_middle(data), "cannot be read|fails its checksum"),
    "truncated": (lambda data: data[: len(data) // 2], "cannot be read"),
    "empty": (lambda data: b"", r"is empty \(0 bytes\)"),
    "random bytes": (
        lambda data: bytes(
            torch.randint(256, (len(data),), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).tolist()
        ),
        "cannot be read",
    ),
}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished")
    train(tiny(steps=4, checkpoint_every=2), out_dir=out, progress=False)
    return out


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_checkpoint_is_refused_naming_the_file(tmp_path, finished_run, damage, capsys):
    spoil, message = DAMAGES[damage]
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(spoil((finished_run / "checkpoint.pt").read_bytes()))
    with pytest.raises(CheckpointError, match=f"checkpoint {path} ({message})"):
        load_checkpoint(path)
    # the command line says it in one line, for eval and for resume alike
    assert main(["eval", str(path)]) == 2
    assert main(["train", "--out", str(tmp_path), "--resume", "--steps", "8", "--quiet"]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(": error: ")[0] for line in lines] == ["inspo eval", "inspo train"]
    assert all(f"checkpoint {path}" in line for line in lines)


def test_a_flipped_checkpoint_fails_its_checksum(tmp_path, finished_run):
    """Bytes flipped inside a tensor's data still unpickle: only the checksum catches them."""
    payload = torch.load(finished_run / "checkpoint.pt", weights_only=False)
    tensor = payload["learner"]["actor_opt.exp_avg_sq0_0"].flatten()
    raw = (finished_run / "checkpoint.pt").read_bytes()
    needle = tensor.numpy().tobytes()
    at = raw.index(needle)
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(raw[:at] + bytes(b ^ 0x01 for b in raw[at : at + 4]) + raw[at + 4 :])
    spoiled = torch.load(path, weights_only=False)["learner"]["actor_opt.exp_avg_sq0_0"].flatten()
    assert spoiled[0] != tensor[0] and torch.isfinite(spoiled).all()
    with pytest.raises(CheckpointError, match=f"checkpoint {path} fails its checksum"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "held, message",
    [
        ([1, 2, 3], "it holds a list"),
        ({"weights": torch.ones(2)}, r"it holds a dict with keys \['weights'\]"),
    ],
)
def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path, held, message):
    torch.save(held, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'checkpoint.pt'} is not an inspo checkpoint: {message}"):
        load_checkpoint(tmp_path)


def test_a_checkpoint_holding_non_finite_values_is_refused(tmp_path, finished_run):
    payload = load_checkpoint(finished_run)
    payload["learner"]["actor_opt.exp_avg_sq0_0"][0] = float("nan")
    RunFiles(tmp_path).save_checkpoint(payload)  # a valid checksum of a diverged state
    with pytest.raises(CheckpointError, match=r"non-finite values \(in learner.actor_opt.exp_avg_sq0_0\)"):
        load_checkpoint(tmp_path / "checkpoint.pt")


def test_a_checkpoint_round_trips_through_its_checksum(finished_run):
    payload = load_checkpoint(finished_run)
    assert payload["step"] == 4 and "checksum" not in payload
    assert torch.load(finished_run / "checkpoint.pt", weights_only=False)["checksum"]


# ---- orphan temporaries ----


def test_orphan_temporaries_of_a_killed_write_are_removed(tmp_path):
    config = interrupted_run(tmp_path)
    orphans = [tmp_path / ".checkpoint.pt.x1y2.tmp", tmp_path / ".results.json.ab12.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a checkpoint")
    train(config, out_dir=tmp_path, resume=True, progress=False)
    assert not [path for path in orphans if path.exists()]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---- file modes ----


@pytest.fixture
def umask():
    def set_umask(mask):
        os.umask(mask)

    previous = os.umask(0o022)
    yield set_umask
    os.umask(previous)


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_run_and_dataset_files_get_the_umask_mode(tmp_path, umask, mask):
    umask(mask)
    train(tiny(steps=2), out_dir=tmp_path / "run", progress=False)
    save_episode_buffer(tmp_path / "data", *XorGame().generate_dataset("c", seed=0))
    files = [tmp_path / "run" / name for name in ("checkpoint.pt", "results.json", "config.json", "metrics.jsonl")]
    files += [tmp_path / "data" / name for name in ("obs.npy", "meta.json")]
    modes = {path.name: oct(stat.S_IMODE(path.stat().st_mode)) for path in files}
    assert modes == {path.name: oct(0o666 & ~mask) for path in files}


# ---- writes that fail ----


def test_out_pointing_at_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "run").write_text("not a folder")
    assert main(["train", "--env", "xor", "--steps", "2", "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"inspo train: error: run folder {tmp_path / 'run'} is a file, not a folder\n"
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        RunFiles(tmp_path / "run")


def test_a_folder_that_refuses_writes_is_named_and_the_checkpoint_survives(tmp_path, finished_run, monkeypatch):
    files = RunFiles(tmp_path)
    files.save_checkpoint(load_checkpoint(finished_run))
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(
        RunFolderError,
        match=f"cannot write checkpoint {tmp_path / 'checkpoint.pt'}: "
        "Permission denied; the previous checkpoint is intact",
    ):
        files.save_checkpoint(load_checkpoint(finished_run))
    with pytest.raises(RunFolderError, match=f"cannot write results {tmp_path / 'results.json'}: Permission denied"):
        files.write_results({"scores": {}})
    assert (tmp_path / "checkpoint.pt").read_bytes() == before


def test_a_short_torch_write_is_named_and_the_checkpoint_survives(tmp_path, finished_run, monkeypatch):
    """What torch.save raises when the disk fills under it (its zip writer, not the OS, sees it)."""
    files = RunFiles(tmp_path)
    payload = load_checkpoint(finished_run)
    files.save_checkpoint(payload)
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def short_write(obj, handle, *args, **kwargs):
        handle.write(b"PK")
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 2 vs 65831")

    monkeypatch.setattr(torch, "save", short_write)
    with pytest.raises(
        RunFolderError,
        match=r"cannot write checkpoint .*: the write stopped short \(is the disk "
        r"full\?\); the previous checkpoint is intact",
    ):
        files.save_checkpoint(payload)
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_run_folder_is_one_line(tmp_path, finished_run, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt").write_bytes((finished_run / "checkpoint.pt").read_bytes())
    (out / "config.json").write_text((finished_run / "config.json").read_text())
    out.chmod(0o555)
    try:
        assert main(["train", "--out", str(out), "--resume", "--steps", "6", "--quiet"]) == 2
    finally:
        out.chmod(0o755)
    assert "Permission denied" in capsys.readouterr().err


FULL_DISK_CHILD = textwrap.dedent("""
    import resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails (EFBIG), as on a full disk
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    from inspo.cli import main
    sys.exit(main(["train", "--out", sys.argv[1], "--resume", "--steps", "6", "--quiet"]))
""")


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays(tmp_path, finished_run):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("checkpoint.pt", "config.json", "metrics.jsonl", "metrics.csv", "eval.jsonl", "eval.csv"):
        (out / name).write_bytes((finished_run / name).read_bytes())
    before = (out / "checkpoint.pt").read_bytes()
    # room for the logs and the config, not for another checkpoint
    child = subprocess.run(
        [sys.executable, "-c", FULL_DISK_CHILD, str(out), str(len(before) // 2)],
        cwd=CHILD_FOLDER,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 2, child.stderr
    lines = child.stderr.splitlines()
    assert len(lines) == 1, child.stderr
    assert lines[0].startswith(f"inspo train: error: cannot write checkpoint {out / 'checkpoint.pt'}: ")
    assert lines[0].endswith("; the previous checkpoint is intact")
    assert (out / "checkpoint.pt").read_bytes() == before
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# ---- the folder's owner -----------------------------------------------------------------------------------
def test_the_python_api_refuses_a_folder_that_holds_a_run_as_the_cli_does(tmp_path):
    out = tmp_path / "run"
    train(tiny(steps=3), out_dir=out, progress=False)
    rows = log_steps(out / "metrics.jsonl")
    with pytest.raises(RunFolderError, match=f"run folder {out} is not empty: --resume continues the run there"):
        train(tiny(steps=3), out_dir=out, progress=False)
    assert log_steps(out / "metrics.jsonl") == rows  # no second run appended to the logs
    train(tiny(steps=3), out_dir=out, progress=False, overwrite=True)
    assert log_steps(out / "metrics.jsonl") == rows  # started over: the same rows once
    train(tiny(steps=5), out_dir=out, progress=False, resume=True)
    assert log_steps(out / "metrics.jsonl") == [1, 2, 3, 4, 5]


def test_a_folder_open_for_writing_is_refused_to_a_second_writer_of_this_process(tmp_path):
    held = RunFiles(tmp_path / "run")
    with pytest.raises(RunFolderError) as refused:
        RunFiles(tmp_path / "run", resume=True)
    assert str(refused.value) == (
        f"run folder {tmp_path / 'run'} is in use: process {os.getpid()} (this process) is training there; "
        "wait for it to end, stop it, or choose another --out"
    )
    held.close()
    RunFiles(tmp_path / "run", resume=True).close()  # closed: free again


def test_a_failed_run_gives_its_folder_up(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        train(tiny(steps=4, dataset_path=str(tmp_path / "missing")), out_dir=out, progress=False)
    train(tiny(steps=2), out_dir=out, progress=False)  # no lock left behind by the failure


def test_a_sweep_never_deletes_the_folder_of_a_live_run(tmp_path):
    from inspo.sweep.execute import resumable

    out = tmp_path / "run"
    held = RunFiles(out)
    (out / "metrics.jsonl").write_text("")
    try:
        with pytest.raises(RunFolderError, match="is in use: process"):
            resumable(tiny(steps=2), out)
        assert (out / "metrics.jsonl").exists()
    finally:
        held.close()


def test_the_path_and_folder_writes_leave_the_target_or_nothing(tmp_path):
    from inspo.atomic import atomic_folder, atomic_path

    with atomic_path(tmp_path / "file.h5") as tmp:
        tmp.write_bytes(b"complete")
    with atomic_folder(tmp_path / "dataset") as tmp:
        (tmp / "obs.npy").write_bytes(b"complete")
    assert (tmp_path / "file.h5").read_bytes() == (tmp_path / "dataset" / "obs.npy").read_bytes() == b"complete"
    for write in (atomic_path(tmp_path / "cut.h5"), atomic_folder(tmp_path / "cut")):
        with pytest.raises(RuntimeError), write as tmp:
            (tmp / "obs.npy" if tmp.is_dir() else tmp).write_bytes(b"half")
            raise RuntimeError("the writer died")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset", "file.h5"]  # no target, no temporary
