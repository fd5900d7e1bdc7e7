"""task=plugin: a dataset loader registered under the `corolla.datasets` entry-point group."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any, Callable

from conf.errors import ConfigError
from data.adapters.arrays import DatasetArrays
from data.adapters.config import PluginConfig

ENTRY_POINT_GROUP = "corolla.datasets"
KEY = "task.loader"


def available_loaders() -> dict[str, str]:
    """Registered loader names mapped to their `module:function` targets."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def get_loader(name: str) -> Callable[..., Any]:
    """The loader function registered as ``name``; ConfigError naming the key when it is missing."""
    targets = available_loaders()
    if name not in targets:
        known = ", ".join(sorted(targets)) or "none is installed"
        raise ConfigError(f"task.loader={name!r} is not registered under the {ENTRY_POINT_GROUP} "
                          f"entry-point group (registered: {known}); install the package that "
                          "provides it", key=KEY)
    module, _, attr = targets[name].partition(":")
    try:
        loader = getattr(importlib.import_module(module), attr)
    except Exception as err:
        raise ConfigError(f"task.loader={name!r}: cannot import {targets[name]} ({type(err).__name__}: "
                          f"{err})", key=KEY) from None
    if not callable(loader):
        raise ConfigError(f"task.loader={name!r}: {targets[name]} is not a function", key=KEY)
    return loader


def load_plugin(cfg: PluginConfig) -> DatasetArrays:
    """Call the loader as ``load(path=task.path, options=task.options)``; it returns DatasetArrays."""
    assert cfg.loader is not None
    loader = get_loader(cfg.loader)
    try:
        arrays = loader(path=cfg.path, options=dict(cfg.options))
    except ConfigError:
        raise
    except Exception as err:
        raise ConfigError(f"task.loader={cfg.loader!r} failed: {type(err).__name__}: {err}",
                          key=KEY) from err
    if not isinstance(arrays, DatasetArrays):
        raise ConfigError(f"task.loader={cfg.loader!r} returned {type(arrays).__name__}, not "
                          "data.DatasetArrays", key=KEY)
    return arrays
