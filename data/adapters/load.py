"""Dispatch an adapter task to its loader, with a per-process cache keyed by the config's values."""

from __future__ import annotations

import functools
import json

from data.adapters.arrays import DatasetArrays
from data.adapters.config import (
    AdapterConfig,
    HFConfig,
    ImageFolderConfig,
    PluginConfig,
    TabularConfig,
    parse_adapter_config,
)
from data.bundle import TaskBundle


def load_arrays(cfg: AdapterConfig) -> DatasetArrays:
    """Read the data of an adapter task (every check that needs the files happens here)."""
    if isinstance(cfg, ImageFolderConfig):
        from data.adapters.imagefolder import load_image_folder

        return load_image_folder(cfg)
    if isinstance(cfg, TabularConfig):
        from data.adapters.tabular import load_table

        return load_table(cfg)
    if isinstance(cfg, HFConfig):
        from data.adapters.hf import load_hf

        return load_hf(cfg)
    assert isinstance(cfg, PluginConfig)
    from data.adapters.plugin import load_plugin

    return load_plugin(cfg)


def adapter_task(cfg: AdapterConfig, seed: int, site: tuple[int, int] | None = None) -> TaskBundle:
    """The TaskBundle of an adapter task (cached per process: Ray actors call this per message)."""
    return _cached(json.dumps(cfg.to_dict(), sort_keys=True, default=list), int(seed), site)


@functools.lru_cache(maxsize=8)
def _cached(key: str, seed: int, site: tuple[int, int] | None) -> TaskBundle:
    from data.adapters.bundle import bundle_of

    from data.local_split import with_local_tests

    cfg = parse_adapter_config(json.loads(key))
    bundle = bundle_of(cfg, load_arrays(cfg), seed, site=site)
    return bundle if site is not None else with_local_tests(bundle, cfg.local_test_fraction, seed)
