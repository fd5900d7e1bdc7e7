"""Every registered strategy under `system=flaky`: it runs to the end and counts the clients it lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.inline import run_inline
from strategies.registry import BUILTIN
from tests.test_inline_engine import RECIPES

FLAKY = ["system=flaky", "system.dropout=0.5", "failures.max_fraction=1.0", "num_rounds=4", "seed=1",
         "progress=false", "plots=false"]
DEFAULT = ["task=digits", "model=mlp", "task.num_clients=6", "strategy.fraction_train=1.0"]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("strategy", sorted(BUILTIN))
def test_every_strategy_runs_under_flaky_and_counts_what_it_lost(tmp_path: Path, strategy: str) -> None:
    recipe = [a for a in RECIPES.get(strategy, DEFAULT) if not a.startswith("strategy=")]
    if strategy == "fedbuff":
        recipe = [a for a in recipe if not a.startswith("strategy.fraction_train")]
    summary, records, _ = run_inline([f"strategy={strategy}", *recipe, *FLAKY], tmp_path / "run")
    assert summary["status"] == "completed" and [r["round"] for r in records] == [1, 2, 3, 4]
    lost = sum(r["num_failures"] for r in records)
    assert lost == summary["failures"]["total"] > 0          # dropped clients are counted, not hidden
    assert all(r["num_replies"] >= 0 and r["sim_time_s"] >= 0 for r in records)
