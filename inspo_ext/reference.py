"""Pure-PyTorch reference of every fused op (docs/ALGORITHM.md#the-op-library).

This module is three things at once: the definition of what each fused kernel computes, the twin the
tests hold the kernels to (float64, random inputs), and the fallback for a device the build lacks.
It favours plain, obviously-correct tensor code over speed. Autograd flows through it naturally; the
fused ops reproduce exactly the gradients autograd finds here.

Shapes: B samples, N agents, A actions (padded to the largest action set; `avail` masks the padding
and the unavailable actions). Every batch tensor may carry a leading problem dimension S ([S, B, N, A],
[S, B, N], [S, B]) for S independent problems, with `order` [N] (shared) or [S, N]; every reduction over
the batch is then per problem (dim -2 of a [..., B, N] tensor) and the outputs gain the leading S. Values at unavailable actions are never read: they may be anything,
including -inf or NaN. Temperatures: tau = alpha + beta, kappa = alpha / tau.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = [
    "masked_log_softmax",
    "closed_form_logits",
    "lookahead_log_probs",
    "soft_bellman_target",
    "in_sample_weights",
    "teammate_log_ratios",
    "resample",
    "sequential_policy_loss",
    "SoftBellmanTarget",
    "InSampleWeights",
    "Resampled",
    "PolicyLoss",
    "RATIO_MODES",
    "PREDECESSOR_MODES",
    "RESAMPLE_METHODS",
]

RATIO_MODES = ("importance", "self_normalized", "none")
PREDECESSOR_MODES = ("target", "policy")
RESAMPLE_METHODS = ("multinomial", "systematic")


class SoftBellmanTarget(NamedTuple):
    target: Tensor  # [B]   y = r + gamma (1 - d) [q_next - alpha sum_i KL_i + beta sum_i H_i]
    kl: Tensor  # [B, N]    KL(pi^i || mu^i) at the next step (0 where done)
    entropy: Tensor  # [B, N] H(pi^i) at the next step (0 where done)
    log_ratio: Tensor  # [B] min(sum_i log pi^i(a'^i) - log mu^i(a'^i), log_rho_max) (0 where done)


class InSampleWeights(NamedTuple):
    weight: Tensor  # [B, N] w = exp(min(log_weight, log_w_max))
    log_weight: Tensor  # [B, N] unclipped -(beta/tau) log mu(a) + (Q(a) - V) / tau
    value: Tensor  # [B, N] V = tau * logsumexp_avail(kappa log mu + Q / tau)


class Resampled(NamedTuple):
    indices: Tensor  # [B, N] int64: agent i's resampled batch is rows indices[:, i] ([S, B, N]: of its problem)
    ess: Tensor  # [N] effective sample size (sum rho)^2 / sum rho^2 ([S, N])


class PolicyLoss(NamedTuple):  # each [N], or [S, N] with a leading problem dimension
    loss: Tensor  # [N] per-agent policy loss (differentiable w.r.t. the logits)
    mean_weight: Tensor  # [N] mean_b w
    ess: Tensor  # [N] effective sample size of the teammate ratios (B when ratio="none")
    entropy: Tensor  # [N] mean_b H(pi^i)
    kl: Tensor  # [N] mean_b KL(pi^i || mu^i)


def _temperatures(alpha: float, beta: float) -> tuple[float, float]:
    tau = alpha + beta
    return tau, alpha / tau


def masked_log_softmax(logits: Tensor, avail: Tensor) -> Tensor:
    """log-softmax over the available actions; -inf at the unavailable ones."""
    masked = torch.where(avail, logits, torch.full_like(logits, -math.inf))
    return torch.log_softmax(masked, dim=-1)


def _masked_sum(x: Tensor, avail: Tensor) -> Tensor:
    return torch.where(avail, x, torch.zeros_like(x)).sum(-1)


def _taken(x: Tensor, actions: Tensor) -> Tensor:
    return x.gather(-1, actions.unsqueeze(-1)).squeeze(-1)


def closed_form_logits(q_local: Tensor, log_mu: Tensor, alpha: float, beta: float) -> Tensor:
    """Unnormalized log pi* = kappa log mu + Q / tau (docs/ALGORITHM.md#closed-form-per-agent-update)."""
    tau, kappa = _temperatures(alpha, beta)
    return kappa * log_mu + q_local / tau


def lookahead_log_probs(
    logits: Tensor, q_local: Tensor, log_mu: Tensor, avail: Tensor, alpha: float, beta: float, eta: float
) -> Tensor:
    """log pi_hat proportional to (1 - eta) log pi + eta log pi*, renormalized over available actions.

    Both log pi and log pi* are log-softmaxes, so their normalizers drop out after renormalizing.
    """
    z = (1.0 - eta) * logits + eta * closed_form_logits(q_local, log_mu, alpha, beta)
    return masked_log_softmax(z, avail)


def _kl_entropy(log_pi: Tensor, log_mu: Tensor, avail: Tensor) -> tuple[Tensor, Tensor]:
    p = log_pi.exp()
    entropy = -_masked_sum(p * log_pi, avail)
    kl = _masked_sum(p * (log_pi - log_mu), avail)
    return kl, entropy


def soft_bellman_target(
    reward: Tensor,
    done: Tensor,
    q_next: Tensor,
    next_logits: Tensor,
    next_log_mu: Tensor,
    next_avail: Tensor,
    next_actions: Tensor,
    gamma: float,
    alpha: float,
    beta: float,
    log_rho_max: float,
) -> SoftBellmanTarget:
    """Soft in-sample Bellman target of the global critic (docs/ALGORITHM.md#soft-in-sample-bellman-target), with the
    joint next-step ratio rho' = prod_i pi^i(a'^i) / mu^i(a'^i) used to resample the critic batch.

    Terminal samples (done == 1) read none of the next-step inputs (they may be padding).
    """
    live = done == 0
    log_pi = masked_log_softmax(next_logits, next_avail)
    kl, entropy = _kl_entropy(log_pi, next_log_mu, next_avail)
    zero = torch.zeros_like(kl)
    kl = torch.where(live.unsqueeze(-1), kl, zero)
    entropy = torch.where(live.unsqueeze(-1), entropy, zero)
    soft_value = torch.where(live, q_next, torch.zeros_like(q_next)) - alpha * kl.sum(-1) + beta * entropy.sum(-1)
    target = reward + gamma * (1.0 - done) * soft_value
    safe_actions = torch.where(live.unsqueeze(-1), next_actions, torch.zeros_like(next_actions))
    log_ratio = (_taken(log_pi, safe_actions) - _taken(next_log_mu, safe_actions)).sum(-1)
    log_ratio = torch.where(live, log_ratio.clamp(max=log_rho_max), torch.zeros_like(log_ratio))
    return SoftBellmanTarget(target, kl, entropy, log_ratio)


def in_sample_weights(
    q_local: Tensor,
    log_mu: Tensor,
    avail: Tensor,
    actions: Tensor,
    alpha: float,
    beta: float,
    log_w_max: float,
) -> InSampleWeights:
    """The in-sample weighted advantage (docs/ALGORITHM.md#in-sample-weighted-policy-loss):
    V = tau logsumexp_avail(kappa log mu + Q/tau),  log w = -(beta/tau) log mu(a) + (Q(a) - V)/tau.

    log w is computed as the equal log pi*(a) - log mu(a) (pi* = softmax_avail(z), z = kappa log mu + Q/tau;
    beta/tau + kappa = 1): a log-softmax, exact where it must be (one available action: -log mu(a)), where
    Q(a) - V cancels catastrophically once |Q|/tau >~ 1e13."""
    tau, _ = _temperatures(alpha, beta)
    z = torch.where(avail, closed_form_logits(q_local, log_mu, alpha, beta), torch.full_like(q_local, -math.inf))
    value = tau * torch.logsumexp(z, dim=-1)
    log_weight = _taken(torch.log_softmax(z, dim=-1), actions) - _taken(log_mu, actions)
    weight = log_weight.clamp(max=log_w_max).exp()
    return InSampleWeights(weight, log_weight, value)


def _ordered_log_ratios(d_current: Tensor, d_updated: Tensor, order: Tensor) -> Tensor:
    """log rho_i = sum of d_updated over agents before i in `order` + d_current over agents after i.

    d_*: [..., B, N]; order: [N] or [S, N] (a permutation per problem)."""
    position = torch.argsort(order, dim=-1)  # position[..., i]: where agent i comes in the order
    before = position.unsqueeze(-2) < position.unsqueeze(-1)  # before[..., i, l]: l precedes i
    after = position.unsqueeze(-2) > position.unsqueeze(-1)
    return d_updated @ before.to(d_updated.dtype).transpose(-1, -2) + d_current @ after.to(d_current.dtype).transpose(
        -1, -2
    )


def teammate_log_ratios(
    logits: Tensor,
    log_mu: Tensor,
    avail: Tensor,
    actions: Tensor,
    order: Tensor,
    predecessors: str,
    q_local: Optional[Tensor],
    updated_log_probs: Optional[Tensor],
    alpha: float,
    beta: float,
    eta: float,
    log_rho_max: float,
) -> Tensor:
    """log rho_i(b) = sum_{l != i} [log pi_hat^l(a^l_b) - log mu^l(a^l_b)], clipped at log_rho_max.

    pi_hat^l is the current policy (softmax of `logits`) for agents after i in `order`; for agents
    before i it is the updated policy: with predecessors="target" the eta-lookahead toward the
    closed-form target (needs `q_local`), with predecessors="policy" given as `updated_log_probs`
    [B, N] (log-probabilities of the dataset actions under the updated policies).
    """
    log_pi = masked_log_softmax(logits, avail)
    log_mu_taken = _taken(log_mu, actions)
    d_current = _taken(log_pi, actions) - log_mu_taken
    if predecessors == "target":
        assert q_local is not None
        log_hat = lookahead_log_probs(logits, q_local, log_mu, avail, alpha, beta, eta)
        d_updated = _taken(log_hat, actions) - log_mu_taken
    elif predecessors == "policy":
        assert updated_log_probs is not None
        d_updated = updated_log_probs - log_mu_taken
    else:
        raise ValueError(f"predecessors must be one of {PREDECESSOR_MODES}, got {predecessors!r}")
    return _ordered_log_ratios(d_current, d_updated, order).clamp(max=log_rho_max)


def effective_sample_size(log_rho: Tensor) -> Tensor:
    """(sum rho)^2 / sum rho^2 over the batch (dim -2 of [..., B, N]), per agent, computed stably in log space."""
    shifted = log_rho - log_rho.max(dim=-2, keepdim=True).values
    return torch.exp(2 * torch.logsumexp(shifted, -2) - torch.logsumexp(2 * shifted, -2))


def resample(log_rho: Tensor, uniforms: Tensor, method: str) -> Resampled:
    """Draw B indices per agent with probability rho_i(b) / sum_b rho_i(b).

    `uniforms` in [0, 1): [B, N] for "multinomial" (one draw each), [1, N] for "systematic"
    (draw k of agent i at (k + u_i) / B), with S first for [S, B, N] log_rho (each problem draws from its
    own B rows). Index of a draw at cumulative mass v: the first b with cdf(b) > v, so a sample of zero
    weight is never drawn.
    """
    batch = log_rho.shape[-2]
    weights = torch.exp(log_rho - log_rho.max(dim=-2, keepdim=True).values).double()
    cdf = torch.cumsum(weights, dim=-2)  # [..., B, N]
    total = cdf[..., -1:, :]
    if method == "multinomial":
        points = uniforms.double() * total
    elif method == "systematic":
        steps = torch.arange(batch, dtype=torch.float64, device=log_rho.device).unsqueeze(1)
        points = (steps + uniforms.double()) / batch * total
    else:
        raise ValueError(f"method must be one of {RESAMPLE_METHODS}, got {method!r}")
    indices = torch.searchsorted(
        cdf.transpose(-1, -2).contiguous(), points.transpose(-1, -2).contiguous(), right=True
    ).transpose(-1, -2)
    return Resampled(indices.clamp(max=batch - 1).contiguous(), effective_sample_size(log_rho))


def sequential_policy_loss(
    logits: Tensor,
    log_mu: Tensor,
    avail: Tensor,
    actions: Tensor,
    q_local: Tensor,
    order: Tensor,
    predecessors: str,
    updated_log_probs: Optional[Tensor],
    alpha: float,
    beta: float,
    eta: float,
    log_rho_max: float,
    log_w_max: float,
    ratio: str,
) -> PolicyLoss:
    """Per-agent InSPO policy loss over a joint batch (docs/ALGORITHM.md#in-sample-weighted-policy-loss,
    docs/ALGORITHM.md#sequence-modes).

    loss_i = -sum_b c_i(b) w_i(b) log pi^i(a^i_b) / norm_i, where, by `ratio`,
      "importance":      c = rho_i (teammate ratio),   norm = B
      "self_normalized": c = rho_i,                    norm = sum_b rho_i(b)
      "none":            c = 1,                        norm = B   (the batch is already resampled)
    "self_normalized" shifts c and norm by max_b log rho_i (the ratio cancels it), so a column whose every
    rho underflows still gives its weighted mean. rho and w carry no gradient; the loss is differentiable
    w.r.t. `logits` only.
    """
    if ratio not in RATIO_MODES:
        raise ValueError(f"ratio must be one of {RATIO_MODES}, got {ratio!r}")
    batch = logits.shape[-3]
    log_pi = masked_log_softmax(logits, avail)
    with torch.no_grad():
        weights = in_sample_weights(q_local, log_mu, avail, actions, alpha, beta, log_w_max).weight
        if ratio == "none":
            log_rho = torch.zeros_like(weights)
        else:
            log_rho = teammate_log_ratios(
                logits,
                log_mu,
                avail,
                actions,
                order,
                predecessors,
                q_local,
                updated_log_probs,
                alpha,
                beta,
                eta,
                log_rho_max,
            )
        if ratio == "self_normalized":
            rho = (log_rho - log_rho.max(dim=-2, keepdim=True).values).exp()
            norm = rho.sum(-2)
        else:
            rho = log_rho.exp()
            norm = torch.full_like(rho[..., 0, :], float(batch))
        ess = effective_sample_size(log_rho)
        kl, entropy = _kl_entropy(log_pi, log_mu, avail)
    loss = -(rho * weights * _taken(log_pi, actions)).sum(-2) / norm
    return PolicyLoss(loss, weights.mean(-2), ess, entropy.mean(-2), kl.mean(-2))
