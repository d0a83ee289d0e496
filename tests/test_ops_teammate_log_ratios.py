"""teammate_log_ratios: the teammate log-ratios against the reference on every backend (cpu, cuda, the reference
fallback): shapes, masks, clips, extremes, ties, float32 and a leading problem dimension S.

Inputs are random and non-zero; unavailable entries hold NaN logits, +inf q and -inf log mu (never read).
"""

import math

import pytest
import torch

from inspo_ext import reference
from inspo_ext.reference import PREDECESSOR_MODES
from ops_testing import (
    LOG_RHO_MAX,
    MASKS,
    SHAPES,
    close,
    compare,
    extreme,
    joint_batch,
    problem_batches,
    problem_slice,
    ratios_pair,
    ref_ratios,
    run_ratios,
    to,
    with_ties,
)


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


@pytest.mark.parametrize("predecessors", ["target", "policy"])
@pytest.mark.parametrize("shared_order", [False, True])
def test_teammate_log_ratios_withproblem_batches(predecessors, shared_order):
    d = problem_batches(shared_order=shared_order)
    assert d["order"].dim() == (1 if shared_order else 2)
    ours, ref = ratios_pair(d, predecessors)
    assert ours.shape == (3, 37, 4)
    close(ours, ref)
    for s in range(3):
        assert torch.equal(ratios_pair(problem_slice(d, s), predecessors)[0], ours[s])


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
        compare(
            [run_ratios(to(data, backend), predecessors, log_rho_max)], [ref_ratios(data, predecessors, log_rho_max)]
        )


def test_teammate_log_ratios_float32(backend):
    data32 = to(joint_batch(64, 5, 12, seed=33), "cpu", torch.float32)
    compare([run_ratios(to(data32, backend))], [ref_ratios(to(data32, "cpu", torch.float64))], torch.float32)
