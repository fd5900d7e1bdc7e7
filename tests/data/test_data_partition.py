"""Tests of data.partition: coverage, disjointness, determinism and label skew."""

from __future__ import annotations

import math

import numpy as np
import pytest

from data.partition import label_entropy, partition_indices

LABELS = np.random.default_rng(123).integers(0, 10, size=3000)


def _sizes(parts: list[np.ndarray]) -> list[int]:
    return [len(p) for p in parts]


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shard"])
def test_partitions_are_disjoint_and_cover_the_data(scheme: str) -> None:
    parts = partition_indices(LABELS, 10, scheme=scheme, alpha=0.5, seed=0, min_partition_size=2)
    everything = np.concatenate(parts)
    assert len(parts) == 10
    assert len(np.unique(everything)) == len(everything)  # every index at most once
    assert everything.min() >= 0 and everything.max() < len(LABELS)
    # Shards are equal-sized (3000 / 20 = 150 here), so nothing is left over.
    assert sum(_sizes(parts)) == len(LABELS)
    assert min(_sizes(parts)) >= 2


def test_iid_sizes_are_equal() -> None:
    parts = partition_indices(LABELS, 7, scheme="iid", seed=0)
    assert max(_sizes(parts)) - min(_sizes(parts)) <= 1


@pytest.mark.parametrize("scheme", ["iid", "dirichlet", "shard"])
def test_same_seed_same_partition_other_seed_other(scheme: str) -> None:
    a = partition_indices(LABELS, 10, scheme=scheme, alpha=0.5, seed=7)
    b = partition_indices(LABELS, 10, scheme=scheme, alpha=0.5, seed=7)
    c = partition_indices(LABELS, 10, scheme=scheme, alpha=0.5, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(np.sort(x), np.sort(y)) for x, y in zip(a, c, strict=True))


def test_small_alpha_dirichlet_is_label_skewed() -> None:
    uniform = math.log(10)
    iid = partition_indices(LABELS, 20, scheme="iid", seed=0)
    skewed = partition_indices(
        LABELS, 20, scheme="dirichlet", alpha=0.1, seed=0, min_partition_size=2
    )
    iid_entropy = np.mean([label_entropy(LABELS[p], 10) for p in iid])
    skewed_entropy = np.mean([label_entropy(LABELS[p], 10) for p in skewed])
    assert iid_entropy > 0.95 * uniform
    assert skewed_entropy < 0.6 * uniform
    assert min(_sizes(skewed)) >= 2


def test_larger_alpha_is_less_skewed() -> None:
    def mean_entropy(alpha: float) -> float:
        parts = partition_indices(LABELS, 20, scheme="dirichlet", alpha=alpha, seed=0)
        return float(np.mean([label_entropy(LABELS[p], 10) for p in parts]))

    assert mean_entropy(0.1) < mean_entropy(1.0) < mean_entropy(100.0)


def test_shard_gives_about_shards_per_client_classes() -> None:
    labels = np.repeat(np.arange(10), 300)  # 3,000 samples, 300 per class
    parts = partition_indices(labels, 10, scheme="shard", shards_per_client=2, seed=0)
    classes = [len(np.unique(labels[p])) for p in parts]
    # 20 shards of 150 never straddle a class boundary here, so each client has 1-2 classes.
    assert all(1 <= c <= 2 for c in classes)
    assert np.mean(classes) > 1.5
    assert _sizes(parts) == [300] * 10


def test_more_partitions_than_samples_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="more partitions than samples"):
        partition_indices(np.zeros(5, dtype=int), 6, scheme="iid")
    with pytest.raises(ValueError, match="shards"):
        partition_indices(np.zeros(10, dtype=int), 6, scheme="shard", shards_per_client=2)


def test_unknown_scheme_and_bad_alpha() -> None:
    with pytest.raises(ValueError, match="unknown partition scheme"):
        partition_indices(LABELS, 2, scheme="natural")
    with pytest.raises(ValueError, match="alpha"):
        partition_indices(LABELS, 2, scheme="dirichlet", alpha=0.0)


def test_label_entropy_bounds() -> None:
    assert label_entropy(np.zeros(10, dtype=int), 10) == 0.0
    assert label_entropy(np.arange(10), 10) == pytest.approx(math.log(10))
