"""Config composition (both doors) and validation before any work."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conf.compose import compose, config_from_run_config, to_run_config
from conf.errors import ConfigError
from server.config_check import check_config, rounds_per_task


def test_default_config_is_the_documented_experiment() -> None:
    cfg = compose()
    assert cfg["strategy"]["name"] == "fedavg"
    assert cfg["task"]["name"] == "fmnist-dirichlet"
    assert cfg["task"]["num_clients"] == 20 and cfg["task"]["alpha"] == 0.3
    assert cfg["model"]["name"] == "cnn"
    assert "hydra" not in cfg


def test_both_doors_give_the_same_config(tmp_path: Path) -> None:
    overrides = ["strategy=fedprox", "task=digits", "seed=4"]
    composed = compose(overrides)
    via_json = config_from_run_config(to_run_config(composed, tmp_path))
    via_overrides = config_from_run_config({"overrides": " ".join(overrides), "config-json": ""})
    assert via_json == via_overrides == composed
    assert json.loads(to_run_config(composed, tmp_path)["config-json"])["seed"] == 4


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["num_rounds=0"], "num_rounds=0 is out of range: it must lie in [1, inf]"),
        (["failures.max_fraction=1.5"], "failures.max_fraction"),
        (["train.lr=0"], "train.lr"),
        (["device=tpu"], "device='tpu'"),
        (["task=permuted-digits", "num_rounds=7"], "multiple of task.continual.num_tasks=5"),
        (["task=digits", "task.num_clients=0"], "num_clients"),
        (["task=digits-dirichlet", "task.alpha=-1"], "alpha"),
        (["model.name=vgg"], "valid choices"),
    ],
)
def test_bad_configs_name_the_key(overrides: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=None) as err:
        check_config(compose(overrides))
    assert message in str(err.value)


def test_continual_schedule() -> None:
    cfg = compose(["task=permuted-digits", "num_rounds=10"])
    check_config(cfg)
    assert rounds_per_task(cfg) == 2
    assert rounds_per_task(compose(["num_rounds=7"])) == 7


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)
