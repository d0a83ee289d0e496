"""The ops a training step calls, with a leading problem dimension S (independent problems: the seeds of a run).

Every inspo_ext op takes a leading S natively (inputs [S, B, ...], `order` [S, N]; outputs gain the S), and
problem s of a batched call is the unbatched op on slice s, bit for bit on the CPU. This module is the one
switch between our ops and the plain-PyTorch reference (`backend`: the benchmarks swap in
`inspo.bench.ops.ReferenceOps`, which has the same signatures). `resample` takes pre-drawn float64
uniforms (`resample_uniforms`), so no generator is read inside a (compiled) training step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

import inspo_ext
from inspo_ext.reference import PolicyLoss, Resampled, SoftBellmanTarget

OURS: Any = inspo_ext
backend: Any = OURS


def soft_bellman_target(*tensors: Tensor, **hyper) -> SoftBellmanTarget:
    """inputs [S, B, ...] -> target/log_ratio [S, B], kl/entropy [S, B, N]."""
    return backend.soft_bellman_target(*tensors, **hyper)


def teammate_log_ratios(*tensors: Tensor, **hyper) -> Tensor:
    """logits [S, B, N, A], order [S, N] -> [S, B, N]."""
    return backend.teammate_log_ratios(*tensors, **hyper)


def sequential_policy_loss(*tensors: Tensor, **hyper) -> PolicyLoss:
    """[S, B, N, A] inputs, order [S, N] -> each output [S, N]."""
    return backend.sequential_policy_loss(*tensors, **hyper)


def resample(log_rho: Tensor, *, uniforms: Tensor, method: str) -> Resampled:
    """log_rho [S, B, N], uniforms [S, B or 1, N] -> indices [S, B, N] (into each problem's rows), ess [S, N]."""
    return backend.resample(log_rho.detach().contiguous(), uniforms=uniforms.contiguous(), method=method)


def resample_uniforms(generator: torch.Generator, batch: int, agents: int, method: str) -> Tensor:
    """The float64 draws `inspo_ext.resample(log_rho [batch, agents], method=method, generator=generator)`
    makes: [batch, agents] (multinomial) or [1, agents] (systematic)."""
    shape = (batch, agents) if method == "multinomial" else (1, agents)
    return torch.rand(shape, generator=generator, dtype=torch.float64, device=generator.device)
