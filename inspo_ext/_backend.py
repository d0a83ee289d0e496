"""The compiled module, which device it serves, and how a kernel is launched.

CPU tensors call `_C.OP(..., num_threads=torch.get_num_threads())`, which returns the packed status.
CUDA tensors call `_C.OP(..., stream=<current stream>, status=<device int64>, workspace=<uint8 buffer>)`
on the tensors' device; the status is read back with `.item()` (a synchronization) right after the call,
or later by `check_status()` when the call is deferred: inside `deferred_status()` and while a CUDA graph
is captured (_status.py).
When `_C` is missing, or the build lacks the tensors' device (a CUDA tensor in a CPU-only build), the
public functions use `inspo_ext.reference` instead and warn once.
"""

from __future__ import annotations

import functools
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from torch import Tensor
from torch.utils.dlpack import to_dlpack

from . import _status
from ._checkout import refuse_a_shadowed_install
from ._validation import STATUS_OK, RowNames, raise_for_status

refuse_a_shadowed_install(__package__, Path(__file__).parent)

try:  # torch first (done above), then the extension: both then share one libgomp
    from . import _C
except ImportError as error:  # no compiled module: every op runs the reference
    _C = None
    _IMPORT_ERROR: str = str(error)
else:
    _IMPORT_ERROR = ""

COMPILED = _C is not None


def warn_unknown_cpu_paths(environ) -> None:
    """Warn about a variable of _C.CPU_PATH_VARIABLES (each forces one of the CPU kernels' paths, for testing it) set
    to a value the kernels ignore: a typo would otherwise test the default path unnoticed."""
    if _C is None:
        return
    for name, values in _C.CPU_PATH_VARIABLES.items():
        value = environ.get(name)
        if value is not None and value not in values:
            warnings.warn(
                f"inspo_ext: {name}={value!r} is not one of {', '.join(values)}: ignored (the CPU's own choice "
                "stands).",
                RuntimeWarning,
                stacklevel=2,
            )


warn_unknown_cpu_paths(os.environ)

# The hash of the native sources the compiled module was built from (CMakeLists.txt); None without one.
SOURCE_HASH: Optional[str] = _C.SOURCE_HASH if _C is not None else None


def problem_shape(t: Tensor, inner: int) -> tuple[int, int, int, int]:
    """(S, B, N, A) of a [B, N, A] / [B, N] tensor (inner = 3 / 2; A = 1), or of one with a leading S."""
    dims = tuple(t.shape)
    problems = dims[0] if len(dims) > inner else 1
    core = dims[len(dims) - inner :]
    return (problems, core[0], core[1], core[2] if inner == 3 else 1)


def has_kernels(device: torch.device) -> bool:
    """True when the custom ops serve tensors on `device`: CPU and (CUDA builds) CUDA tensors run the
    compiled kernels; meta tensors only need the ops' fake (shape) functions."""
    if device.type == "meta":
        return True
    if _C is None:
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        return bool(_C.WITH_CUDA)
    return False


@functools.lru_cache(maxsize=None)
def warn_fallback(device_type: str) -> None:
    """Warn (once per device type) that the reference ops run instead of the compiled kernels."""
    if _C is None:
        reason = f"the compiled module inspo_ext._C could not be imported ({_IMPORT_ERROR})"
    else:
        reason = f"this build of inspo_ext._C has no {device_type} backend"
    warnings.warn(
        f"inspo_ext: {reason}; using the pure-PyTorch reference ops for {device_type} tensors (same results, slower).",
        RuntimeWarning,
        stacklevel=4,
    )  # the caller of the public op


# CPU outputs from this size on are advised into huge pages before the kernels first write them (_C.advise_huge_pages):
# below it a buffer holds no whole 2 MB page once aligned.
HUGE_PAGE_OUTPUT_BYTES = 4 << 20
advise_huge_pages_enabled = True  # benchmarks/first_touch.py times the outputs with and without the advice


def prepare_output(t: Tensor) -> Tensor:
    """A freshly allocated CPU output of the kernels, advised into huge pages when it is large (first-touch faults
    in 4 KB pages cost a third of a large call); returned as is otherwise."""
    if (
        advise_huge_pages_enabled
        and _C is not None
        and t.device.type == "cpu"
        and t.numel() * t.element_size() >= HUGE_PAGE_OUTPUT_BYTES
    ):
        _C.advise_huge_pages(t)
    return t


def launch(
    op: str, tensors: dict[str, Any], scalars: dict[str, Any], names: RowNames, shape: tuple[int, int, int, int]
) -> None:
    """Run kernel `op` of `_C` on `tensors` (inputs and preallocated outputs, keyword names of the binding)
    and raise the ValueError of the first invalid input, at once or at the next `check_status()` when the
    call is deferred (_status.py). `shape` = (S, B, N, A) (S problems of B samples; S = 1 without a problem
    dimension) sizes the CUDA workspace."""
    first = next(t for t in tensors.values() if isinstance(t, Tensor) and t.is_floating_point())  # a T tensor
    device = first.device
    fn: Callable = getattr(_C, op)
    deferred = _status.deferring(device)
    if device.type == "cpu":
        # DLPack capsules made here (torch's C++ export): nanobind would call each tensor's Python __dlpack__,
        # whose checks cost ten times as much, a third of a small call (docs/PERFORMANCE.md)
        capsules = {name: to_dlpack(t) if isinstance(t, Tensor) else t for name, t in tensors.items()}
        status = fn(**capsules, **scalars, num_threads=torch.get_num_threads())
        if deferred:
            _status.record(op, device, status, names, tensors)
            return
    else:
        problems, batch, agents, actions = shape
        if _status.capturing(device):
            _status.require_capture_safe_dlpack()
        with torch.cuda.device(device):
            if deferred:
                status_tensor = _status.flag_slot(op, device)
            else:
                status_tensor = torch.full((1,), STATUS_OK, dtype=torch.int64, device=device)
            nbytes = _C.cuda_workspace_bytes(op, problems, batch, agents, actions, first.dtype == torch.float64)
            workspace = torch.empty(nbytes, dtype=torch.uint8, device=device) if nbytes > 0 else None
            stream = torch.cuda.current_stream(device).cuda_stream
            fn(**tensors, **scalars, stream=stream, status=status_tensor, workspace=workspace)
        if deferred:
            _status.record(op, device, None, names, tensors)
            return
        status = int(status_tensor.item())  # synchronizes
    raise_for_status(status, names, {k: v for k, v in tensors.items() if isinstance(v, Tensor)})
