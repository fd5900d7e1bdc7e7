"""data.split gives the very indices scikit-learn and flwr-datasets gave (so no split or result moves)."""

from __future__ import annotations

import math

import subprocess
import sys

import numpy as np
import pytest

from data.sources import digits_images
from data.split import contiguous_shares, holdout_split

LABELS = {
    "balanced": np.repeat(np.arange(10), 50),
    "skewed": np.concatenate([np.full(7, 0), np.full(131, 1), np.full(2, 2), np.full(60, 3)]),
    "random": np.random.default_rng(3).integers(0, 7, size=977),
    "strings": np.array(["cat", "dog", "dog", "eel", "cat", "eel", "dog", "cat", "eel", "dog", "cat"] * 9),
}


@pytest.mark.parametrize("name", sorted(LABELS))
@pytest.mark.parametrize("n_test", [0.2, 0.1, 0.35, 17])
@pytest.mark.parametrize("state", [0, 5])
@pytest.mark.parametrize("stratified", [True, False])
def test_holdout_split_equals_train_test_split(name: str, n_test: float, state: int, stratified: bool) -> None:
    from sklearn.model_selection import train_test_split

    y = LABELS[name]
    count = int(np.ceil(n_test * len(y))) if isinstance(n_test, float) else n_test
    train, test = train_test_split(np.arange(len(y)), test_size=n_test, random_state=state,
                                   stratify=y if stratified else None)
    ours_train, ours_test = holdout_split(len(y), count, state=state, stratify=y if stratified else None)
    np.testing.assert_array_equal(ours_test, np.sort(test))
    np.testing.assert_array_equal(ours_train, np.sort(train))


def test_holdout_split_refuses_what_sklearn_refuses() -> None:
    with pytest.raises(ValueError, match="cannot stratify"):
        holdout_split(12, 3, state=0, stratify=np.array([0] * 11 + [1]))  # a class of one
    with pytest.raises(ValueError, match="leaves no test"):
        holdout_split(10, 10, state=0)


@pytest.mark.parametrize("n,k", [(100, 10), (1797, 7), (13, 13), (1000, 3)])
def test_contiguous_shares_equal_iid_partitioner(n: int, k: int) -> None:
    from datasets import Dataset
    from flwr_datasets.partitioner import IidPartitioner

    order = np.random.default_rng(n).permutation(n)
    partitioner = IidPartitioner(k)
    partitioner.dataset = Dataset.from_dict({"idx": order})
    expected = [np.asarray(partitioner.load_partition(i)["idx"][:]) for i in range(k)]
    ours = contiguous_shares(order, k)
    assert len(ours) == k
    for mine, theirs in zip(ours, expected):
        np.testing.assert_array_equal(mine, theirs)


def test_digits_equal_load_digits() -> None:
    from sklearn.datasets import load_digits

    x, y = digits_images()
    bunch = load_digits()
    np.testing.assert_array_equal(y, bunch.target)
    np.testing.assert_array_equal(x[:, 0], np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8))


def test_a_digits_run_imports_neither_sklearn_nor_datasets() -> None:
    """The point of the module: the default task loads without the two slow imports."""
    code = ("import sys; from data import load_task; from conf.compose import compose; "
            "cfg = compose(['task=digits']); t = load_task(cfg['task'], seed=0); t.client_train(0, 0); t.test(0); "
            "print(sorted(m for m in ('sklearn', 'datasets', 'flwr_datasets') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("fraction", [0.1, 0.15, 0.5])
@pytest.mark.parametrize("seed", [0, 2**32 - 1, 1234567])
def test_carve_val_equals_the_sklearn_split_it_replaced(fraction: float, seed: int) -> None:
    from sklearn.model_selection import train_test_split

    from data.build import carve_val

    for y in (digits_images()[1], LABELS["random"], LABELS["skewed"]):
        idx = np.arange(len(y))
        counts = np.bincount(y)
        n_val, classes = math.ceil(fraction * len(y)), len(counts[counts > 0])
        stratify = y if counts[counts > 0].min() >= 2 and min(n_val, len(y) - n_val) >= classes else None
        pool, val = train_test_split(idx, test_size=fraction, stratify=stratify, random_state=seed)
        ours_pool, ours_val = carve_val(y, fraction, seed)
        np.testing.assert_array_equal(ours_val, np.sort(val))
        np.testing.assert_array_equal(ours_pool, np.sort(pool))


def test_both_splits_stratify_by_one_rule_at_the_edge() -> None:
    """25 samples of 3 classes, 10 %: ceil(2.5) = 3 held out, one per class, in the validation
    carve-out and the fixed test split alike (they once disagreed here: one took 2.5 < 3)."""
    from data.adapters.arrays import fixed_test_split
    from data.build import carve_val
    from data.split import stratify_by

    y = np.array([0] * 10 + [1] * 10 + [2] * 5)
    for seed in range(5):
        _, val = carve_val(y, 0.1, seed)
        assert sorted(y[val]) == [0, 1, 2]
    _, test = fixed_test_split(y, 0.1)
    assert sorted(y[test]) == [0, 1, 2]
    assert stratify_by(y, 2) is None            # fewer held out than classes: a plain shuffle
    assert stratify_by(y, 23) is None           # fewer left than classes
    assert stratify_by(np.array([0, 0, 1]), 1) is None   # a class with one sample
