"""sequential_policy_loss: every agent's InSPO policy loss over a joint batch in one fused pass
(docs/ALGORITHM.md#sequence-modes), and InSPOPolicyLoss, its nn.Module.

The forward kernel also writes, when logits require grad, the logit gradient of each agent's loss
G[b, i, :] = d loss_i / d logits[b, i, :] = c w (softmax - onehot(a)) / norm_i (0 at unavailable actions); the
backward is G itself when every d loss_i is 1 (loss.sum(), on the CPU: no pass over [B, N, A]), else one
multiply, d logits = G * d loss_i. The loss is differentiable w.r.t. logits only (rho, w, norm carry no
gradient, as in the reference); double backward (create_graph=True) raises.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor, nn

from . import _backend, reference
from . import _validation as v
from ._spec import Arg, Benchmark, OpSpec, Output
from .reference import RATIO_MODES, PolicyLoss
from .teammate_log_ratios import check_predecessor_inputs
from .teammate_log_ratios import reference_status as ratio_status

SPEC = OpSpec(
    "sequential_policy_loss",
    inputs=(
        Arg("logits", "[B, N, A]"),
        Arg("log_mu", "[B, N, A]", values="log_probs"),
        Arg("avail", "[B, N, A]", torch.bool),
        Arg("actions", "[B, N]", torch.int64),
        Arg("q_local", "[B, N, A]"),
        Arg("order", "[N]", torch.int64),
        Arg("updated_log_probs", "[B, N]", optional=True),
    ),
    # loss, mean_weight, ess, entropy, kl [(S,) N] and the logit gradient G [(S,) B, N, A] of each agent's loss
    # ([0] when not compute_grad)
    outputs=(
        Output("loss", "[N]"),
        Output("mean_weight", "[N]"),
        Output("ess", "[N]"),
        Output("entropy", "[N]"),
        Output("kl", "[N]"),
        Output("grad", "[B, N, A]", when="compute_grad"),
    ),
    scalars=(
        ("predecessors", "int"),
        ("ratio", "int"),
        ("alpha", "float"),
        ("beta", "float"),
        ("eta", "float"),
        ("log_rho_max", "float"),
        ("log_w_max", "float"),
        ("compute_grad", "bool"),
    ),
    reference_status=ratio_status,
    benchmark=Benchmark(keywords=dict(ratio="self_normalized"), grad=("logits", "loss")),
)
sequential_policy_loss_op = SPEC.op


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[5])
    ctx.mark_non_differentiable(*output[1:])  # diagnostics and G: constants, as in the reference
    # The outputs without a gradient reach the backward as None, not as zeros: the default would fill a
    # [B, N, A] tensor of zeros for G at every backward (measured: a third of the backward's time).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_loss, *_unused):
    if torch.is_grad_enabled():  # create_graph=True: the saved G is a constant, its result would be wrong
        raise RuntimeError(
            "sequential_policy_loss: double backward is not supported (the gradient is a "
            "constant of the fused forward pass); use inspo_ext.reference.sequential_policy_loss "
            "for higher-order gradients"
        )
    if grad_loss is None:  # nothing flows into the loss (the other outputs carry no gradient)
        return (None,) * 15
    (grad,) = ctx.saved_tensors
    if grad.dim() < 3:
        raise RuntimeError(
            "sequential_policy_loss: backward without a saved gradient (the op ran with "
            "compute_grad=False; logits must require grad when the loss is computed)"
        )
    scale = grad_loss.unsqueeze(-2).unsqueeze(-1)  # [(S,) 1, N, 1]
    if torch.compiler.is_compiling():  # inductor fuses the multiply into its own buffers
        return (grad * scale,) + (None,) * 14
    # (plain CPU tensors only: on CUDA the test would sync the host; a traced tensor has no value to test)
    if type(grad_loss) is torch.Tensor and grad.device.type == "cpu" and bool((grad_loss == 1).all()):
        # loss.sum(): G is the gradient. Autograd copies it before any in-place accumulation while the graph still
        # holds it (retain_graph=True; tests/test_ops_sequential_policy_loss.py), so G itself is safe to return.
        return (grad,) + (None,) * 14
    grad_logits = _backend.prepare_output(torch.empty_like(grad))  # no per-page first-touch faults
    return (torch.mul(grad, scale, out=grad_logits),) + (None,) * 14


SPEC.op.register_autograd(_backward, setup_context=_setup_context)


def sequential_policy_loss(
    logits: Tensor,
    log_mu: Tensor,
    avail: Tensor,
    actions: Tensor,
    q_local: Tensor,
    order: Tensor,
    *,
    predecessors: str = "target",
    updated_log_probs: Optional[Tensor] = None,
    alpha: float,
    beta: float,
    eta: float = 0.3,
    log_rho_max: float = math.log(100.0),
    log_w_max: float = 10.0,
    ratio: str = "importance",
) -> PolicyLoss:
    """Per-agent InSPO policy loss, as reference.sequential_policy_loss:
    loss_i = -sum_b c_i(b) w_i(b) log pi^i(a^i_b) / norm_i with, by `ratio`,
    "importance" (c = rho_i, norm = B), "self_normalized" (c = rho_i, norm = sum_b rho_i), "none" (c = 1).
    rho_i: teammate ratios (see teammate_log_ratios; `predecessors`, `updated_log_probs`, `eta`), clipped at
    log_rho_max; w_i: the in-sample weight clipped at log_w_max (see in_sample_weights).

    logits, log_mu, q_local: [B, N, A] float32/float64; avail: bool [B, N, A]; actions: int64 [B, N];
    order: int64 [N] permutation; updated_log_probs: [B, N], finite and <= 0 (read with predecessors="policy"
    and a ratio; checked whenever passed).
    Every batch tensor may carry a leading problem dimension S ([S, B, N, A], [S, B, N]; then every one
    does), with order [N] (shared) or [S, N]: S independent losses, each normalized over its own B samples;
    problem s equals the call on its slice s (on the CPU bit for bit).
    Returns PolicyLoss(loss, mean_weight, ess, entropy, kl), each [N] ([S, N]); only loss has a gradient, and
    only w.r.t. logits (computed in the same fused pass when logits require grad).
    """
    passed = dict(
        logits=logits,
        log_mu=log_mu,
        avail=avail,
        actions=actions,
        q_local=q_local,
        order=order,
        updated_log_probs=updated_log_probs,
    )
    SPEC.check(passed)
    ratio_mode = v.check_mode("ratio", ratio, RATIO_MODES)
    # ratio="none": no teammate ratio, updated_log_probs is not read (still checked when passed)
    predecessor_mode, _, updated_log_probs = check_predecessor_inputs(
        predecessors, q_local, updated_log_probs, needs_q=True, reads_updated=ratio != "none"
    )
    alpha, beta = v.check_temperatures(alpha, beta)
    eta = v.check_unit_interval("eta", eta)
    log_rho_max = v.check_clip("log_rho_max", log_rho_max)
    log_w_max = v.check_clip("log_w_max", log_w_max)
    read = {**passed, "updated_log_probs": updated_log_probs}  # the ones the call reads
    # logits keep their graph (the op's gradient); the other inputs are constants of the loss
    t = {name: x if name == "logits" or x is None else x.detach() for name, x in read.items()}
    compute_grad = logits.requires_grad and torch.is_grad_enabled()
    scalars = (predecessor_mode, ratio_mode, alpha, beta, eta, log_rho_max, log_w_max, compute_grad)
    out = SPEC.run(
        t,
        scalars,
        lambda: reference.sequential_policy_loss(
            t["logits"],
            t["log_mu"],
            t["avail"],
            t["actions"],
            t["q_local"],
            t["order"],
            predecessors,
            t["updated_log_probs"],
            alpha,
            beta,
            eta,
            log_rho_max,
            log_w_max,
            ratio,
        ),
    )
    return out if isinstance(out, PolicyLoss) else PolicyLoss(*out[:5])


class InSPOPolicyLoss(nn.Module):
    """The InSPO policy loss as a module: forward(...) -> the sum over agents of sequential_policy_loss.

    The hyperparameters are fixed at construction (validated there); `last` holds the PolicyLoss of the
    latest forward (its loss detached), for logging.
    """

    def __init__(
        self,
        alpha: float,
        beta: float,
        eta: float = 0.3,
        log_rho_max: float = math.log(100.0),
        log_w_max: float = 10.0,
        ratio: str = "importance",
        predecessors: str = "target",
    ):
        super().__init__()
        alpha, beta = v.check_temperatures(alpha, beta)
        eta = v.check_unit_interval("eta", eta)
        log_rho_max = v.check_clip("log_rho_max", log_rho_max)
        log_w_max = v.check_clip("log_w_max", log_w_max)
        v.check_mode("ratio", ratio, RATIO_MODES)
        v.check_mode("predecessors", predecessors, reference.PREDECESSOR_MODES)
        self.alpha, self.beta, self.eta = alpha, beta, eta
        self.log_rho_max, self.log_w_max = log_rho_max, log_w_max
        self.ratio, self.predecessors = ratio, predecessors
        self.last: Optional[PolicyLoss] = None

    def forward(
        self,
        logits: Tensor,
        log_mu: Tensor,
        avail: Tensor,
        actions: Tensor,
        q_local: Tensor,
        order: Tensor,
        updated_log_probs: Optional[Tensor] = None,
    ) -> Tensor:
        out = sequential_policy_loss(
            logits,
            log_mu,
            avail,
            actions,
            q_local,
            order,
            predecessors=self.predecessors,
            updated_log_probs=updated_log_probs,
            alpha=self.alpha,
            beta=self.beta,
            eta=self.eta,
            log_rho_max=self.log_rho_max,
            log_w_max=self.log_w_max,
            ratio=self.ratio,
        )
        self.last = out._replace(loss=out.loss.detach())
        return out.loss.sum()

    def extra_repr(self) -> str:
        return (
            f"alpha={self.alpha}, beta={self.beta}, eta={self.eta}, log_rho_max={self.log_rho_max:.4g}, "
            f"log_w_max={self.log_w_max}, ratio={self.ratio!r}, predecessors={self.predecessors!r}"
        )
