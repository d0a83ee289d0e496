"""resample: importance resampling of each agent's batch by its teammate ratios
(docs/ALGORITHM.md#importance-resampling).

The uniform draws are the caller's `uniforms`, or come from torch.rand (float64) with the caller's
generator, so seeding is torch-native; the kernel turns them into indices exactly as reference.resample does (cdf in float64, first b with
cdf[b] > draw). Forward-only (indices are integers; ess is a diagnostic): inputs are detached.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from . import _validation as v
from . import reference
from ._spec import Arg, OpSpec, Output
from ._validation import StatusCode as Code
from .reference import RESAMPLE_METHODS, Resampled


def reference_status(log_rho: Tensor, uniforms: Tensor) -> int:
    """The kernels' status computed with torch ops (for the reference fallback)."""
    flat = torch.arange(log_rho.numel(), device=log_rho.device).view_as(log_rho)
    invalid = torch.isnan(log_rho) | (log_rho == float("inf"))
    codes = torch.where(invalid, Code.LOG_RHO_INVALID, 0)
    no_weight = torch.where((log_rho == float("-inf")).all(-2), Code.NO_POSITIVE_WEIGHT, 0)
    column_index = log_rho.numel() + torch.arange(no_weight.numel(), device=log_rho.device).view_as(no_weight)
    bad_uniforms = torch.where(~((uniforms >= 0) & (uniforms < 1)), Code.UNIFORM_INVALID, 0)
    draw_index = flat[..., : uniforms.shape[-2], :]  # systematic: the draw of (s, i) is at b = 0
    return min(
        v.first_status(codes, flat), v.first_status(no_weight, column_index), v.first_status(bad_uniforms, draw_index)
    )


SPEC = OpSpec(
    "resample",
    inputs=(
        Arg("log_rho", "[B, N]"),
        Arg("uniforms", "[B, N]", torch.float64, checked=False, values="uniform"),  # or [1, N]
    ),
    outputs=(Output("indices", "[B, N]", torch.int64), Output("ess", "[N]")),
    scalars=(("method", "int"),),
    reference_status=reference_status,
)
resample_op = SPEC.op


def resample(
    log_rho: Tensor,
    *,
    method: str = "multinomial",
    generator: Optional[torch.Generator] = None,
    uniforms: Optional[Tensor] = None,
) -> Resampled:
    """Draw B indices per agent with probability rho_i(b) / sum_b rho_i(b), as reference.resample.

    log_rho: [B, N] float32/float64 (finite, or -inf for a zero weight; each column needs one finite
    entry), or [S, B, N]: S problems, each resampled within its own B rows. method: "multinomial" (B
    independent draws) or "systematic" (one draw per agent, evenly spaced). The draws: `uniforms`, float64
    in [0, 1), [B, N] (multinomial) or [1, N] (systematic), with S first when batched; or, when None,
    torch.rand with `generator` (a torch.Generator on log_rho's device; None: torch's default). Giving the
    uniforms lets a caller draw them per problem from its own generator, and keeps a Generator out of a
    torch.compile graph.
    Returns Resampled(indices int64 [B, N], ess [N]) ([S, B, N], [S, N]); agent i's resampled batch is rows
    indices[:, i] (of problem s: rows indices[s, :, i] of its own B).
    """
    check = SPEC.check(dict(log_rho=log_rho))
    mode = v.check_mode("method", method, RESAMPLE_METHODS)
    log_rho = log_rho.detach()
    batch, agents = check.inner
    draws, dims = ((batch, agents), "[B, N]") if method == "multinomial" else ((1, agents), "[1, N]")
    if uniforms is None:
        uniforms = torch.rand(check.lead + draws, generator=generator, dtype=torch.float64, device=log_rho.device)
    else:
        if generator is not None:
            raise ValueError("resample takes generator or uniforms, not both (given uniforms replace the draw)")
        check.exact("uniforms", uniforms, torch.float64, draws, dims)
        uniforms = uniforms.detach()
    return Resampled(
        *SPEC.run(
            dict(log_rho=log_rho, uniforms=uniforms), (mode,), lambda: reference.resample(log_rho, uniforms, method)
        )
    )
