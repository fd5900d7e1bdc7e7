"""The second door: `flwr run .` through Flower's CLI gives the same kind of run directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.simrun import free_port, REPO, read_metrics, read_summary


@pytest.mark.slow
def test_flwr_run_door_writes_a_run_dir(tmp_path: Path) -> None:
    env = {**os.environ, "FLWR_HOME": str(tmp_path / "flwr-home"),
           "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()), "RAY_USAGE_STATS_ENABLED": "0"}
    script = REPO / "scripts" / "flwr-local.sh"
    overrides = ["task=digits", "model=mlp", "task.num_clients=4", "num_rounds=2", "progress=false",
                 f"out_dir={tmp_path}/runs"]
    try:
        result = subprocess.run([str(script), *overrides], cwd=REPO, env=env, capture_output=True, text=True,
                                timeout=420)
    finally:
        subprocess.run([str(script), "--stop"], cwd=REPO, env=env, capture_output=True, timeout=60)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-4000:]
    lines = [line for line in out.splitlines() if line.startswith("run dir: ")]
    assert lines, out[-4000:]
    run_dir = Path(lines[-1].removeprefix("run dir: "))
    assert run_dir.parent == tmp_path / "runs"
    assert [r["round"] for r in read_metrics(run_dir)] == [1, 2]
    summary = read_summary(run_dir)
    assert summary["strategy"] == "fedavg" and summary["num_clients"] == 4
    assert (run_dir / "config.yaml").exists()
