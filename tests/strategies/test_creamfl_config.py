"""CreamFLConfig: the YAML is the one source of defaults, and bad settings name `strategy.<key>`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from conf.compose import compose
from conf.errors import ConfigError
from strategies.creamfl import CreamFLConfig
from strategies.registry import build_server_strategy, check_strategy_config

ROOT = Path(__file__).resolve().parents[2]
YAML = ROOT / "conf" / "strategy" / "creamfl.yaml"


@pytest.fixture(scope="module")
def section() -> dict:
    return compose(["task=captioned", "strategy=creamfl"])["strategy"]


def test_the_yaml_holds_every_setting_and_the_dataclass_none_of_the_defaults() -> None:
    keys = set(yaml.safe_load(YAML.read_text())) - {"name"}
    fields = {f.name: f for f in dataclasses.fields(CreamFLConfig)}
    assert keys == set(fields)
    assert all(f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               for f in fields.values())


def test_the_server_half_gets_the_parsed_section(section: dict) -> None:
    server = build_server_strategy({**section, "kd_weight": 0.5, "fraction_train": 0.25})
    assert isinstance(server.config, CreamFLConfig)
    assert server.config.kd_weight == 0.5 and server.fraction_train == 0.25
    assert server.config == CreamFLConfig.parse({**section, "kd_weight": 0.5, "fraction_train": 0.25})


@pytest.mark.parametrize("change, key, says", [
    ({"kd_weight": -1}, "strategy.kd_weight", "out of range"),
    ({"client_lr": 0}, "strategy.client_lr", "out of range"),
    ({"fraction_train": 1.5}, "strategy.fraction_train", "out of range"),
    ({"distill_mode": "both"}, "strategy.distill_mode", "not a valid choice"),
    ({"wire_dtype": "int8"}, "strategy.wire_dtype", "not a valid choice"),
    ({"server_epochs": "two"}, "strategy.server_epochs", "expected an integer"),
    ({"kd_wieght": 0.1}, "strategy.kd_wieght", "not a setting of CreamFLConfig"),
    ({"server_image": {"kind": "vit"}}, "strategy.server_image", "image encoder kind 'vit'"),
    ({"server_text": {"kind": "transformer", "width": 3}}, "strategy.server_text", "width"),
    ({"client_models": {"image": {"image": {"kind": "cnn"}}}}, "strategy.client_models", "missing: text"),
    ({"client_models": {"image": {}, "text": {"text": {"kind": "bag"}},
                        "image_text": {"image": {"kind": "cnn"}, "text": {"kind": "bag"}}}},
     "strategy.client_models.image.image", "is missing"),
])
def test_bad_settings_fail_before_any_engine_naming_the_key(section: dict, change: dict, key: str,
                                                            says: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_strategy_config({**section, **change})
    assert err.value.key == key and says in str(err.value)


def test_a_missing_setting_points_at_the_yaml(section: dict) -> None:
    del section["kd_weight"]
    with pytest.raises(ConfigError, match="strategy lacks strategy.kd_weight"):
        CreamFLConfig.parse(section)


def test_no_module_of_the_package_reads_the_raw_strategy_section() -> None:
    for path in (ROOT / "strategies" / "creamfl").glob("*.py"):
        text = path.read_text()
        assert 'cfg["strategy"]' not in text and 'cfg.get("strategy"' not in text, path.name
