"""Fixed test splits and IID shares without importing scikit-learn or Hugging Face datasets.

Start-up of a small run was dominated by imports: scikit-learn (about 0.8 s) for the fixed test
and validation splits and `datasets` + `flwr_datasets` (about 0.8 s) for an IID partition. These
functions give exactly the same indices as `sklearn.model_selection.train_test_split(...,
random_state=state)` (stratified or not) and flwr-datasets' `IidPartitioner`;
tests/data/test_split.py checks both against the libraries, so committed splits and results do
not move.
"""

from __future__ import annotations

import numpy as np


def holdout_split(n: int, n_test: int, *, state: int, stratify: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of range(n), each sorted; as train_test_split(test_size=n_test)."""
    if not 0 < n_test < n:
        raise ValueError(f"a test split of {n_test} of {n} samples leaves no test or no training sample")
    rng = np.random.RandomState(state)
    if stratify is None:
        order = rng.permutation(n)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    classes, y_indices, counts = np.unique(np.asarray(stratify), return_inverse=True, return_counts=True)
    n_train = n - n_test
    if stratify_by(stratify, n_test) is None:
        raise ValueError(f"cannot stratify {n_test} test samples over {len(classes)} classes "
                         f"(smallest class: {counts.min()} samples)")
    by_class = np.split(np.argsort(y_indices, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        members = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i]: n_i[i] + t_i[i]])
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


def stratify_by(labels: np.ndarray, n_test: int) -> np.ndarray | None:
    """`labels` when a hold-out of `n_test` of them can be stratified (every class present has two
    samples, and both sides can hold one of each), else None: the split is then a plain shuffle."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    if len(counts) == 0 or counts.min() < 2 or n_test < len(counts) or len(labels) - n_test < len(counts):
        return None
    return labels


def _approximate_mode(class_counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Samples per class of n_draws: the floored shares, then the largest remainders (ties drawn)."""
    continuous = class_counts / class_counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            floored[rng.choice(inds, size=add_now, replace=False)] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(int)


def contiguous_shares(order: np.ndarray, num_partitions: int) -> list[np.ndarray]:
    """`order` cut into num_partitions contiguous blocks, the first len % k one longer (IidPartitioner)."""
    return [np.asarray(block, dtype=np.int64) for block in np.array_split(order, num_partitions)]
