"""Tests of load_task / check_task_config on single-dataset tasks, configs and features."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import data
from data import ConfigError, Split, TaskBundle, check_task_config, load_task
from data.adapters.config import ADAPTERS
from data.config import parse_task_config, task_defaults
from data.features import FEATURE_ENCODERS, register_encoder
from data.partition import label_entropy
from data.tasks import _load

CONF = Path(__file__).resolve().parents[2] / "conf" / "task"


def _fresh(cfg: dict, seed: int) -> TaskBundle:
    """Build without the per-process cache, as a separate Ray actor would."""
    return _load.__wrapped__(data.config.parse_task_config(cfg), seed)


def test_every_task_is_a_yaml_file_and_its_defaults_come_from_it() -> None:
    assert set(data.TASK_NAMES) == {p.stem for p in CONF.glob("*.yaml")} >= {
        "digits",
        "digits-dirichlet",
        "fmnist",
        "fmnist-dirichlet",
        "permuted-digits",
        "permuted-fmnist",
        "split-fmnist",
        "digit-domains",
        "captioned",
        *ADAPTERS,
    }
    keys = None
    for name in data.TASK_NAMES:
        cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
        cfg.pop("defaults", None)  # Hydra's defaults list (e.g. a task's default model), not a task key
        assert task_defaults(name) == cfg
        if name == "captioned" or cfg["dataset"] in ADAPTERS:  # own keys (tests of their own)
            continue
        keys = keys or set(cfg)
        assert set(cfg) == keys  # the same keys everywhere, so overrides work uniformly
        check_task_config(cfg)


def test_a_yaml_default_is_the_one_a_partial_config_gets(tmp_path: Path, monkeypatch) -> None:
    # The name alone takes every other key from conf/task/<name>.yaml: no second copy in code.
    parsed = parse_task_config({"name": "fmnist-dirichlet"})
    assert (parsed.alpha, parsed.num_clients, parsed.partition) == (0.3, 20, "dirichlet")
    assert parse_task_config({"name": "fmnist-dirichlet", "alpha": 0.7}).alpha == 0.7


def test_data_dir_on_a_task_that_does_not_read_it_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"task.data_dir='/x': task digits \(digits\) does not read "
                       "files.*task=imagefolder") as err:
        check_task_config({"name": "digits", "data_dir": "/x"})
    assert err.value.key == "task.data_dir"


def test_digits_bundle_shapes_and_sizes() -> None:
    b = load_task({"name": "digits"}, seed=0)
    assert (b.input_shape, b.num_classes, b.num_clients, b.num_tasks) == ((1, 8, 8), 10, 10, 1)
    assert b.scenario == "single" and b.task_classes == [list(range(10))] and b.domains == []
    split = b.client_train(0)
    assert isinstance(split, Split)
    assert split.x.dtype == torch.float32 and split.y.dtype == torch.int64
    assert split.x.shape == (len(split), 1, 8, 8)
    train_total = sum(b.client_size(c) for c in range(10)) + len(b.val())
    assert train_total == 1797 - 360  # a fixed 20% of the 1,797 digits is the test split
    assert len(b.test()) == 360
    assert len(b.train_pool()) == sum(len(b.client_train(c)) for c in range(10))
    pool = b.train_pool().x
    assert abs(float(pool.mean())) < 0.05 and abs(float(pool.std()) - 1) < 0.05  # normalised
    assert b.client_domain(0) is None and b.test_by_domain() == {}
    with pytest.raises(IndexError):
        b.client_train(10)
    with pytest.raises(IndexError):
        b.test(1)


def test_validation_is_disjoint_from_client_data() -> None:
    for name in ("digits-dirichlet", "permuted-digits", "split-fmnist"):
        b = load_task({"name": name}, seed=3)
        for task in b.tasks:
            clients = np.concatenate(task.clients)
            assert len(np.unique(clients)) == len(clients)
            assert len(task.val) > 0 and not np.intersect1d(task.val, clients).size


def test_test_split_is_independent_of_seed_but_partition_is_not() -> None:
    a, b = load_task({"name": "digits"}, seed=0), load_task({"name": "digits"}, seed=1)
    assert torch.equal(a.test().x, b.test().x) and torch.equal(a.test().y, b.test().y)
    assert not np.array_equal(a.tasks[0].clients[0], b.tasks[0].clients[0])
    assert not np.array_equal(a.tasks[0].val, b.tasks[0].val)


def test_same_config_and_seed_rebuild_identically() -> None:
    cfg = {"name": "digits-dirichlet"}
    a, b = _fresh(cfg, 5), _fresh(cfg, 5)
    assert a is not b
    for c in range(a.num_clients):
        assert torch.equal(a.client_train(c).x, b.client_train(c).x)
        assert torch.equal(a.client_train(c).y, b.client_train(c).y)
    assert load_task(cfg, seed=5) is load_task(dict(cfg), seed=5)  # cached per process


def test_fmnist_dirichlet_default_experiment() -> None:
    b = load_task({"name": "fmnist-dirichlet"}, seed=0)
    assert b.num_clients == 20 and b.input_shape == (1, 28, 28)
    sizes = [b.client_size(c) for c in range(20)]
    assert sum(sizes) + len(b.val()) == 60000 and len(b.test()) == 10000
    assert min(sizes) >= 2 and max(sizes) > 2 * min(sizes)
    y = b.train_store.y
    entropy = np.mean([label_entropy(y[idx], 10) for idx in b.tasks[0].clients])
    assert entropy < 0.8 * math.log(10)
    # Clients' data is materialised from the shared uint8 store, not kept as float copies.
    assert b.train_store.x.dtype == np.uint8


def test_dictconfig_input() -> None:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(yaml.safe_load((CONF / "digits.yaml").read_text()))
    cfg.num_clients = 3
    assert load_task(cfg, seed=0).num_clients == 3


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"num_clients": 0}, "task.num_clients"),
        ({"num_clients": 2.5}, "task.num_clients"),
        ({"alpha": 0}, "task.alpha"),
        ({"alpha": -1.0}, "task.alpha"),
        ({"partition": "natural"}, "task.partition"),
        ({"dataset": "cifar10"}, "task.dataset"),
        ({"val_fraction": 1.0}, "task.val_fraction"),
        ({"features": "clip"}, "task.features"),
        ({"aplha": 0.1}, "task.aplha"),
        ({"continual": {"kind": "rotated"}}, "task.continual.kind"),
        (
            {"continual": {"kind": "split", "scenario": "domain-incremental"}},
            "task.continual.scenario",
        ),
    ],
)
def test_config_errors_name_the_key(override: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        check_task_config({"name": "digits", **override})


def test_config_error_lists_choices() -> None:
    with pytest.raises(ConfigError, match="task.name") as err:
        check_task_config({"name": "mnist-full"})
    assert "fmnist-dirichlet" in str(err.value)
    with pytest.raises(ConfigError, match="none"):
        check_task_config({"name": "digits", "features": "clip"})
    with pytest.raises(ConfigError, match="iid, dirichlet, shard"):
        check_task_config({"name": "digits", "partition": "natural"})
    assert issubclass(ConfigError, ValueError)


def test_more_clients_than_samples() -> None:
    cfg = {"name": "digits", "num_clients": 5000}
    with pytest.raises(ConfigError, match="task.num_clients"):
        check_task_config(cfg)
    with pytest.raises(ConfigError, match="task.num_clients"):
        load_task(cfg, seed=0)
    with pytest.raises(ConfigError, match="task.num_clients"):
        check_task_config({"name": "digits", "partition": "shard", "num_clients": 700})
    with pytest.raises(ConfigError, match="task.num_clients"):
        check_task_config({"name": "split-fmnist", "num_clients": 11000})
    check_task_config({"name": "digits", "num_clients": 1000})


def test_features_replace_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROLLA_CACHE", str(tmp_path))
    calls = []

    def row_means(images: np.ndarray) -> np.ndarray:  # a stand-in frozen encoder: (n, H)
        calls.append(len(images))
        return images.astype(np.float32).mean(axis=(1, 3))

    register_encoder("row-means", row_means)
    try:
        cfg = {"name": "digits", "features": "row-means"}
        check_task_config(cfg)
        b = _fresh(cfg, 0)
        assert b.input_shape == (8,)
        split = b.client_train(0)
        assert split.x.shape == (len(split), 8) and split.x.dtype == torch.float32
        assert b.test().x.shape == (360, 8)
        assert calls == [1437, 360]
        _fresh(cfg, 1)  # a second build reads the disk cache
        assert calls == [1437, 360]
        assert len(list((tmp_path / "features").glob("digits-*row-means-*.npz"))) == 2
        with pytest.raises(ConfigError, match="task.features"):
            check_task_config({"name": "permuted-digits", "features": "row-means"})
    finally:
        FEATURE_ENCODERS.pop("row-means")
