"""A dataset loader for corolla: Gaussian blobs in a few dimensions, each sample at one of 3 sites."""

from __future__ import annotations

from typing import Any

import numpy as np

from data import DatasetArrays


def load(*, path: str | None, options: dict[str, Any]) -> DatasetArrays:
    """corolla calls this with task.path and task.options; every check runs on what it returns.

    Return float32 features (n, d) or uint8 images (n, C, H, W), int64 labels 0..len(classes)-1,
    optionally a test split (x_test, y_test) and, for task.partition=column, a site per sample.
    """
    from sklearn.datasets import make_blobs

    n = int(options.get("n", 600))
    num_classes = int(options.get("classes", 3))
    x, y = make_blobs(n_samples=n, centers=num_classes, n_features=int(options.get("dims", 4)),
                      cluster_std=float(options.get("std", 1.5)), random_state=int(options.get("seed", 0)))
    sites = np.random.default_rng(0).integers(0, int(options.get("sites", 3)), size=n)
    return DatasetArrays(
        x_train=x.astype(np.float32),
        y_train=y.astype(np.int64),
        classes=tuple(f"blob{i}" for i in range(num_classes)),
        source=path or "corolla_blobs",
        groups=sites,
    )
