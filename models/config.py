"""Typed model configs: a dataclass per architecture, filled and checked from a plain mapping."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

C = TypeVar("C")


def parse_config(cls: type[C], model_cfg: Mapping[str, Any]) -> C:
    """Build `cls` from `model_cfg` (minus `name`), rejecting unknown keys and ill-typed values.

    A field's default decides its accepted type: bool, int, float, str, or a tuple of ints
    (given as a list). Value checks beyond the type live in the dataclass's `__post_init__`.
    """
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(model_cfg) - set(fields) - {"name"})
    if unknown:
        raise ValueError(
            f"model.{unknown[0]} is not a field of model '{model_cfg.get('name')}'; "
            f"its fields are: {', '.join(sorted(fields))}"
        )
    values = {}
    for key, value in model_cfg.items():
        if key != "name":
            values[key] = _coerce(key, value, _default(fields[key]))
    return cls(**values)


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory()  # type: ignore[misc]


def _coerce(key: str, value: Any, default: Any) -> Any:
    # bool before int: bool is a subclass of int, and `bias: 1` is more likely a typo than intent.
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"model.{key} must be true or false, got {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ValueError(f"model.{key} must be an integer, got {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ValueError(f"model.{key} must be a number, got {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ValueError(f"model.{key} must be a string, got {value!r}")
    if isinstance(default, tuple):
        if (isinstance(value, Sequence) and not isinstance(value, str)
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value)):
            return tuple(value)
        raise ValueError(f"model.{key} must be a list of integers, got {value!r}")
    raise TypeError(f"unsupported default type for model.{key}: {type(default).__name__}")


def check_positive(key: str, values: int | Sequence[int], *, allow_empty: bool = True) -> None:
    """Raise ValueError unless `values` (one int or a list) are all >= 1."""
    seq = [values] if isinstance(values, int) else list(values)
    if not seq and not allow_empty:
        raise ValueError(f"model.{key} must not be empty")
    if any(v < 1 for v in seq):
        shown = values if isinstance(values, int) else list(values)
        raise ValueError(f"model.{key} must be positive, got {shown}")


def check_choice(key: str, value: str, choices: Sequence[str]) -> None:
    """Raise ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"model.{key} must be one of {', '.join(choices)}; got {value!r}")
