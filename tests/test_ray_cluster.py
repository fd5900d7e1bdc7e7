"""`engine.ray_address` attaches the simulation to an existing Ray cluster (started here on loopback)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.simrun import free_port, FAST, read_summary, run_corolla, run_dir_of


@pytest.mark.slow
def test_simulation_attaches_to_existing_ray_cluster(tmp_path: Path) -> None:
    ray_bin = Path(sys.executable).parent / "ray"
    assert ray_bin.exists(), "the ray CLI comes with flwr[simulation]"
    port = free_port()
    temp_dir = Path("/tmp") / f"ray-test-{port}"  # Ray needs a short path for its sockets
    log = (tmp_path / "ray-head.log").open("w")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={port}", "--node-ip-address=127.0.0.1",
         "--include-dashboard=false", "--num-cpus=2", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"},
    )
    try:
        _wait_for_port(port, timeout=120, proc=head, log=tmp_path / "ray-head.log")
        result = run_corolla(["run", "strategy=fedavg", *FAST, "num_rounds=2", f"out_dir={tmp_path}/runs",
                              f"engine.ray_address=127.0.0.1:{port}"], timeout=300)
        assert read_summary(run_dir_of(result))["rounds"] == 2
        # The driver joined the cluster's session instead of starting its own.
        sessions = list((temp_dir / "session_latest" / "logs").glob("python-core-driver-*"))
        assert sessions, "no driver of the simulation connected to the existing cluster"
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _wait_for_port(port: int, *, timeout: float, proc: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"ray start exited: {log.read_text()[-2000:]}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                time.sleep(2)  # GCS listens before the raylet is ready
                return
        time.sleep(0.5)
    raise AssertionError(f"Ray head did not listen on 127.0.0.1:{port} in {timeout}s")
