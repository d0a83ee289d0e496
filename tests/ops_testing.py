"""Shared inputs and comparison helpers of the tests/test_ops_*.py files (not a test module)."""

from __future__ import annotations

import math
from typing import Optional

import pytest
import torch
from torch import Tensor

import inspo_ext
from inspo_ext import _backend, reference
from inspo_ext.reference import RATIO_MODES

HYPER = dict(alpha=0.1, beta=0.05, eta=0.3, log_rho_max=math.log(100.0), log_w_max=10.0)
GAMMA = 0.99


def joint_batch(
    batch: int,
    agents: int,
    actions: int,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 0,
    mask: str = "random",
    logit_scale: float = 1.0,
    q_scale: float = 1.0,
    poison: bool = True,
) -> dict[str, Tensor]:
    """Random non-zero joint batch. mask: "random" (~30% unavailable), "padding" (agent i has
    A - i % A... trailing actions unavailable), "single" (exactly one available action), "full".
    poison: unavailable entries hold NaN logits, +inf q and -inf log_mu (they must never be read)."""
    g = torch.Generator().manual_seed(seed)
    shape = (batch, agents, actions)
    if mask == "random":
        avail = torch.rand(shape, generator=g) < 0.7
    elif mask == "padding":
        sizes = 1 + torch.arange(agents) % actions  # agent i has 1 + i % A actions
        avail = (torch.arange(actions) < sizes.unsqueeze(-1)).expand(shape).clone()
    elif mask == "single":
        avail = torch.zeros(shape, dtype=torch.bool)
        avail.view(-1, actions)[
            torch.arange(batch * agents), torch.randint(0, actions, (batch * agents,), generator=g)
        ] = True
    elif mask == "full":
        avail = torch.ones(shape, dtype=torch.bool)
    else:
        raise ValueError(mask)
    rows_without = ~avail.any(-1)
    avail[..., 0] |= rows_without  # at least one available action per row
    taken = torch.multinomial(avail.view(-1, actions).double(), 1, generator=g).view(batch, agents)
    logits = torch.randn(shape, generator=g, dtype=torch.float64) * logit_scale
    log_mu = reference.masked_log_softmax(torch.randn(shape, generator=g, dtype=torch.float64), avail)
    q_local = torch.randn(shape, generator=g, dtype=torch.float64) * q_scale
    if poison:
        logits = logits.masked_fill(~avail, math.nan)
        q_local = q_local.masked_fill(~avail, math.inf)
    order = torch.randperm(agents, generator=g)
    updated = -(torch.randn((batch, agents), generator=g, dtype=torch.float64) * 0.5 - 1.0).abs()  # log-probs <= 0
    return dict(
        logits=logits.to(dtype),
        log_mu=log_mu.to(dtype),
        avail=avail,
        actions=taken,
        q_local=q_local.to(dtype),
        order=order,
        updated_log_probs=updated.to(dtype),
    )


def next_step(
    batch: int,
    agents: int,
    actions: int,
    *,
    dtype: torch.dtype = torch.float64,
    seed: int = 1,
    mask: str = "random",
    terminal_fraction: float = 0.3,
    **kwargs,
) -> dict[str, Tensor]:
    """Inputs of soft_bellman_target; terminal samples get garbage next-step inputs (never read)."""
    data = joint_batch(batch, agents, actions, dtype=dtype, seed=seed, mask=mask, **kwargs)
    g = torch.Generator().manual_seed(seed + 1000)
    done = (torch.rand(batch, generator=g) < terminal_fraction).to(dtype)
    q_next = torch.randn(batch, generator=g, dtype=torch.float64).to(dtype)
    reward = torch.randn(batch, generator=g, dtype=torch.float64).to(dtype)
    terminal = done.bool()
    next_actions = data["actions"].masked_fill(terminal.unsqueeze(-1), -1)  # padding at terminal samples
    next_logits = data["logits"].masked_fill(terminal[:, None, None], math.nan)
    q_next = q_next.masked_fill(terminal, math.nan)
    return dict(
        reward=reward,
        done=done,
        q_next=q_next,
        next_logits=next_logits,
        next_log_mu=data["log_mu"],
        next_avail=data["avail"],
        next_actions=next_actions,
    )


def close(actual: Tensor, expected: Tensor, dtype: Optional[torch.dtype] = None, **tol) -> None:
    """assert_close with float64 / float32 default tolerances (`expected` is cast to actual's dtype)."""
    expected = expected.to(actual.dtype)
    dtype = dtype or actual.dtype
    default = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    default.update(tol)
    torch.testing.assert_close(actual, expected, **default)


# ---- the backends every op test runs on ------------------------------------------------------------------
def cuda_ready() -> bool:
    return torch.cuda.is_available() and bool(inspo_ext.build_info()["cuda"])


CPU = torch.device("cpu")


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not cuda_ready(), reason="needs a CUDA device and a CUDA build of inspo_ext"),
            ],
        ),
        "reference",
    ]
)
def backend(request, monkeypatch) -> torch.device:
    """The device an op test runs the public op on: the CPU kernels, the CUDA kernels, or (on the CPU) the
    reference fallback with its torch-computed status. A kernel backend must really run its kernels (a
    silent fallback would make the comparison with the reference vacuous)."""
    if request.param == "reference":
        monkeypatch.setattr(_backend, "has_kernels", lambda device: False)
        monkeypatch.setattr(_backend, "warn_fallback", lambda device_type: None)
        return CPU
    device = torch.device(request.param)
    assert _backend.has_kernels(device), f"inspo_ext has no {device} kernels"
    return device


def on(device: torch.device, d: dict) -> dict:
    """`d` with its tensors on `device`."""
    return {k: v.to(device) if isinstance(v, Tensor) else v for k, v in d.items()}


def to_cpu(out):
    """An op's result (a tensor or a tuple / NamedTuple of them) on the CPU."""
    if isinstance(out, Tensor):
        return out.cpu()
    return type(out)(*(to_cpu(t) for t in out)) if hasattr(out, "_fields") else tuple(to_cpu(t) for t in out)


# ---- calling an op and its reference on one input dict ---------------------------------------------------
# `device`: where the public op runs (the reference always runs on the CPU); its result comes back on the CPU.
def weights_pair(d: dict[str, Tensor], device: torch.device = CPU, **hyper):
    h = {**HYPER, **hyper}
    x = on(device, d)
    ours = to_cpu(
        inspo_ext.in_sample_weights(
            x["q_local"],
            x["log_mu"],
            x["avail"],
            x["actions"],
            alpha=h["alpha"],
            beta=h["beta"],
            log_w_max=h["log_w_max"],
        )
    )
    ref = reference.in_sample_weights(
        d["q_local"], d["log_mu"], d["avail"], d["actions"], h["alpha"], h["beta"], h["log_w_max"]
    )
    return ours, ref


def ratios_pair(d: dict[str, Tensor], predecessors: str, device: torch.device = CPU, **hyper):
    h = {**HYPER, **hyper}
    x = on(device, d)
    ours = to_cpu(
        inspo_ext.teammate_log_ratios(
            x["logits"],
            x["log_mu"],
            x["avail"],
            x["actions"],
            x["order"],
            predecessors=predecessors,
            q_local=x["q_local"],
            updated_log_probs=x["updated_log_probs"],
            alpha=h["alpha"],
            beta=h["beta"],
            eta=h["eta"],
            log_rho_max=h["log_rho_max"],
        )
    )
    ref = reference.teammate_log_ratios(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["order"],
        predecessors,
        d["q_local"],
        d["updated_log_probs"],
        h["alpha"],
        h["beta"],
        h["eta"],
        h["log_rho_max"],
    )
    return ours, ref


def bellman_pair(n: dict[str, Tensor], gamma: float = GAMMA, device: torch.device = CPU, **hyper):
    h = {**HYPER, **hyper}
    ours = to_cpu(
        inspo_ext.soft_bellman_target(
            **on(device, n), gamma=gamma, alpha=h["alpha"], beta=h["beta"], log_rho_max=h["log_rho_max"]
        )
    )
    ref = reference.soft_bellman_target(
        n["reward"],
        n["done"],
        n["q_next"],
        n["next_logits"],
        n["next_log_mu"],
        n["next_avail"],
        n["next_actions"],
        gamma,
        h["alpha"],
        h["beta"],
        h["log_rho_max"],
    )
    return ours, ref


def loss_pair(
    d: dict[str, Tensor],
    ratio: str,
    predecessors: str = "target",
    grad_weights: Optional[Tensor] = None,
    device: torch.device = CPU,
    **hyper,
):
    """(ours PolicyLoss, ours d logits, reference PolicyLoss, reference d logits) for the loss
    sum_i grad_weights[i] * loss_i (random weights: every agent's gradient path is checked)."""
    h = {**HYPER, **hyper}
    n_agents = d["logits"].shape[-2]
    if grad_weights is None:
        grad_weights = torch.linspace(0.5, 1.5, n_agents, dtype=d["logits"].dtype)
    x = on(device, d)
    logits = x["logits"].clone().requires_grad_()
    ours = inspo_ext.sequential_policy_loss(
        logits,
        x["log_mu"],
        x["avail"],
        x["actions"],
        x["q_local"],
        x["order"],
        predecessors=predecessors,
        updated_log_probs=x["updated_log_probs"],
        alpha=h["alpha"],
        beta=h["beta"],
        eta=h["eta"],
        log_rho_max=h["log_rho_max"],
        log_w_max=h["log_w_max"],
        ratio=ratio,
    )
    (ours.loss * grad_weights.to(device)).sum().backward()
    ref_logits = d["logits"].clone().requires_grad_()
    ref = reference.sequential_policy_loss(
        ref_logits,
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["q_local"],
        d["order"],
        predecessors,
        d["updated_log_probs"],
        h["alpha"],
        h["beta"],
        h["eta"],
        h["log_rho_max"],
        h["log_w_max"],
        ratio,
    )
    (ref.loss * grad_weights).sum().backward()
    return to_cpu(ours), logits.grad.cpu(), ref, ref_logits.grad


def assert_policy_loss_close(ours, ref, **tol) -> None:
    for a, b in zip(ours, ref):
        close(a.detach(), b.detach(), **tol)


# ---- a leading problem dimension S ---------------------------------------------------------------------
def stack_problems(problems: list[dict[str, Optional[Tensor]]], shared_order: bool = False) -> dict:
    """S input dicts of one shape -> one dict with a leading S on every tensor (order [S, N], or the first
    problem's [N] order for every problem when shared_order)."""
    out = {}
    for key in problems[0]:
        if key == "order" and shared_order:
            out[key] = problems[0][key]
        else:
            out[key] = torch.stack([p[key] for p in problems])
    return out


def problem_slice(d: dict[str, Tensor], s: int) -> dict[str, Tensor]:
    """Problem s of a batched input dict (an [N] order is shared)."""
    return {k: (v if k == "order" and v.dim() == 1 else v[s].contiguous()) for k, v in d.items()}


# ---- inputs and callers shared by the per-op tests (every backend) ------------------------------------
ALPHA, BETA, ETA = HYPER["alpha"], HYPER["beta"], HYPER["eta"]
LOG_RHO_MAX, LOG_W_MAX = HYPER["log_rho_max"], HYPER["log_w_max"]

# (B, N, A): B = 1 and N = 1; N = 27 (SMAX 27m_vs_30m); A on both sides of every group-size boundary of
# csrc/cuda/common.cuh (4 lanes up to A = 8, 8 up to 32, 16 up to 128, 32 beyond) up to A = 1024.
SHAPES = [
    (1, 1, 1),
    (1, 3, 5),
    (64, 1, 5),
    (64, 3, 5),
    (40, 27, 5),
    (16, 4, 8),
    (16, 4, 9),
    (16, 4, 33),
    (8, 3, 64),
    (8, 3, 129),
    (4, 2, 1024),
]
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


def run_soft_bellman(d: dict, log_rho_max=LOG_RHO_MAX):
    return inspo_ext.soft_bellman_target(**d, gamma=GAMMA, alpha=ALPHA, beta=BETA, log_rho_max=log_rho_max)


def ref_soft_bellman(d: dict, log_rho_max=LOG_RHO_MAX):
    return reference.soft_bellman_target(**d, gamma=GAMMA, alpha=ALPHA, beta=BETA, log_rho_max=log_rho_max)


def run_weights(d: dict, log_w_max=LOG_W_MAX):
    return inspo_ext.in_sample_weights(
        d["q_local"], d["log_mu"], d["avail"], d["actions"], alpha=ALPHA, beta=BETA, log_w_max=log_w_max
    )


def ref_weights(d: dict, log_w_max=LOG_W_MAX):
    return reference.in_sample_weights(d["q_local"], d["log_mu"], d["avail"], d["actions"], ALPHA, BETA, log_w_max)


def run_ratios(d: dict, predecessors="target", log_rho_max=LOG_RHO_MAX):
    return inspo_ext.teammate_log_ratios(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["order"],
        predecessors=predecessors,
        q_local=d["q_local"],
        updated_log_probs=d["updated_log_probs"],
        alpha=ALPHA,
        beta=BETA,
        eta=ETA,
        log_rho_max=log_rho_max,
    )


def ref_ratios(d: dict, predecessors="target", log_rho_max=LOG_RHO_MAX):
    return reference.teammate_log_ratios(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["order"],
        predecessors,
        d["q_local"],
        d["updated_log_probs"],
        ALPHA,
        BETA,
        ETA,
        log_rho_max,
    )


def run_loss(d: dict, ratio="importance", predecessors="target", log_rho_max=LOG_RHO_MAX, log_w_max=LOG_W_MAX):
    return inspo_ext.sequential_policy_loss(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["q_local"],
        d["order"],
        predecessors=predecessors,
        updated_log_probs=d["updated_log_probs"],
        alpha=ALPHA,
        beta=BETA,
        eta=ETA,
        log_rho_max=log_rho_max,
        log_w_max=log_w_max,
        ratio=ratio,
    )


def ref_loss(d: dict, ratio="importance", predecessors="target", log_rho_max=LOG_RHO_MAX, log_w_max=LOG_W_MAX):
    return reference.sequential_policy_loss(
        d["logits"],
        d["log_mu"],
        d["avail"],
        d["actions"],
        d["q_local"],
        d["order"],
        predecessors,
        d["updated_log_probs"],
        ALPHA,
        BETA,
        ETA,
        log_rho_max,
        log_w_max,
        ratio,
    )


def run_resample(log_rho: Tensor, uniforms: Tensor, method: str):
    """The public resample with given uniforms (the draws of the reference comparison)."""
    return inspo_ext.resample(log_rho, method=method, uniforms=uniforms)


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


def assert_nearly_equal_draws(
    indices: torch.Tensor, expected: torch.Tensor, log_rho: torch.Tensor, max_fraction: float = 0.01
) -> None:
    """float32 weights: the device's expf and the host's exp may differ in the last bit, which moves a draw whose
    point lies within a few float32 ulps of a cdf value to the neighbouring sample of positive weight (the
    zero-weight samples between two positive ones make no cdf step); anything more is a bug.

    indices, expected: [(S,) B, N] draws; log_rho: the [(S,) B, N] log-weights they were drawn with."""
    assert indices.shape == expected.shape == log_rho.shape
    different = indices != expected
    assert different.double().mean() <= max_fraction
    rank = torch.isfinite(log_rho.cpu()).long().cumsum(-2)  # a sample's place among its column's positive ones
    moved = rank.gather(-2, indices.cpu()) - rank.gather(-2, expected.cpu())
    assert (moved.abs()[different.cpu()] == 1).all(), "a draw moved past its neighbouring sample"


def loss_and_grad(run, data: dict, coefficients: torch.Tensor, **kwargs):
    """Outputs of `run` and d(sum_i coefficient_i loss_i)/d logits."""
    data = dict(data)
    data["logits"] = data["logits"].detach().clone().requires_grad_(True)
    out = run(data, **kwargs)
    (out.loss * coefficients.to(out.loss)).sum().backward()
    return list(out), data["logits"].grad


def problem_batches(batch=37, agents=4, actions=5, mask="random", shared_order=False, **kwargs):
    """Three problems of one shape stacked (seeds 80, 81, 82)."""
    return stack_problems(
        [joint_batch(batch, agents, actions, seed=80 + s, mask=mask, **kwargs) for s in range(3)],
        shared_order=shared_order,
    )


def next_step_of(d: dict) -> dict:
    """soft_bellman_target inputs built from a joint batch (done = 1 on odd first actions; reward and q_next from
    the finite updated_log_probs, since q_local is poisoned at unavailable entries)."""
    return dict(
        reward=d["updated_log_probs"][:, 0].clone(),
        done=(d["actions"][:, 0] % 2).to(d["logits"].dtype),
        q_next=d["updated_log_probs"][:, -1].clone(),
        next_logits=d["logits"],
        next_log_mu=d["log_mu"],
        next_avail=d["avail"],
        next_actions=d["actions"],
    )


def loss_outputs(d: dict, ratio: str) -> list:
    logits = d["logits"].detach().clone().requires_grad_(True)
    out = run_loss(dict(d, logits=logits), ratio)
    out.loss.sum().backward()
    return [t.detach() for t in out] + [logits.grad]


# Every op (each of its launch configurations) as: (joint batch, log_rho, uniforms) -> list of output tensors.
OP_RUNS = {
    "soft_bellman_target": lambda d, log_rho, u: list(run_soft_bellman(next_step_of(d))),
    "in_sample_weights": lambda d, log_rho, u: list(run_weights(d)),
    "teammate_log_ratios": lambda d, log_rho, u: [run_ratios(d, "target"), run_ratios(d, "policy")],
    "resample": lambda d, log_rho, u: [
        *run_resample(log_rho, u, "multinomial"),
        *run_resample(log_rho, u[:1], "systematic"),
    ],
    "sequential_policy_loss": lambda d, log_rho, u: [t for ratio in RATIO_MODES for t in loss_outputs(d, ratio)],
}
