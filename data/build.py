"""Steps shared by the task builders: seeds, the validation carve and client partitions."""

from __future__ import annotations

import math

import numpy as np

from conf.seeds import derive_seed
from data.config import TaskConfig
from data.errors import ConfigError
from data.partition import partition_indices
from data.split import holdout_split, stratify_by


__all__ = ["PARTITION_SEED", "VAL_SEED", "carve_val", "derive_seed", "partition_pool"]

# Purposes for derive_seed (conf/seeds.py, re-exported here for the task builders).
VAL_SEED, PARTITION_SEED = "val", "partition"


def carve_val(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split ``range(len(labels))`` into (pool, val) with a stratified ``fraction`` in val."""
    idx = np.arange(len(labels))
    n_val = math.ceil(fraction * len(idx)) if fraction > 0 else 0
    if n_val < 1:
        return idx, idx[:0]
    return holdout_split(len(idx), n_val, state=seed, stratify=stratify_by(labels, n_val))


def partition_pool(
    pool: np.ndarray, labels: np.ndarray, cfg: TaskConfig, num_clients: int, seed: int
) -> list[np.ndarray]:
    """Partition the samples ``pool`` (indices into ``labels``) among clients per ``cfg``."""
    try:
        parts = partition_indices(
            labels[pool],
            num_clients,
            scheme=cfg.partition,
            alpha=cfg.alpha,
            shards_per_client=cfg.shards_per_client,
            seed=seed,
            min_partition_size=cfg.min_partition_size,
        )
    except ValueError as err:
        raise ConfigError(
            f"task.num_clients={cfg.num_clients}, task.partition={cfg.partition}: {err}"
        ) from err
    return [pool[p] for p in parts]
