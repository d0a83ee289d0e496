"""teammate_log_ratios: agent i's importance log-ratio over its teammates' actions (docs/ALGORITHM.md#teammate-ratios).

Forward-only: rho carries no gradient by design, so the op runs on detached inputs.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor

from . import _validation as v
from . import reference
from ._spec import Arg, Benchmark, OpSpec, Output
from ._validation import StatusCode as Code
from .reference import PREDECESSOR_MODES


def reference_status(logits, log_mu, avail, actions, order, q_local, updated_log_probs) -> int:
    """The kernels' status computed with torch ops (for the reference fallback). q_local /
    updated_log_probs: the ones the call reads (None otherwise)."""
    checked = [(Code.LOGITS_NON_FINITE, logits), (Code.LOG_MU_NON_FINITE, log_mu)]
    if q_local is not None:
        checked.append((Code.Q_NON_FINITE, q_local))
    codes = v.row_codes(avail, actions, checked)
    if updated_log_probs is not None:
        invalid = ~torch.isfinite(updated_log_probs) | (updated_log_probs > 0)
        codes = torch.where((codes == 0) & invalid, Code.UPDATED_LOG_PROB_INVALID, codes)
    return min(v.order_status(order), v.rows_status(codes))


SPEC = OpSpec(
    "teammate_log_ratios",
    inputs=(
        Arg("logits", "[B, N, A]"),
        Arg("log_mu", "[B, N, A]", values="log_probs"),
        Arg("avail", "[B, N, A]", torch.bool),
        Arg("actions", "[B, N]", torch.int64),
        Arg("order", "[N]", torch.int64),
        Arg("q_local", "[B, N, A]", optional=True),
        Arg("updated_log_probs", "[B, N]", optional=True),
    ),
    outputs=(Output("log_rho", "[B, N]"),),
    scalars=(
        ("predecessors", "int"),
        ("alpha", "float"),
        ("beta", "float"),
        ("eta", "float"),
        ("log_rho_max", "float"),
    ),
    reference_status=reference_status,
    benchmark=Benchmark(optional=("q_local",)),  # predecessors="target" reads q_local
)
teammate_log_ratios_op = SPEC.op


def check_predecessor_inputs(
    predecessors: str,
    q_local: Optional[Tensor],
    updated_log_probs: Optional[Tensor],
    needs_q: bool,
    reads_updated: bool = True,
) -> tuple[int, Optional[Tensor], Optional[Tensor]]:
    """Mode index, and the q_local / updated_log_probs the call reads (None for one it ignores).

    A tensor that is passed has been checked (the op's SPEC.check: type, dtype, shape, device, layout)
    whether the mode reads it or not, so a wrong argument never passes silently; its values are checked
    only where they are read. `reads_updated`: False where no ratio is computed (sequential_policy_loss
    with ratio="none")."""
    mode = v.check_mode("predecessors", predecessors, PREDECESSOR_MODES)
    if (needs_q or predecessors == "target") and q_local is None:
        raise ValueError("q_local is required (predecessors='target' steps toward the closed-form target)")
    if not (needs_q or predecessors == "target"):
        q_local = None
    if predecessors == "policy" and reads_updated:
        if updated_log_probs is None:
            raise ValueError("predecessors='policy' needs updated_log_probs [B, N]")
    else:
        updated_log_probs = None
    return mode, q_local, updated_log_probs


def teammate_log_ratios(
    logits: Tensor,
    log_mu: Tensor,
    avail: Tensor,
    actions: Tensor,
    order: Tensor,
    *,
    predecessors: str = "target",
    q_local: Optional[Tensor] = None,
    updated_log_probs: Optional[Tensor] = None,
    alpha: float,
    beta: float,
    eta: float = 0.3,
    log_rho_max: float = math.log(100.0),
) -> Tensor:
    """log rho_i(b) = sum_{l != i} [log pi_hat^l(a^l_b) - log mu^l(a^l_b)], clipped at log_rho_max, as
    reference.teammate_log_ratios: pi_hat^l is the updated policy for the agents before i in `order`
    (predecessors="target": the eta-lookahead toward the closed-form target, needs q_local;
    predecessors="policy": given as updated_log_probs [B, N]) and the current softmax(logits) after i.

    logits, log_mu (and q_local): [B, N, A] float32/float64; avail: bool [B, N, A]; actions: int64 [B, N];
    order: int64 [N], a permutation (order[m] = the agent updated m-th); updated_log_probs: finite and <= 0.
    Every batch tensor may carry a leading problem dimension S ([S, B, N, A], [S, B, N]; then every one
    does), with order [N] (shared) or [S, N]; problem s then equals the call on its slice s.
    A tensor the mode does not read (q_local with "policy", updated_log_probs with "target") is still
    checked when passed. Returns [B, N]; no gradient.
    """
    passed = dict(
        logits=logits,
        log_mu=log_mu,
        avail=avail,
        actions=actions,
        order=order,
        q_local=q_local,
        updated_log_probs=updated_log_probs,
    )
    SPEC.check(passed)
    mode, q_local, updated_log_probs = check_predecessor_inputs(predecessors, q_local, updated_log_probs, needs_q=False)
    alpha, beta = v.check_temperatures(alpha, beta)
    eta = v.check_unit_interval("eta", eta)
    log_rho_max = v.check_clip("log_rho_max", log_rho_max)
    read = {**passed, "q_local": q_local, "updated_log_probs": updated_log_probs}  # the ones the mode reads
    t = {name: None if x is None else x.detach() for name, x in read.items()}
    return SPEC.run(
        t,
        (mode, alpha, beta, eta, log_rho_max),
        lambda: reference.teammate_log_ratios(
            t["logits"],
            t["log_mu"],
            t["avail"],
            t["actions"],
            t["order"],
            predecessors,
            t["q_local"],
            t["updated_log_probs"],
            alpha,
            beta,
            eta,
            log_rho_max,
        ),
    )
