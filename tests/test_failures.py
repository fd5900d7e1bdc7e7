"""Loud failures in real simulations: bad replies are left out, too many failures stop the run."""

from __future__ import annotations

from pathlib import Path

from tests.plugin_paths import plugin_pythonpath
from tests.simrun import FAST, read_metrics, read_summary, run_corolla, run_dir_of


def test_malformed_and_crashing_clients_are_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    args = ["run", "strategy=faulty", *FAST, "task.num_clients=6", "strategy.fraction_train=1.0",
            "strategy.nan=[0]", "strategy.crash=[1]", "num_rounds=2", f"out_dir={tmp_path}/runs"]
    result = run_corolla(args, extra_pythonpath=plugin_pythonpath(tmp_path))
    run_dir = run_dir_of(result)
    records = read_metrics(run_dir)
    for record in records:
        assert record["num_failures"] == 2      # one crash + one NaN reply per round
        assert record["num_rejected"] == 1
        assert record["num_replies"] == 4       # the rest were aggregated
    assert records[-1]["accuracy"] > 0.3        # the NaN never reached the model
    assert read_summary(run_dir)["failures"]["total"] == 4
    logged = result.stdout + result.stderr
    assert "rejected reply from node" in logged and "NaN" in logged
    assert "injected crash on partition 1" in logged


def test_too_many_failures_exit_nonzero_with_the_client_traceback(tmp_path: Path) -> None:
    args = ["run", "strategy=faulty", *FAST, "task.num_clients=4", "strategy.fraction_train=1.0",
            "strategy.crash=[0,1,2]", "num_rounds=3", f"out_dir={tmp_path}/runs"]
    result = run_corolla(args, extra_pythonpath=plugin_pythonpath(tmp_path), check=False)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert "failures.max_fraction=0.5" in text
    assert "injected crash on partition" in text and "Traceback" in text
