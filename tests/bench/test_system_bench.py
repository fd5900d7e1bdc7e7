"""`corolla bench system`: its settings and variants, each run's config, time to target and the stragglers check."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import system
from bench.cli import BENCHES
from bench.report import BenchReport


def test_settings_and_variants_are_the_issues() -> None:
    assert BENCHES["system"] == "bench.system:run"
    assert list(system.SETTINGS) == ["ideal", "stragglers", "flaky", "stragglers+flaky"]
    assert system.VARIANTS == ("fedavg", "fedavg-deadline", "fedprox-partial", "fedbuff")


@pytest.mark.parametrize("quick", [True, False])
def test_every_run_of_the_bench_has_a_valid_config(quick: bool) -> None:
    from conf.compose import compose
    from server.config_check import check_config
    from server.system import system_config

    for setting in system.SETTINGS:
        for variant in system.VARIANTS:
            cfg = compose(system.overrides(variant, setting, quick=quick, seed=1, deadline_s=0.7))
            check_config(cfg)
            world = system_config(cfg)
            assert (world.slow_fraction, world.slow_factor) == ((0.1, 10.0) if "stragglers" in setting else (0.0, 1.0))
            assert (world.online_prob, world.dropout) == ((0.7, 0.1) if "flaky" in setting else (1.0, 0.0))
            assert world.deadline_s == (0.7 if variant in ("fedavg-deadline", "fedprox-partial") else None)
            assert world.partial_work == (variant == "fedprox-partial")
            n = cfg["task"]["num_clients"]
            if variant == "fedbuff":   # as many client updates as FedAvg's rounds of every client
                assert cfg["num_rounds"] * cfg["strategy"]["buffer_size"] == system.SIZES[quick]["rounds"] * n
            else:
                assert cfg["strategy"]["fraction_train"] == 1.0


@pytest.mark.parametrize("quick", [True, False])
def test_each_family_is_tuned_on_validation_in_ideal_with_the_same_grid(quick: bool) -> None:
    from conf.compose import compose
    from server.config_check import check_config
    from server.system import system_config

    assert set(system.FAMILY) == set(system.VARIANTS) and set(system.FAMILY.values()) == {"fedavg", "fedprox", "fedbuff"}
    for family in set(system.FAMILY.values()):
        cfg = compose([*system.overrides(family, "ideal", quick=quick, seed=0, lr=0.1), "evaluate.split=val"])
        check_config(cfg)
        assert cfg["strategy"]["name"] == family and cfg["train"]["lr"] == 0.1
        assert system_config(cfg).deadline_s is None      # in ideal nothing is late: a deadline would cut nothing
    with pytest.raises(ValueError, match="deadline_s"):
        system.overrides("fedavg-deadline", "stragglers", quick=quick, seed=0)


def test_time_to_target_is_the_first_round_that_reached_it() -> None:
    result = {"curve": [(1.0, 0.5), (2.0, 0.8), (3.0, 0.7)], "sim_time_s": 3.0}
    assert system.time_to_target(result, 0.75) == (2.0, True)
    assert system.time_to_target(result, 0.9) == (3.0, False)     # never: the run's total, flagged


def test_the_stragglers_check_needs_half_the_time_on_every_seed() -> None:
    report = BenchReport("system", quick=True)
    for variant, times, reached in [("fedavg", [10.0, 12.0], [1, 1]), ("fedavg-deadline", [4.0, 6.0], [1, 1]),
                                    ("fedprox-partial", [5.0, 7.0], [1, 1]), ("fedbuff", [2.0, 3.0], [1, 0])]:
        report.add("stragglers", variant, sim_time_to_target_s=times, reached=[float(r) for r in reached])
    checks = system.stragglers_check(report.rows)
    assert checks["fedavg-deadline"] == {"time_ratio_to_fedavg": round(5 / 11, 3), "at_most_half": True}
    assert checks["fedprox-partial"]["at_most_half"] is False          # 6/11 > 0.5
    assert checks["fedbuff"]["at_most_half"] is False                  # one seed never reached the target


def test_the_committed_results_keep_the_contract() -> None:
    data = json.loads((Path(system.__file__).parent / "results" / "system.json").read_text())
    assert data["bench"] == "system" and isinstance(data["quick"], bool) and data["setting"]["engine"]
    assert data["setting"]["seeds"] == list(system.SIZES[data["quick"]]["seeds"])
    rows = {(r["setting"], r["variant"]) for r in data["rows"]}
    assert rows == {(s, v) for s in system.SETTINGS for v in system.VARIANTS}
    for row in data["rows"]:
        for metric in ("accuracy", "sim_time_to_target_s", "bytes", "reached"):
            assert len(row[metric]["values"]) == len(data["setting"]["seeds"])


def test_a_runs_result_is_kept_for_a_resume(tmp_path: Path) -> None:
    from bench import cells

    args = [a for a in system.overrides("fedbuff", "stragglers", quick=True, seed=0)
            if not a.startswith(("num_rounds=", "task.num_clients=", "strategy.concurrency=", "strategy.buffer_size="))]
    result = system._one([*args, "num_rounds=2", "task.num_clients=4", "strategy.concurrency=4",
                          "strategy.buffer_size=2"])
    assert len(result["curve"]) == 2
    with cells.stored_in(tmp_path):
        assert cells.save(system._one, args, 1, result)   # JSON gives it back unchanged: kept
        assert cells.load(system._one, args, 1) == result
