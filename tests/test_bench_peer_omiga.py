"""benchmarks/peer_omiga.py without the official checkout: a wrong path is one clear error line, and the
training-loop body is read out of a trainer file of the official layout and run as a function."""

from __future__ import annotations

import importlib.util
import textwrap
import types
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "peer_omiga", Path(__file__).resolve().parent.parent / "benchmarks" / "peer_omiga.py"
)
peer_omiga = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(peer_omiga)


def test_a_path_without_the_official_code_is_one_error_line(tmp_path, capsys):
    assert peer_omiga.main(["--omiga", str(tmp_path), "--variants", "official", "--rounds", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"peer_omiga: error: {tmp_path} is not a checkout of the official OMIGA code's SMAC branch (no "
        "models/omiga_model.py, framework/trainer_omiga.py); get one with: "
        "git clone -b SMAC https://github.com/ZhengYinan-AIR/OMIGA"
    ]


def test_the_loop_body_runs_as_written(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "omiga_model.py").write_text("")
    (tmp_path / "framework").mkdir()
    (tmp_path / "framework" / "trainer_omiga.py").write_text(
        textwrap.dedent(
            """
            import math
            import wandb_is_not_installed_here

            class Trainer:
                def soft_update_target(self):
                    self.updates += 1

                def train(self, loader):
                    def run_epoch(dataset):
                        for it, (s, cur_a) in dataset:
                            self.seen.append(math.floor(s) + cur_a)
                            self.soft_update_target()
                    run_epoch(loader)
            """
        )
    )
    _, update, soft_update, names = peer_omiga.load_official(tmp_path)
    assert names == ["it", "s", "cur_a"]
    trainer = types.SimpleNamespace(seen=[], updates=0)
    trainer.soft_update_target = lambda: soft_update(trainer)
    update(trainer, None, it=0, s=1.5, cur_a=2)
    assert (trainer.seen, trainer.updates) == ([3], 1)


def test_a_trainer_without_the_loop_is_named(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "omiga_model.py").write_text("")
    (tmp_path / "framework").mkdir()
    (tmp_path / "framework" / "trainer_omiga.py").write_text("class Trainer:\n    def train(self):\n        pass\n")
    with pytest.raises(peer_omiga.CheckoutError, match="Trainer.train has no single training loop"):
        peer_omiga.load_official(tmp_path)
