"""`corolla bench sim-overhead`: the issue's rows and settings, valid configs, the committed results' contract."""

from __future__ import annotations

import json
import statistics

import pytest

from bench import sim_overhead
from bench.cli import BENCHES
from tests.simrun import REPO


def test_settings_and_the_startup_run_are_the_issues() -> None:
    assert BENCHES["sim-overhead"] == "bench.sim_overhead:run"
    assert sim_overhead.STARTUP == ["task=digits", "model=mlp", "num_rounds=2"]
    assert {"digits-mlp/clients_per_round=100", "fmnist-cnn/clients_per_round=100"} <= set(sim_overhead.SETTINGS)


@pytest.mark.parametrize("engine", ["engine=ray", "engine=inline"])
def test_every_run_of_the_bench_has_a_valid_config(engine: str) -> None:
    from conf.compose import compose
    from server.config_check import check_config

    for overrides in [*sim_overhead.SETTINGS.values(), sim_overhead.STARTUP]:
        cfg = compose([*sim_overhead.COMMON, *overrides, engine])
        check_config(cfg)
        assert cfg["engine"]["name"] == engine.split("=")[1]


def test_the_committed_results_keep_the_contract() -> None:
    report = json.loads((REPO / "bench" / "results" / "sim-overhead.json").read_text())
    assert report["bench"] == "sim-overhead" and report["quick"] is False
    rows = {(r["setting"], r["variant"]): r for r in report["rows"]}
    for setting in sim_overhead.SETTINGS:
        bare = statistics.fmean(rows[(setting, "bare")]["s_per_round"]["values"])
        for variant in ("corolla", "corolla-inline"):
            row = rows[(setting, variant)]
            assert len(row["s_per_round"]["values"]) == report["setting"]["steady_rounds"]
            assert row["ratio_to_bare"] == pytest.approx(statistics.fmean(row["s_per_round"]["values"]) / bare)
            # the same work: every engine ends within half a point of the bare loop's accuracy (its
            # two intra-op threads sum a CNN's floats in another order than one thread does)
            assert row["final_accuracy"] == pytest.approx(rows[(setting, "bare")]["final_accuracy"], abs=5e-3)
    tiny = rows[("digits-mlp/clients_per_round=100", "corolla")]
    assert tiny["ms_per_client_round"]["mean"] == pytest.approx(tiny["s_per_round"]["mean"] * 10, rel=1e-6)
    ray_wall = statistics.fmean(rows[("startup/digits-mlp", "corolla")]["wall_s"]["values"])
    for variant in ("corolla", "corolla-inline", "bare"):
        row = rows[("startup/digits-mlp", variant)]
        assert 0 < row["startup_s"]["mean"] < row["wall_s"]["mean"]
        assert row["wall_ratio_to_corolla"] == pytest.approx(statistics.fmean(row["wall_s"]["values"]) / ray_wall)
