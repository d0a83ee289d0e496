"""When the kernels' input errors are read back: at the call, or later at `check_status()`.

A kernel reports the first invalid input of a call by atomicMin'ing its packed status (csrc/common/args.h)
into a device int64. Reading that back is a device-to-host synchronization: forbidden while a CUDA graph
is being captured, and a stall per op call in a training step. So a call does one of two things:

* at the call (the default outside a capture): a fresh status tensor, read back right after the kernels;
  the call that had the bad input raises its ValueError;
* deferred (while a CUDA graph is being captured, and inside `deferred_status()`): the kernels atomicMin
  into the op's slot of a persistent per-device flag, whose fixed address a captured graph keeps writing
  at every replay. `check_status()` reads the flags (one synchronization per device), resets them and
  raises the ValueError of the first op with an error: the argument and the index as the call would have
  named them, without the value (later calls may have overwritten it).

The training loop (inspo.loop) defers and checks at every metrics row, before every evaluation and every
checkpoint, and at the end. CPU calls in deferred mode put their (already known) status into a CPU flag the
same way, so the deferred path is one path on both devices, and tested without a GPU.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from dataclasses import dataclass
from typing import Iterator, Optional

import torch
from torch import Tensor

from ._validation import STATUS_OK, RowNames, ShapeOnly, decode_status

_deferring = threading.local()  # .depth: how many deferred_status() blocks this thread is in
_flags: dict[torch.device, Tensor] = {}  # device -> int64 [number of ops], STATUS_OK where no error
_slots: dict[str, int] = {}  # op -> its slot in every flag (in the order ops are first called)
_SLOT_COUNT = 32  # more than the ops there are; an op past it is a bug here, raised at its first call


@dataclass(frozen=True)
class _Call:
    """What the deferred check keeps of a deferred call to decode its status: the row names and the shapes
    of its tensors. `captured`: made while a CUDA graph was captured (every replay of the graph repeats it,
    so it stays after a check; an eager call's record goes with the check)."""

    names: RowNames
    shapes: tuple[tuple[str, tuple[int, ...]], ...]
    captured: bool


_calls: dict[tuple[torch.device, str], set[_Call]] = {}


@contextlib.contextmanager
def deferred_status() -> Iterator[None]:
    """Inside this block the ops do not read their status back: errors wait for `check_status()`."""
    _deferring.depth = getattr(_deferring, "depth", 0) + 1
    try:
        yield
    finally:
        _deferring.depth -= 1


def capturing(device: torch.device) -> bool:
    """Whether the current stream of a CUDA `device` is being captured into a CUDA graph."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def deferring(device: torch.device) -> bool:
    return getattr(_deferring, "depth", 0) > 0 or capturing(device)


def _slot(op: str) -> int:
    if op not in _slots:
        if len(_slots) == _SLOT_COUNT:
            raise RuntimeError(f"inspo_ext: no status slot left for {op} (raise _SLOT_COUNT)")
        _slots[op] = len(_slots)
    return _slots[op]


def flag_slot(op: str, device: torch.device) -> Tensor:
    """The op's slot (int64 [1]) of the device's persistent status flag, made at the first deferred call.
    It cannot be made during a capture (its memory would belong to the graph), so a capture needs an
    earlier deferred call or check on the device: the warm-up run every capture has."""
    flag = _flags.get(device)
    if flag is None:
        if capturing(device):
            raise RuntimeError(
                f"inspo_ext: the status flag of {device} must exist before a CUDA graph capture; call "
                f"inspo_ext.check_status({str(device)!r}) (or run the ops once under "
                "inspo_ext.deferred_status()) before capturing"
            )
        flag = _flags[device] = torch.full((_SLOT_COUNT,), STATUS_OK, dtype=torch.int64, device=device)
    slot = _slot(op)
    return flag[slot : slot + 1]


def record(op: str, device: torch.device, status: Optional[int], names: RowNames, tensors: dict) -> None:
    """Keep what decoding a deferred call's status needs. `status`: a CPU call's status (the kernels
    returned it), min'ed into the CPU flag; None for a CUDA call (its kernels wrote the flag)."""
    slot = flag_slot(op, device)
    if status is not None and status < int(slot):
        slot.fill_(status)
    shapes = tuple((name, tuple(t.shape)) for name, t in tensors.items() if isinstance(t, Tensor))
    _calls.setdefault((device, op), set()).add(_Call(names, shapes, capturing(device)))


def _error(op: str, device: torch.device, status: int) -> ValueError:
    calls = _calls.get((device, op), set())
    where = f"inspo_ext.{op} on {device}, found by the deferred status check"
    if len(calls) != 1:  # calls of several shapes since the last check: the flat index fits none for sure
        shapes = sorted({call.shapes for call in calls})
        return ValueError(f"{where}: invalid input (kernel status {status}) in one of its calls of shapes {shapes}")
    call = next(iter(calls))
    error = decode_status(status, call.names, {name: ShapeOnly(shape) for name, shape in call.shapes})
    return ValueError(f"{error} ({where})")


def check_status(device: Optional[torch.device | str] = None) -> None:
    """Read the status flags of `device` (None: every device with one), reset them, and raise the
    ValueError of the first op whose deferred calls since the last check had an invalid input.

    One synchronization per device. Not during a CUDA graph capture (call it after the replay). On a CUDA
    device without a flag yet, makes it: call this once before capturing a graph of the ops."""
    devices = list(_flags) if device is None else [_indexed(torch.device(device))]
    if any(capturing(d) for d in devices if d.type == "cuda"):
        raise RuntimeError("inspo_ext.check_status: not while a CUDA graph is being captured (call it after a replay)")
    errors = []
    for dev in devices:
        if dev not in _flags:
            _flags.setdefault(dev, torch.full((_SLOT_COUNT,), STATUS_OK, dtype=torch.int64, device=dev))
            continue
        statuses = _flags[dev].tolist()
        if any(s != STATUS_OK for s in statuses):
            _flags[dev].fill_(STATUS_OK)
        for op, slot in _slots.items():
            if statuses[slot] != STATUS_OK:
                errors.append(_error(op, dev, statuses[slot]))
        for key in [key for key in _calls if key[0] == dev]:
            _calls[key] = {call for call in _calls[key] if call.captured}
    if errors:
        raise errors[0]


def _indexed(device: torch.device) -> torch.device:
    """cuda -> cuda:<current device> (the key of a tensor's device)."""
    return (
        torch.device("cuda", torch.cuda.current_device()) if device.type == "cuda" and device.index is None else device
    )


def require_capture_safe_dlpack() -> None:
    """Raise when this torch's Tensor.__dlpack__ cannot run inside a CUDA graph capture.

    The compiled module receives tensors through DLPack (nanobind calls __dlpack__() without a stream). From
    torch 2.8 a missing stream meant `stream=None`, which makes torch synchronize the legacy default
    stream with the current one (pytorch#150217): an event wait that invalidates a capture. pytorch#163242
    (in 2.10) made the default stream=-1, no synchronization; before 2.8 None did not synchronize. So the
    check reads the installed torch's default rather than its version."""
    if _DLPACK_SYNCS_WITHOUT_STREAM:
        raise RuntimeError(
            f"inspo_ext: torch {torch.__version__} synchronizes streams in Tensor.__dlpack__() (its default "
            "stream=None), which breaks CUDA graph capture of the ops; use torch >= 2.10 (or set compile: false)"
        )


def _dlpack_syncs_without_stream() -> bool:
    default = inspect.signature(torch.Tensor.__dlpack__).parameters["stream"].default
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return default is None and (major, minor) >= (2, 8)


_DLPACK_SYNCS_WITHOUT_STREAM = _dlpack_syncs_without_stream()
