"""Checks of `corolla run`'s command line before Hydra makes a run directory or any engine starts."""

from __future__ import annotations

import difflib
import os
import tempfile
from pathlib import Path
from typing import Any

from conf.errors import ConfigError

# Hydra flags after which there is nothing to run (or that change what is composed): no preflight.
_RUNS = {"--multirun", "-m"}


def plan_overrides(argv: list[str]) -> list[list[str]] | None:
    """Each job's overrides (one for a run, one per sweep point with --multirun), or None to skip."""
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in _RUNS for f in flags):
        return None
    overrides = [a for a in argv if not a.startswith("-")]
    if not flags:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [job for batch in BasicSweeper.split_arguments(parsed, max_batch_size=None) for job in batch]


def check_writable(out_dir: str) -> None:
    """Refuse an `out_dir` where run directories cannot be made, naming it and the fix."""
    path = Path(out_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path, prefix=".corolla-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"out_dir={out_dir}: run directories cannot be made there ({err.strerror}); "
                          f"pass out_dir=<a writable directory>", key="out_dir") from None


def composition_error(err: Exception, known: list[str]) -> ConfigError:
    """Hydra's composition error as a ConfigError naming the key (without its `+key` hint)."""
    text = str(err)
    if text.startswith("Could not override '"):
        key = text.split("'")[1]
        parent, _, leaf = key.rpartition(".")
        siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == parent]
        close = difflib.get_close_matches(leaf, siblings, n=1)
        hint = f" (did you mean {parent + '.' if parent else ''}{close[0]}?)" if close else ""
        where = f"the {parent} section" if parent else "corolla's config"
        return ConfigError(f"{key} is not a setting of {where}{hint}; `corolla run --cfg job` prints "
                           f"every setting", key=key)
    return ConfigError(text.splitlines()[0] if text else type(err).__name__)


def known_keys(cfg: dict[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of a composed config."""
    keys = []
    for key, value in cfg.items():
        keys.append(prefix + key)
        if isinstance(value, dict):
            keys += known_keys(value, prefix=f"{prefix}{key}.")
    return keys
