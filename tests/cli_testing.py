"""Shared by the command-line tests."""

from pathlib import Path

import pytest

from inspo.cli import main


def training_state(folder):
    """The sha256 of a run folder's checkpoint without its wall time ("seconds", which a resumed run's
    interruption changes): every tensor, the optimizers, the RNG states, the step, config and dataset."""
    import torch

    from inspo.runfolder import payload_digest

    payload = torch.load(Path(folder) / "checkpoint.pt", weights_only=False)
    return payload_digest({key: value for key, value in payload.items() if key not in ("checksum", "seconds")})


def main_interrupted(argv):
    """main(argv) for a run that Ctrl-C stops: the interrupt must not reach the caller."""
    try:
        return main(argv)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C came out of inspo.cli.main as a KeyboardInterrupt (a traceback)")


def interrupt_at_step(monkeypatch, step):
    """Ctrl-C right after a run logs its metrics row of `step` (RunFiles.log patched for the test)."""
    from inspo.runfolder import RunFiles

    log = RunFiles.log

    def interrupted_log(self, kind, row):
        log(self, kind, row)
        if row["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(RunFiles, "log", interrupted_log)


# the smallest networks and batches a CLI test trains (fields of TrainConfig, as `--set` gives them)
TINY_FIELDS = dict(bc_steps=5, batch_size=32, hidden="8,8", critic_hidden="8,8")


def tiny_args(**fields) -> list[str]:
    """`--set FIELD=VALUE` for TINY_FIELDS and `fields` (which win), then --quiet."""
    argv = []
    for name, value in {**TINY_FIELDS, **fields}.items():
        argv += ["--set", f"{name}={value}"]
    return argv + ["--quiet"]
