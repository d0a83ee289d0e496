"""Typed option dataclasses: the type checks and `--set` text parsing that `inspo.config.TrainConfig`
and the option sets of the environments and algorithms share.

An environment family or an algorithm with settings of its own declares them as a small frozen
dataclass beside its code (`inspo.envs.matrix.XorOptions`, `inspo.learners.cfcql.CfcqlOptions`, ...),
with a `validate(name)` method for the checks beyond the field types. A run's config holds one
instance for its environment and one for its algorithm; on the command line and in config files
their fields are `SECTION.FIELD` (`xor.variant`, `cfcql.alpha`). This module knows none of them.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class NoOptions:
    """The option set of an environment or algorithm without settings of its own."""

    def validate(self, name: str) -> None:
        pass


def is_tuple_type(hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin is typing.Union:
        return any(is_tuple_type(a) for a in typing.get_args(hint))
    return origin is tuple or hint is tuple


def check_type(name: str, value: Any, hint: Any) -> None:
    """value matches the field's annotation (ints pass as floats, bools never as numbers); floats finite.
    `name` is the field as the error names it (config.eta, config.xor.variant)."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union:  # Optional[X]
        if value is None:
            return
        hint = next(a for a in args if a is not type(None))
        args = typing.get_args(hint)
    if is_tuple_type(hint):
        if not isinstance(value, tuple):
            raise ValueError(f"{name} must be a tuple, got {value!r}")
        for item in value:
            check_type(name, item, args[0])
        return
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, hint)
    if not ok:
        what = "a finite float" if hint is float else hint.__name__
        raise ValueError(f"{name} must be {what}, got {value!r} ({type(value).__name__})")


def parse_text(name: str, text: str, hint: Any) -> Any:
    """The value of `--set name=text` for a field annotated `hint`."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and type(None) in args:
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
    try:
        if is_tuple_type(hint):
            (item_type, _) = typing.get_args(hint)
            return tuple(item_type(x) for x in text.replace("(", "").replace(")", "").split(",") if x.strip())
        if hint is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(text)
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        return hint(text)
    except ValueError as error:
        raise ValueError(f"config field {name!r} expects {hint}, cannot parse {text!r}") from error


def field_hints(cls: type) -> dict[str, Any]:
    """{field name: annotation} of an option dataclass."""
    hints = typing.get_type_hints(cls)
    return {item.name: hints[item.name] for item in dataclasses.fields(cls)}


def build_options(cls: type, values: Mapping[str, Any], name: str) -> Any:
    """An instance of option dataclass `cls` from {field: value} (lists become tuples), type-checked and
    validated; `name` ("config.xor") prefixes the fields in every error."""
    hints = field_hints(cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        known = ", ".join(f"{name}.{field}" for field in hints) or "none"
        raise ValueError(f"unknown option {name}.{unknown[0]}; the options are: {known}")
    fields = {}
    for field, value in values.items():
        if isinstance(value, list) and is_tuple_type(hints[field]):
            value = tuple(value)
        check_type(f"{name}.{field}", value, hints[field])
        fields[field] = value
    options = cls(**fields)
    options.validate(name)
    return options


def check_options(options: Any, cls: type, name: str) -> None:
    """`options` is a valid instance of option dataclass `cls` (a config built by hand may hold another)."""
    if type(options) is not cls:
        raise ValueError(f"{name} must be a {cls.__name__}, got {options!r}")
    for field, hint in field_hints(cls).items():
        check_type(f"{name}.{field}", getattr(options, field), hint)
    options.validate(name)


def one_of(name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
