"""A real simulation through Flower's engine: accuracy floor and the run-directory contract."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.simrun import FAST, read_metrics, read_summary, run_corolla, run_dir_of

RECORD_KEYS = {"round", "task", "accuracy", "loss", "num_replies", "num_failures", "uplink_bytes",
               "downlink_bytes", "wall_s"}


def test_digits_simulation_writes_the_contract(tmp_path: Path) -> None:
    result = run_corolla(["run", "strategy=fedavg", *FAST, "num_rounds=3", "plots=true", f"out_dir={tmp_path}/runs"])
    run_dir = run_dir_of(result)
    assert run_dir.parent == tmp_path / "runs"
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["strategy"]["name"] == "fedavg" and config["task"]["num_clients"] == 8

    records = read_metrics(run_dir)
    assert [r["round"] for r in records] == [1, 2, 3]
    for r in records:
        assert RECORD_KEYS <= set(r)
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["num_replies"] == 4 and r["num_failures"] == 0      # fraction_train 0.5 of 8
        assert r["uplink_bytes"] > 0 and r["downlink_bytes"] > 0
    # 4 replies of a model of ~53k float32 weights each round
    assert records[-1]["uplink_bytes"] > 4 * 50_000 * 4

    summary = read_summary(run_dir)
    assert summary["strategy"] == "fedavg" and summary["task"] == "digits"
    assert summary["num_clients"] == 8 and summary["rounds"] == 3
    assert summary["final"]["accuracy"] == records[-1]["accuracy"] > 0.6  # chance is 0.1
    assert summary["communication"]["uplink_bytes"] == sum(r["uplink_bytes"] for r in records)
    assert summary["timing"]["wall_s"] > 0
    assert (run_dir / "plots" / "accuracy.png").stat().st_size > 1000
    assert (run_dir / "checkpoints" / "last.pt").exists()
    # the summary table is printed before the final line
    assert "final accuracy" in result.stdout


def test_multirun_writes_one_run_dir_per_job_and_starts_ray_once(tmp_path: Path) -> None:
    result = run_corolla(["run", "--multirun", "strategy=fedavg,fedprox", *FAST, "num_rounds=1", "verbose=true",
                          f"out_dir={tmp_path}/runs"], timeout=400)
    # the second job runs on the Ray instance the first one started
    assert (result.stdout + result.stderr).count("ray: reusing the instance the previous job started") == 1
    run_dirs = [Path(line.removeprefix("run dir: ")) for line in result.stdout.splitlines() if line.startswith("run dir: ")]
    assert len(run_dirs) == 2
    strategies = {read_summary(d)["strategy"] for d in run_dirs}
    assert strategies == {"fedavg", "fedprox"}
    assert len({d for d in run_dirs}) == 2


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("strategy.name=nope", "unknown strategy.name='nope'; valid choices: "),
        ("task.name=nope", "nope"),
        ("model.name=nope", "nope"),
        ("task.num_clients=0", "num_clients"),
        ("task.alpha=0", "alpha"),
        ("task.num_clients=5000", "num_clients"),
        ("strategy.bogus=1", "strategy.bogus is not a setting of FedAvgConfig"),
    ],
)
def test_bad_config_fails_before_ray_starts(tmp_path: Path, override: str, message: str) -> None:
    args = ["run", *FAST, "task=digits-dirichlet", "num_rounds=1", f"out_dir={tmp_path}/runs", f"+{override}"
            if override.startswith("strategy.bogus") else override]
    result = run_corolla(args, check=False, timeout=120)
    assert result.returncode != 0
    text = result.stdout + result.stderr
    assert message in text
    # The check runs before the run directory is prepared and before the engine starts.
    assert not list((tmp_path / "runs").glob("*/config.yaml"))  # (Hydra's own .hydra/ is there)
    assert not list((tmp_path / "runs").rglob("metrics.jsonl"))


def test_corolla_help_lists_commands() -> None:
    out = run_corolla(["--help"], timeout=60).stdout
    for command in ("run", "strategies", "bench", "certs", "deploy"):
        assert command in out
