"""Every op captured alone into a CUDA graph (torch.cuda.graph) and replayed against its eager call, and the
deferred status check reading an invalid input from a replay. The first thing the GPU check runs
(benchmarks/gpu_check.sh): an op that synchronizes the host inside a capture fails here.

Skipped without a CUDA device and a CUDA build of inspo_ext."""

from __future__ import annotations

import pytest
import torch

import inspo_ext
from ops_testing import OP_RUNS, cuda_ready, joint_batch, random_log_rho, to, uniforms_for

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of inspo_ext"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

DEV = torch.device("cuda")
SHAPE = (300, 5, 7)  # B, N, A


def _inputs(seed: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    batch, agents, actions = SHAPE
    data = to(joint_batch(batch, agents, actions, seed=seed), DEV)
    log_rho = random_log_rho(batch, agents, seed=seed + 1).to(DEV)
    uniforms = uniforms_for(batch, agents, "multinomial", seed=seed + 2).to(DEV)
    return data, log_rho, uniforms


def _copy_into(static: tuple, fresh: tuple) -> None:
    data, log_rho, uniforms = static
    new_data, new_log_rho, new_uniforms = fresh
    for key, value in new_data.items():
        data[key].copy_(value)
    log_rho.copy_(new_log_rho)
    uniforms.copy_(new_uniforms)


def _capture(run, static: tuple) -> tuple[torch.cuda.CUDAGraph, list]:
    """The op's graph on `static` (warmed up on a side stream first, as torch.cuda.graph asks)."""
    inspo_ext.check_status(DEV)  # the status flag exists before the capture (it cannot be made in one)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        run(*static)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        outputs = run(*static)
    return graph, outputs


@pytest.mark.parametrize("op", list(OP_RUNS))
def test_op_replays_from_a_cuda_graph_as_its_eager_call(op):
    run = OP_RUNS[op]
    static = _inputs(seed=11)
    graph, outputs = _capture(run, static)
    for seed in (11, 21):  # the captured inputs, then new ones copied into them
        fresh = _inputs(seed)
        _copy_into(static, fresh)
        graph.replay()
        torch.cuda.synchronize()
        expected = run(*fresh)
        assert len(outputs) == len(expected)
        for replayed, eager in zip(outputs, expected):
            assert torch.equal(replayed, eager), op
    inspo_ext.check_status()  # valid inputs: nothing pending


def test_replayed_invalid_input_is_raised_by_the_check():
    run = OP_RUNS["in_sample_weights"]
    static = _inputs(seed=31)
    graph, _ = _capture(run, static)
    data = static[0]
    actions = data["actions"].clone()
    data["actions"][4, 2] = 99
    graph.replay()  # no error here: nothing reads the status inside or after the replay
    with pytest.raises(ValueError, match=r"^actions\[4, 2\] is out of range \[0, 7\) \(inspo_ext.in_sample_weights"):
        inspo_ext.check_status()
    data["actions"].copy_(actions)
    graph.replay()
    inspo_ext.check_status()  # the flag was reset and the replay is valid again


def test_eager_calls_still_raise_at_the_call():
    data = _inputs(seed=41)[0]
    data["actions"][1, 0] = -3
    with pytest.raises(ValueError, match=r"^actions\[1, 0\] = -3 is out of range \[0, 7\)$"):
        OP_RUNS["in_sample_weights"](data, None, None)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_tensors_on_the_second_device_run_there():
    """The extension's own CUDA runtime has its own current device: the op must switch to the tensors'."""
    data = to(joint_batch(*SHAPE, seed=51), "cpu")
    on_one = OP_RUNS["sequential_policy_loss"](to(data, torch.device("cuda", 1)), None, None)
    on_zero = OP_RUNS["sequential_policy_loss"](to(data, torch.device("cuda", 0)), None, None)
    assert torch.cuda.current_device() == 0
    for a, b in zip(on_one, on_zero):
        assert a.device == torch.device("cuda", 1)
        assert torch.equal(a.cpu(), b.cpu())
