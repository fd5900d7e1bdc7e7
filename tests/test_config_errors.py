"""Config errors from the command line name the key and the fix, before any run directory or engine exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulation.run import preflight
from tests.simrun import run_corolla


@pytest.mark.parametrize(("overrides", "message"), [
    (["num_rounds=abc"], "num_rounds: expected an integer, got 'abc'"),
    (["out_dir=/proc/x"], "out_dir=/proc/x: run directories cannot be made there"),
    (["+num_round=3"], "num_round is not a corolla setting (did you mean num_rounds?)"),
    (["num_round=3"], "num_round is not a setting of corolla's config (did you mean num_rounds?)"),
    (["+strategy.foo=1"], "strategy.foo is not a setting of FedAvgConfig"),
    (["+train.foo=1"], "train.foo is not a setting of TrainSection"),
    (["failures.max_fraction=2"], "failures.max_fraction=2.0 is out of range"),
    (["progress=maybe"], "progress: expected true or false, got 'maybe'"),
    (["task=digits-dirichlet", "task.alpha=-1"], "task.alpha"),
    (["--multirun", "seed=0,1", "num_rounds=0,2"], "num_rounds=0 is out of range"),
])
def test_config_errors_name_the_key_and_leave_no_run_dir(tmp_path: Path, overrides: list[str], message: str,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs"
    args = overrides if any(o.startswith("out_dir") for o in overrides) else [*overrides, f"out_dir={out}"]
    assert preflight(args) == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def test_the_command_exits_2_with_one_line(tmp_path: Path) -> None:
    result = run_corolla(["run", "num_rounds=abc", f"out_dir={tmp_path}"], timeout=120, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == "corolla run: num_rounds: expected an integer, got 'abc'"
    assert not any(tmp_path.iterdir())
