"""`corolla bench fot`: row assembly, the fairness of the tuning grids, the plan and the conf file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from bench import fot
from bench.cli import BENCHES
from bench.fot_tuning import GRIDS, TRIALS, label, pick, render_settings, write_conf


def fake_run(*, acc: float, fgt: float, plast: float, uplink: int, sketch: int | None,
             server_s: list[float]) -> tuple[dict, list[dict]]:
    summary = {"continual": {"acc": acc, "fgt": fgt, "plasticity": plast, "matrix": []},
               "communication": {"uplink_bytes": uplink, "downlink_bytes": uplink},
               "timing": {"wall_s": 12.5}}
    if sketch is not None:
        summary["fot"] = {"sketch_uplink_bytes": sketch, "basis_dims": {"a": 3, "b": 4}}
    records = [{"round": i + 1, "server_s": s, "uplink_bytes": 1} for i, s in enumerate(server_s)]
    return summary, records


def test_run_metrics_of_a_fot_run() -> None:
    summary, records = fake_run(acc=0.8, fgt=0.01, plast=0.81, uplink=1_500, sketch=500, server_s=[0.1, 0.3])
    m = fot.run_metrics(summary, records)
    assert (m["acc"], m["fgt"], m["plasticity"]) == (0.8, 0.01, 0.81)
    assert m["extra_uplink"] == pytest.approx(50.0)  # 500 sketch bytes on 1000 training bytes
    assert m["server_s_per_round"] == pytest.approx(0.2)
    assert m["basis_dim"] == 7 and m["training_uplink_mb"] == pytest.approx(0.001)


def test_run_metrics_of_a_baseline_has_no_extra_uplink() -> None:
    summary, records = fake_run(acc=0.7, fgt=0.1, plast=0.8, uplink=1_000, sketch=None, server_s=[0.01] * 4)
    m = fot.run_metrics(summary, records)
    assert m["extra_uplink"] == 0.0 and "basis_dim" not in m


def test_rows_follow_the_bench_contract(tmp_path: Path) -> None:
    report = fot.FotReport("fot", quick=True, setting={"hyperparameters": {
        fot.HEADLINE: {"fedavg": {"lr": 0.05}, "fot": {"lr": 0.05, "eps_start": 0.96}}}})
    runs = {"fedavg": [fot.run_metrics(*fake_run(acc=a, fgt=f, plast=0.8, uplink=1000, sketch=None, server_s=[0.01]))
                       for a, f in ((0.70, 0.10), (0.72, 0.12))],
            "fot": [fot.run_metrics(*fake_run(acc=a, fgt=f, plast=0.8, uplink=1500, sketch=500, server_s=[0.2]))
                    for a, f in ((0.78, 0.02), (0.80, 0.02))]}
    for variant, values in runs.items():
        fot.add_rows(report, fot.HEADLINE, variant, values)
    report.setting["targets"] = fot.targets(report.rows)
    data = json.loads(report.write(tmp_path).read_text())
    assert data["bench"] == "fot" and data["quick"] is True
    for row in data["rows"]:
        for key in fot.METRICS:
            assert set(row[key]) == {"mean", "std", "values"} and len(row[key]["values"]) == 2
    fedavg, fot_row = data["rows"]
    assert fedavg["acc"]["mean"] == pytest.approx(0.71) and fot_row["extra_uplink"]["mean"] == pytest.approx(50.0)
    targets = data["setting"]["targets"]
    assert targets["fgt_ratio"] == pytest.approx(0.02 / 0.11, abs=1e-4) and targets["fgt_ratio_met"]
    assert targets["acc_gain"] == pytest.approx(0.08) and targets["acc_gain_met"]
    table = report.table()
    assert "fot lr=0.05, eps_start=0.96" in table and "acc_gain=0.08" in table


def test_every_method_gets_the_same_tuning_budget() -> None:
    assert set(GRIDS) == set(fot.METHODS)
    for method, grid in GRIDS.items():
        assert len(grid) == TRIALS, method
        assert len({label(p) for p in grid}) == TRIALS, f"{method} repeats a trial"
        assert all("lr" in p for p in grid) and len({p["lr"] for p in grid}) >= 2, method
    assert len({p["eps_start"] for p in GRIDS["fot"]}) >= 2  # FOT's epsilon is tuned too
    assert len({p["proximal_mu"] for p in GRIDS["fedprox"]}) >= 2


def test_pick_takes_the_best_validation_acc_and_skips_failures() -> None:
    grid = [{"lr": 0.01}, {"lr": 0.1}, {"lr": 0.05}]
    scores = {"lr=0.01": {"acc": 0.7}, "lr=0.1": None, "lr=0.05": {"acc": 0.75}}
    assert pick(scores, grid) == {"lr": 0.05}
    assert pick({"lr=0.01": None}, [{"lr": 0.01}]) is None


def test_conf_choices_come_from_the_grids_and_cover_known_settings() -> None:
    conf = fot.load_conf()
    text = fot.CONF.read_text()
    for setting, entry in (conf.get("settings") or {}).items():
        assert setting in fot.SETTINGS
        for method, params in (entry.get("methods") or {}).items():
            assert params in GRIDS[method], (setting, method, params)
            assert f"{label(params)}: val acc" in text  # the validation numbers that chose it
    for method in fot.METHODS:
        assert conf["defaults"][method]["lr"] > 0


def test_write_conf_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "fot.yaml"
    path.write_text(fot.CONF.read_text())
    results = {fot.HEADLINE: {m: {"chosen": GRIDS[m][1], "val": {label(p): {"acc": 0.5, "fgt": 0.1, "plasticity": 0.6}
                                                                  for p in GRIDS[m]}} for m in fot.METHODS}}
    write_conf(results, path)
    conf = yaml.safe_load(path.read_text())
    assert conf["full"] == fot.load_conf()["full"]  # the head of the file is kept
    for m in fot.METHODS:
        assert conf["settings"][fot.HEADLINE]["methods"][m] == GRIDS[m][1]
    assert render_settings(results).count("<- chosen") == 3


@pytest.mark.parametrize("quick", [True, False])
def test_plan_runs_every_setting_and_variant(quick: bool) -> None:
    conf = fot.load_conf()
    runs = fot.plan(conf, quick)
    assert {s for s, _, _ in runs} == set(fot.SETTINGS)
    for setting in fot.SETTINGS:
        variants = [v for s, v, _ in runs if s == setting]
        expected = [*fot.METHODS, *(fot.SKETCH_VARIANTS if setting == fot.HEADLINE else [])]
        assert variants == expected
    for _, variant, overrides in runs:
        rounds = [int(o.split("=")[1]) for o in overrides if o.startswith("num_rounds=")]
        assert len(rounds) == 1 and rounds[0] % 5 == 0
        assert f"strategy={variant.split('/')[0]}" in overrides
    assert len(conf["full"]["seeds"]) == 3 and len(conf["quick"]["seeds"]) == 1


def test_headline_full_size_is_the_paper_setting() -> None:
    from conf.compose import compose

    (_, _, overrides), = [r for r in fot.plan(fot.load_conf(), quick=False) if r[:2] == (fot.HEADLINE, "fot")]
    cfg = compose([*overrides, "seed=0"])
    assert cfg["task"]["name"] == "permuted-fmnist" and cfg["task"]["partition"] == "iid"
    assert cfg["task"]["num_clients"] == 20 and cfg["strategy"]["fraction_train"] == 0.5
    assert cfg["model"] == {"name": "mlp", "hidden": [200, 200], "bias": False}
    assert cfg["task"]["continual"]["num_tasks"] == 5


def test_bench_is_registered() -> None:
    assert BENCHES["fot"] == "bench.fot:run"


def test_inline_run_counts_fot_sketches() -> None:
    """A tiny real federation on the in-process grid: sketch bytes reach the summary and the row."""
    summary, records = fot.run_inline(["task=permuted-digits", *fot.MLP, "strategy=fot", "task.num_clients=4",
                                       "strategy.fraction_train=0.5", "num_rounds=5", "train.max_steps=2",
                                       *fot.COMMON, "seed=0"])
    m = fot.run_metrics(summary, records)
    assert len(records) == 5 and summary["fot"]["sketch_uplink_bytes"] > 0
    assert m["extra_uplink"] > 0 and 0.0 <= m["acc"] <= 1.0
    assert sum(r["fot_sketch_bytes"] for r in records) == summary["fot"]["sketch_uplink_bytes"]


@pytest.mark.parametrize("method", fot.METHODS)
def test_default_command_reproduces_the_headline_runs(method: str) -> None:
    """`corolla run strategy=<method> task=permuted-fmnist seed=0` is the bench's headline run."""
    from conf.compose import CONF_DIR, compose

    assert (CONF_DIR / "tuned" / f"permuted-fmnist_mlp_{method}.yaml").exists(), "run python -m bench.fot_tuning --write"
    (_, _, overrides), = [r for r in fot.plan(fot.load_conf(), quick=False) if r[:2] == (fot.HEADLINE, method)]
    bench = compose([*overrides, "seed=0"])
    default = compose([f"strategy={method}", "task=permuted-fmnist", "seed=0"])
    for key in ("strategy", "task", "model", "train", "num_rounds", "seed", "evaluate", "engine"):
        assert bench[key] == default[key], key
