"""The second door: `flwr run .` through Flower's CLI gives the same kind of run directory."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import psutil
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
        pid_file = tmp_path / "flwr-home" / "local-superlink" / "superlink.pid"
        pid = int(pid_file.read_text()) if pid_file.exists() else None
        stop = subprocess.run([str(script), "--stop"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=60)
    assert stop.returncode == 0 and "Traceback" not in stop.stderr, stop.stderr
    assert pid is not None and not psutil.pid_exists(pid)
    assert not (tmp_path / "flwr-home" / "local-superlink").exists()   # nothing left behind
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


def test_flwr_local_stop_without_a_superlink_exits_0_and_writes_nothing_in_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLWR_HOME"}
    env.update({"HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")})
    before = (REPO / ".flwr").exists()
    result = subprocess.run([str(REPO / "scripts" / "flwr-local.sh"), "--stop"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (REPO / ".flwr").exists() == before
    assert not (tmp_path / "state" / "corolla" / "flwr" / "local-superlink").exists()
