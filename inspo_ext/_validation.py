"""Shared argument checks and the decoding of the kernels' error status into Python exceptions.

Checks before a call (here, in Python, naming the argument): type (TypeError), dtype (TypeError), shape
(ValueError), device (ValueError naming both arguments), contiguity (ValueError: inputs are never copied
silently), hyperparameters and mode strings (ValueError). Value errors (an action out of range or
unavailable, a row without available actions, non-finite values at available entries, done not 0/1,
a bad `order`) are found by the kernels in the same pass as the math and come back as one packed int64
(csrc/common/args.h): `decode_status` turns it into a ValueError naming the argument and the index.
For the reference fallback, the op modules compute the same packed status with torch ops (row_codes,
rows_status, order_status, first_status below), so both paths raise the same errors.
"""

from __future__ import annotations

import enum
import math
import numbers
from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor


# ---- status codes (csrc/common/args.h INSPO_STATUS_CODES) --------------------------------------------
class StatusCode(enum.IntEnum):
    """The kernels' error codes: the Python source of them, for decoding and for the reference fallback
    (which runs without the compiled module). tests/test_ops_status.py checks it against _C.STATUS_CODES."""

    ORDER_NOT_PERMUTATION = 1
    DONE_NOT_BINARY = 2
    REWARD_NON_FINITE = 3
    Q_NEXT_NON_FINITE = 4
    NO_AVAILABLE_ACTION = 5
    ACTION_OUT_OF_RANGE = 6
    ACTION_UNAVAILABLE = 7
    LOGITS_NON_FINITE = 8
    LOG_MU_NON_FINITE = 9
    Q_NON_FINITE = 10
    UPDATED_LOG_PROB_INVALID = 11
    LOG_RHO_INVALID = 12
    NO_POSITIVE_WEIGHT = 13
    UNIFORM_INVALID = 14


try:  # the packing of a status (args.h pack_status) is the compiled module's
    from ._C import STATUS_CODE_BITS as CODE_BITS
    from ._C import STATUS_OK
except ImportError:  # no compiled module: only the fallback packs statuses, any width that fits the codes works
    CODE_BITS = max(StatusCode).bit_length()
    STATUS_OK = torch.iinfo(torch.int64).max

FLOAT_DTYPES = (torch.float32, torch.float64)


# ---- tensor checks ---------------------------------------------------------------------------------
def _shape_str(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(s)) for s in shape) + "]"


class TensorChecker:
    """Checks the tensors of one call against a reference device and float dtype (the first float tensor).

    The first tensor fixes whether the call has a leading problem dimension S (it has `ndim` dims, or
    `ndim + 1` with S first): `lead` is () or (S,), `inner` its other dims. The shapes given to float()
    and exact() are without S; the checker prepends `lead`."""

    def __init__(self, first_name: str, first: Tensor, ndim: int, dims: str):
        _check_is_tensor(first_name, first)
        if first.dtype not in FLOAT_DTYPES:
            raise TypeError(f"{first_name} must be float32 or float64, got {first.dtype}")
        if first.dim() not in (ndim, ndim + 1):
            raise ValueError(
                f"{first_name} must be {ndim}-D {dims} (or {ndim + 1}-D {_batched(dims)}: S problems), "
                f"got shape {_shape_str(first.shape)}"
            )
        if any(s == 0 for s in first.shape):
            raise ValueError(f"{first_name} must be non-empty {dims}, got shape {_shape_str(first.shape)}")
        _check_contiguous(first_name, first)
        self.first_name = first_name
        self.device = first.device
        self.dtype = first.dtype
        self.lead: tuple[int, ...] = tuple(first.shape[: first.dim() - ndim])
        self.inner: tuple[int, ...] = tuple(first.shape[first.dim() - ndim :])
        self.problems = self.lead[0] if self.lead else 1

    def float(self, name: str, t: Tensor, shape: Sequence[int], dims: str) -> None:
        """A float tensor of the first tensor's dtype."""
        self._check(name, t, self.dtype, shape, dims, same_dtype=True)

    def exact(self, name: str, t: Tensor, dtype: torch.dtype, shape: Sequence[int], dims: str) -> None:
        self._check(name, t, dtype, shape, dims)

    def order(self, order: Tensor, agents: int) -> None:
        """order: int64 [N], or [S, N] (one permutation per problem) when the call has S problems."""
        if self.lead and isinstance(order, Tensor) and order.dim() == 2:
            self._check("order", order, torch.int64, (agents,), "[N]")
        else:
            self._check("order", order, torch.int64, (agents,), "[N]", batched=False)

    def _check(
        self,
        name: str,
        t: Tensor,
        dtype: torch.dtype,
        shape: Sequence[int],
        dims: str,
        batched: bool = True,
        same_dtype: bool = False,
    ) -> None:
        _check_is_tensor(name, t)
        if t.dtype != dtype:
            what = f"the dtype of {self.first_name} ({dtype})" if same_dtype else f"dtype {dtype}"
            raise TypeError(f"{name} must have {what}, got {t.dtype}")
        if batched and self.lead:
            if tuple(t.shape) == tuple(shape):  # the first tensor's leading dimension is the odd one out
                raise ValueError(
                    f"{self.first_name} has shape {_shape_str(self.lead + self.inner)}, one dimension more than "
                    f"{name} ({_shape_str(t.shape)}): a leading problem dimension S = {self.lead[0]} must be on "
                    "every tensor of the call or on none"
                )
            shape, dims = self.lead + tuple(shape), _batched(dims)
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{name} must have shape {dims} = {_shape_str(shape)}, got {_shape_str(t.shape)}")
        if t.device != self.device:
            raise ValueError(
                f"{name} is on {t.device} but {self.first_name} is on {self.device}: "
                "every tensor of the call must be on one device"
            )
        _check_contiguous(name, t)


def _batched(dims: str) -> str:
    return "[S, " + dims[1:]


def _check_is_tensor(name: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")


def _check_contiguous(name: str, t: Tensor) -> None:
    if not t.is_contiguous():
        raise ValueError(f"{name} must be contiguous (inputs are never copied implicitly: pass {name}.contiguous())")


# ---- hyperparameters and modes -----------------------------------------------------------------------
# Each check returns the value as a Python float (what the custom ops take): any real scalar is accepted
# (int, float, NumPy scalars, 0-d real tensors), bool is not.
def _real(value: object) -> Optional[float]:
    """`value` as a float, or None when it is not a real scalar."""
    if type(value) is float or type(value) is int:  # the common case first (and what torch.compile sees)
        return float(value)
    if isinstance(value, bool) or (hasattr(value, "dtype") and str(value.dtype) == "bool"):
        return None
    if isinstance(value, numbers.Real):  # NumPy scalars register as numbers.Real
        return float(value)
    if isinstance(value, Tensor) and value.dim() == 0 and not value.is_complex() and value.dtype != torch.bool:
        return float(value.item())
    return None


def check_temperatures(alpha: float, beta: float) -> tuple[float, float]:
    values = []
    for name, value in (("alpha", alpha), ("beta", beta)):
        x = _real(value)
        if x is None or not math.isfinite(x) or x < 0:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        values.append(x)
    alpha_f, beta_f = values
    tau = alpha_f + beta_f
    if not tau > 0:
        raise ValueError(f"alpha + beta must be > 0 (tau = alpha + beta is a temperature), got {alpha} + {beta}")
    if not (math.isfinite(tau) and math.isfinite(1.0 / tau)):
        raise ValueError(
            f"alpha + beta must be finite with a finite 1 / (alpha + beta) (tau = alpha + beta), got {alpha} + {beta}"
        )
    return alpha_f, beta_f


def check_unit_interval(name: str, value: float) -> float:
    x = _real(value)
    if x is None or not 0.0 <= x <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return x


def check_clip(name: str, value: float) -> float:
    x = _real(value)
    if x is None or math.isnan(x) or x == -math.inf:
        raise ValueError(f"{name} must be a number > -inf (inf disables the clip), got {value!r}")
    return x


def check_mode(name: str, value: str, allowed: Sequence[str]) -> int:
    """The index of `value` in `allowed` (the kernels' enum value)."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {tuple(allowed)}, got {value!r}")
    return list(allowed).index(value)


# ---- status decoding -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RowNames:
    """The argument names an op uses for the row roles of the error messages."""

    logits: str = "logits"
    log_mu: str = "log_mu"
    q: str = "q_local"
    avail: str = "avail"
    actions: str = "actions"


class ShapeOnly:
    """A tensor's shape without its values: what the deferred status check (_status.py) keeps of a call,
    whose tensors later calls may have freed or overwritten by the time the status is read."""

    def __init__(self, shape: Sequence[int]):
        self.shape = tuple(shape)

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)


def _item(t: Tensor, index: tuple) -> object:
    return t[index].item()


def _equals(t: "Tensor | ShapeOnly", index: tuple) -> str:
    """ " = value" of t[index]; "" when only the shape is known."""
    return "" if isinstance(t, ShapeOnly) else f" = {_item(t, index)}"


def _unravel(flat: int, shape: Sequence[int]) -> tuple[int, ...]:
    index = []
    for size in reversed(tuple(shape)):
        flat, rest = divmod(flat, int(size))
        index.append(rest)
    return tuple(reversed(index))


def _at(index: Sequence[object]) -> str:
    return ", ".join(str(i) for i in index)


def decode_status(status: int, names: RowNames, tensors: dict[str, Optional[Tensor]]) -> Optional[ValueError]:
    """The ValueError of a packed kernel status (None when it is STATUS_OK).

    `tensors` maps argument names to the call's tensors (read here, on the error path only), or to their
    ShapeOnly (the deferred check: the message then names the argument and index without the value).
    Indices are named in the argument's own shape: [b, i], or [s, b, i] with a leading problem dimension."""
    if status == STATUS_OK:
        return None
    code = status & ((1 << CODE_BITS) - 1)
    index = status >> CODE_BITS
    rows = _rows(names, tensors)  # a [..., B, N] tensor of the call: flat row index -> (..., b, i)
    n = rows.shape[-1]
    row = _unravel(index, rows.shape)
    sample = row[:-1]
    if code == StatusCode.ORDER_NOT_PERMUTATION:
        order = tensors["order"]
        if isinstance(order, ShapeOnly):
            every = " in every row" if order.dim() == 2 else ""
            return ValueError(f"order must be a permutation of 0..{n - 1}{every}")
        if order.dim() == 2:
            s = next(s for s in range(order.shape[0]) if not _is_permutation(order[s]))
            return ValueError(f"order[{s}] must be a permutation of 0..{n - 1}, got {order[s].tolist()}")
        return ValueError(f"order must be a permutation of 0..{n - 1}, got {order.tolist()}")
    if code == StatusCode.DONE_NOT_BINARY:
        return ValueError(f"done[{_at(sample)}]{_equals(tensors['done'], sample)} must be 0 or 1")
    if code == StatusCode.REWARD_NON_FINITE:
        return ValueError(f"reward[{_at(sample)}]{_equals(tensors['reward'], sample)} is not finite")
    if code == StatusCode.Q_NEXT_NON_FINITE:
        return ValueError(
            f"q_next[{_at(sample)}]{_equals(tensors['q_next'], sample)} is not finite (done[{_at(sample)}] is 0)"
        )
    if code == StatusCode.NO_AVAILABLE_ACTION:
        return ValueError(f"{names.avail}[{_at(row)}] has no available action")
    if code == StatusCode.ACTION_OUT_OF_RANGE:
        n_actions = tensors[names.avail].shape[-1]
        return ValueError(
            f"{names.actions}[{_at(row)}]{_equals(tensors[names.actions], row)} is out of range [0, {n_actions})"
        )
    if code == StatusCode.ACTION_UNAVAILABLE:
        actions = tensors[names.actions]
        if isinstance(actions, ShapeOnly):
            return ValueError(f"{names.actions}[{_at(row)}] is not available (its entry of {names.avail} is False)")
        action = _item(actions, row)
        return ValueError(
            f"{names.actions}[{_at(row)}] = {action} is not available ({names.avail}[{_at(row)}, {action}] is False)"
        )
    if code in (StatusCode.LOGITS_NON_FINITE, StatusCode.LOG_MU_NON_FINITE, StatusCode.Q_NON_FINITE):
        name = {
            StatusCode.LOGITS_NON_FINITE: names.logits,
            StatusCode.LOG_MU_NON_FINITE: names.log_mu,
            StatusCode.Q_NON_FINITE: names.q,
        }[code]
        return ValueError(f"{name}[{_at(row)}] has a non-finite value at an available action")
    if code == StatusCode.UPDATED_LOG_PROB_INVALID:
        value = _equals(tensors["updated_log_probs"], row)
        return ValueError(f"updated_log_probs[{_at(row)}]{value} is not a log-probability (finite and <= 0)")
    if code == StatusCode.LOG_RHO_INVALID:
        return ValueError(f"log_rho[{_at(row)}]{_equals(tensors['log_rho'], row)} must be finite or -inf")
    if code == StatusCode.NO_POSITIVE_WEIGHT:
        log_rho = tensors["log_rho"]
        column = _unravel(index - log_rho.numel(), tuple(log_rho.shape[:-2]) + (n,))
        return ValueError(
            f"log_rho[{_at(column[:-1] + (':',) + column[-1:])}] has no positive weight (every entry is -inf)"
        )
    if code == StatusCode.UNIFORM_INVALID:
        uniforms = tensors["uniforms"]
        draw = row[:-2] + (row[-2] if uniforms.shape[-2] > 1 else 0, row[-1])
        return ValueError(f"uniforms[{_at(draw)}]{_equals(uniforms, draw)} must be in [0, 1)")
    return ValueError(f"invalid input (kernel status {status}: code {code}, index {index})")


def _rows(names: RowNames, tensors: dict[str, Optional[Tensor]]) -> Tensor:
    for key in (names.actions, "log_rho"):
        t = tensors.get(key)
        if t is not None:
            return t
    raise KeyError("no [B, N] tensor to decode the status with")


def _is_permutation(order: Tensor) -> bool:
    n = order.numel()
    return bool(((order >= 0) & (order < n)).all()) and torch.unique(order).numel() == n


def raise_for_status(status: int, names: RowNames, tensors: dict[str, Optional[Tensor]]) -> None:
    error = decode_status(status, names, tensors)
    if error is not None:
        raise error


# ---- the same status from torch ops (reference fallback) ------------------------------------------------
def first_status(codes: Tensor, flat_index: Tensor) -> int:
    """Smallest packed (index, code) over the entries with a non-zero code, or STATUS_OK."""
    bad = codes != 0
    if not bool(bad.any()):
        return STATUS_OK
    packed = (flat_index[bad] << CODE_BITS) | codes[bad]
    return int(packed.min())


def row_codes(avail: Tensor, actions: Tensor, checked: Sequence[tuple[int, Tensor]]) -> Tensor:
    """Per-row error code [B, N] (0 when valid), in the kernels' order of checks.

    `checked` lists (code, values [B, N, A]) whose available entries must be finite."""
    n_actions = avail.shape[-1]
    out_of_range = (actions < 0) | (actions >= n_actions)
    taken = avail.gather(-1, actions.clamp(0, n_actions - 1).unsqueeze(-1)).squeeze(-1)
    codes = torch.zeros_like(actions)
    # Assign from the last check to the first so that the first failing check wins.
    for code, values in reversed(list(checked)):
        codes = torch.where((avail & ~torch.isfinite(values)).any(-1), code, codes)
    codes = torch.where(~taken, StatusCode.ACTION_UNAVAILABLE, codes)
    codes = torch.where(out_of_range, StatusCode.ACTION_OUT_OF_RANGE, codes)
    codes = torch.where(~avail.any(-1), StatusCode.NO_AVAILABLE_ACTION, codes)
    return codes


def rows_status(codes: Tensor) -> int:
    flat = torch.arange(codes.numel(), device=codes.device).view_as(codes)
    return first_status(codes, flat)


def order_status(order: Tensor) -> int:
    """order [N] or [S, N]: every row a permutation."""
    valid = all(_is_permutation(row) for row in order.reshape(-1, order.shape[-1]))
    return STATUS_OK if valid else StatusCode.ORDER_NOT_PERMUTATION  # index 0
