"""in_sample_weights: the in-sample weighted advantage of one agent per row
(docs/ALGORITHM.md#in-sample-weighted-policy-loss).

Forward-only: w carries no gradient by design, so the op runs on detached inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import _validation as v
from . import reference
from ._spec import Arg, OpSpec, Output
from ._validation import StatusCode as Code
from .reference import InSampleWeights


def _reference_status(q_local, log_mu, avail, actions) -> int:
    """The kernels' status computed with torch ops (for the reference fallback)."""
    codes = v.row_codes(avail, actions, [(Code.LOG_MU_NON_FINITE, log_mu), (Code.Q_NON_FINITE, q_local)])
    return v.rows_status(codes)


SPEC = OpSpec(
    "in_sample_weights",
    inputs=(
        Arg("q_local", "[B, N, A]"),
        Arg("log_mu", "[B, N, A]", values="log_probs"),
        Arg("avail", "[B, N, A]", torch.bool),
        Arg("actions", "[B, N]", torch.int64),
    ),
    outputs=(Output("weight", "[B, N]"), Output("log_weight", "[B, N]"), Output("value", "[B, N]")),
    scalars=(("alpha", "float"), ("beta", "float"), ("log_w_max", "float")),
    reference_status=_reference_status,
)
in_sample_weights_op = SPEC.op


def in_sample_weights(
    q_local: Tensor,
    log_mu: Tensor,
    avail: Tensor,
    actions: Tensor,
    *,
    alpha: float,
    beta: float,
    log_w_max: float = 10.0,
) -> InSampleWeights:
    """V = tau logsumexp_avail(kappa log mu + Q / tau), log w = -(beta / tau) log mu(a) + (Q(a) - V) / tau,
    w = exp(min(log w, log_w_max)), as reference.in_sample_weights (log w computed as the equal
    log pi*(a) - log mu(a), exact where Q(a) - V would cancel: one available action gives -log mu(a)).

    q_local, log_mu: [B, N, A] float32/float64; avail: bool [B, N, A]; actions: int64 [B, N]; each may carry
    a leading problem dimension S (then every one does; rows are independent).
    Returns InSampleWeights(weight, log_weight (unclipped), value), each [B, N] ([S, B, N]); no gradient.
    """
    tensors = dict(q_local=q_local, log_mu=log_mu, avail=avail, actions=actions)
    SPEC.check(tensors)
    alpha, beta = v.check_temperatures(alpha, beta)
    log_w_max = v.check_clip("log_w_max", log_w_max)
    tensors = {name: t.detach() for name, t in tensors.items()}
    return InSampleWeights(
        *SPEC.run(
            tensors,
            (alpha, beta, log_w_max),
            lambda: reference.in_sample_weights(*tensors.values(), alpha, beta, log_w_max),
        )
    )
