"""soft_bellman_target: the soft Bellman target against the reference on every backend (cpu, cuda, the reference
fallback): shapes, masks, clips, extremes, ties, float32 and a leading problem dimension S.

Inputs are random and non-zero; unavailable entries hold NaN logits, +inf q and -inf log mu (never read).
"""

import math

import pytest
import torch

from ops_testing import (
    MASKS,
    SHAPES,
    bellman_pair,
    close,
    compare,
    next_step,
    problem_slice,
    ref_soft_bellman,
    run_soft_bellman,
    stack_problems,
    to,
)


@pytest.mark.parametrize("mask", MASKS)
def test_soft_bellman_target_matches_reference(mask, backend):
    n = next_step(64, 4, 6, mask=mask, seed=13)
    assert 0 < n["done"].sum() < 64
    ours, ref = bellman_pair(n, device=backend, log_rho_max=math.inf)
    for a, b in zip(ours, ref):
        close(a, b)
    terminal = n["done"].bool()
    assert torch.equal(ours.target[terminal], n["reward"][terminal])  # terminal next-step inputs never read
    assert torch.all(ours.kl[terminal] == 0) and torch.all(ours.log_ratio[terminal] == 0)


@pytest.mark.parametrize("shape", [(1, 1, 1), (3, 27, 4), (2, 3, 1024)])
def test_soft_bellman_target_shapes(shape, backend):
    ours, ref = bellman_pair(next_step(*shape, seed=14, terminal_fraction=0.0), device=backend)
    for a, b in zip(ours, ref):
        close(a, b)


def test_soft_bellman_target_clipping_float32_and_extremes():
    n = next_step(256, 3, 5, seed=15, logit_scale=3.0)
    ours, _ = bellman_pair(n, log_rho_max=math.inf)
    live = n["done"] == 0
    clip = float(ours.log_ratio[live].median())
    clipped, ref = bellman_pair(n, log_rho_max=clip)
    assert (ours.log_ratio[live] > clip).float().mean() > 0.3  # active
    close(clipped.log_ratio, ref.log_ratio)
    close(clipped.log_ratio[live], ours.log_ratio[live].clamp(max=clip))
    n32 = {k: v.float() if v.is_floating_point() else v for k, v in n.items()}
    ours32, _ = bellman_pair(n32, gamma=0.9)
    _, ref64 = bellman_pair({k: v.double() if v.is_floating_point() else v for k, v in n32.items()}, gamma=0.9)
    for a, b in zip(ours32, ref64):
        close(a, b.float(), rtol=1e-4, atol=2e-4)
    n["next_logits"] = torch.where(
        n["next_avail"] & live[:, None, None], torch.sign(n["next_logits"]) * 1e4, n["next_logits"]
    )
    ours, ref = bellman_pair(n, gamma=1.0)
    for a, b in zip(ours, ref):
        close(a, b, rtol=1e-12, atol=1e-7)


def test_soft_bellman_target_withproblem_batches():
    n = stack_problems([next_step(29, 3, 4, seed=90 + s) for s in range(3)])
    ours, ref = bellman_pair(n)
    assert ours.target.shape == (3, 29) and ours.kl.shape == (3, 29, 3)
    for a, b in zip(ours, ref):
        close(a, b)
    for s in range(3):
        for a, b in zip(bellman_pair(problem_slice(n, s))[0], ours):
            assert torch.equal(a, b[s])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", MASKS)
def test_soft_bellman_target_matches_reference_on_the_shape_grid(shape, mask, backend):
    data = next_step(*shape, mask=mask, seed=11)
    compare(run_soft_bellman(to(data, backend)), ref_soft_bellman(data))


@pytest.mark.parametrize("log_rho_max", [0.0, math.inf])
@pytest.mark.parametrize("logit_scale", [1.0, 1e4])
def test_soft_bellman_target_clip_and_extreme_logits(log_rho_max, logit_scale, backend):
    data = next_step(50, 6, 7, seed=12, logit_scale=logit_scale)
    if log_rho_max == 0.0 and logit_scale == 1.0:  # the clip must be active on some live samples
        assert (ref_soft_bellman(data, math.inf).log_ratio > 0).any()
    compare(run_soft_bellman(to(data, backend), log_rho_max), ref_soft_bellman(data, log_rho_max))


def test_soft_bellman_target_float32(backend):
    data = next_step(64, 5, 12, seed=13)
    data32 = to(data, "cpu", torch.float32)
    compare(run_soft_bellman(to(data32, backend)), ref_soft_bellman(to(data32, "cpu", torch.float64)), torch.float32)
