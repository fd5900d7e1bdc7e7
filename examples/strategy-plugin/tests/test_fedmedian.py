"""The template's own test: its config is checked before any engine, and two rounds run in-process.

Run it from corolla's checkout (`pytest examples/strategy-plugin/tests`) or, after copying the
template and `pip install -e .`, from the copy. It uses corolla's in-process grid (bench/inline.py):
the ServerApp and ClientApp code of `corolla run`, without starting Ray.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from conf.errors import ConfigError
from strategies import registry

NAME = "mymedian"                                    # rename: your strategy's name
TARGET = "corolla_fedmedian.strategy:STRATEGY"       # rename: your module's StrategyDef
PLUGIN_ROOT = Path(__file__).resolve().parents[1]    # the directory holding the plugin's pyproject.toml
TWO_ROUNDS = [f"strategy={NAME}", "task=digits", "model=mlp", "task.num_clients=4", "num_rounds=2",
              "progress=false", "plots=false"]


@pytest.fixture(autouse=True)
def plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The plugin as corolla finds it: through its entry point, written here as pip would if it is not installed."""
    registry.refresh()
    if NAME not in registry.available_strategies():
        info = tmp_path / "site" / "corolla_plugin_under_test-0.1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text("Metadata-Version: 2.1\nName: corolla-plugin-under-test\nVersion: 0.1.0\n")
        (info / "entry_points.txt").write_text(f"[corolla.strategies]\n{NAME} = {TARGET}\n")
        monkeypatch.syspath_prepend(str(PLUGIN_ROOT))
        monkeypatch.syspath_prepend(str(info.parent))
        importlib.invalidate_caches()
        registry.refresh()
    yield
    registry.refresh()


def test_bad_settings_are_refused_before_any_engine() -> None:
    registry.check_strategy_config({"name": NAME, "clip_update": 1.0})
    with pytest.raises(ConfigError, match=r"strategy.clip_update=-1.0 is out of range") as err:
        registry.check_strategy_config({"name": NAME, "clip_update": -1})
    assert err.value.key == "strategy.clip_update"
    with pytest.raises(ConfigError, match="strategy.clip_updates is not a setting of FedMedianConfig"):
        registry.check_strategy_config({"name": NAME, "clip_updates": 1.0})


def test_two_rounds_in_process(tmp_path: Path) -> None:
    from bench.inline import run_inline

    summary, records, _ = run_inline(TWO_ROUNDS, run_dir=tmp_path / "free")
    assert summary["strategy"] == NAME
    assert [r["round"] for r in records] == [1, 2]
    assert all(r["median_aggregation"] == 1.0 for r in records)  # the server half's own metric
    assert all(r["num_replies"] == 2 and r["num_failures"] == 0 for r in records)
    assert records[-1]["accuracy"] > 0.5

    # The client half reads strategy.clip_update from env.strategy_config: a tiny clip holds the model still.
    _, clipped, _ = run_inline([*TWO_ROUNDS, "strategy.clip_update=1e-6"], run_dir=tmp_path / "clipped")
    assert clipped[-1]["accuracy"] < 0.3 < records[-1]["accuracy"]
