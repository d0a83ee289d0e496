"""resample: importance resampling of each agent's batch by its teammate ratios (spec section 4).

The uniform draws come from torch.rand (float64) with the caller's generator, so seeding is torch-native;
the kernel turns them into indices exactly as reference.resample does (cdf in float64, first b with
cdf[b] > draw). Forward-only (indices are integers; ess is a diagnostic): inputs are detached.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _backend, reference
from . import _validation as v
from .reference import RESAMPLE_METHODS, Resampled

_NAMES = v.RowNames()


@torch.library.custom_op("inspo_ext::resample", mutates_args=())
def resample_op(log_rho: Tensor, uniforms: Tensor, method: int) -> tuple[Tensor, Tensor]:
    batch, agents = log_rho.shape
    indices = torch.empty((batch, agents), dtype=torch.int64, device=log_rho.device)
    ess = log_rho.new_empty((agents,))
    _backend.launch("resample", dict(log_rho=log_rho, uniforms=uniforms, indices=indices, ess=ess),
                    dict(method=method), _NAMES, (batch, agents, 1))
    return indices, ess


@resample_op.register_fake
def _(log_rho, uniforms, method):
    batch, agents = log_rho.shape
    return torch.empty((batch, agents), dtype=torch.int64, device=log_rho.device), log_rho.new_empty((agents,))


def resample(log_rho: Tensor, *, method: str = "multinomial", generator: Optional[torch.Generator] = None
             ) -> Resampled:
    """Draw B indices per agent with probability rho_i(b) / sum_b rho_i(b), as reference.resample.

    log_rho: [B, N] float32/float64 (finite, or -inf for a zero weight; each column needs one finite
    entry). method: "multinomial" (B independent draws) or "systematic" (one draw per agent, evenly
    spaced). generator: a torch.Generator on log_rho's device (None: torch's default).
    Returns Resampled(indices int64 [B, N], ess [N]); agent i's resampled batch is rows indices[:, i].
    """
    v.TensorChecker("log_rho", log_rho, 2, "[B, N]")
    mode = v.check_mode("method", method, RESAMPLE_METHODS)
    log_rho = log_rho.detach()
    batch, agents = log_rho.shape
    shape = (batch, agents) if method == "multinomial" else (1, agents)
    uniforms = torch.rand(shape, generator=generator, dtype=torch.float64, device=log_rho.device)
    if _backend.has_kernels(log_rho.device):
        return Resampled(*resample_op(log_rho, uniforms, mode))
    _backend.warn_fallback(log_rho.device.type)
    v.raise_for_status(reference_status(log_rho), _NAMES, dict(log_rho=log_rho))
    return reference.resample(log_rho, uniforms, method)


def reference_status(log_rho: Tensor) -> int:
    """The kernels' status computed with torch ops (for the reference fallback)."""
    invalid = torch.isnan(log_rho) | (log_rho == float("inf"))
    codes = torch.where(invalid, v.LOG_RHO_INVALID, 0)
    no_weight = torch.where((log_rho == float("-inf")).all(0), v.NO_POSITIVE_WEIGHT, 0)
    column_index = log_rho.numel() + torch.arange(log_rho.shape[1], device=log_rho.device)
    return min(v.rows_status(codes), v.first_status(no_weight, column_index))
