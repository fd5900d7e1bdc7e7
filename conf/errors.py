"""The one config error type: every refusal of a setting names the key and the fix."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config that cannot run; raised before any engine, run directory or data load exists.

    The message names the offending key (``strategy.top_k``, ``num_rounds``, ...) and how to fix it.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


def first_line(text: object) -> str:
    """The first non-empty line of an error text or exception (tracebacks follow it)."""
    for line in str(text).strip().splitlines():
        if line.strip():
            return line.strip()
    return type(text).__name__ if isinstance(text, BaseException) else ""
