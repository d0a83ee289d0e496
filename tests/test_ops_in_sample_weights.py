"""in_sample_weights: the in-sample weights against the reference on every backend (cpu, cuda, the reference
fallback): shapes, masks, clips, extremes, ties, float32 and a leading problem dimension S.

Inputs are random and non-zero; unavailable entries hold NaN logits, +inf q and -inf log mu (never read).
"""

import math

import pytest
import torch

import inspo_ext
from inspo_ext import reference
from ops_testing import (
    MASKS,
    SHAPES,
    close,
    compare,
    joint_batch,
    problem_batches,
    problem_slice,
    ref_weights,
    run_weights,
    to,
    weights_pair,
    with_ties,
)


@pytest.mark.parametrize("mask", MASKS)
def test_in_sample_weights_matches_reference(mask, backend):
    ours, ref = weights_pair(joint_batch(64, 5, 7, mask=mask, seed=1), backend)
    for a, b in zip(ours, ref):
        close(a, b)


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 27, 3), (3, 2, 1024), (2, 3, 1023)])
def test_in_sample_weights_shapes(shape, backend):
    ours, ref = weights_pair(joint_batch(*shape, seed=2), backend)
    for a, b in zip(ours, ref):
        close(a, b)


def test_in_sample_weights_float32():
    d64 = joint_batch(128, 4, 9, seed=3)
    d32 = {k: v.float() if v.is_floating_point() else v for k, v in d64.items()}
    ours, _ = weights_pair(d32)
    _, ref = weights_pair({k: v.double() if v.is_floating_point() else v for k, v in d32.items()})
    for a, b in zip(ours, ref):
        assert a.dtype == torch.float32
        close(a, b.float(), rtol=1e-4, atol=1e-4)


def test_in_sample_weights_clipping_active_and_inactive():
    d = joint_batch(256, 3, 5, seed=4, q_scale=3.0)
    log_weight = weights_pair(d)[1].log_weight
    clip = float(log_weight.median())
    ours, ref = weights_pair(d, log_w_max=clip)
    assert (log_weight > clip).float().mean() > 0.3 and (log_weight < clip).float().mean() > 0.3  # active
    close(ours.weight, ref.weight)
    assert torch.all(ours.weight <= math.exp(clip) * (1 + 1e-12))
    ours, ref = weights_pair(d, log_w_max=float(log_weight.max()) + 1.0)  # inactive
    close(ours.weight, ours.log_weight.exp())
    close(ours.weight, ref.weight)


def test_in_sample_weights_ties_and_extremes():
    d = joint_batch(32, 3, 6, seed=5, mask="full")
    d["q_local"] = torch.full_like(d["q_local"], 0.25)  # ties: equal q
    d["log_mu"] = torch.full_like(d["log_mu"], -math.log(6))
    ours, ref = weights_pair(d)
    for a, b in zip(ours, ref):
        close(a, b)
    d = joint_batch(32, 3, 6, seed=6)
    d["q_local"] = torch.where(d["avail"], torch.sign(d["q_local"]) * 1e4, d["q_local"])
    ours, ref = weights_pair(d)
    for a, b in zip(ours, ref):
        close(a, b, rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_sample_log_weight_is_exact_for_huge_q(dtype):
    """log w = (Q(a) - V) / tau must not cancel catastrophically at |Q| / tau ~ 1e16 (a naive kernel gives -1.136,
    a naive reference +1.136 where the exact value is 0). One available action: log w = -log mu(a) exactly."""
    q = torch.tensor([[[1e15, 7.0, 3e14], [-1e15, 0.0, 0.0]]], dtype=dtype)
    log_mu = torch.tensor([[[0.0, -1.0, -2.0], [-0.25, -1.0, -1.0]]], dtype=dtype)
    avail = torch.tensor([[[True, False, False], [True, False, False]]])
    d = dict(q_local=q, log_mu=log_mu, avail=avail, actions=torch.tensor([[0, 0]]))
    ours, ref = weights_pair(d, alpha=0.1, beta=0.01)
    exact = torch.tensor([[0.0, 0.25]], dtype=dtype)
    assert torch.equal(ours.log_weight, exact) and torch.equal(ref.log_weight, exact)
    # two actions far apart: pi*(a) = 1 to the last bit, so log w = -log mu(a) again
    d["q_local"] = torch.tensor([[[1e15, 7.0, 3e14], [1e15, -1e15, 0.0]]], dtype=dtype)
    d["avail"] = torch.tensor([[[True, False, True], [True, True, False]]])
    ours, ref = weights_pair(d, alpha=0.1, beta=0.01)
    assert torch.equal(ours.log_weight, exact) and torch.equal(ref.log_weight, exact)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("actions", [1, 5, 16, 24, 32, 100])
def test_one_available_action_gives_minus_log_mu_to_the_bit(actions, dtype):
    """The same exactness on random rows of every CPU kernel path (rows across lanes up to A = 24, a row's entries
    across lanes above): the row maximum of the closed-form logits and the taken action's recomputed value must be
    the same bits, which a fused multiply-add in only one of them breaks (measured: std::fma in the taken action's
    value gets every A > 24 case here wrong, while the hand-picked rows above stay right)."""
    generator = torch.Generator().manual_seed(actions)
    B, N = 2048, 3
    scale = 10.0 ** torch.randint(-3, 6, (B, N, 1), generator=generator).to(dtype)
    q = torch.randn(B, N, actions, generator=generator, dtype=dtype) * scale
    log_mu = torch.randn(B, N, actions, generator=generator, dtype=dtype) * 3
    taken = torch.randint(0, actions, (B, N), generator=generator)
    avail = torch.zeros(B, N, actions, dtype=torch.bool).scatter_(2, taken[..., None], True)
    exact = -log_mu.gather(2, taken[..., None])[..., 0]
    for alpha, beta in [(0.3, 0.7), (1.0, 0.1), (0.05, 2.0)]:
        ours = inspo_ext.in_sample_weights(q, log_mu, avail, taken, alpha=alpha, beta=beta, log_w_max=math.inf)
        wrong = (ours.log_weight != exact).sum().item()
        assert wrong == 0, f"{wrong} of {B * N} rows off at alpha={alpha}, beta={beta}"


@pytest.mark.parametrize("mask", ["random", "single"])
def test_in_sample_weights_withproblem_batches(mask):
    d = problem_batches(mask=mask)
    ours, ref = weights_pair(d)
    assert ours.weight.shape == (3, 37, 4)
    for a, b in zip(ours, ref):
        close(a, b)
    for s in range(3):
        for a, b in zip(weights_pair(problem_slice(d, s))[0], ours):
            assert torch.equal(a, b[s])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", MASKS)
def test_in_sample_weights_matches_reference_on_the_shape_grid(shape, mask, backend):
    data = joint_batch(*shape, mask=mask, seed=21)
    compare(run_weights(to(data, backend)), ref_weights(data))


@pytest.mark.parametrize("log_w_max", [0.0, math.inf])
@pytest.mark.parametrize("q_scale", [1.0, 1e4])
def test_in_sample_weights_clip_and_extreme_q(log_w_max, q_scale, backend):
    data = joint_batch(50, 6, 7, seed=22, q_scale=q_scale)
    if log_w_max == 0.0:
        assert (ref_weights(data).log_weight > 0).any()
    compare(run_weights(to(data, backend), log_w_max), ref_weights(data, log_w_max))


def test_in_sample_weights_ties_and_float32(backend):
    data = with_ties(joint_batch(64, 5, 9, seed=23))
    compare(run_weights(to(data, backend)), ref_weights(data))
    data32 = to(data, "cpu", torch.float32)
    compare(run_weights(to(data32, backend)), ref_weights(to(data32, "cpu", torch.float64)), torch.float32)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_weights_just_below_overflow_stay_finite(dtype):
    """log w up to the largest finite exp (float32: 88.0 to 88.7; float64: 709.0 to 709.7): the kernels' exp scaled
    these by 2^128 (2^1024), which is no float, and gave inf where the reference gives the finite weight."""
    top = 88.7 if dtype == torch.float32 else 709.7
    B = 64
    taken = -torch.linspace(top - 0.7, top, B, dtype=torch.float64)  # log mu(a): log w = -log mu(a) when q(a) dominates
    log_mu = torch.stack([taken, torch.log1p(-torch.exp(taken))], -1).unsqueeze(1).to(dtype)
    q = torch.zeros(B, 1, 2, dtype=dtype)
    q[..., 0] = 1000.0
    avail = torch.ones(B, 1, 2, dtype=torch.bool)
    actions = torch.zeros(B, 1, dtype=torch.int64)
    ours = inspo_ext.in_sample_weights(q, log_mu, avail, actions, alpha=1.0, beta=0.0, log_w_max=math.inf)
    ref = reference.in_sample_weights(q, log_mu, avail, actions, 1.0, 0.0, math.inf)
    assert torch.isfinite(ref.weight).all()
    torch.testing.assert_close(ours.weight, ref.weight, rtol=4 * torch.finfo(dtype).eps, atol=0)
