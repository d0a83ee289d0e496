"""soft_bellman_target: the global critic's soft in-sample Bellman target
(docs/ALGORITHM.md#soft-in-sample-bellman-target).

Forward-only: the target and the next-step ratio are constants of the critic loss by design, so the op
runs on detached inputs (no gradient flows into next_logits or q_next).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _validation as v
from . import reference
from ._spec import Arg, OpSpec, Output
from ._validation import StatusCode as Code
from .reference import SoftBellmanTarget


def _reference_status(reward, done, q_next, next_logits, next_log_mu, next_avail, next_actions) -> int:
    """The kernel's status computed with torch ops (for the reference fallback)."""
    agents = next_logits.shape[-2]
    live = done == 0
    sample_codes = torch.where(
        ~(live | (done == 1)),
        Code.DONE_NOT_BINARY,
        torch.where(
            ~torch.isfinite(reward),
            Code.REWARD_NON_FINITE,
            torch.where(live & ~torch.isfinite(q_next), Code.Q_NEXT_NON_FINITE, 0),
        ),
    )
    rows = v.row_codes(
        next_avail, next_actions, [(Code.LOGITS_NON_FINITE, next_logits), (Code.LOG_MU_NON_FINITE, next_log_mu)]
    )
    rows = torch.where((live & (sample_codes == 0)).unsqueeze(-1), rows, 0)  # rows of terminal samples are not read
    sample_index = torch.arange(done.numel(), device=done.device).view_as(done) * agents
    return min(v.first_status(sample_codes, sample_index), v.rows_status(rows))


SPEC = OpSpec(
    "soft_bellman_target",
    inputs=(
        Arg("reward", "[B]"),
        Arg("done", "[B]", values="binary"),
        Arg("q_next", "[B]"),
        Arg("next_logits", "[B, N, A]"),
        Arg("next_log_mu", "[B, N, A]", values="log_probs"),
        Arg("next_avail", "[B, N, A]", torch.bool),
        Arg("next_actions", "[B, N]", torch.int64),
    ),
    outputs=(Output("target", "[B]"), Output("kl", "[B, N]"), Output("entropy", "[B, N]"), Output("log_ratio", "[B]")),
    scalars=(("gamma", "float"), ("alpha", "float"), ("beta", "float"), ("log_rho_max", "float")),
    reference_status=_reference_status,
    row_names=v.RowNames(logits="next_logits", log_mu="next_log_mu", avail="next_avail", actions="next_actions"),
    first="next_logits",
)
soft_bellman_target_op = SPEC.op


def soft_bellman_target(
    reward: Tensor,
    done: Tensor,
    q_next: Tensor,
    next_logits: Tensor,
    next_log_mu: Tensor,
    next_avail: Tensor,
    next_actions: Tensor,
    *,
    gamma: float,
    alpha: float,
    beta: float,
    log_rho_max: float = math.log(100.0),
) -> SoftBellmanTarget:
    """Soft in-sample Bellman target y = r + gamma (1 - d) [Q(s', a') - alpha sum_i KL_i + beta sum_i H_i]
    and the next-step joint log-ratio log rho' (clipped at log_rho_max), as reference.soft_bellman_target.

    reward, done, q_next: [B] (done is 0 or 1); next_logits, next_log_mu: [B, N, A] float32/float64;
    next_avail: bool [B, N, A]; next_actions: int64 [B, N]. Terminal samples read no next-step input. Each may
    carry a leading problem dimension S (then every one does; samples are independent).
    Returns SoftBellmanTarget(target [B], kl [B, N], entropy [B, N], log_ratio [B]), with S first when
    batched; no gradient.
    """
    tensors = dict(
        reward=reward,
        done=done,
        q_next=q_next,
        next_logits=next_logits,
        next_log_mu=next_log_mu,
        next_avail=next_avail,
        next_actions=next_actions,
    )
    SPEC.check(tensors)
    gamma = v.check_unit_interval("gamma", gamma)
    alpha, beta = v.check_temperatures(alpha, beta)
    log_rho_max = v.check_clip("log_rho_max", log_rho_max)
    tensors = {name: t.detach() for name, t in tensors.items()}
    scalars = (gamma, alpha, beta, log_rho_max)
    return SoftBellmanTarget(
        *SPEC.run(tensors, scalars, lambda: reference.soft_bellman_target(*tensors.values(), *scalars))
    )
