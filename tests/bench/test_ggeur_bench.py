"""`corolla bench ggeur`: job overrides, rows (gap closed), and one tiny real job of each kind."""

from __future__ import annotations

import math

import pytest

from bench import ggeur
from bench.cli import BENCHES
from bench.report import BenchReport


def test_bench_is_registered_with_every_variant_of_the_issue() -> None:
    assert BENCHES["ggeur"] == "bench.ggeur:run"
    for name in ("fedavg", "ggeur", "ggeur-fedprox", "oversample", "isotropic", "centralised"):
        assert name in ggeur.VARIANTS
    assert all(v == "centralised" or v.startswith("ggeur-") or v in ggeur.VARIANTS for v in ggeur.VARIANTS)


def test_job_overrides_share_the_base_and_add_the_family_reduction() -> None:
    conf = ggeur.load_conf()
    setting = "fmnist-dirichlet/alpha=0.1"
    fedavg = ggeur.job_overrides(conf, setting, "fedavg", 1, quick=True)
    method = ggeur.job_overrides(conf, setting, "ggeur", 1, quick=True)
    ceiling = ggeur.job_overrides(conf, setting, "centralised", 1, quick=True)
    fam = conf["families"]["features"]
    assert f"train.lr={fam['train']['lr']}" in fedavg and f"train.lr={fam['ggeur_lr']}" in method  # own lrs
    same = [o for o in fedavg if not o.startswith(("train.lr=", "strategy="))]
    assert same == [o for o in method if not o.startswith(("train.lr=", "strategy"))]  # task, rounds, seed
    assert "strategy.reduce=pca" in method and not any(o.startswith("strategy.reduce") for o in fedavg)
    assert ceiling[0] == ggeur.CENTRALISED and "seed=1" in ceiling
    assert f"num_rounds={conf['families']['features']['rounds_quick']}" in fedavg
    tuned = ggeur.job_overrides(conf, setting, "fedavg", 0, quick=False, lr=0.3)
    assert "train.lr=0.3" in tuned and f"num_rounds={conf['families']['features']['rounds']}" in tuned


def test_gap_closed_is_relative_to_fedavg_and_the_ceiling() -> None:
    report = BenchReport("ggeur", True, setting={})
    runs = {"fedavg": [{"accuracy": 0.6, "val": 0.6, "bytes_per_client": 10.0}],
            "ggeur": [{"accuracy": 0.7, "val": 0.7, "bytes_per_client": 30.0}],
            "centralised": [{"accuracy": 0.8, "val": 0.8, "bytes_per_client": 0.0}]}
    ggeur.add_rows(report, "s", runs)
    by = {row["variant"]: row for row in report.rows}
    assert by["ggeur"]["gap_closed"]["mean"] == pytest.approx(0.5)
    assert by["fedavg"]["gap_closed"]["mean"] == 0 and by["centralised"]["gap_closed"]["mean"] == pytest.approx(1)
    assert by["ggeur"]["bytes_per_client"]["mean"] == 30.0


@pytest.mark.parametrize("variant", ["fedavg", "ggeur", "centralised"])
def test_one_real_job(variant: str) -> None:
    conf = ggeur.load_conf()
    overrides = ggeur.job_overrides(conf, "digits-dirichlet/alpha=0.5", variant, 0, quick=True, rounds=1)
    res = ggeur.run_job(overrides)
    assert 0.0 <= res["accuracy"] <= 1.0 and 0.0 <= res["val"] <= 1.0 and not math.isnan(res["accuracy"])
    if variant == "centralised":
        assert res["bytes_per_client"] == 0.0
    else:
        assert res["bytes_per_client"] > 0 and res["wall_s"] > 0


@pytest.mark.parametrize("variant", ["fedavg", "ggeur"])
def test_headline_command_is_the_bench_run(variant: str) -> None:
    """`corolla run strategy=<v> task=digits-dirichlet task.alpha=0.1 task.num_clients=10 model=linear seed=0`."""
    from conf.compose import compose

    conf = ggeur.load_conf()
    bench = compose(ggeur.job_overrides(conf, "digits-dirichlet/alpha=0.1", variant, 0, quick=False))
    default = compose([f"strategy={variant}", "task=digits-dirichlet", "task.alpha=0.1", "task.num_clients=10",
                       "model=linear", "seed=0"])
    for key in ("strategy", "task", "model", "train", "num_rounds", "seed", "evaluate"):
        assert bench[key] == default[key], key


def test_payload_rows_measure_the_reduction() -> None:
    """On digits (d = 64) a 16-d random projection shrinks the statistics and the geometry."""
    base = ["task=digits-dirichlet", "task.num_clients=4", *ggeur.COMMON, "strategy=ggeur", "num_rounds=1",
            "train.max_steps=1", "seed=0"]
    full = ggeur.run_payload([*base, "strategy.reduce=none"])
    small = ggeur.run_payload([*base, "strategy.reduce=random", "strategy.reduce_dim=16"])
    assert full["dim"] == 64 and small["dim"] == 16
    assert small["stats_uplink_per_client"] < full["stats_uplink_per_client"] / 4
    assert small["geometry_downlink_per_client"] < full["geometry_downlink_per_client"] / 4
    assert full["bytes_per_client"] >= full["stats_uplink_per_client"] + full["geometry_downlink_per_client"]


def test_best_lr_skips_failed_trials_and_prefers_the_smaller_lr_on_ties() -> None:
    nan = float("nan")
    assert ggeur.best_lr([0.1, 0.3, 1.0], {0.1: nan, 0.3: 0.8, 1.0: 0.7}) == 0.3  # a failed first trial
    assert ggeur.best_lr([0.1, 0.3], {0.1: 0.9, 0.3: 0.9}) == 0.1
