"""The deferred status check (inspo_ext/_status.py): inside deferred_status() (and while a CUDA graph
is captured) the ops do not read their status back, and check_status() raises later the error the call
would have raised, naming the same argument and index (without the value). The deferred path is the same on
both devices, so it runs here on the CPU; tests/test_ops_cuda_capture.py replays it from a CUDA graph."""

from __future__ import annotations

import math

import pytest
import torch

import inspo_ext
from inspo.learners.learner import Learner
from inspo.loop import train
from inspo_ext import _backend, _status
from ops_testing import joint_batch, next_step, run_loss, run_ratios, run_soft_bellman, run_weights
from train_testing import tiny

pytestmark = pytest.mark.skipif(_backend._C is None, reason="needs the compiled module inspo_ext._C")


@pytest.fixture(autouse=True)
def clean_flags():
    """Every test starts and ends with no pending error."""
    _status.check_status()
    yield
    try:
        _status.check_status()
    except ValueError:
        pass


def _bad_done():
    d = next_step(6, 3, 4, seed=1)
    d["done"] = d["done"].clone()
    d["done"][4] = 0.5
    return lambda: run_soft_bellman(d)


def _bad_action():
    d = joint_batch(7, 3, 5, seed=2)
    d["actions"] = d["actions"].clone()
    d["actions"][2, 1] = 99
    return lambda: run_weights(d)


def _bad_order():
    d = joint_batch(7, 4, 5, seed=3)
    d["order"] = torch.tensor([0, 1, 1, 3])
    return lambda: run_ratios(d, "target")


def _bad_logits():
    d = joint_batch(9, 3, 5, seed=4, mask="full")
    d["logits"] = d["logits"].clone()
    d["logits"][5, 2, 1] = math.nan
    return lambda: run_loss(d)


def _bad_uniform():
    log_rho = torch.randn(8, 3, dtype=torch.float64)
    uniforms = torch.rand(8, 3, dtype=torch.float64)
    uniforms[6, 1] = 1.0
    return lambda: inspo_ext.resample(log_rho, uniforms=uniforms)


def _no_positive_weight():
    log_rho = torch.randn(2, 5, 3, dtype=torch.float64)
    log_rho[1, :, 2] = -math.inf
    return lambda: inspo_ext.resample(log_rho, uniforms=torch.rand(2, 5, 3, dtype=torch.float64))


# (the bad call, the error at the call, the deferred error's message before the op it names)
CASES = {
    "soft_bellman_target": (_bad_done, "done[4] = 0.5 must be 0 or 1", "done[4] must be 0 or 1"),
    "in_sample_weights": (
        _bad_action,
        "actions[2, 1] = 99 is out of range [0, 5)",
        "actions[2, 1] is out of range [0, 5)",
    ),
    "teammate_log_ratios": (
        _bad_order,
        "order must be a permutation of 0..3, got [0, 1, 1, 3]",
        "order must be a permutation of 0..3",
    ),
    "sequential_policy_loss": (
        _bad_logits,
        "logits[5, 2] has a non-finite value at an available action",
        "logits[5, 2] has a non-finite value at an available action",
    ),
    "resample": (_bad_uniform, "uniforms[6, 1] = 1.0 must be in [0, 1)", "uniforms[6, 1] must be in [0, 1)"),
}


@pytest.mark.parametrize("op", list(CASES))
def test_deferred_error_names_what_the_call_would(op):
    make, at_call, deferred = CASES[op]
    call = make()
    with pytest.raises(ValueError) as raised:
        call()
    assert str(raised.value) == at_call
    with inspo_ext.deferred_status():
        call()  # no error yet
    with pytest.raises(ValueError) as raised:
        inspo_ext.check_status()
    assert str(raised.value) == f"{deferred} (inspo_ext.{op} on cpu, found by the deferred status check)"
    inspo_ext.check_status()  # the flag was reset: nothing more to raise


def test_a_whole_column_without_weight_is_named_deferred():
    with inspo_ext.deferred_status():
        _no_positive_weight()()
    with pytest.raises(ValueError, match=r"^log_rho\[1, :, 2\] has no positive weight \(every entry is -inf\) \("):
        inspo_ext.check_status("cpu")


def test_valid_calls_leave_the_flag_clean_and_errors_stay_until_checked():
    good, bad = joint_batch(7, 3, 5, seed=5), _bad_action()
    with inspo_ext.deferred_status():
        run_weights(good)
        bad()
        run_weights(good)  # a later valid call does not clear the earlier error
    with pytest.raises(ValueError, match=r"^actions\[2, 1\] is out of range"):
        inspo_ext.check_status()
    with inspo_ext.deferred_status():
        run_weights(good)
    inspo_ext.check_status()


def test_calls_of_two_shapes_since_the_check_are_not_decoded_with_the_wrong_one():
    with inspo_ext.deferred_status():
        _bad_action()()
        run_weights(joint_batch(11, 2, 4, seed=6))
    with pytest.raises(ValueError, match=r"in_sample_weights on cpu.*one of its calls of shapes"):
        inspo_ext.check_status()


def test_nested_blocks_defer_until_the_outermost_ends():
    with inspo_ext.deferred_status():
        with inspo_ext.deferred_status():
            pass
        _bad_order()()  # still deferred after the inner block
    with pytest.raises(ValueError, match="^order must be a permutation"):
        inspo_ext.check_status()
    with pytest.raises(ValueError, match="^order must be a permutation of 0..3, got"):
        _bad_order()()  # outside every block: at the call again


def test_no_flag_is_made_or_read_during_a_capture(monkeypatch):
    """A flag made during a capture would live in the graph's memory; a read would synchronize inside it."""
    monkeypatch.setattr(_status, "capturing", lambda device: True)
    with pytest.raises(RuntimeError, match=r"status flag of cuda:7 must exist before a CUDA graph capture"):
        _status.flag_slot("resample", torch.device("cuda", 7))
    with pytest.raises(RuntimeError, match="not while a CUDA graph is being captured"):
        inspo_ext.check_status("cuda:7")


def test_capture_needs_a_dlpack_export_without_a_stream_sync(monkeypatch):
    assert not _status._dlpack_syncs_without_stream()  # this torch: __dlpack__ defaults to stream=-1
    _status.require_capture_safe_dlpack()
    monkeypatch.setattr(_status, "_DLPACK_SYNCS_WITHOUT_STREAM", True)
    with pytest.raises(RuntimeError, match=r"breaks CUDA graph capture of the ops; use torch >= 2\.10"):
        _status.require_capture_safe_dlpack()


def test_training_raises_a_deferred_error_before_the_checkpoint(tmp_path, monkeypatch):
    """A step whose ops had an invalid input fails at the loop's check, before its metrics row or checkpoint."""
    bad = _bad_action()
    update = Learner.update

    def update_with_a_bad_call(self, batch, draws, step):
        if step == 2:
            bad()
        return update(self, batch, draws, step)

    monkeypatch.setattr(Learner, "update", update_with_a_bad_call)
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"^actions\[2, 1\] is out of range \[0, 5\) \(inspo_ext.in_sample_weights"):
        train(tiny("inspo", 0, steps=6, log_every=4, checkpoint_every=3), out_dir=out, progress=False)
    assert not (out / "checkpoint.pt").exists()
