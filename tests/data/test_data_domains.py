"""Tests of digit-domains: four digit domains as 3x28x28 with per-domain client groups and tests."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from sklearn.model_selection import train_test_split

from data import ConfigError, check_task_config, load_task
from data.catalogue import GENERATOR_SEED
from data.domains import domain_sources, to_rgb28
from data.generated import blend_backgrounds
from data.partition import label_entropy
from data.sources import mnist5k_images


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COROLLA_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


def test_four_domains_one_client_each() -> None:
    b = load_task({"name": "digit-domains"}, seed=0)
    assert b.domains == ["mnist", "digits", "synth", "mnistm"]
    assert (b.scenario, b.num_clients, b.input_shape) == ("multi-domain", 4, (3, 28, 28))
    assert [b.client_domain(c) for c in range(4)] == b.domains
    for c in range(4):
        split = b.client_train(c)
        assert split.x.shape == (len(split), 3, 28, 28)
        assert set(split.y.tolist()) == set(range(10))  # iid inside the domain


def test_per_domain_test_splits() -> None:
    b = load_task({"name": "digit-domains"}, seed=0)
    by_domain = b.test_by_domain()
    assert list(by_domain) == b.domains
    assert {d: len(s) for d, s in by_domain.items()} == {
        "mnist": 1000,
        "digits": 360,
        "synth": 1000,
        "mnistm": 1000,
    }
    assert sum(len(s) for s in by_domain.values()) == len(b.test())
    for split in by_domain.values():
        assert split.x.shape[1:] == (3, 28, 28) and set(split.y.tolist()) == set(range(10))
    other = load_task({"name": "digit-domains"}, seed=1).test_by_domain()
    assert all(torch.equal(by_domain[d].x, other[d].x) for d in b.domains)


def test_mnistm_holds_out_the_same_digits_as_mnist() -> None:
    sources = domain_sources()
    x, y = mnist5k_images()
    _, test_idx = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    test_idx = np.sort(test_idx)
    assert np.array_equal(sources["mnist"].x_test, np.repeat(x[test_idx], 3, axis=1))
    # The MNIST-M test images are the blends of exactly the MNIST test digits.
    blends = blend_backgrounds(x, GENERATOR_SEED)
    assert np.array_equal(sources["mnistm"].x_test, blends[test_idx])
    assert np.array_equal(sources["mnist"].y_test, sources["mnistm"].y_test)


def test_validation_is_carved_per_domain_and_disjoint() -> None:
    b = load_task({"name": "digit-domains"}, seed=2)
    clients = np.concatenate(b.tasks[0].clients)
    assert len(np.unique(clients)) == len(clients)
    assert not np.intersect1d(b.tasks[0].val, clients).size
    assert set(b.val().y.tolist()) == set(range(10))
    assert len(b.val()) + len(clients) == len(b.train_store.y)


def test_dirichlet_skews_labels_inside_each_domain_group() -> None:
    b = load_task(
        {"name": "digit-domains", "num_clients": 8, "partition": "dirichlet", "alpha": 0.1}, seed=0
    )
    assert [b.client_domain(c) for c in range(8)] == [d for d in b.domains for _ in range(2)]
    y = b.train_store.y
    entropies = [label_entropy(y[idx], 10) for idx in b.tasks[0].clients]
    assert np.mean(entropies) < 0.8 * np.log(10)
    # A client's samples all come from its own domain.
    bounds = np.cumsum([0] + [len(s.y_train) for s in domain_sources().values()])
    for c, idx in enumerate(b.tasks[0].clients):
        d = c // 2
        assert idx.min() >= bounds[d] and idx.max() < bounds[d + 1]


def test_num_clients_must_be_a_multiple_of_four() -> None:
    with pytest.raises(ConfigError, match="task.num_clients"):
        check_task_config({"name": "digit-domains", "num_clients": 6})


def test_to_rgb28_upscales_grey_digits() -> None:
    grey = np.zeros((2, 1, 8, 8), np.uint8)
    grey[:, :, 2:6, 3:5] = 255
    rgb = to_rgb28(grey)
    assert rgb.shape == (2, 3, 28, 28) and rgb.dtype == np.uint8
    assert np.array_equal(rgb[:, 0], rgb[:, 2]) and rgb.max() == 255 and rgb[:, :, 0, 0].max() == 0
