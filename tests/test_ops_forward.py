"""The forward-only ops (soft_bellman_target, in_sample_weights, teammate_log_ratios) against the reference.

Inputs are random and non-zero; unavailable entries hold NaN logits, +inf q and -inf log mu (never read).
"""
import math

import pytest
import torch

import inspo_ext
from inspo_ext import reference
from inspo_ext.reference import PREDECESSOR_MODES
from ops_testing import backend  # noqa: F401 (the fixture)
from ops_testing import (GAMMA, HYPER, LOG_RHO_MAX, MASKS, SHAPES, bellman_pair, close, compare, extreme, joint_batch,
                         next_step, ratios_pair, ref_ratios, ref_soft_bellman, ref_weights, run_ratios,
                         run_soft_bellman, run_weights, to, weights_pair, with_ties)


# ---- in_sample_weights ------------------------------------------------------------------------------------
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


# ---- teammate_log_ratios -------------------------------------------------------------------------------------
@pytest.mark.parametrize("predecessors", ["target", "policy"])
@pytest.mark.parametrize("mask", MASKS)
def test_teammate_log_ratios_matches_reference(predecessors, mask, backend):
    ours, ref = ratios_pair(joint_batch(48, 5, 6, mask=mask, seed=7), predecessors, backend, log_rho_max=math.inf)
    close(ours, ref)


@pytest.mark.parametrize("shape", [(1, 1, 4), (5, 27, 3), (2, 70, 3), (2, 3, 1024), (1, 4, 1)])
def test_teammate_log_ratios_shapes(shape, backend):
    d = joint_batch(*shape, seed=8)
    for predecessors in ("target", "policy"):
        ours, ref = ratios_pair(d, predecessors, backend)
        close(ours, ref)
    if shape[1] == 1:  # no teammates: log rho = 0
        assert torch.equal(ours, torch.zeros_like(ours))


def test_teammate_log_ratios_clipping_active_and_inactive():
    d = joint_batch(256, 4, 5, seed=9, logit_scale=2.0)
    unclipped, _ = ratios_pair(d, "target", log_rho_max=math.inf)
    clip = float(unclipped.median())
    ours, ref = ratios_pair(d, "target", log_rho_max=clip)
    assert (unclipped > clip).float().mean() > 0.3  # active
    close(ours, ref)
    close(ours, unclipped.clamp(max=clip))
    ours, _ = ratios_pair(d, "target", log_rho_max=float(unclipped.max()) + 1.0)  # inactive
    close(ours, unclipped)


def test_teammate_log_ratios_extreme_logits_and_float32():
    d = joint_batch(64, 4, 6, seed=10)
    d["logits"] = torch.where(d["avail"], torch.sign(d["logits"]) * 1e4, d["logits"])
    ours, ref = ratios_pair(d, "target", log_rho_max=math.inf)
    close(ours, ref, rtol=1e-12, atol=1e-7)
    d32 = {k: v.float() if v.is_floating_point() else v for k, v in joint_batch(64, 4, 6, seed=11).items()}
    ours, _ = ratios_pair(d32, "target")
    _, ref = ratios_pair({k: v.double() if v.is_floating_point() else v for k, v in d32.items()}, "target")
    close(ours, ref.float(), rtol=1e-4, atol=2e-4)


def test_teammate_log_ratios_eta_zero_is_current_teammates():
    """eta = 0: the lookahead is the current policy, so every agent sees all teammates at pi."""
    d = joint_batch(40, 5, 4, seed=12)
    ours, _ = ratios_pair(d, "target", eta=0.0, log_rho_max=math.inf)
    log_pi = reference.masked_log_softmax(d["logits"], d["avail"])
    taken = lambda x: x.gather(-1, d["actions"].unsqueeze(-1)).squeeze(-1)  # noqa: E731
    d_cur = taken(log_pi) - taken(d["log_mu"])
    close(ours, d_cur.sum(1, keepdim=True) - d_cur)


# ---- soft_bellman_target ---------------------------------------------------------------------------------------
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
    n["next_logits"] = torch.where(n["next_avail"] & live[:, None, None], torch.sign(n["next_logits"]) * 1e4,
                                   n["next_logits"])
    ours, ref = bellman_pair(n, gamma=1.0)
    for a, b in zip(ours, ref):
        close(a, b, rtol=1e-12, atol=1e-7)


def test_forward_ops_return_constants():
    """The forward-only ops detach their inputs: no gradient flows into them by design."""
    d = joint_batch(8, 3, 4, seed=16)
    logits = d["logits"].clone().requires_grad_()
    q = d["q_local"].clone().requires_grad_()
    log_rho = inspo_ext.teammate_log_ratios(logits, d["log_mu"], d["avail"], d["actions"], d["order"], q_local=q,
                                            alpha=HYPER["alpha"], beta=HYPER["beta"])
    weights = inspo_ext.in_sample_weights(q, d["log_mu"], d["avail"], d["actions"], alpha=0.1, beta=0.0)
    assert not log_rho.requires_grad and not weights.weight.requires_grad
    n = next_step(8, 3, 4, seed=17)
    n["next_logits"].requires_grad_()
    assert not inspo_ext.soft_bellman_target(**n, gamma=GAMMA, alpha=0.1, beta=0.1).target.requires_grad


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_in_sample_log_weight_is_exact_for_huge_q(dtype):
    """issue 11 item 2: log w = (Q(a) - V) / tau cancelled catastrophically at |Q| / tau ~ 1e16 (kernel -1.136,
    reference +1.136 where the exact value is 0). One available action: log w = -log mu(a) exactly."""
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


# ---- a leading problem dimension S: problem s equals the call on slice s (bit for bit), and the reference --
from ops_testing import problem_slice, stack_problems  # noqa: E402


def _problems(batch=37, agents=4, actions=5, mask="random", shared_order=False, **kwargs):
    return stack_problems([joint_batch(batch, agents, actions, seed=80 + s, mask=mask, **kwargs) for s in range(3)],
                          shared_order=shared_order)


@pytest.mark.parametrize("mask", ["random", "single"])
def test_in_sample_weights_with_problems(mask):
    d = _problems(mask=mask)
    ours, ref = weights_pair(d)
    assert ours.weight.shape == (3, 37, 4)
    for a, b in zip(ours, ref):
        close(a, b)
    for s in range(3):
        for a, b in zip(weights_pair(problem_slice(d, s))[0], ours):
            assert torch.equal(a, b[s])


@pytest.mark.parametrize("predecessors", ["target", "policy"])
@pytest.mark.parametrize("shared_order", [False, True])
def test_teammate_log_ratios_with_problems(predecessors, shared_order):
    d = _problems(shared_order=shared_order)
    assert d["order"].dim() == (1 if shared_order else 2)
    ours, ref = ratios_pair(d, predecessors)
    assert ours.shape == (3, 37, 4)
    close(ours, ref)
    for s in range(3):
        assert torch.equal(ratios_pair(problem_slice(d, s), predecessors)[0], ours[s])


def test_soft_bellman_target_with_problems():
    n = stack_problems([next_step(29, 3, 4, seed=90 + s) for s in range(3)])
    ours, ref = bellman_pair(n)
    assert ours.target.shape == (3, 29) and ours.kl.shape == (3, 29, 3)
    for a, b in zip(ours, ref):
        close(a, b)
    for s in range(3):
        for a, b in zip(bellman_pair(problem_slice(n, s))[0], ours):
            assert torch.equal(a, b[s])


def test_problem_dimension_errors_name_the_problem():
    d = _problems()
    d["actions"][1, 3, 2] = 9
    with pytest.raises(ValueError, match=r"^actions\[1, 3, 2\] = 9 is out of range \[0, 5\)$"):
        weights_pair(d)
    d = _problems()
    d["order"][2] = torch.tensor([0, 0, 1, 2])
    with pytest.raises(ValueError, match=r"^order\[2\] must be a permutation of 0..3, got \[0, 0, 1, 2\]$"):
        ratios_pair(d, "target")
    n = stack_problems([next_step(8, 2, 3, seed=91 + s, terminal_fraction=0.0) for s in range(2)])
    n["reward"][1, 5] = math.inf
    with pytest.raises(ValueError, match=r"^reward\[1, 5\] = inf is not finite$"):
        bellman_pair(n)
    d = _problems()
    with pytest.raises(ValueError, match=r"^log_mu must have shape \[S, B, N, A\] = \[3, 37, 4, 5\], got \[37, 4, 5\]$"):
        weights_pair(dict(d, log_mu=d["log_mu"][0]))
    with pytest.raises(ValueError, match=r"^order must have shape \[S, N\] = \[3, 4\], got \[2, 4\]$"):
        ratios_pair(dict(d, order=d["order"][:2]), "target")


# ---- the shape grid of the kernels (every group size of csrc/cuda/common.cuh), extremes, ties, float32 ----
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


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("predecessors", PREDECESSOR_MODES)
def test_teammate_log_ratios_matches_reference_on_the_shape_grid(shape, predecessors, backend):
    data = joint_batch(*shape, seed=31)
    compare([run_ratios(to(data, backend), predecessors)], [ref_ratios(data, predecessors)])


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", ["extreme", "ties", "clipped"])
def test_teammate_log_ratios_masks_extremes_ties_clip(mask, variant, backend):
    data = joint_batch(48, 27, 6, mask=mask, seed=32, logit_scale=1e4 if variant == "extreme" else 1.0)
    if variant == "extreme":
        data = extreme(data)
    if variant == "ties":
        data = with_ties(data)
    log_rho_max = 0.0 if variant == "clipped" else LOG_RHO_MAX
    if variant == "clipped" and mask != "single":  # (one action per row: every ratio is exactly 1)
        assert (ref_ratios(data, log_rho_max=math.inf) > 0).any()
    for predecessors in PREDECESSOR_MODES:
        compare([run_ratios(to(data, backend), predecessors, log_rho_max)], [ref_ratios(data, predecessors, log_rho_max)])


def test_teammate_log_ratios_float32(backend):
    data32 = to(joint_batch(64, 5, 12, seed=33), "cpu", torch.float32)
    compare([run_ratios(to(data32, backend))], [ref_ratios(to(data32, "cpu", torch.float64))], torch.float32)
