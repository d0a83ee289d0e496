"""The inspo_ext ops with a leading problem dimension S (independent problems: the seeds of a run).

Problem s of a call here is the unbatched op on slice s: every input gains a leading S (order [S, N]),
every output too (per-agent results [S, N], per-sample [S, B, ...]). This module loops over S with
the unbatched ops; where the extension gains native batched ops it becomes a pass-through to them.
`resample` takes pre-drawn float64 uniforms (`resample_uniforms`), so no generator is read inside a
training step. `backend` holds the unbatched ops the loops call (benchmarks swap in the reference).
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Optional

import torch
from torch import Tensor

import inspo_ext as ops
from inspo_ext import _backend, reference
from inspo_ext import _validation as v
from inspo_ext.reference import RESAMPLE_METHODS, PolicyLoss, Resampled, SoftBellmanTarget
from inspo_ext.resample import reference_status as _resample_status
from inspo_ext.resample import resample_op


def _stack(parts: list[tuple[Tensor, ...]], kind):
    return kind(*(torch.stack(values) for values in zip(*parts)))


def soft_bellman_target(reward: Tensor, done: Tensor, q_next: Tensor, next_logits: Tensor, next_log_mu: Tensor,
                        next_avail: Tensor, next_actions: Tensor, **hyper) -> SoftBellmanTarget:
    """ops.soft_bellman_target per problem: inputs [S, B, ...], outputs target/log_ratio [S, B], kl/entropy [S, B, N]."""
    return _stack([backend.soft_bellman_target(reward[s], done[s], q_next[s], next_logits[s], next_log_mu[s],
                                           next_avail[s], next_actions[s], **hyper)
                   for s in range(reward.shape[0])], SoftBellmanTarget)


def teammate_log_ratios(logits: Tensor, log_mu: Tensor, avail: Tensor, actions: Tensor, order: Tensor, *,
                        q_local: Optional[Tensor] = None, updated_log_probs: Optional[Tensor] = None,
                        **hyper) -> Tensor:
    """ops.teammate_log_ratios per problem: logits [S, B, N, A], order [S, N] -> [S, B, N]."""
    pick = lambda t, s: None if t is None else t[s]  # noqa: E731
    return torch.stack([backend.teammate_log_ratios(logits[s], log_mu[s], avail[s], actions[s], order[s],
                                                q_local=pick(q_local, s),
                                                updated_log_probs=pick(updated_log_probs, s), **hyper)
                        for s in range(logits.shape[0])])


def sequential_policy_loss(logits: Tensor, log_mu: Tensor, avail: Tensor, actions: Tensor, q_local: Tensor,
                           order: Tensor, *, updated_log_probs: Optional[Tensor] = None, **hyper) -> PolicyLoss:
    """ops.sequential_policy_loss per problem: [S, B, N, A] inputs, order [S, N] -> each output [S, N]."""
    return _stack([backend.sequential_policy_loss(logits[s], log_mu[s], avail[s], actions[s], q_local[s], order[s],
                                              updated_log_probs=None if updated_log_probs is None
                                              else updated_log_probs[s], **hyper)
                   for s in range(logits.shape[0])], PolicyLoss)


def resample_uniforms(generator: torch.Generator, batch: int, agents: int, method: str) -> Tensor:
    """The float64 draws `inspo_ext.resample(log_rho [batch, agents], method=method, generator=generator)`
    makes: [batch, agents] (multinomial) or [1, agents] (systematic)."""
    shape = (batch, agents) if method == "multinomial" else (1, agents)
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)


def resample(log_rho: Tensor, *, uniforms: Tensor, method: str) -> Resampled:
    """ops.resample per problem with pre-drawn uniforms: log_rho [S, B, N], uniforms [S, B or 1, N]
    -> indices [S, B, N], ess [S, N]."""
    return _stack([backend.resample(log_rho[s].detach().contiguous(), uniforms[s].contiguous(), method)
                   for s in range(log_rho.shape[0])], Resampled)


def resample_with_uniforms(log_rho: Tensor, uniforms: Tensor, method: str) -> Resampled:
    """inspo_ext.resample of log_rho [B, N] on the given float64 uniforms instead of a generator's."""
    mode = v.check_mode("method", method, RESAMPLE_METHODS)
    if _backend.has_kernels(log_rho.device):
        return Resampled(*resample_op(log_rho, uniforms, mode))
    _backend.warn_fallback(log_rho.device.type)
    v.raise_for_status(_resample_status(log_rho), v.RowNames(), dict(log_rho=log_rho))
    return reference.resample(log_rho, uniforms, method)


OURS = SimpleNamespace(soft_bellman_target=ops.soft_bellman_target, teammate_log_ratios=ops.teammate_log_ratios,
                       sequential_policy_loss=ops.sequential_policy_loss, resample=resample_with_uniforms)
backend = OURS
