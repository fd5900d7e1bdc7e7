"""Each client's own test split, carved from its partition (federated evaluation on the clients)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data.build import derive_seed
from data.bundle import TaskBundle

LOCAL_TEST_SEED = "local-test"  # a purpose for derive_seed, beside data.build's VAL_SEED and PARTITION_SEED


def with_local_tests(bundle: TaskBundle, fraction: float, seed: int) -> TaskBundle:
    """The bundle with ``fraction`` of every client's samples (at least one, never all) held out.

    Clients keep the rest for training. Deterministic in (seed, client); 0 keeps the bundle.
    """
    if fraction <= 0:
        return bundle
    tasks = []
    for t, task in enumerate(bundle.tasks):
        train, tests = [], []
        for c, idx in enumerate(task.clients):
            rng = np.random.default_rng(derive_seed(seed, LOCAL_TEST_SEED, t, c))
            n_test = min(max(1, math.ceil(fraction * len(idx))), len(idx) - 1) if len(idx) > 1 else 0
            order = rng.permutation(len(idx))
            tests.append(np.sort(idx[order[:n_test]]))
            train.append(np.sort(idx[order[n_test:]]))
        tasks.append(dataclasses.replace(task, clients=train, local_tests=tests))
    return dataclasses.replace(bundle, tasks=tasks)
