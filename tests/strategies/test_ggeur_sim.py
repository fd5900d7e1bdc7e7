"""GGEUR through Flower's simulation engine: the statistics phase, its bytes, the run contract."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.simrun import read_metrics, read_summary, run_corolla, run_dir_of


def test_ggeur_digits_dirichlet_simulation(tmp_path: Path) -> None:
    result = run_corolla(["run", "strategy=ggeur", "task=digits-dirichlet", "task.alpha=0.1",
                          "task.num_clients=10", "model=linear", "num_rounds=3", "progress=false",
                          "plots=false", f"out_dir={tmp_path}/runs"], timeout=600)
    run_dir = run_dir_of(result)
    records = read_metrics(run_dir)
    summary = read_summary(run_dir)
    assert [r["round"] for r in records] == [1, 2, 3]
    assert summary["strategy"] == "ggeur" and summary["rounds"] == 3
    # Chance is 0.1. Seed 0's alpha=0.1 partition is a hard one: 3 rounds give FedAvg 0.34 and GGEUR
    # 0.39 (seeds 1 and 2: GGEUR 0.67, 0.78), so "learns" here means three times chance.
    assert summary["final"]["accuracy"] == records[-1]["accuracy"] > 0.3

    ggeur = summary["ggeur"]
    assert ggeur["base"] == "fedavg" and ggeur["clients_used"] == 10 and ggeur["clients_failed"] == 0
    assert ggeur["dim"] == 64 and ggeur["top_k"] == 64 and ggeur["reduce"] == "none"
    # per class held: n (int64) + sum x (64 float64) + the upper triangle of sum x x^T (2080 float64)
    per_class = 8 + 8 + 64 * 8 + 2080 * 8
    assert 2 * per_class <= ggeur["stats_uplink_bytes_per_client"] <= 10 * per_class + 1000
    assert ggeur["geometry_bytes_per_client"] > 0
    first = records[0]
    assert first["ggeur_clients_used"] == 10
    # the statistics travel through the metered grid: round 1's uplink holds all of them
    assert first["uplink_bytes"] >= ggeur["stats_uplink_bytes"]
    assert records[1]["uplink_bytes"] < first["uplink_bytes"]
    # every trained client held the geometry and trained on more than its real samples
    for r in records:
        # an example-weighted mean of 1.0s: exact up to float rounding of the weights
        assert r["ggeur-has-geometry"] == pytest.approx(1.0, abs=1e-12)
        assert r["ggeur-augmented-examples"] > r["ggeur-real-examples"]
    assert sum(r["ggeur_geometry_messages"] for r in records) <= 10  # sent once per client


def test_a_bad_ggeur_setting_stops_corolla_run_before_any_engine(tmp_path: Path) -> None:
    """As a user types it: a GGEUR key and a key its base does not take both fail before Ray starts."""
    for override, message in (("strategy.noise=gaussian", "strategy.noise='gaussian' is not a valid choice"),
                              ("+strategy.proximal_mu=0.1", "strategy.proximal_mu")):
        result = run_corolla(["run", "strategy=ggeur", "task=digits-dirichlet", "model=linear", "num_rounds=1",
                              "progress=false", "plots=false", f"out_dir={tmp_path}/runs", override],
                             check=False, timeout=120)
        assert result.returncode != 0
        assert message in result.stdout + result.stderr
        assert not list((tmp_path / "runs").rglob("metrics.jsonl"))
