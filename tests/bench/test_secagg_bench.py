"""`corolla bench secagg`: the issue's settings, a valid config for every run, the committed results' contract."""

from __future__ import annotations

import json

import pytest

from bench import secagg
from bench.cli import BENCHES
from tests.simrun import REPO


def test_settings_variants_and_dropouts_are_the_issues() -> None:
    assert BENCHES["secagg"] == "bench.secagg:run"
    assert [s.split("/")[0] for s in secagg.SETTINGS] == ["fedavg", "fot", "ggeur", "fedavg"]
    assert "task=fmnist-dirichlet" in secagg.SETTINGS["fedavg/fmnist-dirichlet"]
    assert "model=cnn" in secagg.SETTINGS["fedavg/fmnist-dirichlet"]
    assert "task=permuted-fmnist" in secagg.SETTINGS["fot/permuted-fmnist"]
    assert "task=digit-domains" in secagg.SETTINGS["ggeur/digit-domains"]
    assert secagg.DROPOUTS == (0, 20)
    assert secagg.VARIANTS == {"plain": [], "secagg": ["secagg=true"]}


@pytest.mark.parametrize("quick", [True, False])
def test_every_run_of_the_bench_has_a_valid_config(quick: bool) -> None:
    from conf.compose import compose
    from server.config_check import check_config

    for setting, overrides in secagg.SETTINGS.items():
        extra = secagg.QUICK[setting] if quick else []
        for flags in secagg.VARIANTS.values():
            cfg = compose([*overrides, *extra, *flags, *secagg.COMMON, "seed=1"])
            check_config(cfg)
            assert bool(cfg.get("secagg")) == bool(flags)


def test_the_committed_results_keep_the_contract() -> None:
    report = json.loads((REPO / "bench" / "results" / "secagg.json").read_text())
    assert report["bench"] == "secagg"
    seeds = report["setting"]["seeds"]
    assert seeds == ([0] if report["quick"] else [0, 1, 2])
    rows = {(r["setting"], r["variant"]): r for r in report["rows"]}
    for setting in secagg.SETTINGS:
        for percent in secagg.DROPOUTS:
            key = f"{setting}/drop={percent}"
            plain, secure = rows[(key, "plain")], rows[(key, "secagg")]
            assert len(secure["accuracy"]["values"]) == len(seeds)
            gaps = [s - p for s, p in zip(secure["accuracy"]["values"], plain["accuracy"]["values"])]
            assert secure["accuracy_gap"]["values"] == pytest.approx(gaps)
            lost = secure["lost_replies"]["values"]
            assert all(v > 0 for v in lost) if percent else all(v == 0 for v in lost)
            assert lost == plain["lost_replies"]["values"]  # plain runs lose the same clients
    # The issue's bytes target: under 2x the plain update at 100 clients per round.
    assert max(rows[("fedavg/100-clients/drop=0", "secagg")]["uplink_ratio"]["values"]) < 2.0
