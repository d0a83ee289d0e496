"""sequential_policy_loss and InSPOPolicyLoss against the reference: values, logit gradients (the reference's
autograd), gradcheck, the algorithm's consistency identities, torch.compile and the nn.Module."""

import math
import warnings

import pytest
import torch

import inspo_ext
from inspo_ext import reference
from inspo_ext.reference import PREDECESSOR_MODES, RATIO_MODES
from ops_testing import (
    ALPHA,
    BETA,
    ETA,
    HYPER,
    MASKS,
    SHAPES,
    assert_policy_loss_close,
    close,
    compare,
    extreme,
    joint_batch,
    loss_and_grad,
    loss_pair,
    problem_slice,
    ref_loss,
    ref_ratios,
    ref_weights,
    run_loss,
    stack_problems,
    to,
    with_ties,
)

RATIOS = ("importance", "self_normalized", "none")


def _taken(x, actions):
    return x.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("predecessors", ["target", "policy"])
@pytest.mark.parametrize("mask", ["random", "padding", "single"])
def test_policy_loss_matches_reference(ratio, predecessors, mask, backend):
    d = joint_batch(48, 4, 6, mask=mask, seed=20)
    ours, grad, ref, ref_grad = loss_pair(d, ratio, predecessors, device=backend)
    assert_policy_loss_close(ours, ref)
    close(grad, ref_grad)
    assert torch.all(grad[~d["avail"]] == 0)  # no gradient at unavailable actions
    assert ours.loss.requires_grad and not any(t.requires_grad for t in ours[1:])


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 3, 5), (6, 27, 3), (2, 70, 3), (3, 2, 1024), (2, 3, 1023)])
def test_policy_loss_shapes(shape, backend):
    d = joint_batch(*shape, seed=21)
    for ratio in RATIOS:
        ours, grad, ref, ref_grad = loss_pair(d, ratio, device=backend)
        assert_policy_loss_close(ours, ref)
        close(grad, ref_grad)


@pytest.mark.parametrize("shape", [(256, 4, 7), (37, 3, 1), (37, 3, 5), (37, 3, 16), (21, 5, 17), (37, 3, 24)])
def test_policy_loss_float32(shape):
    """float32, the kernels' own precision (rows across lanes gather W rows at a time: A <= 24, a last block of
    fewer rows than lanes, unavailable actions)."""
    d32 = {k: v.float() if v.is_floating_point() else v for k, v in joint_batch(*shape, seed=22).items()}
    d64 = {k: v.double() if v.is_floating_point() else v for k, v in d32.items()}
    for ratio in RATIOS:
        ours, grad, _, _ = loss_pair(d32, ratio)
        _, _, ref, ref_grad = loss_pair(d64, ratio)
        assert ours.loss.dtype == grad.dtype == torch.float32
        assert_policy_loss_close(ours, ref, dtype=torch.float32, rtol=1e-4, atol=1e-4)
        close(grad, ref_grad.float(), rtol=1e-4, atol=1e-6)


def test_policy_loss_extreme_logits_and_ties():
    d = joint_batch(64, 3, 5, seed=23)
    d["logits"] = torch.where(d["avail"], torch.sign(d["logits"]) * 1e4, d["logits"])
    for ratio in RATIOS:
        ours, grad, ref, ref_grad = loss_pair(d, ratio, log_rho_max=math.inf)
        assert_policy_loss_close(ours, ref, rtol=1e-10, atol=1e-6)
        close(grad, ref_grad)
    d = joint_batch(16, 3, 5, seed=24, mask="full")
    d["logits"] = torch.zeros_like(d["logits"]) + 0.5  # equal logits
    d["q_local"] = torch.ones_like(d["q_local"])  # equal q
    for ratio in RATIOS:
        ours, grad, ref, ref_grad = loss_pair(d, ratio)
        assert_policy_loss_close(ours, ref)
        close(grad, ref_grad)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_entropy_of_uniform_rows_is_the_log_of_their_count(dtype):
    # A focused test of the kernels' log: a row of k equal available logits has S = k and S_l = 0
    # exactly, so H = log S is the log and nothing else rounds (B = 1: the mean over samples is H).
    # k = 1..1024: every exponent and 1024 mantissas of the range reduction, each within one ulp. (The
    # polynomial's sub-ulp accuracy is measured over every float: benchmarks/simd_accuracy.cpp.)
    n = 1024
    count = torch.arange(1, n + 1)
    avail = (torch.arange(n) < count.unsqueeze(-1)).unsqueeze(0)  # agent i: its first i + 1 actions
    zeros = torch.zeros((1, n, n), dtype=dtype)
    out = inspo_ext.sequential_policy_loss(
        zeros + 0.25,
        reference.masked_log_softmax(zeros, avail),
        avail,
        torch.zeros((1, n), dtype=torch.int64),
        zeros,
        torch.arange(n),
        alpha=HYPER["alpha"],
        beta=HYPER["beta"],
    )
    expected = torch.log(count.double()).to(dtype)
    ulp = torch.nextafter(expected, torch.tensor(math.inf, dtype=dtype)) - expected
    assert out.entropy[0] == 0  # log 1
    assert torch.all((out.entropy - expected).abs() <= ulp), (out.entropy - expected).abs().div(ulp).max()


def test_policy_loss_clipping_active_and_inactive():
    d = joint_batch(512, 3, 5, seed=25, logit_scale=2.0, q_scale=3.0)
    log_rho = inspo_ext.teammate_log_ratios(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["order"],
        q_local=d["q_local"],
        alpha=HYPER["alpha"],
        beta=HYPER["beta"],
        eta=HYPER["eta"],
        log_rho_max=math.inf,
    )
    log_w = inspo_ext.in_sample_weights(
        d["q_local"], d["log_mu"], d["avail"], d["actions"], alpha=HYPER["alpha"], beta=HYPER["beta"]
    ).log_weight
    rho_clip, w_clip = float(log_rho.quantile(0.6)), float(log_w.quantile(0.6))
    assert (log_rho > rho_clip).float().mean() > 0.3 and (log_w > w_clip).float().mean() > 0.3  # both active
    for ratio in RATIOS:
        clipped = loss_pair(d, ratio, log_rho_max=rho_clip, log_w_max=w_clip)
        assert_policy_loss_close(clipped[0], clipped[2])
        close(clipped[1], clipped[3])
        free = loss_pair(d, ratio, log_rho_max=float(log_rho.max()) + 1, log_w_max=float(log_w.max()) + 1)
        assert_policy_loss_close(free[0], free[2])
        close(free[0].mean_weight, log_w.exp().mean(0))  # inactive: w = exp(log w)
        assert not torch.allclose(clipped[0].loss, free[0].loss)


def test_self_normalized_loss_by_hand():
    d = joint_batch(100, 3, 4, seed=26)
    ours = loss_pair(d, "self_normalized")[0]
    log_rho = reference.teammate_log_ratios(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["order"],
        "target",
        d["q_local"],
        None,
        HYPER["alpha"],
        HYPER["beta"],
        HYPER["eta"],
        HYPER["log_rho_max"],
    )
    w = reference.in_sample_weights(
        d["q_local"], d["log_mu"], d["avail"], d["actions"], HYPER["alpha"], HYPER["beta"], HYPER["log_w_max"]
    ).weight
    log_pi = _taken(reference.masked_log_softmax(d["logits"], d["avail"]), d["actions"])
    rho = log_rho.exp()
    close(ours.loss, -(rho * w * log_pi).sum(0) / rho.sum(0))
    close(ours.ess, rho.sum(0) ** 2 / (rho**2).sum(0))


def test_policy_mode_fed_with_lookahead_equals_target_mode():
    d = joint_batch(64, 5, 6, seed=27)
    lookahead = reference.lookahead_log_probs(
        d["logits"], d["q_local"], d["log_mu"], d["avail"], HYPER["alpha"], HYPER["beta"], HYPER["eta"]
    )
    d["updated_log_probs"] = _taken(lookahead, d["actions"])
    for ratio in ("importance", "self_normalized"):
        target, target_grad = loss_pair(d, ratio, "target")[:2]
        policy, policy_grad = loss_pair(d, ratio, "policy")[:2]
        assert_policy_loss_close(policy, target, rtol=1e-12, atol=1e-12)
        close(policy_grad, target_grad, rtol=1e-12, atol=1e-12)


def test_eta_zero_equals_every_agent_against_current_teammates():
    d = joint_batch(64, 4, 5, seed=28)
    d["updated_log_probs"] = _taken(reference.masked_log_softmax(d["logits"], d["avail"]), d["actions"])
    for ratio in ("importance", "self_normalized"):
        eta_zero, grad_zero = loss_pair(d, ratio, "target", eta=0.0)[:2]
        current, grad_current = loss_pair(d, ratio, "policy")[:2]
        assert_policy_loss_close(eta_zero, current, rtol=1e-12, atol=1e-12)
        close(grad_zero, grad_current, rtol=1e-12, atol=1e-12)
    # ... and the order of the agents then does not matter.
    reordered = dict(d, order=d["order"].flip(0))
    close(loss_pair(reordered, "importance", eta=0.0)[0].loss, loss_pair(d, "importance", eta=0.0)[0].loss)


def test_single_agent_is_weighted_behaviour_cloning():
    d = joint_batch(80, 1, 6, seed=29)
    w = reference.in_sample_weights(
        d["q_local"], d["log_mu"], d["avail"], d["actions"], HYPER["alpha"], HYPER["beta"], HYPER["log_w_max"]
    ).weight
    logits = d["logits"].clone().requires_grad_()
    bc = -(w * _taken(reference.masked_log_softmax(logits, d["avail"]), d["actions"])).mean(0)
    (bc_grad,) = torch.autograd.grad(bc.sum(), logits)
    for ratio in RATIOS:
        for predecessors in ("target", "policy"):
            ours, grad = loss_pair(d, ratio, predecessors, grad_weights=torch.ones(1, dtype=torch.float64))[:2]
            close(ours.loss, bc.detach())
            close(grad, bc_grad)
            assert float(ours.ess) == pytest.approx(80)


@pytest.mark.parametrize("ratio", RATIOS)
def test_gradcheck(ratio):
    """gradcheck needs a loss whose only logit dependence is log pi: rho (no gradient by design) depends on
    the logits unless there are no teammates (N = 1) or no ratio."""
    agents = 3 if ratio == "none" else 1
    d = joint_batch(5, agents, 4, seed=30, poison=False)
    logits = d["logits"].clone().requires_grad_()

    def loss(x):
        return inspo_ext.sequential_policy_loss(
            x,
            d["log_mu"],
            d["avail"],
            d["actions"],
            d["q_local"],
            d["order"],
            ratio=ratio,
            **{k: HYPER[k] for k in HYPER},
        ).loss

    assert torch.autograd.gradcheck(loss, (logits,))


def opcheck_policy_loss(d):
    """torch.library.opcheck of the custom op on batch `d`, with and without gradient, over the ratio and
    predecessor modes."""
    for requires_grad in (True, False):
        for ratio, predecessors in ((0, 0), (1, 1), (2, 0)):
            logits = d["logits"].clone().requires_grad_(requires_grad)
            args = (
                logits,
                d["log_mu"],
                d["avail"],
                d["actions"],
                d["q_local"],
                d["order"],
                d["updated_log_probs"] if predecessors == 1 else None,
                predecessors,
                ratio,
                HYPER["alpha"],
                HYPER["beta"],
                HYPER["eta"],
                HYPER["log_rho_max"],
                HYPER["log_w_max"],
                requires_grad,
            )
            torch.library.opcheck(torch.ops.inspo_ext.sequential_policy_loss.default, args)


def test_opcheck_policy_loss():
    d = joint_batch(6, 3, 4, seed=31)
    opcheck_policy_loss(d)


def assert_compiled_matches_eager(step, d):
    """step(logits, log_mu, avail, actions, q_local, order) -> (total, diagnostic): eager and
    torch.compile(fullgraph=True) agree on the total, the diagnostic and the logits' gradient, and no warning is
    about our code (a user would see each; torch's own deprecation warnings aside)."""
    compiled = torch.compile(step, fullgraph=True)
    inputs = [d[k] for k in ("log_mu", "avail", "actions", "q_local", "order")]
    results = []
    for fn in (step, compiled):
        logits = d["logits"].clone().requires_grad_()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            total, diagnostic = fn(logits, *inputs)
            total.backward()
        assert [str(w.message) for w in caught if "inspo" in str(w.message) + w.filename] == []
        results.append((total.detach(), diagnostic, logits.grad))
    for a, b in zip(*results):
        close(a, b)


def test_torch_compile_fullgraph_forward_and_backward():
    d = joint_batch(32, 3, 5, seed=32)

    def step(logits, log_mu, avail, actions, q_local, order):
        out = inspo_ext.sequential_policy_loss(
            logits, log_mu, avail, actions, q_local, order, ratio="self_normalized", **HYPER
        )
        return out.loss.sum() + 0.0 * out.ess.sum(), out.kl

    assert_compiled_matches_eager(step, d)


def test_backward_twice_and_a_loss_used_twice():
    d = joint_batch(32, 3, 5, seed=33)
    inputs = [d[k] for k in ("log_mu", "avail", "actions", "q_local", "order")]
    weights = torch.linspace(0.5, 1.5, 3, dtype=torch.float64)
    grads = []
    for fn in (inspo_ext.sequential_policy_loss, reference_loss):
        logits = d["logits"].clone().requires_grad_()
        loss = fn(logits, *inputs, ratio="importance", **HYPER).loss
        (first,) = torch.autograd.grad(loss, logits, weights, retain_graph=True)
        (second,) = torch.autograd.grad(loss, logits, 2 * weights, retain_graph=True)  # the saved G is intact
        torch.testing.assert_close(second, 2 * first, rtol=0, atol=0)
        (loss @ weights + (loss**2).sum()).backward()  # the two paths' gradients add up
        grads.append(logits.grad)
    close(*grads)


@pytest.mark.parametrize("ratio", RATIOS)
def test_the_summed_loss_takes_the_forwards_gradient_itself(ratio):
    """loss.sum() (every d loss_i = 1): on the CPU the backward hands autograd the forward's gradient buffer, no
    copy; it stays right when the graph is kept and backpropagated again, and when logits have a second use."""
    d = joint_batch(40, 3, 5, seed=34, mask="random")
    inputs = [d[k] for k in ("log_mu", "avail", "actions", "q_local", "order")]
    saved = []  # where the saved [B, N, A] tensors live (a reference here would make autograd copy)

    def note_address(t):
        if t.shape == d["logits"].shape:
            saved.append(t.data_ptr())
        return t

    logits = d["logits"].clone().requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(note_address, lambda t: t):
        loss = inspo_ext.sequential_policy_loss(logits, *inputs, ratio=ratio, **HYPER).loss.sum()
    loss.backward()
    assert saved == [logits.grad.data_ptr()]  # the forward's buffer itself
    expected = torch.autograd.grad(reference_loss(logits, *inputs, ratio=ratio, **HYPER).loss.sum(), logits)[0]
    close(logits.grad, expected)

    logits = d["logits"].clone().requires_grad_()
    loss = inspo_ext.sequential_policy_loss(logits, *inputs, ratio=ratio, **HYPER).loss.sum()
    for k in range(1, 4):  # accumulated into .grad three times: the buffer is never accumulated into in place
        loss.backward(retain_graph=True)
        close(logits.grad, k * expected)
    logits.grad.mul_(0.5)  # the user's in-place change of .grad leaves the graph's buffer alone
    loss.backward()
    close(logits.grad, 2.5 * expected)

    shared = d["logits"].clone().requires_grad_()
    twice = shared * 1.0  # a non-leaf with two uses: autograd adds the two gradients
    total = inspo_ext.sequential_policy_loss(twice, *inputs, ratio=ratio, **HYPER).loss.sum() + twice.sum()
    total.backward(retain_graph=True)
    total.backward()
    close(shared.grad, 2 * (expected + 1))


def reference_loss(logits, log_mu, avail, actions, q_local, order, *, ratio, alpha, beta, eta, log_rho_max, log_w_max):
    return reference.sequential_policy_loss(
        logits, log_mu, avail, actions, q_local, order, "target", None, alpha, beta, eta, log_rho_max, log_w_max, ratio
    )


def test_policy_loss_module():
    d = joint_batch(40, 3, 5, seed=33)
    module = inspo_ext.InSPOPolicyLoss(
        alpha=HYPER["alpha"], beta=HYPER["beta"], eta=HYPER["eta"], ratio="importance", predecessors="target"
    )
    assert "ratio='importance'" in repr(module) and module.last is None
    logits = d["logits"].clone().requires_grad_()
    total = module(logits, d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"])
    total.backward()
    ours, grad, ref, ref_grad = loss_pair(d, "importance", grad_weights=torch.ones(3, dtype=torch.float64))
    close(total.detach(), ref.loss.sum().detach())
    close(logits.grad, ref_grad)
    assert_policy_loss_close(module.last, ref)
    assert not module.last.loss.requires_grad
    with pytest.raises(ValueError, match="ratio must be one of"):
        inspo_ext.InSPOPolicyLoss(alpha=0.1, beta=0.1, ratio="weighted")
    with pytest.raises(ValueError, match="alpha"):
        inspo_ext.InSPOPolicyLoss(alpha=-1.0, beta=0.1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_self_normalized_when_every_ratio_of_an_agent_underflows(dtype):
    """Agent 1's only teammate has log pi = -200 (exp underflows in float32, and the sum
    of rho is then 0 / 0): the shift by max log rho gives its weighted mean, 200, and a finite gradient."""
    d = dict(
        logits=torch.tensor([[[0.0, 0.0], [-200.0, 0.0]]], dtype=dtype),
        log_mu=torch.full((1, 2, 2), math.log(0.5), dtype=dtype),
        avail=torch.ones(1, 2, 2, dtype=torch.bool),
        actions=torch.tensor([[0, 0]]),
        q_local=torch.zeros(1, 2, 2, dtype=dtype),
        order=torch.tensor([0, 1]),
        updated_log_probs=None,
    )
    ours, grad, ref, ref_grad = loss_pair(d, "self_normalized", alpha=0.1, beta=0.1)
    expected = torch.tensor([math.log(2.0), 200.0], dtype=torch.float64)
    close(ours.loss.detach(), expected, rtol=1e-6, atol=1e-6)
    close(ref.loss.detach(), expected, rtol=1e-6, atol=1e-6)
    assert torch.isfinite(grad).all()
    close(grad, ref_grad)
    # a whole column far below the clip: shifting changes nothing but the rounding
    d = joint_batch(40, 3, 4, seed=25)
    d["log_mu"] = torch.where(d["avail"], d["log_mu"] + 500.0, d["log_mu"])  # log rho ~ -1000: rho underflows
    ours, grad, ref, ref_grad = loss_pair(d, "self_normalized")
    assert torch.isfinite(ours.loss).all()
    assert_policy_loss_close(ours, ref, rtol=1e-9, atol=1e-9)
    close(grad, ref_grad)


def test_double_backward_raises():
    """create_graph=True raises: a gradient without grad_fn would give silently wrong second derivatives."""
    d = joint_batch(8, 3, 4, seed=26)
    logits = d["logits"].clone().requires_grad_()
    out = inspo_ext.sequential_policy_loss(
        logits, d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"], **HYPER
    )
    with pytest.raises(RuntimeError, match="sequential_policy_loss: double backward is not supported"):
        torch.autograd.grad(out.loss.sum(), logits, create_graph=True)


# ---- a leading problem dimension S ----------------------------------------------------------------------------


def _problems(batch=300, agents=4, actions=5, shared_order=False, **kwargs):
    """3 problems of 300 samples: two CPU chunks each (256 samples), so per-problem chunking is exercised."""
    return stack_problems(
        [joint_batch(batch, agents, actions, seed=50 + s, **kwargs) for s in range(3)], shared_order=shared_order
    )


@pytest.mark.parametrize("ratio", RATIOS)
@pytest.mark.parametrize("predecessors", ["target", "policy"])
def test_policy_loss_with_problems(ratio, predecessors):
    """Problem s of a batched call equals the call on slice s bit for bit (loss, diagnostics, gradient), and
    matches the reference in float64 (gradients included)."""
    d = _problems(shared_order=predecessors == "policy")
    weights = torch.linspace(0.5, 1.5, 12, dtype=torch.float64).view(3, 4)
    ours, grad, ref, ref_grad = loss_pair(d, ratio, predecessors, grad_weights=weights)
    assert ours.loss.shape == (3, 4) and grad.shape == (3, 300, 4, 5)
    assert_policy_loss_close(ours, ref)
    close(grad, ref_grad)
    for s in range(3):
        single, single_grad = loss_pair(problem_slice(d, s), ratio, predecessors, grad_weights=weights[s])[:2]
        for a, b in zip(single, ours):
            assert torch.equal(a.detach(), b[s].detach())
        assert torch.equal(single_grad, grad[s])


def test_policy_loss_with_problems_opcheck_and_compile():
    d = _problems(batch=12, agents=3, actions=4)
    opcheck_policy_loss(d)
    ops = torch.ops.inspo_ext
    from ops_testing import next_step

    n = stack_problems([next_step(12, 3, 4, seed=53 + s) for s in range(2)])
    for op, args in [
        (
            ops.soft_bellman_target.default,
            (
                n["reward"],
                n["done"],
                n["q_next"],
                n["next_logits"],
                n["next_log_mu"],
                n["next_avail"],
                n["next_actions"],
                0.99,
                0.1,
                0.2,
                4.6,
            ),
        ),
        (ops.in_sample_weights.default, (d["q_local"], d["log_mu"], d["avail"], d["actions"], 0.1, 0.2, 10.0)),
        (
            ops.teammate_log_ratios.default,
            (d["logits"], d["log_mu"], d["avail"], d["actions"], d["order"], d["q_local"], None, 0, 0.1, 0.2, 0.3, 4.6),
        ),
        (
            ops.teammate_log_ratios.default,
            (
                d["logits"],
                d["log_mu"],
                d["avail"],
                d["actions"],
                d["order"][0],
                None,
                d["updated_log_probs"],
                1,
                0.1,
                0.2,
                0.3,
                4.6,
            ),
        ),
    ]:
        torch.library.opcheck(op, args)

    def step(logits, log_mu, avail, actions, q_local, order):
        out = inspo_ext.sequential_policy_loss(
            logits, log_mu, avail, actions, q_local, order, ratio="self_normalized", **HYPER
        )
        return out.loss.sum(), out.ess

    assert_compiled_matches_eager(step, d)


def test_policy_loss_problem_errors_name_the_problem():
    d = _problems(batch=20)
    d["logits"][2, 7, 1] = math.nan
    d["avail"][2, 7, 1] = True
    with pytest.raises(ValueError, match=r"^logits\[2, 7, 1\] has a non-finite value at an available action$"):
        loss_pair(d, "importance")
    d = _problems(batch=20)
    with pytest.raises(ValueError, match=r"^order must have shape \[N\] = \[4\], got \[3, 4, 1\]$"):
        loss_pair(dict(d, order=d["order"].unsqueeze(-1)), "importance")


# ---- the shape grid of the kernels, extremes, ties, clips, float32, many chunks ----------------------------
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ratio", RATIO_MODES)
def test_policy_loss_and_gradient_match_reference(shape, ratio, backend):
    data = joint_batch(*shape, seed=41)
    coefficients = torch.randn(shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for predecessors in PREDECESSOR_MODES:
        out, grad = loss_and_grad(run_loss, to(data, backend), coefficients, ratio=ratio, predecessors=predecessors)
        ref_out, ref_grad = loss_and_grad(ref_loss, data, coefficients, ratio=ratio, predecessors=predecessors)
        compare(out, ref_out)
        compare([grad], [ref_grad])
        assert torch.isfinite(grad).all() and (grad.cpu()[~data["avail"]] == 0).all()


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", ["extreme", "ties", "clipped", "unclipped"])
def test_policy_loss_masks_extremes_ties_clip(mask, variant, backend):
    data = joint_batch(48, 27, 6, mask=mask, seed=42, logit_scale=1e4 if variant == "extreme" else 1.0)
    if variant == "extreme":
        data = extreme(data)
    if variant == "ties":
        data = with_ties(data)
    clip = (
        dict(log_rho_max=0.0, log_w_max=0.0)
        if variant == "clipped"
        else dict(log_rho_max=math.inf, log_w_max=math.inf)
        if variant == "unclipped"
        else {}
    )
    if variant == "clipped" and mask != "single":  # both clips active (one action per row: rho = w = 1)
        assert (ref_ratios(data, log_rho_max=math.inf) > 0).any()
        assert (ref_weights(data).log_weight > 0).any()
    coefficients = torch.randn(27, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for ratio in RATIO_MODES:
        out, grad = loss_and_grad(run_loss, to(data, backend), coefficients, ratio=ratio, **clip)
        ref_out, ref_grad = loss_and_grad(ref_loss, data, coefficients, ratio=ratio, **clip)
        compare(out, ref_out)
        compare([grad], [ref_grad])


def test_policy_loss_float32_and_many_chunks(backend):
    # B = 40000 > 32 * 1024: chunks of 40 samples in the partial sums (csrc/cuda/sequential_policy_loss.cu).
    data = joint_batch(40000, 2, 3, seed=43)
    coefficients = torch.tensor([0.7, -1.3], dtype=torch.float64)
    out, grad = loss_and_grad(run_loss, to(data, backend), coefficients, ratio="self_normalized")
    ref_out, ref_grad = loss_and_grad(ref_loss, data, coefficients, ratio="self_normalized")
    compare(out, ref_out)
    compare([grad], [ref_grad])
    data32 = to(joint_batch(256, 5, 12, seed=44), "cpu", torch.float32)
    out, grad = loss_and_grad(run_loss, to(data32, backend), coefficients.new_ones(5))
    ref_out, ref_grad = loss_and_grad(ref_loss, to(data32, "cpu", torch.float64), coefficients.new_ones(5))
    compare(out, ref_out, torch.float32)
    compare([grad], [ref_grad], torch.float32)


def test_policy_loss_module_backward(backend):
    data = joint_batch(32, 4, 6, seed=45)
    module = inspo_ext.InSPOPolicyLoss(alpha=ALPHA, beta=BETA, eta=ETA)
    logits = data["logits"].to(backend).requires_grad_(True)
    d = to(data, backend)
    module(logits, d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"]).backward()
    _, ref_grad = loss_and_grad(ref_loss, data, torch.ones(4, dtype=torch.float64))
    compare([logits.grad], [ref_grad])
