"""Strategy registry: names, constructor-key checks, and entry-point discovery."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

import pytest

from strategies import registry
from strategies.fedprox import FedProxServer
from tests.plugin_paths import plugin_pythonpath


def test_builtins_resolve_to_their_definitions() -> None:
    for name in ("fedavg", "fedprox"):
        definition = registry.get_strategy(name)
        assert definition.name == name
        assert "train" in definition.client.message_types


def test_unknown_strategy_names_the_choices() -> None:
    with pytest.raises(registry.StrategyConfigError, match="unknown strategy.name='nope'; valid choices: ") as err:
        registry.get_strategy("nope")
    assert "fedavg" in str(err.value) and "fedprox" in str(err.value)
    assert "corolla.strategies" in str(err.value)  # says how plugins register


def test_config_keys_are_checked_through_the_mro() -> None:
    # FedProxServer takes proximal_mu itself and fraction_train via FedAvgServer's **kwargs chain.
    registry.check_strategy_config({"name": "fedprox", "proximal_mu": 0.1, "fraction_train": 0.3})
    with pytest.raises(registry.StrategyConfigError, match="strategy.fraction_trian is not a parameter"):
        registry.check_strategy_config({"name": "fedprox", "fraction_trian": 0.3})


def test_build_server_strategy_passes_keywords() -> None:
    server = registry.build_server_strategy({"name": "fedprox", "proximal_mu": 0.25, "fraction_train": 0.2})
    assert isinstance(server, FedProxServer)
    assert server.proximal_mu == 0.25 and server.fraction_train == 0.2


def test_plugins_are_found_through_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for path in plugin_pythonpath(tmp_path):
        monkeypatch.syspath_prepend(str(path))
    importlib.invalidate_caches()
    registry._plugin_targets.cache_clear()
    registry.get_strategy.cache_clear()
    try:
        found = registry.available_strategies()
        assert found["fedmedian"] == "plugin corolla_fedmedian.strategy:STRATEGY"
        definition = registry.get_strategy("fedmedian")
        assert definition.server.__name__ == "FedMedianServer"
        conf_dirs = registry.plugin_conf_dirs()
        assert any((d / "strategy" / "fedmedian.yaml").exists() for d in conf_dirs)
        assert "query.hello" not in registry.all_message_types()  # corolla's own, not a strategy's
    finally:
        registry._plugin_targets.cache_clear()
        registry.get_strategy.cache_clear()
        for mod in [m for m in sys.modules if m.startswith(("corolla_fedmedian", "corolla_test_plugins"))]:
            del sys.modules[mod]
    assert importlib.metadata  # the discovery above went through importlib.metadata's entry points
