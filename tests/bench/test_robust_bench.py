"""`corolla bench robust`: its settings and variants, each run's config, the aggregators' f and the lr pick."""

from __future__ import annotations

import pytest

from bench import inline, robust
from bench.cli import BENCHES


def test_settings_and_variants_are_the_issues() -> None:
    assert "robust" in BENCHES
    assert list(robust.SETTINGS) == ["clean", "sign-flip/10", "sign-flip/20", "sign-flip/30",
                                     "gaussian/10", "gaussian/20", "gaussian/30"]
    assert robust.VARIANTS == ("fedavg", "fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")


def test_aggregators_get_the_attackers_count_capped_by_their_rule() -> None:
    assert robust.defence("krum", attackers=3, clients=10, share=0.3) == ["strategy.num_malicious_nodes=3"]
    assert robust.defence("multikrum", attackers=2, clients=10, share=0.2) == [
        "strategy.num_malicious_nodes=2", "strategy.num_nodes_to_select=8"]
    assert robust.defence("bulyan", attackers=3, clients=10, share=0.3) == ["strategy.num_malicious_nodes=1"]
    assert robust.defence("fedtrimmedavg", attackers=0, clients=10, share=0.0) == ["strategy.beta=0.1"]
    assert robust.defence("fedavg", attackers=3, clients=10, share=0.3) == []


@pytest.mark.parametrize("quick", [True, False])
def test_every_run_of_the_bench_has_a_valid_config(quick: bool) -> None:
    from conf.compose import compose
    from server.config_check import check_config

    for setting in robust.SETTINGS:
        for variant in robust.VARIANTS:
            cfg = compose(robust.overrides(variant, setting, quick=quick, seed=1, lr=0.05))
            check_config(cfg)
            attack, share = robust.SETTINGS[setting]
            assert cfg["attack"]["name"] == attack and cfg["attack"]["fraction"] == share
            assert cfg["strategy"]["fraction_train"] == 1.0 and cfg["train"]["lr"] == 0.05
            assert cfg["failures"]["max_fraction"] == 1.0  # an attack that breaks every reply ends the run, not stops it


def test_the_lr_choice_skips_failed_trials() -> None:
    results = {("krum", 0.02): RuntimeError("nan"), ("krum", 0.05): {"accuracy": 0.6},
               ("krum", 0.1): {"accuracy": 0.7}, ("fedavg", 0.02): {"accuracy": 0.9}}
    assert inline.best_lr(results, "krum") == 0.1
    with pytest.raises(RuntimeError, match="every lr trial of bulyan failed"):
        inline.best_lr(results, "bulyan")
