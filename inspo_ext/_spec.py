"""One specification per op: its tensors (dims, dtypes), its outputs and its reference status; from it
come the argument checks, the torch.library custom op (schema, kernel launch, fake) and the dispatch to
the kernels or to the reference fallback.

Dims are written without the leading problem dimension S ("[B, N, A]", "[B, N]", "[B]", "[N]"): every
batch tensor of a call may carry S first (then every one does; the first input decides). "[N]" inputs
(`order`) may be [N] or [S, N]; outputs of dims "[N]" are per (problem, agent), [S, N].

Adding an op OP touches:
  * its kernels: csrc/cpu/OP.cpp and csrc/cuda/OP.cu (each ending in INSPO_INSTANTIATE_CPU / _CUDA(OP)), its
    argument struct as a field table OPArgs_FIELDS in csrc/common/args.h (its _C binding is generated from it)
    and its line in the INSPO_OPS table (csrc/common/backends.h);
  * its reference: a function in inspo_ext/reference.py;
  * its spec entry: inspo_ext/OP.py (the OpSpec, its reference status and the public wrapper), exported
    from inspo_ext/__init__.py; `inspo bench` makes its benchmark from the OpSpec (`Benchmark`);
  * its tests: tests/test_ops_OP.py on the `backend` fixture of tests/ops_testing.py (cpu, cuda, reference).
tests/test_ops_registry.py checks that each op is in every one of these places.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import torch
from torch import Tensor

from . import _backend
from . import _validation as v

_SYMBOLS = ("B", "N", "A")

OPS: dict[str, "OpSpec"] = {}  # every op, by name, in the order the op modules define them


def dims_of(dims: str) -> tuple[str, ...]:
    """The names of the dims written as `dims` ("[B, N, A]" -> ("B", "N", "A"))."""
    return tuple(d.strip() for d in dims.strip("[]").split(","))


VALUES = ("real", "log_probs", "binary", "uniform")


@dataclass(frozen=True)
class Arg:
    """A tensor input. dtype None: the float dtype of the op's first input. optional: may be None.

    `values`, the valid values of a float input (what a benchmark or a test draws): "real" (any finite),
    "log_probs" (a log-softmax over the op's bool [B, N, A] mask, -inf where it is false), "binary" (0 or 1),
    "uniform" (in [0, 1)). Integer and bool inputs need none: int64 [B, N] are actions in [0, A) (available in
    the op's mask), int64 [N] a permutation, bool [B, N, A] the action mask."""

    name: str
    dims: str
    dtype: Optional[torch.dtype] = None
    optional: bool = False
    checked: bool = True  # False: the wrapper checks it (its dims depend on a mode)
    values: str = "real"
    dim_names: tuple[str, ...] = field(init=False, repr=False, compare=False)  # dims parsed once, not at every call

    def __post_init__(self) -> None:
        if self.values not in VALUES:
            raise ValueError(f"Arg {self.name}: values must be one of {VALUES}, got {self.values!r}")
        object.__setattr__(self, "dim_names", dims_of(self.dims))


@dataclass(frozen=True)
class Output:
    """A tensor output. dtype None: the float dtype of the op's first input. `when`: the name of a bool
    scalar of the op; when it is False the output is an empty [0] tensor and the kernel gets None."""

    name: str
    dims: str
    dtype: Optional[torch.dtype] = None
    when: Optional[str] = None
    dim_names: tuple[str, ...] = field(init=False, repr=False, compare=False)  # dims parsed once

    def __post_init__(self) -> None:
        object.__setattr__(self, "dim_names", dims_of(self.dims))


@dataclass(frozen=True)
class Benchmark:
    """How `inspo bench` (python/inspo/bench/ops.py) calls the op through its public function: the optional
    inputs it passes (the others stay None), keywords other than the hyperparameters (else their defaults),
    and for a differentiable op the input whose gradient the backward computes and the output it flows from
    (None: forward-only)."""

    optional: tuple[str, ...] = ()
    keywords: dict[str, Any] = field(default_factory=dict)
    grad: Optional[tuple[str, str]] = None  # (input, output)


@dataclass
class OpSpec:
    """An op of inspo_ext: the kernel `_C.<name>` (inputs, outputs, scalars as its keywords), the custom op
    `inspo_ext::<name>` (inputs then scalars, in this order) and its reference status (the kernels' packed
    status computed with torch ops, for the fallback)."""

    name: str
    inputs: tuple[Arg, ...]
    outputs: tuple[Output, ...]
    scalars: tuple[tuple[str, str], ...]  # (name, schema type: "int", "float", "bool")
    reference_status: Callable[..., int]
    row_names: v.RowNames = field(default_factory=v.RowNames)
    first: str = ""  # the input that fixes the call's dtype, device and S (default: the first input)
    benchmark: Benchmark = field(default_factory=Benchmark)

    def __post_init__(self) -> None:
        self.first = self.first or self.inputs[0].name
        self._first = next(a for a in self.inputs if a.name == self.first)
        self._inner = len(dims_of(self._first.dims))
        self.op = self._define()
        OPS[self.name] = self

    # ---- checks -------------------------------------------------------------------------------------
    def check(self, tensors: dict[str, Optional[Tensor]]) -> v.TensorChecker:
        """Type, dtype, shape, device and layout of every passed input, in spec order."""
        first = self._first
        check = v.TensorChecker(first.name, tensors[first.name], self._inner, first.dims)
        for arg in self.inputs:
            t = tensors.get(arg.name)
            if arg is first or not arg.checked or (arg.optional and t is None):
                continue
            shape = self.shape(check, arg.dim_names)
            if arg.dims == "[N]":
                check.order(t, shape[0])
            elif arg.dtype is None:
                check.float(arg.name, t, shape, arg.dims)
            else:
                check.exact(arg.name, t, arg.dtype, shape, arg.dims)
        return check

    def shape(self, check: v.TensorChecker, dim_names: tuple[str, ...]) -> tuple[int, ...]:
        """The shape (without S) that dims `dim_names` have in the call `check` checked."""
        sizes = dict(zip(_SYMBOLS, check.inner))
        return tuple(sizes[d] if d in sizes else int(d) for d in dim_names)

    # ---- the custom op -------------------------------------------------------------------------------
    def _schema(self) -> str:
        tensors = [f"Tensor{'?' if a.optional else ''} {a.name}" for a in self.inputs]
        scalars = [f"{kind} {name}" for name, kind in self.scalars]
        outs = ", ".join("Tensor" for _ in self.outputs)
        return f"({', '.join(tensors + scalars)}) -> " + (outs if len(self.outputs) == 1 else f"({outs})")

    def _named(self, args: Sequence[Any]) -> dict[str, Any]:
        return dict(zip([a.name for a in self.inputs] + [name for name, _ in self.scalars], args))

    def _empty_outputs(self, named: dict[str, Any]) -> tuple[Tensor, ...]:
        first: Tensor = named[self.first]
        lead = tuple(first.shape[: first.dim() - self._inner])
        sizes = dict(zip(_SYMBOLS, first.shape[first.dim() - self._inner :]))
        outputs = []
        for out in self.outputs:
            if out.when is not None and not named[out.when]:
                shape: tuple[int, ...] = (0,)
            else:
                shape = lead + tuple(sizes[d] for d in out.dim_names)
            outputs.append(first.new_empty(shape, dtype=out.dtype or first.dtype))
        return tuple(outputs)

    def _define(self):
        flags = {out.when for out in self.outputs if out.when is not None}  # custom-op scalars only

        def kernel(*args):
            named = self._named(args)
            outputs = tuple(_backend.prepare_output(t) for t in self._empty_outputs(named))
            tensors = {a.name: named[a.name] for a in self.inputs}
            for out, t in zip(self.outputs, outputs):
                tensors[out.name] = None if out.when is not None and not named[out.when] else t
            scalars = {name: named[name] for name, _ in self.scalars if name not in flags}
            _backend.launch(
                self.name, tensors, scalars, self.row_names, _backend.problem_shape(named[self.first], self._inner)
            )
            return outputs[0] if len(outputs) == 1 else outputs

        op = torch.library.custom_op(f"inspo_ext::{self.name}", kernel, mutates_args=(), schema=self._schema())

        @op.register_fake
        def _(*args):
            outputs = self._empty_outputs(self._named(args))
            return outputs[0] if len(outputs) == 1 else outputs

        return op

    # ---- dispatch ------------------------------------------------------------------------------------
    def run(self, tensors: dict[str, Optional[Tensor]], scalars: Sequence[Any], reference: Callable[[], Any]):
        """The custom op on `tensors` (by input name) and `scalars` (in spec order) where the kernels serve
        the tensors' device; else the reference (`reference()`) after raising what the kernels would."""
        device = tensors[self.first].device
        if _backend.has_kernels(device):
            return self.op(*(tensors.get(a.name) for a in self.inputs), *scalars)
        _backend.warn_fallback(device.type)
        args = {a.name: tensors.get(a.name) for a in self.inputs}
        with torch.no_grad():
            status = self.reference_status(**args)
        v.raise_for_status(status, self.row_names, args)
        return reference()
