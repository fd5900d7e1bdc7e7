"""Errors raised by the data package."""


class DatasetNotInstalled(RuntimeError):
    """A dataset's files or package are missing; the message names the command that installs it."""


class ConfigError(ValueError):
    """A task config is invalid; the message names the offending key and its valid choices."""
