"""The CUDA backend against the CPU backend and itself: what only a GPU run can check (the per-op tests
run the same comparisons with the reference on every backend, cuda included, through ops_testing.backend).

Skipped without a CUDA device and a CUDA build of inspo_ext. Unavailable entries are poisoned (NaN logits,
+inf q, -inf log_mu) so a kernel that reads them fails. A fallback to the reference ops would make these
tests vacuous, so its RuntimeWarning is an error here.
"""

from __future__ import annotations

import math

import pytest
import torch

import inspo_ext
from inspo_ext.reference import PREDECESSOR_MODES, RATIO_MODES, RESAMPLE_METHODS
from ops_testing import (
    OP_RUNS,
    assert_nearly_equal_draws,
    close,
    compare,
    cuda_ready,
    joint_batch,
    loss_and_grad,
    next_step,
    random_log_rho,
    run_loss,
    run_ratios,
    run_resample,
    run_soft_bellman,
    run_weights,
    to,
    uniforms_for,
)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of inspo_ext"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

DEV = torch.device("cuda")


# ---- against the CPU backend -----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cuda_agrees_with_cpu_backend(dtype):
    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    for shape in [(64, 27, 5), (16, 3, 200)]:
        joint = to(joint_batch(*shape, seed=51), "cpu", dtype)
        nxt = to(next_step(*shape, seed=52), "cpu", dtype)
        compare(run_soft_bellman(to(nxt, DEV)), run_soft_bellman(nxt), dtype, **tol)
        compare(run_weights(to(joint, DEV)), run_weights(joint), dtype, **tol)
        for predecessors in PREDECESSOR_MODES:
            compare([run_ratios(to(joint, DEV), predecessors)], [run_ratios(joint, predecessors)], dtype, **tol)
        for ratio in RATIO_MODES:
            ones = torch.ones(shape[1], dtype=torch.float64)
            out, grad = loss_and_grad(run_loss, to(joint, DEV), ones, ratio=ratio)
            cpu_out, cpu_grad = loss_and_grad(run_loss, joint, ones, ratio=ratio)
            compare(out + [grad], cpu_out + [cpu_grad], dtype, **tol)
        for method in RESAMPLE_METHODS:
            log_rho = random_log_rho(shape[0], shape[1]).to(dtype)
            uniforms = uniforms_for(shape[0], shape[1], method)
            indices, ess = run_resample(log_rho.to(DEV), uniforms.to(DEV), method)
            cpu_indices, cpu_ess = run_resample(log_rho, uniforms, method)
            if dtype == torch.float64:
                assert torch.equal(indices.cpu(), cpu_indices)
            else:
                assert_nearly_equal_draws(indices.cpu(), cpu_indices, log_rho)
            close(ess.cpu().double(), cpu_ess.double(), dtype=dtype, **tol)


# ---- streams and determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize("op", list(OP_RUNS))
def test_runs_on_the_current_stream(op):
    """The kernels must run on torch's current stream: on a side stream whose inputs are only written after a
    long GPU sleep, a launch on any other stream would read the stale inputs."""
    data = joint_batch(256, 5, 7, seed=71, mask="full")
    fresh = to(data, DEV)
    fresh["log_rho"] = random_log_rho(256, 5).to(DEV)
    uniforms = uniforms_for(256, 5, "multinomial").to(DEV)
    expected = OP_RUNS[op](fresh, fresh["log_rho"], uniforms)
    stale = {k: (v * 0.5 if v.is_floating_point() else v.clone()) for k, v in fresh.items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # ~50 ms of GPU time before the inputs become the fresh ones
        for key, value in fresh.items():
            stale[key].copy_(value)
        actual = OP_RUNS[op](stale, stale["log_rho"], uniforms)
    torch.cuda.synchronize()
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


@pytest.mark.parametrize("shape", [(5000, 27, 5), (600, 8, 64), (64, 4, 1024)])
def test_two_runs_are_bit_identical(shape):
    data = to(joint_batch(*shape, seed=81), DEV)
    log_rho = random_log_rho(shape[0], shape[1]).to(DEV)
    uniforms = uniforms_for(shape[0], shape[1], "multinomial").to(DEV)
    for op, run in OP_RUNS.items():
        first, second = run(data, log_rho, uniforms), run(data, log_rho, uniforms)
        for a, b in zip(first, second):
            assert torch.equal(a, b), op


# ---- a leading problem dimension S ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shared_order", [False, True])
def test_problem_dimension_agrees_with_slices_and_the_cpu_backend(dtype, shared_order):
    """S = 3 problems (B = 700: several partial-sum chunks each): every op's batched CUDA call equals its CUDA
    calls on the slices and the batched CPU call; errors name [s, b, i]."""
    from ops_testing import problem_slice, stack_problems

    tol = dict(rtol=1e-12, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    joint = to(stack_problems([joint_batch(700, 4, 6, seed=60 + s) for s in range(3)], shared_order), "cpu", dtype)
    nxt = to(stack_problems([next_step(700, 4, 6, seed=63 + s) for s in range(3)]), "cpu", dtype)
    gpu, gpu_next = to(joint, DEV), to(nxt, DEV)
    compare(run_soft_bellman(gpu_next), run_soft_bellman(nxt), dtype, **tol)
    compare(run_weights(gpu), run_weights(joint), dtype, **tol)
    for predecessors in PREDECESSOR_MODES:
        batched = run_ratios(gpu, predecessors)
        compare([batched], [run_ratios(joint, predecessors)], dtype, **tol)
        for s in range(3):
            assert torch.equal(run_ratios(problem_slice(gpu, s), predecessors), batched[s])
    coefficients = torch.linspace(0.5, 1.5, 12, dtype=torch.float64).view(3, 4)
    for ratio in RATIO_MODES:
        out, grad = loss_and_grad(run_loss, gpu, coefficients, ratio=ratio)
        cpu_out, cpu_grad = loss_and_grad(run_loss, joint, coefficients, ratio=ratio)
        compare(out + [grad], cpu_out + [cpu_grad], dtype, **tol)
        for s in range(3):
            single, single_grad = loss_and_grad(run_loss, problem_slice(gpu, s), coefficients[s], ratio=ratio)
            compare(single + [single_grad], [t[s] for t in out] + [grad[s]], dtype, **tol)
    log_rho = torch.stack([random_log_rho(700, 4, seed=66 + s) for s in range(3)]).to(dtype)
    for method in RESAMPLE_METHODS:
        uniforms = torch.stack([uniforms_for(700, 4, method, seed=69 + s) for s in range(3)])
        result = inspo_ext.resample(log_rho.to(DEV), method=method, uniforms=uniforms.to(DEV))
        cpu = inspo_ext.resample(log_rho, method=method, uniforms=uniforms)
        if dtype == torch.float64:
            assert torch.equal(result.indices.cpu(), cpu.indices)
        else:
            assert_nearly_equal_draws(result.indices.cpu(), cpu.indices, log_rho)
        close(result.ess.cpu().double(), cpu.ess.double(), dtype=dtype, **tol)
    bad = dict(gpu, actions=gpu["actions"].clone())
    bad["actions"][2, 5, 1] = 99
    with pytest.raises(ValueError, match=r"^actions\[2, 5, 1\] = 99 is out of range \[0, 6\)$"):
        run_loss(bad)
    bad_uniforms = torch.rand(3, 700, 4, dtype=torch.float64, device=DEV)
    bad_uniforms[1, 3, 2] = 1.0
    with pytest.raises(ValueError, match=r"^uniforms\[1, 3, 2\] = 1.0 must be in \[0, 1\)$"):
        inspo_ext.resample(log_rho.to(DEV), uniforms=bad_uniforms)


def test_issue_11_fixes_on_cuda():
    """The self-normalized loss with every rho of an agent underflowing, and log w at |Q| / tau ~ 1e16."""
    logits = torch.tensor([[[0.0, 0.0], [-200.0, 0.0]]], device=DEV)
    log_mu = torch.full((1, 2, 2), math.log(0.5), device=DEV)
    avail = torch.ones(1, 2, 2, dtype=torch.bool, device=DEV)
    actions = torch.zeros(1, 2, dtype=torch.int64, device=DEV)
    out = inspo_ext.sequential_policy_loss(
        logits,
        log_mu,
        avail,
        actions,
        torch.zeros_like(logits),
        torch.tensor([0, 1], device=DEV),
        alpha=0.1,
        beta=0.1,
        ratio="self_normalized",
    )
    close(out.loss.cpu().double(), torch.tensor([math.log(2.0), 200.0], dtype=torch.float64), rtol=1e-5, atol=1e-5)
    q = torch.tensor([[[1e15, 7.0, 3e14]]], dtype=torch.float64, device=DEV)
    weights = inspo_ext.in_sample_weights(
        q,
        torch.zeros_like(q),
        torch.tensor([[[True, False, False]]], device=DEV),
        torch.zeros(1, 1, dtype=torch.int64, device=DEV),
        alpha=0.1,
        beta=0.01,
    )
    assert weights.log_weight.item() == 0.0
