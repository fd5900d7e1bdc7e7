"""Deployment: a SuperNode's own data (--data) and the task's shape for a server that holds none."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from conf.errors import ConfigError
from data.adapters.config import AdapterConfig, HFConfig, ImageFolderConfig, path_key, source_path
from data.bundle import Store, TaskBundle, TaskData


def site_task(task_cfg: Mapping[str, Any], path: str, *, partition_id: int, num_partitions: int,
              seed: int) -> TaskBundle:
    """The task as one site sees it: its own data at ``path``, all of it partition ``partition_id``."""
    from data.adapters.load import adapter_task
    from data.config import parse_task_config

    cfg = parse_task_config(task_cfg)
    if not isinstance(cfg, AdapterConfig):
        raise ConfigError(f"a SuperNode's --data needs a task that reads your data (task=imagefolder, "
                          f"tabular, hf or plugin), but the run's task is {task_cfg.get('name')!r}",
                          key="task.name")
    field = "data_dir" if isinstance(cfg, ImageFolderConfig) else "path"
    cfg = dataclasses.replace(cfg, **{field: str(path)})
    return adapter_task(cfg, seed, site=(int(partition_id), int(num_partitions)))


def holds_no_data(cfg: AdapterConfig) -> bool:
    """True when the config names no data: the server of a deployment whose sites hold it."""
    return source_path(cfg) is None and not (getattr(cfg, "options", None))


def task_spec(cfg: AdapterConfig) -> TaskBundle:
    """A bundle with the task's shape and classes but no samples (a server that holds no data).

    Image tasks need task.classes, task.channels and task.image_size in the config.
    """
    if not isinstance(cfg, (ImageFolderConfig, HFConfig)) or (isinstance(cfg, HFConfig) and not cfg.image_column):
        raise ConfigError(f"{path_key(cfg)} is not set: a server without data knows the input shape of "
                          "image tasks only (task=imagefolder or task=hf with images); give the server "
                          f"a copy of the data ({path_key(cfg)}=...)", key=path_key(cfg))
    missing = [k for k in ("classes", "channels", "image_size") if getattr(cfg, k) is None]
    if missing:
        raise ConfigError(f"{path_key(cfg)} is not set, so the server holds no data and cannot read the "
                          f"task's shape from files: set {', '.join('task.' + k for k in missing)} (the "
                          "sites read the same config)", key=f"task.{missing[0]}")
    assert cfg.classes is not None and cfg.channels is not None and cfg.image_size is not None
    shape = (cfg.channels, cfg.image_size, cfg.image_size)
    empty = np.zeros(0, dtype=np.int64)
    store = Store(np.zeros((0, *shape), dtype=np.uint8), empty)
    n = len(cfg.classes)
    return TaskBundle(
        name=cfg.name, input_shape=shape, num_classes=n, num_clients=cfg.num_clients, num_tasks=1,
        scenario="single", task_classes=[list(range(n))], domains=[], train_store=store, test_store=store,
        tasks=[TaskData([empty] * cfg.num_clients, empty, empty)], normalisation=None,
    )
