"""Shared inputs and comparison helpers of the tests/test_ops_*.py files (not a test module)."""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from inspo_ext import reference

HYPER = dict(alpha=0.1, beta=0.05, eta=0.3, log_rho_max=math.log(100.0), log_w_max=10.0)
GAMMA = 0.99


def joint_batch(batch: int, agents: int, actions: int, *, dtype: torch.dtype = torch.float64, seed: int = 0,
                mask: str = "random", logit_scale: float = 1.0, q_scale: float = 1.0,
                poison: bool = True) -> dict[str, Tensor]:
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
        avail.view(-1, actions)[torch.arange(batch * agents), torch.randint(0, actions, (batch * agents,), generator=g)] = True
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
    updated = torch.randn((batch, agents), generator=g, dtype=torch.float64) * 0.5 - 1.0
    return dict(logits=logits.to(dtype), log_mu=log_mu.to(dtype), avail=avail, actions=taken,
                q_local=q_local.to(dtype), order=order, updated_log_probs=updated.to(dtype))


def next_step(batch: int, agents: int, actions: int, *, dtype: torch.dtype = torch.float64, seed: int = 1,
              mask: str = "random", terminal_fraction: float = 0.3, **kwargs) -> dict[str, Tensor]:
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
    return dict(reward=reward, done=done, q_next=q_next, next_logits=next_logits, next_log_mu=data["log_mu"],
                next_avail=data["avail"], next_actions=next_actions)


def close(actual: Tensor, expected: Tensor, dtype: Optional[torch.dtype] = None, **tol) -> None:
    dtype = dtype or expected.dtype
    default = dict(rtol=1e-10, atol=1e-10) if dtype == torch.float64 else dict(rtol=2e-4, atol=2e-4)
    default.update(tol)
    torch.testing.assert_close(actual, expected, **default)
