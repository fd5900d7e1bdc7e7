"""Strategy registry: names, typed-config and constructor-key checks, and entry-point discovery."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from conf.errors import ConfigError
from strategies import registry
from strategies.fedavg import FedAvgConfig
from strategies.fedprox import FedProxConfig, FedProxServer
from tests.plugin_paths import plugin_pythonpath


def test_builtins_resolve_to_their_definitions() -> None:
    for name in ("fedavg", "fedprox"):
        definition = registry.get_strategy(name)
        assert definition.name == name
        assert "train" in definition.client.message_types


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown strategy.name='nope'; valid choices: ") as err:
        registry.get_strategy("nope")
    assert "fedavg" in str(err.value) and "fedprox" in str(err.value)
    assert "corolla.strategies" in str(err.value)  # says how plugins register


def test_typed_configs_check_keys_types_and_ranges() -> None:
    registry.check_strategy_config({"name": "fedprox", "proximal_mu": 0.1, "fraction_train": 0.3})
    cases = [({"fraction_trian": 0.3}, "strategy.fraction_trian is not a setting of FedProxConfig; valid keys: "),
             ({"proximal_mu": -0.1}, "strategy.proximal_mu=-0.1 is out of range"),
             ({"fraction_train": 1.5}, "strategy.fraction_train=1.5 is out of range"),
             ({"min_train_nodes": "two"}, "strategy.min_train_nodes: expected an integer, got 'two'")]
    for section, message in cases:
        with pytest.raises(ConfigError, match=message):
            registry.check_strategy_config({"name": "fedprox", **section})


def test_a_partial_section_takes_its_defaults_from_the_yaml() -> None:
    parsed = registry.parse_strategy_config({"name": "fedprox", "proximal_mu": 0.25})
    assert isinstance(parsed, FedProxConfig) and isinstance(parsed, FedAvgConfig)
    assert (parsed.proximal_mu, parsed.fraction_train, parsed.fraction_evaluate) == (0.25, 0.5, 0.0)


def test_build_server_strategy_passes_the_parsed_config() -> None:
    server = registry.build_server_strategy({"name": "fedprox", "proximal_mu": 0.25, "fraction_train": 0.2})
    assert isinstance(server, FedProxServer)
    assert server.proximal_mu == 0.25 and server.fraction_train == 0.2 and server.fraction_evaluate == 0.0
    assert server.config == registry.parse_strategy_config({"name": "fedprox", "proximal_mu": 0.25,
                                                            "fraction_train": 0.2})


def test_a_plugin_without_typed_config_is_checked_by_its_constructor(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    for path in plugin_pythonpath(tmp_path):
        monkeypatch.syspath_prepend(str(path))
    importlib.invalidate_caches()
    registry.refresh()
    try:
        assert registry.get_strategy("faulty").config is None
        registry.check_strategy_config({"name": "faulty", "crash": [1], "fraction_train": 1.0})
        with pytest.raises(ConfigError, match="strategy.crsh is not a parameter of FaultyServer"):
            registry.check_strategy_config({"name": "faulty", "crsh": [1]})
        # The constructor's own refusal comes out of the check, before any engine would start.
        with pytest.raises(ConfigError, match=r"strategy 'faulty': FaultyServer refuses this config: .*-1") as err:
            registry.check_strategy_config({"name": "faulty", "crash": [-1]})
        assert err.value.key == "strategy"
    finally:
        registry.refresh()
        for mod in [m for m in sys.modules if m.startswith(("corolla_fedmedian", "corolla_test_plugins"))]:
            del sys.modules[mod]


def test_plugins_are_found_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in plugin_pythonpath(tmp_path):
        monkeypatch.syspath_prepend(str(path))
    importlib.invalidate_caches()
    registry.refresh()
    try:
        found = registry.available_strategies()
        assert found["mymedian"] == "plugin corolla_fedmedian.strategy:STRATEGY"
        definition = registry.get_strategy("mymedian")
        assert definition.server.__name__ == "FedMedianServer"
        assert definition.config.__name__ == "FedMedianConfig"
        conf_dirs = registry.plugin_conf_dirs()
        assert any((d / "strategy" / "mymedian.yaml").exists() for d in conf_dirs)
        assert "query.hello" not in registry.all_message_types()  # corolla's own, not a strategy's
    finally:
        registry.refresh()
        for mod in [m for m in sys.modules if m.startswith(("corolla_fedmedian", "corolla_test_plugins"))]:
            del sys.modules[mod]
    assert importlib.metadata  # the discovery above went through importlib.metadata's entry points
