"""soft_bellman_target: the global critic's soft in-sample Bellman target (spec section 4).

Forward-only: the target and the next-step ratio are constants of the critic loss by design, so the op
runs on detached inputs (no gradient flows into next_logits or q_next).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from . import _backend, reference
from . import _validation as v
from ._validation import StatusCode as Code
from .reference import SoftBellmanTarget

_NAMES = v.RowNames(logits="next_logits", log_mu="next_log_mu", avail="next_avail", actions="next_actions")


@torch.library.custom_op("inspo_ext::soft_bellman_target", mutates_args=())
def soft_bellman_target_op(
    reward: Tensor, done: Tensor, q_next: Tensor, next_logits: Tensor, next_log_mu: Tensor, next_avail: Tensor,
    next_actions: Tensor, gamma: float, alpha: float, beta: float, log_rho_max: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    target, log_ratio = torch.empty_like(reward), torch.empty_like(reward)
    kl, entropy = next_logits.new_empty(next_logits.shape[:-1]), next_logits.new_empty(next_logits.shape[:-1])
    _backend.launch(
        "soft_bellman_target",
        dict(reward=reward, done=done, q_next=q_next, next_logits=next_logits, next_log_mu=next_log_mu,
             next_avail=next_avail, next_actions=next_actions, target=target, kl=kl, entropy=entropy,
             log_ratio=log_ratio),
        dict(gamma=gamma, alpha=alpha, beta=beta, log_rho_max=log_rho_max), _NAMES,
        _backend.problem_shape(next_logits, 3))
    return target, kl, entropy, log_ratio


@soft_bellman_target_op.register_fake
def _(reward, done, q_next, next_logits, next_log_mu, next_avail, next_actions, gamma, alpha, beta, log_rho_max):
    return (torch.empty_like(reward), next_logits.new_empty(next_logits.shape[:-1]),
            next_logits.new_empty(next_logits.shape[:-1]), torch.empty_like(reward))


def soft_bellman_target(
    reward: Tensor, done: Tensor, q_next: Tensor, next_logits: Tensor, next_log_mu: Tensor, next_avail: Tensor,
    next_actions: Tensor, *, gamma: float, alpha: float, beta: float, log_rho_max: float = math.log(100.0),
) -> SoftBellmanTarget:
    """Soft in-sample Bellman target y = r + gamma (1 - d) [Q(s', a') - alpha sum_i KL_i + beta sum_i H_i]
    and the next-step joint log-ratio log rho' (clipped at log_rho_max), as reference.soft_bellman_target.

    reward, done, q_next: [B] (done is 0 or 1); next_logits, next_log_mu: [B, N, A] float32/float64;
    next_avail: bool [B, N, A]; next_actions: int64 [B, N]. Terminal samples read no next-step input. Each may
    carry a leading problem dimension S (then every one does; samples are independent).
    Returns SoftBellmanTarget(target [B], kl [B, N], entropy [B, N], log_ratio [B]), with S first when
    batched; no gradient.
    """
    check = v.TensorChecker("next_logits", next_logits, 3, "[B, N, A]")
    batch, agents, actions = check.inner
    check.float("reward", reward, (batch,), "[B]")
    check.float("done", done, (batch,), "[B]")
    check.float("q_next", q_next, (batch,), "[B]")
    check.float("next_log_mu", next_log_mu, (batch, agents, actions), "[B, N, A]")
    check.exact("next_avail", next_avail, torch.bool, (batch, agents, actions), "[B, N, A]")
    check.exact("next_actions", next_actions, torch.int64, (batch, agents), "[B, N]")
    gamma = v.check_unit_interval("gamma", gamma)
    alpha, beta = v.check_temperatures(alpha, beta)
    log_rho_max = v.check_clip("log_rho_max", log_rho_max)
    inputs = [t.detach() for t in (reward, done, q_next, next_logits, next_log_mu, next_avail, next_actions)]
    if _backend.has_kernels(next_logits.device):
        return SoftBellmanTarget(*soft_bellman_target_op(*inputs, gamma, alpha, beta, log_rho_max))
    _backend.warn_fallback(next_logits.device.type)
    v.raise_for_status(_reference_status(*inputs), _NAMES, dict(zip(
        ("reward", "done", "q_next", "next_logits", "next_log_mu", "next_avail", "next_actions"), inputs)))
    return reference.soft_bellman_target(*inputs, gamma, alpha, beta, log_rho_max)


def _reference_status(reward, done, q_next, next_logits, next_log_mu, next_avail, next_actions) -> int:
    """The kernel's status computed with torch ops (for the reference fallback)."""
    agents = next_logits.shape[-2]
    live = done == 0
    sample_codes = torch.where(~(live | (done == 1)), Code.DONE_NOT_BINARY,
                               torch.where(~torch.isfinite(reward), Code.REWARD_NON_FINITE,
                                           torch.where(live & ~torch.isfinite(q_next), Code.Q_NEXT_NON_FINITE, 0)))
    rows = v.row_codes(next_avail, next_actions, [(Code.LOGITS_NON_FINITE, next_logits),
                                                  (Code.LOG_MU_NON_FINITE, next_log_mu)])
    rows = torch.where((live & (sample_codes == 0)).unsqueeze(-1), rows, 0)  # rows of terminal samples are not read
    sample_index = torch.arange(done.numel(), device=done.device).view_as(done) * agents
    return min(v.first_status(sample_codes, sample_index), v.rows_status(rows))
