"""Continual task streams: permuted (domain-incremental) and split (task/class-incremental)."""

from __future__ import annotations

import numpy as np

from data.build import PARTITION_SEED, VAL_SEED, carve_val, derive_seed, partition_pool
from data.bundle import Store, TaskBundle, TaskData
from data.catalogue import load_source, source_normalisation
from data.config import NUM_CLASSES, TaskConfig

# Permutations are fixed for everyone: tasks must be identical across runs and seeds.
PERMUTATION_SEED = 20240917


def pixel_permutations(num_tasks: int, num_pixels: int) -> list[np.ndarray]:
    """Task 0 keeps the pixel order; task t >= 1 uses a fixed random permutation of its own."""
    perms = [np.arange(num_pixels)]
    for t in range(1, num_tasks):
        rng = np.random.default_rng(derive_seed(PERMUTATION_SEED, "permutation", t))
        perms.append(rng.permutation(num_pixels))
    return perms


def split_classes(num_tasks: int, num_classes: int = NUM_CLASSES) -> list[list[int]]:
    """Consecutive class groups, one per task: 5 tasks of 10 classes -> {0,1}, {2,3}, ..."""
    return [group.tolist() for group in np.array_split(np.arange(num_classes), num_tasks)]


def build_continual(cfg: TaskConfig, seed: int) -> TaskBundle:
    """A permuted or split stream over cfg.dataset; every client holds data of every task."""
    assert cfg.continual is not None
    source = load_source(cfg.dataset, cfg.data_dir)
    y = source.y_train
    pool, val = carve_val(y, cfg.val_fraction, derive_seed(seed, VAL_SEED))
    all_test = np.arange(len(source.y_test))
    num_tasks = cfg.continual.num_tasks
    tasks: list[TaskData] = []
    if cfg.continual.kind == "permuted":
        _, h, w = source.image_shape
        classes = [list(range(NUM_CLASSES))] * num_tasks
        for t, perm in enumerate(pixel_permutations(num_tasks, h * w)):
            clients = partition_pool(
                pool, y, cfg, cfg.num_clients, derive_seed(seed, PARTITION_SEED, t)
            )
            tasks.append(TaskData(clients, val, all_test, perm if t else None))
    else:
        classes = split_classes(num_tasks)
        for t, group in enumerate(classes):
            task_pool = pool[np.isin(y[pool], group)]
            clients = partition_pool(
                task_pool, y, cfg, cfg.num_clients, derive_seed(seed, PARTITION_SEED, t)
            )
            tasks.append(
                TaskData(
                    clients,
                    val[np.isin(y[val], group)],
                    all_test[np.isin(source.y_test, group)],
                )
            )
    return TaskBundle(
        name=cfg.name,
        input_shape=source.image_shape,
        num_classes=NUM_CLASSES,
        num_clients=cfg.num_clients,
        num_tasks=num_tasks,
        scenario=cfg.continual.scenario,
        task_classes=classes,
        domains=[],
        train_store=Store(source.x_train, y),
        test_store=Store(source.x_test, source.y_test),
        tasks=tasks,
        normalisation=source_normalisation(cfg.dataset, cfg.data_dir),
    )
