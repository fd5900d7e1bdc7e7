"""Kill a real run after round k, resume it, and get the same final model as an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import torch
import yaml

from tests.simrun import CLI, FAST, REPO, corolla_env, read_metrics, run_corolla, run_dir_of

ROUNDS = 5
ARGS = ["run", "strategy=fedprox", *FAST, f"num_rounds={ROUNDS}", "seed=3"]


def final_model(run_dir: Path) -> dict[str, torch.Tensor]:
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    assert state["round"] == ROUNDS
    return state["model"]


def kill_after_round(run_dir: Path, k: int, timeout: float = 240) -> None:
    """Start a run and SIGKILL its whole process group once round k is recorded."""
    proc = subprocess.Popen([*CLI, *ARGS, f"hydra.run.dir={run_dir}"], cwd=REPO, env=corolla_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            metrics = run_dir / "metrics.jsonl"
            if metrics.exists() and len(metrics.read_text().splitlines()) >= k:
                break
            assert proc.poll() is None, "the run ended before it could be interrupted"
            time.sleep(0.2)
        else:
            raise AssertionError(f"round {k} not reached in {timeout}s")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def test_resume_after_kill_matches_uninterrupted_run(tmp_path: Path) -> None:
    full = run_dir_of(run_corolla([*ARGS, f"hydra.run.dir={tmp_path / 'full'}"]))

    interrupted = tmp_path / "interrupted"
    kill_after_round(interrupted, k=2)
    checkpoint = torch.load(interrupted / "checkpoints" / "last.pt", weights_only=False)
    assert 1 <= checkpoint["round"] < ROUNDS, "the kill came after the run finished"

    # As the README says: resume=<dir> and nothing else (the default num_rounds=20 must not apply).
    result = run_corolla(["run", f"resume={interrupted}"])
    resumed = run_dir_of(result)
    assert resumed == interrupted.resolve()
    assert f"continuing after round {checkpoint['round']} of {ROUNDS}" in result.stderr
    assert yaml.safe_load((resumed / "config.yaml").read_text())["num_rounds"] == ROUNDS
    rounds = [r["round"] for r in read_metrics(resumed)]
    assert rounds == list(range(1, ROUNDS + 1)), rounds  # no round lost or repeated in the record

    expected, got = final_model(full), final_model(resumed)
    assert expected.keys() == got.keys()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=0, msg=f"{key} differs after resume")
    summary = json.loads((resumed / "summary.json").read_text())
    assert summary["rounds"] == ROUNDS and summary["status"] == "completed"
