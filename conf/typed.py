"""Typed config sections: a frozen dataclass parsed and validated once from a YAML section.

A method declares its hyperparameters as a frozen dataclass deriving from `Section`; the YAML file
(`conf/strategy/<name>.yaml`) holds the defaults. `Parsed.parse(section, prefix="strategy")` checks
unknown keys, missing keys, types (from the annotations) and ranges (`field(metadata=between(...))`
or a `check()` method) and raises `ConfigError` naming the key and the fix.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeVar, Union

from conf.errors import ConfigError

S = TypeVar("S", bound="Section")

_NONE = type(None)


def between(lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            hi_open: bool = False) -> dict[str, Any]:
    """Field metadata for a numeric range: ``field(metadata=between(0, 1, lo_open=True))``."""
    return {"range": (lo, hi, lo_open, hi_open)}


@dataclasses.dataclass(frozen=True)
class Section:
    """Base of typed config sections (frozen dataclasses whose fields are the section's keys).

    Class variables a subclass may set:
    - ``IGNORED``: keys of the section that belong to corolla, not to this dataclass (``name``...);
    - ``EXTRA``: the name of a ``dict`` field that collects every key the dataclass does not
      declare (e.g. GGEUR's base-strategy keys); without it an unknown key is an error.
    """

    IGNORED: ClassVar[frozenset[str]] = frozenset({"name", "client"})
    EXTRA: ClassVar[str | None] = None

    @classmethod
    def parse(cls: type[S], section: Mapping[str, Any], *, prefix: str = "strategy") -> S:
        """The validated section; raises ConfigError naming `<prefix>.<key>` and the fix."""
        if not isinstance(section, Mapping):
            raise ConfigError(f"{prefix}: expected a mapping of keys, got {type(section).__name__}",
                              key=prefix)
        hints, fields = _schema(cls)
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, raw in section.items():
            if key in cls.IGNORED:
                continue
            if key not in fields:
                if cls.EXTRA:
                    extra[key] = raw
                    continue
                raise ConfigError(
                    f"{prefix}.{key} is not a setting of {cls.__name__}; valid keys: "
                    f"{', '.join(sorted(fields))}", key=f"{prefix}.{key}")
            values[key] = coerce(raw, hints[key], f"{prefix}.{key}")
            _check_range(fields[key], values[key], f"{prefix}.{key}")
        missing = [name for name, f in fields.items() if name not in values and _required(f)]
        if missing:
            raise ConfigError(
                f"{prefix} lacks {', '.join(prefix + '.' + m for m in missing)}; add "
                f"{'it' if len(missing) == 1 else 'them'} to the section's YAML file", key=f"{prefix}.{missing[0]}")
        if cls.EXTRA:
            values[cls.EXTRA] = extra
        parsed = cls(**values)
        parsed.check(prefix)
        return parsed

    def check(self, prefix: str) -> None:
        """Cross-field checks; raise ConfigError (see `fail`). Single-field ranges use `between`."""

    def fail(self, prefix: str, key: str, why: str) -> typing.NoReturn:
        """Raise the ConfigError for one key: ``strategy.top_k=0 must be >= 1``."""
        raise ConfigError(f"{prefix}.{key}={getattr(self, key, None)!r} {why}", key=f"{prefix}.{key}")

    def to_dict(self) -> dict[str, Any]:
        """The section as plain values (what `parse` takes back)."""
        out = dataclasses.asdict(self)
        if self.EXTRA:
            out.update(out.pop(self.EXTRA))
        return out


@functools.cache
def _schema(cls: type[Section]) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]]]:
    """A section class's resolved annotations and fields (by key), computed once per class.

    Clients parse their sections on every message; resolving string annotations each time was a
    measurable part of a client-round on tiny work.
    """
    fields = {f.name: f for f in dataclasses.fields(cls) if f.name != cls.EXTRA}
    return typing.get_type_hints(cls), fields


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _check_range(field: dataclasses.Field[Any], value: Any, key: str) -> None:
    bounds = field.metadata.get("range")
    if bounds is None or value is None or isinstance(value, (str, bool)):
        return
    lo, hi, lo_open, hi_open = bounds
    numbers = value if isinstance(value, (list, tuple)) else [value]
    for number in numbers:
        if not isinstance(number, (int, float)):
            continue
        low_bad = lo is not None and (number <= lo if lo_open else number < lo)
        high_bad = hi is not None and (number >= hi if hi_open else number > hi)
        if low_bad or high_bad:
            left = "(" if lo_open else "["
            right = ")" if hi_open else "]"
            span = f"{left}{'-inf' if lo is None else lo}, {'inf' if hi is None else hi}{right}"
            raise ConfigError(f"{key}={value!r} is out of range: it must lie in {span}", key=key)


def coerce(raw: Any, hint: Any, key: str) -> Any:
    """`raw` as the annotated type, or ConfigError naming `key`, what was expected and what came."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return raw
    if origin in (Union, types.UnionType):
        if raw is None and _NONE in args:
            return None
        errors = []
        for arg in (a for a in args if a is not _NONE):
            try:
                return coerce(raw, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{key}: expected {_describe(hint)}, got {raw!r}", key=key)
    if origin is Literal:
        if raw in args and not (isinstance(raw, bool) and not any(a is raw for a in args)):
            return raw
        raise ConfigError(f"{key}={raw!r} is not a valid choice; valid choices: "
                          f"{', '.join(map(repr, args))}", key=key)
    if origin in (list, tuple):
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {raw!r}", key=key)
        inner = args[0] if args else Any
        items = [coerce(item, inner, f"{key}[{i}]") for i, item in enumerate(raw)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {raw!r}", key=key)
        return dict(raw)
    if hint is bool:
        if isinstance(raw, bool):
            return raw
        raise ConfigError(f"{key}: expected true or false, got {raw!r}", key=key)
    if hint is int:
        if isinstance(raw, bool) or not _is_int(raw):
            raise ConfigError(f"{key}: expected an integer, got {raw!r}", key=key)
        return int(raw)
    if hint is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{key}: expected a number, got {raw!r}", key=key)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {raw!r}", key=key) from None
        if math.isnan(value):
            raise ConfigError(f"{key}: expected a number, got NaN", key=key)
        return value
    if hint is str:
        if isinstance(raw, str):
            return raw
        raise ConfigError(f"{key}: expected a string, got {raw!r}", key=key)
    return raw


def _is_int(raw: Any) -> bool:
    if isinstance(raw, int):
        return True
    if isinstance(raw, float):
        return raw.is_integer()
    if isinstance(raw, str):
        try:
            int(raw)
        except ValueError:
            return False
        return True
    return False


def _describe(hint: Any) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    parts = []
    for arg in typing.get_args(hint):
        if arg is _NONE:
            parts.append("null")
        elif typing.get_origin(arg) is Literal:
            parts.append(" or ".join(map(repr, typing.get_args(arg))))
        elif typing.get_origin(arg) in (list, tuple):
            parts.append("a list")
        elif typing.get_origin(arg) in (dict, Mapping) or arg in (dict, Mapping):
            parts.append("a mapping")
        else:
            parts.append(names.get(arg, getattr(arg, "__name__", str(arg))))
    return " or ".join(parts)
