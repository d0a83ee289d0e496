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

import pytest
import torch

from cli_testing import tiny_args, training_state
from inspo.cli import main

STEPS, CHECKPOINT_EVERY = 12, 4
ARGV = ["--env", "xor", "--steps", str(STEPS)] + tiny_args(
    checkpoint_every=CHECKPOINT_EVERY, log_every=1, eval_every=4, beta=0.5, beta_end=0.0
)
SEED = int(os.environ.get("INSPO_FAULT_SEED", "0"))
CASES = int(os.environ.get("INSPO_FAULT_CASES", "1"))

CHILD = textwrap.dedent("""
    import io, json, os, signal, sys
    import torch
    from inspo.run import RunFiles

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
