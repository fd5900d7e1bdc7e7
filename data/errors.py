"""Errors raised by the data package (its config refusals are conf.errors.ConfigError, re-exported here)."""

from conf.errors import ConfigError

__all__ = ["ConfigError", "DatasetNotInstalled"]


class DatasetNotInstalled(RuntimeError):
    """A dataset's files or package are missing; the message names the command that installs it."""

