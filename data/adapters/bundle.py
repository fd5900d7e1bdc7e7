"""From an adapter's DatasetArrays to a TaskBundle: test split, validation carve, client partitions."""

from __future__ import annotations

import contextlib
import io

import numpy as np

from conf.errors import ConfigError
from data.adapters.arrays import DatasetArrays, with_test_split
from data.adapters.config import AdapterConfig, path_key
from data.build import PARTITION_SEED, VAL_SEED, carve_val, derive_seed, partition_pool
from data.bundle import Normalisation, Store, TaskBundle, TaskData

NATURAL = ("column", "folders")


def bundle_of(cfg: AdapterConfig, arrays: DatasetArrays, seed: int, *,
              site: tuple[int, int] | None = None) -> TaskBundle:
    """The task: the arrays checked, split, carved and partitioned per ``cfg`` for a run seed.

    ``site=(partition_id, num_partitions)``: the arrays are one site's own data, all of it that
    client's partition (a deployment's SuperNode with --data).
    """
    key = path_key(cfg)
    arrays.check(key=key, one_class_ok=site is not None)
    if site is not None:
        return _site_bundle(cfg, arrays, seed, site)
    arrays = with_test_split(arrays, cfg.test_fraction)
    pool, val = carve_val(arrays.y_train, cfg.val_fraction, derive_seed(seed, VAL_SEED))
    num_clients = cfg.num_clients
    if cfg.partition in NATURAL:
        clients = _natural(cfg, arrays, pool)
    else:
        clients = partition_pool(pool, arrays.y_train, cfg, num_clients,  # type: ignore[arg-type]
                                 derive_seed(seed, PARTITION_SEED))
    for i, part in enumerate(clients):
        if len(part) == 0:
            raise ConfigError(
                f"{arrays.source}: client {i} of task.num_clients={num_clients} gets no training "
                f"sample (task.partition={cfg.partition}); lower task.num_clients or change "
                "task.partition", key="task.num_clients")
    return _bundle(cfg, arrays, TaskData(clients, val, np.arange(len(arrays.y_test))))  # type: ignore[arg-type]


def _site_bundle(cfg: AdapterConfig, arrays: DatasetArrays, seed: int, site: tuple[int, int]) -> TaskBundle:
    """One site's data, all of it client ``site[0]``'s: its own test split (or a local_test_fraction
    of it) is that client's local test; no validation or global test split (the server has none)."""
    client_id, num_clients = site
    n = len(arrays.y_train)
    clients = [np.zeros(0, dtype=np.int64)] * num_clients
    local = [np.zeros(0, dtype=np.int64)] * num_clients
    if arrays.x_test is not None:
        merged = DatasetArrays(
            x_train=np.concatenate([arrays.x_train, arrays.x_test]),
            y_train=np.concatenate([arrays.y_train, arrays.y_test]),  # type: ignore[list-item]
            classes=arrays.classes, source=arrays.source)
        clients[client_id] = np.arange(n)
        local[client_id] = np.arange(n, len(merged.y_train))
        arrays = merged
    else:
        from data.local_split import with_local_tests

        clients[client_id] = np.arange(n)
        empty = np.zeros(0, dtype=np.int64)
        bundle = _bundle(cfg, arrays, TaskData(clients, empty, empty), num_clients=num_clients)
        return with_local_tests(bundle, cfg.local_test_fraction, seed)
    empty = np.zeros(0, dtype=np.int64)
    return _bundle(cfg, arrays, TaskData(clients, empty, empty, local_tests=local), num_clients=num_clients)


def _bundle(cfg: AdapterConfig, arrays: DatasetArrays, task: TaskData, *,
            num_clients: int | None = None) -> TaskBundle:
    images = arrays.x_train.dtype == np.uint8
    n_classes = len(arrays.classes)
    x_test = arrays.x_test if arrays.x_test is not None else arrays.x_train[:0]
    y_test = arrays.y_test if arrays.y_test is not None else arrays.y_train[:0]
    return TaskBundle(
        name=cfg.name,
        input_shape=tuple(int(d) for d in arrays.x_train.shape[1:]),
        num_classes=n_classes,
        num_clients=num_clients or cfg.num_clients,
        num_tasks=1,
        scenario="single",
        task_classes=[list(range(n_classes))],
        domains=[],
        train_store=Store(arrays.x_train, arrays.y_train),
        test_store=Store(x_test, y_test),
        tasks=[task],
        normalisation=Normalisation.of(arrays.x_train) if images else None,
    )


def _natural(cfg: AdapterConfig, arrays: DatasetArrays, pool: np.ndarray) -> list[np.ndarray]:
    """One client per natural id (a column's value or a client folder), via NaturalIdPartitioner."""
    from datasets import Dataset
    from flwr_datasets.partitioner import NaturalIdPartitioner

    if arrays.groups is None:
        raise ConfigError(f"{arrays.source}: task.partition={cfg.partition} needs a client per sample, "
                          "but the data names none (a loader plugin returns them as `groups`)",
                          key="task.partition")
    ids = np.unique(arrays.groups)
    what = f"task.partition_column={cfg.partition_column}" if cfg.partition == "column" else "client folders"
    if len(ids) != cfg.num_clients:
        raise ConfigError(
            f"{arrays.source}: {what} gives {len(ids)} clients but task.num_clients={cfg.num_clients}; "
            f"set task.num_clients={len(ids)}", key="task.num_clients")
    partitioner = NaturalIdPartitioner(partition_by="group")
    partitioner.dataset = Dataset.from_dict({"group": arrays.groups[pool].tolist(), "idx": pool.tolist()})
    with contextlib.redirect_stderr(io.StringIO()):  # the partitioner's tqdm bar, not ours to show
        by_id = {partitioner.partition_id_to_natural_id[p]: p for p in range(partitioner.num_partitions)}
        rows = {natural_id: partitioner.load_partition(p)["idx"][:] for natural_id, p in by_id.items()}
    parts = []
    for client, natural_id in enumerate(ids):
        if natural_id not in by_id:  # all of its samples went to the test or validation split
            raise ConfigError(
                f"{arrays.source}: client {client} ({what}) has no training sample left after the "
                f"test and validation splits; give it more data or lower task.test_fraction / "
                f"task.val_fraction", key="task.num_clients")
        parts.append(np.sort(np.asarray(rows[natural_id], dtype=np.int64)))
    return parts
