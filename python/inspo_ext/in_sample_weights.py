"""in_sample_weights: the in-sample weighted advantage of one agent per row (spec section 4).

Forward-only: w carries no gradient by design, so the op runs on detached inputs.
"""
from __future__ import annotations

import torch
from torch import Tensor

from . import _backend, reference
from . import _validation as v
from ._validation import StatusCode as Code
from .reference import InSampleWeights

_NAMES = v.RowNames()


@torch.library.custom_op("inspo_ext::in_sample_weights", mutates_args=())
def in_sample_weights_op(
    q_local: Tensor, log_mu: Tensor, avail: Tensor, actions: Tensor, alpha: float, beta: float, log_w_max: float,
) -> tuple[Tensor, Tensor, Tensor]:
    weight, log_weight, value = (q_local.new_empty(q_local.shape[:-1]) for _ in range(3))
    _backend.launch(
        "in_sample_weights",
        dict(q_local=q_local, log_mu=log_mu, avail=avail, actions=actions, weight=weight, log_weight=log_weight,
             value=value),
        dict(alpha=alpha, beta=beta, log_w_max=log_w_max), _NAMES, _backend.problem_shape(q_local, 3))
    return weight, log_weight, value


@in_sample_weights_op.register_fake
def _(q_local, log_mu, avail, actions, alpha, beta, log_w_max):
    return tuple(q_local.new_empty(q_local.shape[:-1]) for _ in range(3))


def in_sample_weights(
    q_local: Tensor, log_mu: Tensor, avail: Tensor, actions: Tensor, *, alpha: float, beta: float,
    log_w_max: float = 10.0,
) -> InSampleWeights:
    """V = tau logsumexp_avail(kappa log mu + Q / tau), log w = -(beta / tau) log mu(a) + (Q(a) - V) / tau,
    w = exp(min(log w, log_w_max)), as reference.in_sample_weights (log w computed as the equal
    log pi*(a) - log mu(a), exact where Q(a) - V would cancel: one available action gives -log mu(a)).

    q_local, log_mu: [B, N, A] float32/float64; avail: bool [B, N, A]; actions: int64 [B, N]; each may carry
    a leading problem dimension S (then every one does; rows are independent).
    Returns InSampleWeights(weight, log_weight (unclipped), value), each [B, N] ([S, B, N]); no gradient.
    """
    check = v.TensorChecker("q_local", q_local, 3, "[B, N, A]")
    batch, agents, n_actions = check.inner
    check.float("log_mu", log_mu, (batch, agents, n_actions), "[B, N, A]")
    check.exact("avail", avail, torch.bool, (batch, agents, n_actions), "[B, N, A]")
    check.exact("actions", actions, torch.int64, (batch, agents), "[B, N]")
    alpha, beta = v.check_temperatures(alpha, beta)
    log_w_max = v.check_clip("log_w_max", log_w_max)
    inputs = [t.detach() for t in (q_local, log_mu, avail, actions)]
    if _backend.has_kernels(q_local.device):
        return InSampleWeights(*in_sample_weights_op(*inputs, alpha, beta, log_w_max))
    _backend.warn_fallback(q_local.device.type)
    q_local, log_mu, avail, actions = inputs
    codes = v.row_codes(avail, actions, [(Code.LOG_MU_NON_FINITE, log_mu), (Code.Q_NON_FINITE, q_local)])
    v.raise_for_status(v.rows_status(codes), _NAMES, dict(q_local=q_local, log_mu=log_mu, avail=avail,
                                                          actions=actions))
    return reference.in_sample_weights(q_local, log_mu, avail, actions, alpha, beta, log_w_max)
