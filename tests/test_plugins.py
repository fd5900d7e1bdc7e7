"""Third-party strategies: discovered through entry points, listed, and run with no change to corolla."""

from __future__ import annotations

from pathlib import Path

from tests.plugin_paths import plugin_pythonpath
from tests.simrun import FAST, read_metrics, read_summary, run_corolla, run_dir_of


def test_corolla_strategies_lists_builtins_and_plugins(tmp_path: Path) -> None:
    out = run_corolla(["strategies"], extra_pythonpath=plugin_pythonpath(tmp_path), timeout=120).stdout
    names = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert {"fedavg", "fedprox", "mymedian", "fedmedian", "faulty"} <= set(names)
    assert "built-in" in names["fedavg"]
    assert "plugin corolla_fedmedian.strategy:STRATEGY" in names["mymedian"]
    assert "built-in" in names["fedmedian"]  # Flower's own, beside the plugin


def test_example_plugin_runs_by_name(tmp_path: Path) -> None:
    result = run_corolla(["run", "strategy=mymedian", *FAST, "num_rounds=2", f"out_dir={tmp_path}/runs"],
                         extra_pythonpath=plugin_pythonpath(tmp_path))
    run_dir = run_dir_of(result)
    assert read_summary(run_dir)["strategy"] == "mymedian"
    records = read_metrics(run_dir)
    assert [r["round"] for r in records] == [1, 2]
    assert all(r["median_aggregation"] == 1.0 for r in records)  # the plugin's own metric
    assert records[-1]["accuracy"] > 0.3
