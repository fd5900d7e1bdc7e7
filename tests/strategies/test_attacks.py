"""Attacks: attackers drawn from the seed, the poisoned replies' math, and what a run records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.inline import run_inline
from conf.errors import ConfigError
from strategies.attacks import attackers, flip_labels, parse_attack, poison_weights

SMALL = ["task=digits", "model=mlp", "task.num_clients=10", "plots=false", "progress=false"]


def test_attackers_are_a_fixed_share_drawn_from_the_seed() -> None:
    chosen = attackers(seed=3, num_clients=10, fraction=0.3)
    assert len(chosen) == 3 and chosen <= set(range(10))
    assert attackers(seed=3, num_clients=10, fraction=0.3) == chosen
    assert len({attackers(seed=s, num_clients=10, fraction=0.3) for s in range(8)}) > 1
    assert attackers(seed=3, num_clients=10, fraction=0.0) == frozenset()


def test_poisoned_replies() -> None:
    sent = {"w": torch.zeros(3), "n": torch.tensor(4)}
    local = {"w": torch.tensor([1.0, -2.0, 0.5]), "n": torch.tensor(5)}
    flipped = poison_weights(local, sent, mode="sign-flip", scale=4.0, seed=0)
    assert torch.equal(flipped["w"], torch.tensor([-4.0, 8.0, -2.0])) and flipped["n"] == 5
    assert torch.equal(poison_weights(local, sent, mode="scaling", scale=10.0, seed=0)["w"],
                       torch.tensor([10.0, -20.0, 5.0]))
    noise = poison_weights({"w": torch.zeros(10_000)}, {"w": torch.zeros(10_000)}, mode="gaussian", scale=2.0, seed=1)
    assert abs(float(noise["w"].std()) - 2.0) < 0.1
    assert poison_weights(local, sent, mode="label-flip", scale=1.0, seed=0) is local
    assert np.array_equal(flip_labels(np.array([0, 3, 9]), 10), np.array([9, 6, 0]))


def test_bad_attack_settings_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError) as err:
        parse_attack({"name": "sign-flip", "fraction": 1.5, "scale": 1.0})
    assert err.value.key == "attack.fraction"
    with pytest.raises(ConfigError, match="attack.name='flip'"):
        parse_attack({"name": "flip", "fraction": 0.1, "scale": 1.0})


def test_attack_on_a_strategy_without_weights_fails_at_config_time() -> None:
    from conf.compose import compose
    from server.config_check import check_config

    with pytest.raises(ValueError, match="attack=sign-flip .* strategy=creamfl"):
        check_config(compose(["strategy=creamfl", "task=captioned", "attack=sign-flip"]))


def test_runs_record_which_nodes_attacked_and_every_strategy_faces_the_same(tmp_path: Path) -> None:
    args = [*SMALL, "attack=sign-flip", "attack.fraction=0.3", "num_rounds=4", "seed=1"]
    _, avg, _ = run_inline(["strategy=fedavg", *args], tmp_path / "fedavg")
    _, med, _ = run_inline(["strategy=fedmedian", *args], tmp_path / "fedmedian")
    chosen = attackers(seed=1, num_clients=10, fraction=0.3)
    assert all(set(r["attackers"]) <= chosen for r in avg)
    assert any(r["attackers"] for r in avg), "no sampled attacker in 4 rounds: pick another seed"
    assert [r["attackers"] for r in avg] == [r["attackers"] for r in med]
    assert all("attacker" not in r for r in avg)   # the per-reply flag is not averaged into the record
