"""The benchmarked ops: every op of inspo_ext, its setup, call and bytes made from its OpSpec
(inspo_ext._spec: inputs with their dims, dtypes and values, outputs, the Benchmark entry), and the three
implementations.

Every implementation is called through the same public API (`inspo_ext`'s signatures: tensors
first, keyword-only scalars), so a row differs only in what runs underneath:

* ours:     `inspo_ext` (the fused C++/CUDA kernels; the reference when the build has no `_C`)
* eager:    `inspo_ext.reference`, plain PyTorch
* compiled: `torch.compile` of `inspo_ext.reference`

Bytes model (the roofline): each input read once and each output written once, at its dtype's
size. The backward of a differentiable op (`sequential_policy_loss`) alone is counted as what its gradient
needs at least: the differentiated input (the logits), masks and actions, one saved coefficient per (sample,
agent), the incoming gradient, and the input's gradient written once. Forward + backward ("full") is counted as one fused op: every input
read once and the per-agent outputs and the logits' gradient written once (an implementation that
keeps state between the passes, as ours does, moves more than this minimum). Ours writes the gradient in
its forward, and on the CPU the backward of a summed loss hands that buffer over without a pass: its bwd
row's GB/s and fraction of bandwidth measure no data movement; the full row is the one to read.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=None)
def _hyper_of(name: str) -> dict[str, float]:
    """The hyperparameters (HYPER) that op `name` takes. Looked up once per op: a signature per call would be timed
    with every call (about 30 us each, six per call)."""
    parameters = inspect.signature(getattr(inspo_ext, name)).parameters
    return {k: v for k, v in HYPER.items() if k in parameters}


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
# One benchmark per op of inspo_ext, from its OpSpec (inspo_ext._spec): the inputs from their dims, dtypes
# and values, the call through the public function, the bytes from the inputs and outputs.
# ---------------------------------------------------------------------------------------------
F32, BOOL, I64 = 4, 1, 8
ITEM_BYTES = {None: F32, torch.float32: F32, torch.float64: 8, torch.bool: BOOL, torch.int64: I64}  # None: the float
DONE_FRACTION = 0.05  # of "binary" inputs (done): terminal samples are a few percent of a replay batch
UNAVAILABLE_FRACTION = 0.25  # of the actions (the taken one always available)


def _shape(dims: str, size: Size) -> tuple[int, ...]:
    sizes = dict(B=size.batch, N=size.agents, A=size.actions)
    return tuple(sizes[d] if d in sizes else int(d) for d in op_specs.dims_of(dims))


def _bytes(args, size: Size) -> int:
    return sum(math.prod(_shape(a.dims, size)) * ITEM_BYTES[a.dtype] for a in args)


@dataclass(frozen=True)
class BenchOp:
    """The benchmark of one op, made from its OpSpec (`spec`); see the module docstring for the bytes."""

    spec: op_specs.OpSpec

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def inputs(self) -> tuple:
        """The inputs the benchmark passes: every required one and the optional ones its Benchmark names."""
        return tuple(a for a in self.spec.inputs if not a.optional or a.name in self.spec.benchmark.optional)

    @property
    def grad(self) -> Optional[tuple[str, str]]:
        """(the input the backward differentiates, the output it flows from); None: forward-only."""
        return self.spec.benchmark.grad

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.grad is not None else ("fwd",)

    def setup(self, size: Size, device: torch.device, generator: torch.Generator) -> dict[str, Tensor]:
        """Random, realistic inputs: ~25% of the actions unavailable (the taken one always available),
        log-probabilities a masked log-softmax (-inf at unavailable actions, as the behaviour cache stores
        them), a few terminal samples; the differentiated input requires grad."""
        actions = torch.randint(0, size.actions, _shape("[B, N]", size), generator=generator)
        avail = torch.rand(_shape("[B, N, A]", size), generator=generator) > UNAVAILABLE_FRACTION
        avail.scatter_(-1, actions.unsqueeze(-1), True)
        tensors: dict[str, Tensor] = {}
        for arg in self.inputs:
            shape = _shape(arg.dims, size)
            if arg.dtype == torch.bool:
                t = avail
            elif arg.dtype == torch.int64:
                t = torch.randperm(size.agents, generator=generator) if arg.dims == "[N]" else actions
            elif arg.values == "log_probs":
                t = reference.masked_log_softmax(torch.randn(shape, generator=generator), avail)
            elif arg.values == "binary":
                t = (torch.rand(shape, generator=generator) < DONE_FRACTION).float()
            elif arg.values == "uniform":
                t = torch.rand(shape, generator=generator, dtype=torch.float64)
            else:
                t = torch.randn(shape, generator=generator)
            tensors[arg.name] = t.to(arg.dtype or torch.float32).to(device)
        if self.grad is not None:
            tensors[self.grad[0]].requires_grad_(True)
        return tensors

    def call(self, ops, x: dict[str, Tensor]):
        """The op through `ops` (an object with inspo_ext's public op functions): the inputs by name, the
        Benchmark's keywords and the hyperparameters the function takes (HYPER)."""
        return getattr(ops, self.name)(**x, **self.spec.benchmark.keywords, **_hyper_of(self.name))

    def output(self, out, name: str) -> Tensor:
        """Output `name` of a result (a named tuple of the public function, or one tensor)."""
        return getattr(out, name) if hasattr(out, name) else out

    def bytes_forward(self, size: Size) -> int:
        """Every passed input read once, every output written once (an output only made for the backward,
        `Output.when`, not)."""
        return _bytes(self.inputs, size) + _bytes([o for o in self.spec.outputs if o.when is None], size)

    def bytes_backward(self, size: Size) -> int:
        """What the gradient needs at least: the differentiated input and the op's masks and actions (its bool
        and int64 batch inputs) read, one saved float coefficient per (sample, agent), the incoming gradient
        read, the input's gradient written."""
        wrt, out = self.grad  # type: ignore[misc]
        wrt_bytes = _bytes([a for a in self.inputs if a.name == wrt], size)
        indices = [a for a in self.inputs if a.dtype in (torch.bool, torch.int64) and a.dims != "[N]"]
        output = [o for o in self.spec.outputs if o.name == out]
        return 2 * wrt_bytes + _bytes(indices, size) + size.batch * size.agents * F32 + _bytes(output, size)

    def bytes_moved(self, size: Size, mode: str) -> int:
        if mode == "fwd":
            return self.bytes_forward(size)
        if mode == "bwd":
            return self.bytes_backward(size)
        wrt = self.grad[0]  # type: ignore[index]
        return self.bytes_forward(size) + _bytes([a for a in self.inputs if a.name == wrt], size)  # fused: + grad


OPS: dict[str, BenchOp] = {name: BenchOp(spec) for name, spec in op_specs.OPS.items()}


def regions(spec: BenchOp, ops, inputs: dict[str, Tensor], mode: str):
    """(prepare, region) of one benchmark row; see `timing.measure`."""
    if mode == "fwd":
        return (lambda: None), (lambda _: spec.call(ops, inputs))
    wrt_name, out_name = spec.grad  # type: ignore[misc]
    wrt = inputs[wrt_name]

    def backward(out) -> None:
        loss = spec.output(out, out_name)
        torch.autograd.grad(loss, wrt, grad_outputs=torch.ones_like(loss))

    if mode == "bwd":
        return (lambda: spec.call(ops, inputs)), backward
    return (lambda: None), (lambda _: backward(spec.call(ops, inputs)))
