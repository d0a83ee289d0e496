"""The benchmarked ops: one setup per kernel, the three implementations, and the bytes each must move.

Every implementation is called through the same public API (`inspo_ext`'s signatures: tensors
first, keyword-only scalars), so a row differs only in what runs underneath:

* ours:     `inspo_ext` (the fused C++/CUDA kernels; the reference when the build has no `_C`)
* eager:    `inspo_ext.reference`, plain PyTorch
* compiled: `torch.compile` of `inspo_ext.reference`

Bytes model (the roofline): each input read once and each output written once, at its dtype's
size. The backward of `sequential_policy_loss` alone is counted as what its gradient needs at least:
the logits, masks and actions, one saved coefficient per (sample, agent), the incoming gradient, and
the logits' gradient written once. Forward + backward ("full") is counted as one fused op: every input
read once and the per-agent outputs and the logits' gradient written once (an implementation that
keeps state between the passes, as ours does, moves more than this minimum).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch
from torch import Tensor

import inspo_ext
from inspo_ext import _spec as op_specs
from inspo_ext import reference

IMPLEMENTATIONS = ("ours", "eager", "compiled")
MODES = ("fwd", "bwd", "full")


@dataclass(frozen=True)
class Size:
    batch: int
    agents: int
    actions: int

    @property
    def elements(self) -> int:
        return self.batch * self.agents * self.actions

    @property
    def label(self) -> str:
        return f"B={_short(self.batch)} N={self.agents} A={self.actions}"


def _short(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


# Hyperparameters of every benchmark call (the defaults of docs/ALGORITHM.md#default-hyperparameters; values do not
# change the cost).
HYPER = dict(alpha=0.1, beta=0.1, eta=0.3, gamma=0.99, log_rho_max=math.log(100.0), log_w_max=10.0)


class ReferenceOps:
    """The public `inspo_ext` API backed by `inspo_ext.reference`, eager or `torch.compile`d.

    `ops.NAME(...)` binds its arguments as `inspo_ext.NAME` does (its defaults included) and calls
    `reference.NAME` with them by name (the two share their parameter names); resample's uniforms are
    drawn here, outside the compiled region, as `inspo_ext` draws them.
    `dynamic=True` compiles each op once for all shapes of the sweep (one compile instead of one
    per shape); `dynamic=False` specializes on every shape (longer compiles, the compiler's best case).
    """

    def __init__(self, compiled: bool = False, dynamic: bool = True):
        self._compiled, self._dynamic = compiled, dynamic

    def __getattr__(self, name: str) -> Callable:
        if name not in OP_NAMES:
            raise AttributeError(name)
        fn = getattr(reference, name)
        fn = torch.compile(fn, dynamic=self._dynamic) if self._compiled else fn
        signature = inspect.signature(getattr(inspo_ext, name))

        def call(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            if name == "resample":
                generator, log_rho = arguments.pop("generator"), arguments["log_rho"]
                if arguments["uniforms"] is None:
                    shape = (
                        log_rho.shape
                        if arguments["method"] == "multinomial"
                        else log_rho.shape[:-2] + (1, log_rho.shape[-1])
                    )
                    arguments["uniforms"] = torch.rand(
                        shape, generator=generator, device=log_rho.device, dtype=torch.float64
                    )
            return fn(**arguments)

        setattr(self, name, call)  # bound once per op (one compile per op)
        return call


OP_NAMES = tuple(op_specs.OPS)  # every op of inspo_ext (one OpSpec each)


def _exports_ops() -> bool:
    return all(hasattr(inspo_ext, name) for name in OP_NAMES)


def make_implementations(names: tuple[str, ...], dynamic: bool = True) -> dict[str, Any]:
    """name -> an object with the five public op functions."""
    makers = {
        "ours": lambda: inspo_ext if _exports_ops() else ReferenceOps(),
        "eager": lambda: ReferenceOps(),
        "compiled": lambda: ReferenceOps(compiled=True, dynamic=dynamic),
    }
    return {name: makers[name]() for name in names}


def ours_backend() -> str:
    """What `ours` runs: the compiled kernels, or the reference fallback (then ours == eager)."""
    if not _exports_ops():
        return "eager reference (this inspo_ext does not export the ops: 'ours' runs the PyTorch reference)"
    info = getattr(inspo_ext, "build_info", None)
    if info is None:
        return "unknown (inspo_ext has no build_info)"
    details = info()
    if not details.get("compiled", False):
        return "reference fallback (inspo_ext._C is not built: 'ours' runs the PyTorch reference)"
    return "compiled kernels " + ", ".join(f"{k}={v}" for k, v in details.items() if k != "compiled")


# ---------------------------------------------------------------------------------------------
# Inputs. Random, realistic: ~25% of actions unavailable (the taken one always available),
# log mu a masked log-softmax (-inf at unavailable actions, as the behaviour cache stores it).
# ---------------------------------------------------------------------------------------------
def _joint_batch(size: Size, device: torch.device, generator: torch.Generator, prefix: str = "") -> dict[str, Tensor]:
    b, n, a = size.batch, size.agents, size.actions
    actions = torch.randint(0, a, (b, n), generator=generator)
    avail = torch.rand(b, n, a, generator=generator) > 0.25
    avail.scatter_(-1, actions.unsqueeze(-1), True)
    log_mu = reference.masked_log_softmax(torch.randn(b, n, a, generator=generator), avail)
    tensors = dict(
        logits=torch.randn(b, n, a, generator=generator),
        log_mu=log_mu,
        avail=avail,
        actions=actions,
        q_local=torch.randn(b, n, a, generator=generator),
    )
    return {prefix + name: t.to(device) for name, t in tensors.items()}


def setup_soft_bellman_target(size: Size, device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
    b = size.batch
    inputs = _joint_batch(size, device, generator, prefix="next_")
    return dict(
        reward=torch.randn(b, generator=generator).to(device),
        done=(torch.rand(b, generator=generator) < 0.05).float().to(device),
        q_next=torch.randn(b, generator=generator).to(device),
        next_logits=inputs["next_logits"],
        next_log_mu=inputs["next_log_mu"],
        next_avail=inputs["next_avail"],
        next_actions=inputs["next_actions"],
    )


def setup_in_sample_weights(size: Size, device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
    inputs = _joint_batch(size, device, generator)
    return {k: inputs[k] for k in ("q_local", "log_mu", "avail", "actions")}


def setup_teammate_log_ratios(size: Size, device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
    inputs = _joint_batch(size, device, generator)
    inputs["order"] = torch.randperm(size.agents, generator=generator).to(device)
    return inputs


def setup_resample(size: Size, device: torch.device, generator: torch.Generator) -> dict[str, Any]:
    log_rho = (2.0 * torch.randn(size.batch, size.agents, generator=generator)).clamp(max=HYPER["log_rho_max"])
    draws = torch.Generator(device=device)
    draws.manual_seed(0)
    return dict(log_rho=log_rho.to(device), generator=draws)


def setup_sequential_policy_loss(size: Size, device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
    inputs = setup_teammate_log_ratios(size, device, generator)
    inputs["logits"].requires_grad_(True)
    return inputs


# ---------------------------------------------------------------------------------------------
# Calls through the public API.
# ---------------------------------------------------------------------------------------------
def call_soft_bellman_target(ops, x: dict[str, Tensor]):
    return ops.soft_bellman_target(
        x["reward"],
        x["done"],
        x["q_next"],
        x["next_logits"],
        x["next_log_mu"],
        x["next_avail"],
        x["next_actions"],
        gamma=HYPER["gamma"],
        alpha=HYPER["alpha"],
        beta=HYPER["beta"],
        log_rho_max=HYPER["log_rho_max"],
    )


def call_in_sample_weights(ops, x: dict[str, Tensor]):
    return ops.in_sample_weights(
        x["q_local"],
        x["log_mu"],
        x["avail"],
        x["actions"],
        alpha=HYPER["alpha"],
        beta=HYPER["beta"],
        log_w_max=HYPER["log_w_max"],
    )


def call_teammate_log_ratios(ops, x: dict[str, Tensor]):
    return ops.teammate_log_ratios(
        x["logits"],
        x["log_mu"],
        x["avail"],
        x["actions"],
        x["order"],
        predecessors="target",
        q_local=x["q_local"],
        alpha=HYPER["alpha"],
        beta=HYPER["beta"],
        eta=HYPER["eta"],
        log_rho_max=HYPER["log_rho_max"],
    )


def call_resample(ops, x: dict[str, Tensor]):
    return ops.resample(x["log_rho"], method="multinomial", generator=x["generator"])


def call_sequential_policy_loss(ops, x: dict[str, Tensor]):
    return ops.sequential_policy_loss(
        x["logits"],
        x["log_mu"],
        x["avail"],
        x["actions"],
        x["q_local"],
        x["order"],
        predecessors="target",
        alpha=HYPER["alpha"],
        beta=HYPER["beta"],
        eta=HYPER["eta"],
        log_rho_max=HYPER["log_rho_max"],
        log_w_max=HYPER["log_w_max"],
        ratio="self_normalized",
    )


# ---------------------------------------------------------------------------------------------
# Bytes each op must move (the roofline numerator).
# ---------------------------------------------------------------------------------------------
F32, BOOL, I64 = 4, 1, 8


def _joint_bytes(size: Size, float_tensors: int) -> int:
    """`float_tensors` float [B, N, A] inputs + the avail mask + the [B, N] actions."""
    bna, bn = size.elements, size.batch * size.agents
    return float_tensors * bna * F32 + bna * BOOL + bn * I64


def bytes_soft_bellman_target(size: Size) -> int:
    b, bn = size.batch, size.batch * size.agents
    return 3 * b * F32 + _joint_bytes(size, 2) + (2 * b + 2 * bn) * F32


def bytes_in_sample_weights(size: Size) -> int:
    return _joint_bytes(size, 2) + 3 * size.batch * size.agents * F32


def bytes_teammate_log_ratios(size: Size) -> int:
    return _joint_bytes(size, 3) + size.agents * I64 + size.batch * size.agents * F32


def bytes_resample(size: Size) -> int:
    bn = size.batch * size.agents
    return bn * F32 + bn * I64 + size.agents * F32


def bytes_policy_loss_forward(size: Size) -> int:
    return _joint_bytes(size, 3) + size.agents * I64 + 5 * size.agents * F32


def bytes_policy_loss_backward(size: Size) -> int:
    bna, bn = size.elements, size.batch * size.agents
    return bna * F32 + bna * BOOL + bn * I64 + bn * F32 + size.agents * F32 + bna * F32


@dataclass(frozen=True)
class OpSpec:
    name: str
    setup: Callable[[Size, torch.device, torch.Generator], dict[str, Tensor]]
    call: Callable[[Any, dict[str, Tensor]], Any]
    bytes_forward: Callable[[Size], int]
    bytes_backward: Optional[Callable[[Size], int]] = None  # None: forward-only op
    grad_input: Optional[str] = None  # the input that requires grad
    grad_output: Optional[Callable[[Any], Tensor]] = None  # the output the backward flows from

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.bytes_backward is not None else ("fwd",)

    def bytes_moved(self, size: Size, mode: str) -> int:
        if mode == "fwd":
            return self.bytes_forward(size)
        if mode == "bwd":
            return self.bytes_backward(size)  # type: ignore[misc]
        return self.bytes_forward(size) + size.elements * F32  # fused: + the gradient of the [B, N, A] input


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("soft_bellman_target", setup_soft_bellman_target, call_soft_bellman_target, bytes_soft_bellman_target),
        OpSpec("in_sample_weights", setup_in_sample_weights, call_in_sample_weights, bytes_in_sample_weights),
        OpSpec("teammate_log_ratios", setup_teammate_log_ratios, call_teammate_log_ratios, bytes_teammate_log_ratios),
        OpSpec("resample", setup_resample, call_resample, bytes_resample),
        OpSpec(
            "sequential_policy_loss",
            setup_sequential_policy_loss,
            call_sequential_policy_loss,
            bytes_policy_loss_forward,
            bytes_policy_loss_backward,
            grad_input="logits",
            grad_output=lambda out: out.loss,
        ),
    )
}


def regions(spec: OpSpec, ops, inputs: dict[str, Tensor], mode: str):
    """(prepare, region) of one benchmark row; see `timing.measure`."""
    if mode == "fwd":
        return (lambda: None), (lambda _: spec.call(ops, inputs))
    wrt = inputs[spec.grad_input]

    def backward(out) -> None:
        loss = spec.grad_output(out)
        torch.autograd.grad(loss, wrt, grad_outputs=torch.ones_like(loss))

    if mode == "bwd":
        return (lambda: spec.call(ops, inputs)), backward
    return (lambda: None), (lambda _: backward(spec.call(ops, inputs)))
