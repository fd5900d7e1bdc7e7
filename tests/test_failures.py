"""Loud, readable failures in real simulations: one line per failed client, tracebacks in run.log, a status."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.plugin_paths import plugin_pythonpath
from tests.simrun import CLI, FAST, REPO, corolla_env, read_metrics, read_summary, run_corolla, run_dir_of


def test_malformed_and_crashing_clients_are_counted_and_the_run_goes_on(tmp_path: Path) -> None:
    args = ["run", "strategy=faulty", *FAST, "task.num_clients=6", "strategy.fraction_train=1.0",
            "strategy.nan=[0]", "strategy.crash=[1]", "num_rounds=2", f"out_dir={tmp_path}/runs"]
    result = run_corolla(args, extra_pythonpath=plugin_pythonpath(tmp_path))
    run_dir = run_dir_of(result)
    records = read_metrics(run_dir)
    for record in records:
        assert record["num_failures"] == 2      # one crash + one NaN reply per round
        assert record["num_rejected"] == 1
        assert record["num_replies"] == 4       # the rest were aggregated
    assert records[-1]["accuracy"] > 0.3        # the NaN never reached the model
    summary = read_summary(run_dir)
    assert summary["failures"]["total"] == 4 and summary["status"] == "completed"
    logged = result.stdout + result.stderr
    assert "rejected reply from node" in logged and "(partition 0)" in logged and "NaN" in logged
    crash_lines = [line for line in logged.splitlines() if "injected crash" in line]
    assert len(crash_lines) == 2, logged[-3000:]   # one line per failed client and round, no traceback
    assert "(partition 1) failed: RuntimeError: injected crash on partition 1" in crash_lines[0]
    assert "Traceback" not in logged
    assert "Traceback" in (run_dir / "run.log").read_text()


def test_too_many_failures_exit_nonzero_with_a_status_and_the_traceback_in_run_log(tmp_path: Path) -> None:
    args = ["run", "strategy=faulty", *FAST, "task.num_clients=4", "strategy.fraction_train=1.0",
            "strategy.crash=[0,1,2]", "num_rounds=3", f"out_dir={tmp_path}/runs"]
    result = run_corolla(args, extra_pythonpath=plugin_pythonpath(tmp_path), check=False)
    assert result.returncode == 1
    text = result.stdout + result.stderr
    assert len(text.strip().splitlines()) <= 8, text   # 3 clients, the reason, run.log's path, the run dir
    assert "failures.max_fraction=0.5" in text and "RuntimeError: injected crash on partition" in text
    assert "Traceback" not in text
    run_dir = run_dir_of(result)
    assert "Traceback" in (run_dir / "run.log").read_text()
    summary = read_summary(run_dir)
    assert summary["status"] == "failed" and "TooManyFailures" in summary["reason"]
    failed = read_metrics(run_dir)[-1]
    assert failed["round"] == 1 and failed["status"] == "failed" and failed["num_failures"] == 3


def test_sigterm_leaves_an_interrupted_summary(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*CLI, "run", *FAST, "num_rounds=30", f"hydra.run.dir={run_dir}"], cwd=REPO,
                            env=corolla_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "metrics.jsonl").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["rounds"] >= 1
    assert f"corolla run resume={run_dir}" in err
