"""Every state a crash leaves in a run directory, and what `corolla run resume=<dir>` does with it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from conf.compose import compose
from conf.errors import ConfigError
from server.checkpoints import load_checkpoint, save_checkpoint
from simulation.resume import inspect_run, resumed_config
from tests.simrun import read_metrics, run_corolla

ROUNDS = 8


def record(r: int) -> dict:
    return {"round": r, "accuracy": 0.1 * r, "loss": 1.0}


def make_run(tmp_path: Path, *, checkpoint: int | None, metrics: list[int], torn: bool = False,
             summary: str | None = None) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cfg = compose(["task=digits", "model=mlp", f"num_rounds={ROUNDS}", "seed=3"])
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    text = "".join(json.dumps(record(r)) + "\n" for r in metrics)
    (run_dir / "metrics.jsonl").write_text(text + ('{"round": 9, "accur' if torn else ""))
    if checkpoint is not None:
        save_checkpoint(run_dir, {"round": checkpoint, "model": {}, "strategy": {},
                                  "recorder": {"history": [record(r) for r in range(1, checkpoint + 1)]}})
    if summary:
        (run_dir / "summary.json").write_text(json.dumps({"status": summary, "rounds": checkpoint}))
    return run_dir


def plan(run_dir: Path, overrides: list[str] | None = None):
    overrides = [f"resume={run_dir}", *(overrides or [])]
    return inspect_run(resumed_config(run_dir, compose(overrides), overrides))


def test_resume_takes_the_runs_own_settings_not_the_defaults(tmp_path: Path) -> None:
    p = plan(make_run(tmp_path, checkpoint=4, metrics=[1, 2, 3, 4]))
    assert p.cfg["num_rounds"] == ROUNDS and p.cfg["seed"] == 3 and p.cfg["task"]["name"] == "digits"
    assert p.done_round == 4 and not p.complete
    assert p.notes == [f"continuing after round 4 of {ROUNDS}"]


def test_no_checkpoint_yet_resets_the_metrics(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, checkpoint=None, metrics=[1])
    p = plan(run_dir)
    assert p.done_round == 0 and not (run_dir / "metrics.jsonl").exists()
    assert any("reset" in n for n in p.notes) and any("no checkpoint yet" in n for n in p.notes)


def test_torn_last_line_is_dropped_and_said(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, checkpoint=3, metrics=[1, 2, 3], torn=True)
    p = plan(run_dir)
    assert [r["round"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert any("half-written last line" in n for n in p.notes)


@pytest.mark.parametrize(("metrics", "word"), [([1, 2, 3, 4, 5], "dropped round(s) 4-5"),
                                                ([1], "restored round(s) 2-3")])
def test_metrics_ahead_or_behind_are_reconciled_to_the_checkpoint(tmp_path: Path, metrics: list[int],
                                                                  word: str) -> None:
    run_dir = make_run(tmp_path, checkpoint=3, metrics=metrics)
    p = plan(run_dir)
    assert [r["round"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert any(word in n for n in p.notes), p.notes


def test_the_two_last_checkpoints_are_kept_and_the_newest_loaded(tmp_path: Path) -> None:
    for r in (1, 2, 3):
        save_checkpoint(tmp_path, {"round": r, "model": {"w": torch.tensor([float(r)])}})
    assert torch.load(tmp_path / "checkpoints" / "previous.pt", weights_only=False)["round"] == 2
    (tmp_path / "checkpoints" / "last.pt").unlink()  # a kill between the two renames
    assert load_checkpoint(tmp_path)["round"] == 2


@pytest.mark.parametrize(("override", "message"), [
    ("seed=4", "seed=4: a resumed run keeps the settings it started with (seed=3"),
    ("strategy=fedprox", "strategy=fedprox: a resumed run keeps"),
    ("train.lr=0.5", "train.lr=0.5: a resumed run keeps"),
    ("num_rounds=5", "can extend a run, not shorten it"),
])
def test_overrides_that_change_the_experiment_are_refused(tmp_path: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=None) as err:
        plan(make_run(tmp_path, checkpoint=4, metrics=[1, 2, 3, 4]), [override])
    assert message in str(err.value)


def test_display_overrides_and_extension_are_taken(tmp_path: Path) -> None:
    p = plan(make_run(tmp_path, checkpoint=4, metrics=[1, 2, 3, 4]),
             ["num_rounds=12", "progress=false", "tracking.mlflow=true", "seed=3"])
    assert p.cfg["num_rounds"] == 12 and p.cfg["progress"] is False and p.cfg["tracking"]["mlflow"] is True
    assert p.extended_from == ROUNDS and any("extending from 8 to 12" in n for n in p.notes)


def test_resuming_a_finished_run_says_so_and_exits_0(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, checkpoint=ROUNDS, metrics=list(range(1, ROUNDS + 1)), summary="completed")
    result = run_corolla(["run", f"resume={run_dir}"], timeout=120)
    assert f"is complete at round {ROUNDS}; pass num_rounds=M (M > {ROUNDS}) to extend it" in result.stdout
    refused = run_corolla(["run", f"resume={run_dir}", "seed=1"], timeout=120, check=False)
    assert refused.returncode == 2 and "seed=1: a resumed run keeps" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_a_run_killed_before_config_yaml_says_how_to_start_it_again(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["task=digits", "num_rounds=8"]))
    with pytest.raises(ConfigError, match="stopped before it wrote config.yaml") as err:
        plan(run_dir)
    assert "corolla run task=digits num_rounds=8" in str(err.value)
