"""load_task and check_task_config: from a task config to a TaskBundle (cached per process)."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from data.build import PARTITION_SEED, VAL_SEED, carve_val, derive_seed, partition_pool
from data.bundle import Store, TaskBundle, TaskData
from data.catalogue import (
    ensure_installed,
    load_source,
    source_normalisation,
    train_labels,
    train_size,
)
from data.adapters.config import AdapterConfig, path_key
from data.adapters.load import adapter_task
from data.adapters.site import holds_no_data, site_task, task_spec
from data.captioned import CaptionedConfig, build_captioned
from data.config import DIGIT_DOMAINS, NUM_CLASSES, TaskConfig, parse_task_config
from data.continual import build_continual, split_classes
from data.domains import DOMAINS, build_domains
from data.encoders import require_effnet
from data.idx import read_idx
from data.local_split import with_local_tests
from data.errors import ConfigError
from data.features import NO_FEATURES, encode_cached
from data.text_encoders import require_minilm


def load_task(task_cfg: Mapping[str, Any], *, seed: int) -> TaskBundle:
    """Build the task described by ``task_cfg`` for a run seed.

    Deterministic in (cfg, seed), so every process computes the same partition on its own; the
    test split does not depend on the seed. Cached per process: Ray actors call this often.
    """
    cfg = parse_task_config(task_cfg)
    if isinstance(cfg, AdapterConfig):
        return adapter_task(cfg, int(seed))
    return _load(cfg, int(seed))


def server_task(task_cfg: Mapping[str, Any], *, seed: int) -> TaskBundle:
    """The server's view of the task: load_task's, or only its shape when the config names no data
    (a deployment whose sites hold the data, evaluate.where=clients)."""
    cfg = parse_task_config(task_cfg)
    if isinstance(cfg, AdapterConfig) and holds_no_data(cfg):
        return task_spec(cfg)
    return load_task(task_cfg, seed=seed)


def load_site_task(task_cfg: Mapping[str, Any], path: str, *, partition_id: int, num_partitions: int,
                   seed: int) -> TaskBundle:
    """A deployed site's task: its own data at ``path`` (SuperNode --data) as partition ``partition_id``."""
    return site_task(task_cfg, path, partition_id=partition_id, num_partitions=num_partitions, seed=seed)


def check_client_data(task_cfg: Mapping[str, Any]) -> None:
    """Refuse an adapter task without data where the clients read the run's config (simulation)."""
    cfg = parse_task_config(task_cfg)
    if isinstance(cfg, AdapterConfig) and holds_no_data(cfg):
        key = path_key(cfg)
        raise ConfigError(f"{key} is not set: the clients of a simulation read their data from the run's "
                          f"config; set {key}=<your data>", key=key)


def check_task_config(task_cfg: Mapping[str, Any], *, seed: int = 0) -> None:
    """Validate a task config before any engine starts.

    Raises ConfigError naming the key (unknown task, bad values, more clients than samples) or
    DatasetNotInstalled naming the fix. Reads only labels or file headers, never the images of
    Fashion-MNIST; an adapter task (your own data) is read and checked in full, partitions included.
    """
    cfg = parse_task_config(task_cfg)
    if isinstance(cfg, AdapterConfig):
        if holds_no_data(cfg):  # a server whose sites hold the data: the shape must be in the config
            task_spec(cfg)
        else:
            adapter_task(cfg, int(seed))
        return
    if isinstance(cfg, CaptionedConfig):  # generated; sizes checked on parse
        if cfg.image_features != NO_FEATURES:
            require_effnet()
        if cfg.text_features != NO_FEATURES:
            require_minilm()
        return
    sources = list(DOMAINS.values()) if cfg.dataset == DIGIT_DOMAINS else [cfg.dataset]
    for source in sources:
        ensure_installed(source, cfg.data_dir)
    if cfg.data_dir is not None:  # the user's own copy of the files: read it all, here, not in Ray
        check_user_files(cfg.dataset, cfg.data_dir)
    clients = cfg.num_clients // len(sources)
    per_client = {"shard": cfg.shards_per_client, "dirichlet": cfg.min_partition_size or 1}
    need = clients * per_client.get(cfg.partition, 1)
    for unit, n in _partitioned_sizes(cfg, sources).items():
        pool = n - math.ceil(cfg.val_fraction * n)
        if pool < need:
            raise ConfigError(
                f"task.num_clients: {clients} client(s) on {unit} need at least {need} training "
                f"samples (partition={cfg.partition}), but it has only {pool} after the "
                "validation carve; lower task.num_clients"
            )


def check_user_files(dataset: str, data_dir: str) -> None:
    """Read a user's copy of a source's files in full; ConfigError naming the file and the key."""
    from data.sources import fmnist_paths

    for part, path in fmnist_paths(data_dir).items():
        try:
            array = read_idx(path)
        except (OSError, EOFError, ValueError) as err:
            raise ConfigError(f"{path}: cannot read this {dataset} file ({type(err).__name__}: {err}); "
                              "replace it (task.data_dir)", key="task.data_dir") from None
        if part.startswith("y") and len(array) and (array.min() < 0 or array.max() >= NUM_CLASSES):
            raise ConfigError(f"{path}: labels {sorted(set(array[array >= NUM_CLASSES].tolist()))[:5]} lie "
                              f"outside {dataset}'s class set 0..{NUM_CLASSES - 1} (task.data_dir); for "
                              "other classes use task=imagefolder or task=tabular", key="task.data_dir")
    try:
        load_source(dataset, data_dir)
    except ValueError as err:
        raise ConfigError(f"{data_dir}: {err} (task.data_dir)", key="task.data_dir") from None


def _partitioned_sizes(cfg: TaskConfig, sources: list[str]) -> dict[str, int]:
    """Sizes of the sets that are partitioned among clients (per domain, per task or whole)."""
    if cfg.continual is not None and cfg.continual.kind == "split":
        counts = np.bincount(train_labels(cfg.dataset, cfg.data_dir), minlength=NUM_CLASSES)
        return {
            f"{cfg.dataset} task {t} (classes {group})": int(counts[group].sum())
            for t, group in enumerate(split_classes(cfg.continual.num_tasks))
        }
    return {source: train_size(source, cfg.data_dir) for source in sources}


@functools.lru_cache(maxsize=8)
def _load(cfg: TaskConfig | CaptionedConfig, seed: int) -> TaskBundle:
    if isinstance(cfg, CaptionedConfig):
        return build_captioned(cfg, seed)
    return with_local_tests(_build(cfg, seed), cfg.local_test_fraction, seed)


def _build(cfg: TaskConfig, seed: int) -> TaskBundle:
    if cfg.dataset == DIGIT_DOMAINS:
        bundle = build_domains(cfg, seed)
    elif cfg.continual is not None:
        bundle = build_continual(cfg, seed)
    else:
        bundle = build_single(cfg, seed)
    return bundle if cfg.features == NO_FEATURES else with_features(bundle, cfg)


def build_single(cfg: TaskConfig, seed: int) -> TaskBundle:
    """One dataset, one task: validation carved from train, the rest partitioned."""
    source = load_source(cfg.dataset, cfg.data_dir)
    pool, val = carve_val(source.y_train, cfg.val_fraction, derive_seed(seed, VAL_SEED))
    clients = partition_pool(
        pool, source.y_train, cfg, cfg.num_clients, derive_seed(seed, PARTITION_SEED)
    )
    return TaskBundle(
        name=cfg.name,
        input_shape=source.image_shape,
        num_classes=source.num_classes,
        num_clients=cfg.num_clients,
        num_tasks=1,
        scenario="single",
        task_classes=[list(range(source.num_classes))],
        domains=[],
        train_store=Store(source.x_train, source.y_train),
        test_store=Store(source.x_test, source.y_test),
        tasks=[TaskData(clients, val, np.arange(len(source.y_test)))],
        normalisation=source_normalisation(cfg.dataset, cfg.data_dir),
    )


def with_features(bundle: TaskBundle, cfg: TaskConfig) -> TaskBundle:
    """The same bundle with every image replaced by its (disk-cached) encoder features."""
    train = encode_cached(
        bundle.train_store.x, dataset=f"{cfg.dataset}-train", encoder=cfg.features
    )
    test = encode_cached(bundle.test_store.x, dataset=f"{cfg.dataset}-test", encoder=cfg.features)
    return dataclasses.replace(
        bundle,
        input_shape=(int(train.shape[1]),),
        train_store=Store(train, bundle.train_store.y),
        test_store=Store(test, bundle.test_store.y),
        normalisation=None,
    )
