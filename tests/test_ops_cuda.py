"""CUDA backend of the five ops (csrc/cuda) against the reference, the CPU backend and itself.

Skipped without a CUDA device and a CUDA build of inspo_ext. Every comparison is float64 on random
inputs (never zeros) unless it says float32; unavailable entries are poisoned (NaN logits, +inf q,
-inf log_mu) so a kernel that reads them fails. A fallback to the reference ops would make these tests
vacuous, so its RuntimeWarning is an error here.
"""
from __future__ import annotations

import math

import pytest
import torch

import inspo_ext
from inspo_ext import reference
from inspo_ext.reference import PREDECESSOR_MODES, RATIO_MODES, RESAMPLE_METHODS
from inspo_ext.resample import resample_op
from ops_testing import GAMMA, HYPER, close, joint_batch, next_step


def _cuda_ready() -> bool:
    return torch.cuda.is_available() and bool(inspo_ext.build_info()["cuda"])


pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not _cuda_ready(), reason="needs a CUDA device and a CUDA build of inspo_ext"),
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

DEV = torch.device("cuda")
ALPHA, BETA, ETA = HYPER["alpha"], HYPER["beta"], HYPER["eta"]
LOG_RHO_MAX, LOG_W_MAX = HYPER["log_rho_max"], HYPER["log_w_max"]

# (B, N, A): B = 1 and N = 1; N = 27 (SMAX 27m_vs_30m); A on both sides of every group-size boundary of
# csrc/cuda/common.cuh (4 lanes up to A = 8, 8 up to 32, 16 up to 128, 32 beyond) up to A = 1024.
SHAPES = [(1, 1, 1), (1, 3, 5), (64, 1, 5), (64, 3, 5), (40, 27, 5), (16, 4, 8), (16, 4, 9), (16, 4, 33),
          (8, 3, 64), (8, 3, 129), (4, 2, 1024)]
MASKS = ["random", "padding", "single", "full"]


def to(data: dict, device, dtype=None) -> dict:
    """Copy of `data` on `device`, float tensors cast to `dtype` (None: unchanged)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device=device, dtype=dtype if (dtype is not None and value.is_floating_point()) else None)
        out[key] = value
    return out


def cpu64(out) -> list:
    """A result's tensors on the CPU in float64 (integers unchanged), for comparing with the reference."""
    return [t.detach().cpu().double() if t.is_floating_point() else t.cpu() for t in out]


def compare(actual, expected, dtype=torch.float64, **tol) -> None:
    for a, e in zip(cpu64(actual), cpu64(expected)):
        close(a, e, dtype=dtype, **tol)


def extreme(data: dict) -> dict:
    """Logits of scale 1e4 (as made by joint_batch(logit_scale=1e4)) with the argmax action taken in every even
    sample: there every agent's ratio is finite, elsewhere log pi(a) ~ -1e4 (rho underflows to 0)."""
    out = dict(data)
    masked = torch.where(data["avail"], data["logits"], torch.full_like(data["logits"], -math.inf))
    argmax = masked.argmax(-1)
    even = (torch.arange(argmax.shape[0]) % 2 == 0).unsqueeze(-1)
    out["actions"] = torch.where(even, argmax, data["actions"])
    return out


def with_ties(data: dict) -> dict:
    """Logits and q of few distinct values (exact ties within rows), keeping the poisoned entries."""
    g = torch.Generator().manual_seed(7)
    out = dict(data)
    for key in ("logits", "q_local"):
        values = torch.randint(-1, 2, data[key].shape, generator=g).to(data[key].dtype)
        out[key] = torch.where(data["avail"], values, data[key])
    return out


# ---- callers of the public ops (keyword arguments; data dicts as made by ops_testing) ------------------

def run_soft_bellman(d: dict, log_rho_max=LOG_RHO_MAX):
    return inspo_ext.soft_bellman_target(**d, gamma=GAMMA, alpha=ALPHA, beta=BETA, log_rho_max=log_rho_max)


def ref_soft_bellman(d: dict, log_rho_max=LOG_RHO_MAX):
    return reference.soft_bellman_target(**d, gamma=GAMMA, alpha=ALPHA, beta=BETA, log_rho_max=log_rho_max)


def run_weights(d: dict, log_w_max=LOG_W_MAX):
    return inspo_ext.in_sample_weights(d["q_local"], d["log_mu"], d["avail"], d["actions"], alpha=ALPHA, beta=BETA,
                                       log_w_max=log_w_max)


def ref_weights(d: dict, log_w_max=LOG_W_MAX):
    return reference.in_sample_weights(d["q_local"], d["log_mu"], d["avail"], d["actions"], ALPHA, BETA, log_w_max)


def run_ratios(d: dict, predecessors="target", log_rho_max=LOG_RHO_MAX):
    return inspo_ext.teammate_log_ratios(
        d["logits"], d["log_mu"], d["avail"], d["actions"], d["order"], predecessors=predecessors,
        q_local=d["q_local"], updated_log_probs=d["updated_log_probs"], alpha=ALPHA, beta=BETA, eta=ETA,
        log_rho_max=log_rho_max)


def ref_ratios(d: dict, predecessors="target", log_rho_max=LOG_RHO_MAX):
    return reference.teammate_log_ratios(
        d["logits"], d["log_mu"], d["avail"], d["actions"], d["order"], predecessors, d["q_local"],
        d["updated_log_probs"], ALPHA, BETA, ETA, log_rho_max)


def run_loss(d: dict, ratio="importance", predecessors="target", log_rho_max=LOG_RHO_MAX, log_w_max=LOG_W_MAX):
    return inspo_ext.sequential_policy_loss(
        d["logits"], d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"], predecessors=predecessors,
        updated_log_probs=d["updated_log_probs"], alpha=ALPHA, beta=BETA, eta=ETA, log_rho_max=log_rho_max,
        log_w_max=log_w_max, ratio=ratio)


def ref_loss(d: dict, ratio="importance", predecessors="target", log_rho_max=LOG_RHO_MAX, log_w_max=LOG_W_MAX):
    return reference.sequential_policy_loss(
        d["logits"], d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"], predecessors,
        d["updated_log_probs"], ALPHA, BETA, ETA, log_rho_max, log_w_max, ratio)


def run_resample(log_rho: torch.Tensor, uniforms: torch.Tensor, method: str):
    """The resample kernel with given uniforms (the public op draws its own)."""
    return resample_op(log_rho, uniforms, RESAMPLE_METHODS.index(method))


def random_log_rho(batch: int, agents: int, seed: int = 3, zero_fraction: float = 0.2) -> torch.Tensor:
    """[B, N] log-ratios over a wide range, with -inf (zero weight) entries; every column keeps one finite."""
    g = torch.Generator().manual_seed(seed)
    log_rho = torch.randn((batch, agents), generator=g, dtype=torch.float64) * 3.0
    zero = torch.rand((batch, agents), generator=g) < zero_fraction
    zero[0] = False
    return log_rho.masked_fill(zero, -math.inf)


def uniforms_for(batch: int, agents: int, method: str, seed: int = 5) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (batch, agents) if method == "multinomial" else (1, agents)
    return torch.rand(shape, generator=g, dtype=torch.float64)


# ---- against the reference ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", MASKS)
def test_soft_bellman_target_matches_reference(shape, mask):
    data = next_step(*shape, mask=mask, seed=11)
    compare(run_soft_bellman(to(data, DEV)), ref_soft_bellman(data))


@pytest.mark.parametrize("log_rho_max", [0.0, math.inf])
@pytest.mark.parametrize("logit_scale", [1.0, 1e4])
def test_soft_bellman_target_clip_and_extreme_logits(log_rho_max, logit_scale):
    data = next_step(50, 6, 7, seed=12, logit_scale=logit_scale)
    if log_rho_max == 0.0 and logit_scale == 1.0:  # the clip must be active on some live samples
        assert (ref_soft_bellman(data, math.inf).log_ratio > 0).any()
    compare(run_soft_bellman(to(data, DEV), log_rho_max), ref_soft_bellman(data, log_rho_max))


def test_soft_bellman_target_float32():
    data = next_step(64, 5, 12, seed=13)
    data32 = to(data, "cpu", torch.float32)
    compare(run_soft_bellman(to(data32, DEV)), ref_soft_bellman(to(data32, "cpu", torch.float64)), torch.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mask", MASKS)
def test_in_sample_weights_matches_reference(shape, mask):
    data = joint_batch(*shape, mask=mask, seed=21)
    compare(run_weights(to(data, DEV)), ref_weights(data))


@pytest.mark.parametrize("log_w_max", [0.0, math.inf])
@pytest.mark.parametrize("q_scale", [1.0, 1e4])
def test_in_sample_weights_clip_and_extreme_q(log_w_max, q_scale):
    data = joint_batch(50, 6, 7, seed=22, q_scale=q_scale)
    if log_w_max == 0.0:
        assert (ref_weights(data).log_weight > 0).any()
    compare(run_weights(to(data, DEV), log_w_max), ref_weights(data, log_w_max))


def test_in_sample_weights_ties_and_float32():
    data = with_ties(joint_batch(64, 5, 9, seed=23))
    compare(run_weights(to(data, DEV)), ref_weights(data))
    data32 = to(data, "cpu", torch.float32)
    compare(run_weights(to(data32, DEV)), ref_weights(to(data32, "cpu", torch.float64)), torch.float32)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("predecessors", PREDECESSOR_MODES)
def test_teammate_log_ratios_matches_reference(shape, predecessors):
    data = joint_batch(*shape, seed=31)
    compare([run_ratios(to(data, DEV), predecessors)], [ref_ratios(data, predecessors)])


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", ["extreme", "ties", "clipped"])
def test_teammate_log_ratios_masks_extremes_ties_clip(mask, variant):
    data = joint_batch(48, 27, 6, mask=mask, seed=32, logit_scale=1e4 if variant == "extreme" else 1.0)
    if variant == "extreme":
        data = extreme(data)
    if variant == "ties":
        data = with_ties(data)
    log_rho_max = 0.0 if variant == "clipped" else LOG_RHO_MAX
    if variant == "clipped" and mask != "single":  # (one action per row: every ratio is exactly 1)
        assert (ref_ratios(data, log_rho_max=math.inf) > 0).any()
    for predecessors in PREDECESSOR_MODES:
        compare([run_ratios(to(data, DEV), predecessors, log_rho_max)], [ref_ratios(data, predecessors, log_rho_max)])


def test_teammate_log_ratios_float32():
    data32 = to(joint_batch(64, 5, 12, seed=33), "cpu", torch.float32)
    compare([run_ratios(to(data32, DEV))], [ref_ratios(to(data32, "cpu", torch.float64))], torch.float32)


# B = 3000 spans three scan tiles of 1024 samples (csrc/cuda/resample.cu).
@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (7, 1), (64, 5), (1000, 27), (3000, 3)])
@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_resample_matches_reference_exactly(shape, method):
    log_rho = random_log_rho(*shape)
    uniforms = uniforms_for(*shape, method)
    indices, ess = run_resample(log_rho.to(DEV), uniforms.to(DEV), method)
    expected = reference.resample(log_rho, uniforms, method)
    assert torch.equal(indices.cpu(), expected.indices)  # same uniforms, same draws
    close(ess.cpu(), expected.ess)
    zero_weight = torch.isinf(log_rho).gather(0, indices.cpu())
    assert not zero_weight.any()  # a zero-weight sample is never drawn


def assert_nearly_equal_draws(indices: torch.Tensor, expected: torch.Tensor, max_fraction: float = 0.01) -> None:
    """float32 weights: the device's expf and the host's exp may differ in the last bit, which moves a draw whose
    point lies within a few float32 ulps of a cdf value to the neighbouring sample; anything more is a bug."""
    different = indices != expected
    assert different.double().mean() <= max_fraction
    assert ((indices - expected).abs()[different] <= indices.shape[0]).all()


@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_resample_ties_and_float32(method):
    # Equal weights (exp(0) = 1): an integer cdf, exact whatever the summation order and the exp.
    log_rho = torch.full((200, 4), 0.5, dtype=torch.float64)
    uniforms = uniforms_for(200, 4, method, seed=6)
    indices, ess = run_resample(log_rho.to(DEV), uniforms.to(DEV), method)
    assert torch.equal(indices.cpu(), reference.resample(log_rho, uniforms, method).indices)
    close(ess.cpu(), torch.full((4,), 200.0, dtype=torch.float64))
    # float32 weights of 1 or 0 (log_rho 0 or -inf): exact draws too.
    log_rho32 = torch.where(random_log_rho(500, 6, seed=8) > 0, 0.0, -math.inf).float()
    log_rho32[0] = 0.0
    uniforms = uniforms_for(500, 6, method, seed=9)
    indices, ess = run_resample(log_rho32.to(DEV), uniforms.to(DEV), method)
    expected = reference.resample(log_rho32, uniforms, method)
    assert torch.equal(indices.cpu(), expected.indices)
    close(ess.cpu(), expected.ess)
    # Random float32 weights.
    log_rho32 = random_log_rho(500, 6, seed=10).float()
    indices, ess = run_resample(log_rho32.to(DEV), uniforms.to(DEV), method)
    expected = reference.resample(log_rho32, uniforms, method)
    assert_nearly_equal_draws(indices.cpu(), expected.indices)
    close(ess.cpu(), expected.ess)


@pytest.mark.parametrize("method", RESAMPLE_METHODS)
def test_resample_public_op_uses_the_generator(method):
    log_rho = random_log_rho(300, 4, seed=11)
    generator = torch.Generator(device=DEV).manual_seed(123)
    out = inspo_ext.resample(log_rho.to(DEV), method=method, generator=generator)
    shape = (300, 4) if method == "multinomial" else (1, 4)
    replay = torch.rand(shape, generator=torch.Generator(device=DEV).manual_seed(123), dtype=torch.float64,
                        device=DEV)
    expected = reference.resample(log_rho, replay.cpu(), method)
    assert torch.equal(out.indices.cpu(), expected.indices)
    close(out.ess.cpu(), expected.ess)


def _loss_and_grad(run, data: dict, coefficients: torch.Tensor, **kwargs):
    """Outputs of `run` and d(sum_i coefficient_i loss_i)/d logits."""
    data = dict(data)
    data["logits"] = data["logits"].detach().clone().requires_grad_(True)
    out = run(data, **kwargs)
    (out.loss * coefficients.to(out.loss)).sum().backward()
    return list(out), data["logits"].grad


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("ratio", RATIO_MODES)
def test_policy_loss_and_gradient_match_reference(shape, ratio):
    data = joint_batch(*shape, seed=41)
    coefficients = torch.randn(shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for predecessors in PREDECESSOR_MODES:
        out, grad = _loss_and_grad(run_loss, to(data, DEV), coefficients, ratio=ratio, predecessors=predecessors)
        ref_out, ref_grad = _loss_and_grad(ref_loss, data, coefficients, ratio=ratio, predecessors=predecessors)
        compare(out, ref_out)
        compare([grad], [ref_grad])
        assert torch.isfinite(grad).all() and (grad.cpu()[~data["avail"]] == 0).all()


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("variant", ["extreme", "ties", "clipped", "unclipped"])
def test_policy_loss_masks_extremes_ties_clip(mask, variant):
    data = joint_batch(48, 27, 6, mask=mask, seed=42, logit_scale=1e4 if variant == "extreme" else 1.0)
    if variant == "extreme":
        data = extreme(data)
    if variant == "ties":
        data = with_ties(data)
    clip = dict(log_rho_max=0.0, log_w_max=0.0) if variant == "clipped" else \
        dict(log_rho_max=math.inf, log_w_max=math.inf) if variant == "unclipped" else {}
    if variant == "clipped" and mask != "single":  # both clips active (one action per row: rho = w = 1)
        assert (ref_ratios(data, log_rho_max=math.inf) > 0).any()
        assert (ref_weights(data).log_weight > 0).any()
    coefficients = torch.randn(27, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for ratio in RATIO_MODES:
        out, grad = _loss_and_grad(run_loss, to(data, DEV), coefficients, ratio=ratio, **clip)
        ref_out, ref_grad = _loss_and_grad(ref_loss, data, coefficients, ratio=ratio, **clip)
        compare(out, ref_out)
        compare([grad], [ref_grad])


def test_policy_loss_float32_and_many_chunks():
    # B = 40000 > 32 * 1024: chunks of 40 samples in the partial sums (csrc/cuda/sequential_policy_loss.cu).
    data = joint_batch(40000, 2, 3, seed=43)
    coefficients = torch.tensor([0.7, -1.3], dtype=torch.float64)
    out, grad = _loss_and_grad(run_loss, to(data, DEV), coefficients, ratio="self_normalized")
    ref_out, ref_grad = _loss_and_grad(ref_loss, data, coefficients, ratio="self_normalized")
    compare(out, ref_out)
    compare([grad], [ref_grad])
    data32 = to(joint_batch(256, 5, 12, seed=44), "cpu", torch.float32)
    out, grad = _loss_and_grad(run_loss, to(data32, DEV), coefficients.new_ones(5))
    ref_out, ref_grad = _loss_and_grad(ref_loss, to(data32, "cpu", torch.float64), coefficients.new_ones(5))
    compare(out, ref_out, torch.float32)
    compare([grad], [ref_grad], torch.float32)


def test_policy_loss_module_backward():
    data = joint_batch(32, 4, 6, seed=45)
    module = inspo_ext.InSPOPolicyLoss(alpha=ALPHA, beta=BETA, eta=ETA)
    logits = data["logits"].to(DEV).requires_grad_(True)
    d = to(data, DEV)
    module(logits, d["log_mu"], d["avail"], d["actions"], d["q_local"], d["order"]).backward()
    _, ref_grad = _loss_and_grad(ref_loss, data, torch.ones(4, dtype=torch.float64))
    compare([logits.grad], [ref_grad])


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
            out, grad = _loss_and_grad(run_loss, to(joint, DEV), ones, ratio=ratio)
            cpu_out, cpu_grad = _loss_and_grad(run_loss, joint, ones, ratio=ratio)
            compare(out + [grad], cpu_out + [cpu_grad], dtype, **tol)
        for method in RESAMPLE_METHODS:
            log_rho = random_log_rho(shape[0], shape[1]).to(dtype)
            uniforms = uniforms_for(shape[0], shape[1], method)
            indices, ess = run_resample(log_rho.to(DEV), uniforms.to(DEV), method)
            cpu_indices, cpu_ess = run_resample(log_rho, uniforms, method)
            if dtype == torch.float64:
                assert torch.equal(indices.cpu(), cpu_indices)
            else:
                assert_nearly_equal_draws(indices.cpu(), cpu_indices)
            close(ess.cpu().double(), cpu_ess.double(), dtype=dtype, **tol)


# ---- bad values: the status flag -------------------------------------------------------------------------

def _set(key, index, value):
    def mutate(d):
        d[key][index] = value
    return mutate


def _repeat_order(d):
    d["order"][1] = d["order"][0]


def _no_avail(key, b, i):
    def mutate(d):
        d[key][b, i] = False
    return mutate


def _take_away_action(avail_key, actions_key, b, i):
    def mutate(d):
        d[avail_key][b, i, int(d[actions_key][b, i])] = False
    return mutate


def _two_errors(first, second):
    def mutate(d):
        first(d)
        second(d)
    return mutate


def _next_step_valid():
    return next_step(8, 4, 5, seed=61, mask="full", terminal_fraction=0.0)  # all live: every row is read


def _joint_valid():
    return joint_batch(8, 4, 5, seed=62, mask="full")


# (case id, make valid inputs, corrupt them, call the op, pattern the message must match)
ERROR_CASES = [
    ("sbt-done", _next_step_valid, _set("done", 3, 0.5), run_soft_bellman, r"done\[3\] = 0\.5 must be 0 or 1"),
    ("sbt-reward", _next_step_valid, _set("reward", 2, math.inf), run_soft_bellman, r"reward\[2\]"),
    ("sbt-q-next", _next_step_valid, _set("q_next", 5, math.nan), run_soft_bellman, r"q_next\[5\]"),
    ("sbt-no-avail", _next_step_valid, _no_avail("next_avail", 1, 2), run_soft_bellman,
     r"next_avail\[1, 2\] has no available action"),
    ("sbt-action-range", _next_step_valid, _set("next_actions", (4, 1), 5), run_soft_bellman,
     r"next_actions\[4, 1\] = 5 is out of range"),
    ("sbt-action-negative", _next_step_valid, _set("next_actions", (4, 1), -1), run_soft_bellman,
     r"next_actions\[4, 1\] = -1 is out of range"),
    ("sbt-action-unavailable", _next_step_valid, _take_away_action("next_avail", "next_actions", 6, 3),
     run_soft_bellman, r"next_actions\[6, 3\] = \d is not available"),
    ("sbt-logits", _next_step_valid, _set("next_logits", (2, 0, 4), math.inf), run_soft_bellman,
     r"next_logits\[2, 0\] has a non-finite value"),
    ("sbt-log-mu", _next_step_valid, _set("next_log_mu", (7, 3, 1), math.nan), run_soft_bellman,
     r"next_log_mu\[7, 3\] has a non-finite value"),
    ("sbt-first-error", _next_step_valid,
     _two_errors(_set("next_logits", (5, 0, 0), math.nan), _set("next_actions", (3, 2), 9)), run_soft_bellman,
     r"next_actions\[3, 2\] = 9"),
    ("sbt-sample-before-row", _next_step_valid,
     _two_errors(_set("next_log_mu", (3, 0, 0), math.nan), _set("reward", 3, math.nan)), run_soft_bellman,
     r"reward\[3\]"),
    ("isw-q", _joint_valid, _set("q_local", (1, 1, 3), math.nan), run_weights, r"q_local\[1, 1\] has a non-finite"),
    ("isw-log-mu", _joint_valid, _set("log_mu", (6, 0, 2), -math.inf), run_weights, r"log_mu\[6, 0\]"),
    ("isw-no-avail", _joint_valid, _no_avail("avail", 0, 3), run_weights, r"avail\[0, 3\] has no available"),
    ("isw-action-range", _joint_valid, _set("actions", (2, 2), 17), run_weights, r"actions\[2, 2\] = 17"),
    ("isw-action-unavailable", _joint_valid, _take_away_action("avail", "actions", 3, 1), run_weights,
     r"actions\[3, 1\] = \d is not available"),
    ("isw-first-error", _joint_valid,
     _two_errors(_set("q_local", (7, 3, 0), math.inf), _set("log_mu", (7, 2, 4), math.nan)), run_weights,
     r"log_mu\[7, 2\]"),
    ("tlr-order-repeat", _joint_valid, _repeat_order, run_ratios, r"order must be a permutation"),
    ("tlr-order-range", _joint_valid, _set("order", 3, 4), run_ratios, r"order must be a permutation"),
    ("tlr-logits", _joint_valid, _set("logits", (5, 2, 1), -math.inf), run_ratios, r"logits\[5, 2\] has a non-finite"),
    ("tlr-q-target", _joint_valid, _set("q_local", (4, 0, 0), math.nan), run_ratios, r"q_local\[4, 0\]"),
    ("tlr-updated-policy", _joint_valid, _set("updated_log_probs", (6, 1), math.nan),
     lambda d: run_ratios(d, "policy"), r"updated_log_probs\[6, 1\] = nan is not a log-probability"),
    ("tlr-order-first", _joint_valid,
     _two_errors(_set("logits", (0, 0, 0), math.nan), _set("order", 0, 4)), run_ratios, r"order must be"),
    ("spl-order", _joint_valid, _set("order", 2, -1), run_loss, r"order must be a permutation"),
    ("spl-order-ratio-none", _joint_valid, _repeat_order, lambda d: run_loss(d, "none"),
     r"order must be a permutation"),
    ("spl-logits", _joint_valid, _set("logits", (3, 3, 2), math.nan), run_loss, r"logits\[3, 3\]"),
    ("spl-log-mu", _joint_valid, _set("log_mu", (1, 0, 0), math.inf), run_loss, r"log_mu\[1, 0\]"),
    ("spl-q", _joint_valid, _set("q_local", (2, 1, 4), -math.inf), run_loss, r"q_local\[2, 1\]"),
    ("spl-action", _joint_valid, _set("actions", (0, 1), 5), run_loss, r"actions\[0, 1\] = 5 is out of range"),
    ("spl-updated-policy", _joint_valid, _set("updated_log_probs", (5, 3), math.inf),
     lambda d: run_loss(d, "importance", "policy"), r"updated_log_probs\[5, 3\] = inf"),
]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_bad_values_raise_value_error_like_the_cpu_backend(case):
    _, make, corrupt, run, pattern = case
    data = make()
    corrupt(data)
    with pytest.raises(ValueError, match=pattern) as on_cuda:
        run(to(data, DEV))
    with pytest.raises(ValueError) as on_cpu:
        run(data)
    assert str(on_cuda.value) == str(on_cpu.value)


def test_updated_log_probs_not_read_without_ratio():
    data = _joint_valid()
    data["updated_log_probs"][0, 0] = math.nan  # ratio="none" reads no teammate ratio: no error
    out = run_loss(to(data, DEV), "none", "policy")
    compare(out, ref_loss(data, "none", "policy"))


@pytest.mark.parametrize("case", ["nan", "inf", "no-weight", "first"])
def test_resample_bad_values(case):
    log_rho = random_log_rho(20, 3)
    if case == "nan":
        log_rho[4, 1] = math.nan
        pattern = r"log_rho\[4, 1\] = nan must be finite or -inf"
    elif case == "inf":
        log_rho[7, 2] = math.inf
        pattern = r"log_rho\[7, 2\] = inf"
    elif case == "no-weight":
        log_rho[:, 2] = -math.inf
        pattern = r"log_rho\[:, 2\] has no positive weight"
    else:  # an element error comes before a column without weight
        log_rho[:, 0] = -math.inf
        log_rho[19, 2] = math.nan
        pattern = r"log_rho\[19, 2\]"
    uniforms = uniforms_for(20, 3, "multinomial")
    with pytest.raises(ValueError, match=pattern) as on_cuda:
        run_resample(log_rho.to(DEV), uniforms.to(DEV), "multinomial")
    with pytest.raises(ValueError) as on_cpu:
        run_resample(log_rho, uniforms, "multinomial")
    assert str(on_cuda.value) == str(on_cpu.value)


def test_error_does_not_leak_into_the_next_call():
    data = _joint_valid()
    bad = {k: v.clone() for k, v in data.items()}
    bad["q_local"][0, 0, 0] = math.nan
    with pytest.raises(ValueError):
        run_weights(to(bad, DEV))
    compare(run_weights(to(data, DEV)), ref_weights(data))  # a fresh status per call


# ---- streams and determinism -------------------------------------------------------------------------------

def _next_step_of(d: dict) -> dict:
    """soft_bellman_target inputs built from a joint batch (done = 1 on odd first actions; reward and q_next from
    the finite updated_log_probs, since q_local is poisoned at unavailable entries)."""
    return dict(reward=d["updated_log_probs"][:, 0].clone(), done=(d["actions"][:, 0] % 2).to(d["logits"].dtype),
                q_next=d["updated_log_probs"][:, -1].clone(), next_logits=d["logits"], next_log_mu=d["log_mu"],
                next_avail=d["avail"], next_actions=d["actions"])


def _loss_outputs(d: dict, ratio: str) -> list:
    logits = d["logits"].detach().clone().requires_grad_(True)
    out = run_loss(dict(d, logits=logits), ratio)
    out.loss.sum().backward()
    return [t.detach() for t in out] + [logits.grad]


# Every op (each launch configuration) as: (joint batch, log_rho, uniforms) -> list of output tensors.
OPS = {
    "soft_bellman_target": lambda d, log_rho, u: list(run_soft_bellman(_next_step_of(d))),
    "in_sample_weights": lambda d, log_rho, u: list(run_weights(d)),
    "teammate_log_ratios": lambda d, log_rho, u: [run_ratios(d, "target"), run_ratios(d, "policy")],
    "resample": lambda d, log_rho, u: [*run_resample(log_rho, u, "multinomial"),
                                       *run_resample(log_rho, u[:1], "systematic")],
    "sequential_policy_loss": lambda d, log_rho, u: [t for ratio in RATIO_MODES for t in _loss_outputs(d, ratio)],
}


@pytest.mark.parametrize("op", list(OPS))
def test_runs_on_the_current_stream(op):
    """The kernels must run on torch's current stream: on a side stream whose inputs are only written after a
    long GPU sleep, a launch on any other stream would read the stale inputs."""
    data = joint_batch(256, 5, 7, seed=71, mask="full")
    fresh = to(data, DEV)
    fresh["log_rho"] = random_log_rho(256, 5).to(DEV)
    uniforms = uniforms_for(256, 5, "multinomial").to(DEV)
    expected = OPS[op](fresh, fresh["log_rho"], uniforms)
    stale = {k: (v * 0.5 if v.is_floating_point() else v.clone()) for k, v in fresh.items()}
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        torch.cuda._sleep(100_000_000)  # ~50 ms of GPU time before the inputs become the fresh ones
        for key, value in fresh.items():
            stale[key].copy_(value)
        actual = OPS[op](stale, stale["log_rho"], uniforms)
    torch.cuda.synchronize()
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert torch.equal(a, e)


@pytest.mark.parametrize("shape", [(5000, 27, 5), (600, 8, 64), (64, 4, 1024)])
def test_two_runs_are_bit_identical(shape):
    data = to(joint_batch(*shape, seed=81), DEV)
    log_rho = random_log_rho(shape[0], shape[1]).to(DEV)
    uniforms = uniforms_for(shape[0], shape[1], "multinomial").to(DEV)
    for op, run in OPS.items():
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
        out, grad = _loss_and_grad(run_loss, gpu, coefficients, ratio=ratio)
        cpu_out, cpu_grad = _loss_and_grad(run_loss, joint, coefficients, ratio=ratio)
        compare(out + [grad], cpu_out + [cpu_grad], dtype, **tol)
        for s in range(3):
            single, single_grad = _loss_and_grad(run_loss, problem_slice(gpu, s), coefficients[s], ratio=ratio)
            compare(single + [single_grad], [t[s] for t in out] + [grad[s]], dtype, **tol)
    log_rho = torch.stack([random_log_rho(700, 4, seed=66 + s) for s in range(3)]).to(dtype)
    for method in RESAMPLE_METHODS:
        uniforms = torch.stack([uniforms_for(700, 4, method, seed=69 + s) for s in range(3)])
        result = inspo_ext.resample(log_rho.to(DEV), method=method, uniforms=uniforms.to(DEV))
        cpu = inspo_ext.resample(log_rho, method=method, uniforms=uniforms)
        if dtype == torch.float64:
            assert torch.equal(result.indices.cpu(), cpu.indices)
        else:
            assert_nearly_equal_draws(result.indices.cpu(), cpu.indices)
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
    out = inspo_ext.sequential_policy_loss(logits, log_mu, avail, actions, torch.zeros_like(logits),
                                           torch.tensor([0, 1], device=DEV), alpha=0.1, beta=0.1,
                                           ratio="self_normalized")
    close(out.loss.cpu().double(), torch.tensor([math.log(2.0), 200.0], dtype=torch.float64), rtol=1e-5, atol=1e-5)
    q = torch.tensor([[[1e15, 7.0, 3e14]]], dtype=torch.float64, device=DEV)
    weights = inspo_ext.in_sample_weights(q, torch.zeros_like(q), torch.tensor([[[True, False, False]]], device=DEV),
                                          torch.zeros(1, 1, dtype=torch.int64, device=DEV), alpha=0.1, beta=0.01)
    assert weights.log_weight.item() == 0.0
