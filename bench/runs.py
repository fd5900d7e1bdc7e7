"""Run corolla experiments as real processes for benchmarks, sampling the process tree's memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]


@dataclass
class RunOutput:
    """A finished run: its directory, summary, per-round records and the tree's peak RSS."""

    run_dir: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    peak_rss_mb: float
    wall_s: float


class RssSampler:
    """Samples the summed RSS of a process and all its descendants (Ray workers included)."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.pid))
            self._stop.wait(self.interval)


def tree_rss(pid: int) -> int:
    """Bytes resident in a process and its descendants now (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def run_corolla(overrides: list[str], *, run_dir: Path | None = None, timeout: float = 1800) -> RunOutput:
    """`corolla run <overrides>` in a fresh process group; raises with its output if it fails."""
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="corolla-bench-"))
    cmd = [sys.executable, "-m", "simulation.cli", "run", *overrides, "progress=false", "plots=false",
           f"hydra.run.dir={run_dir}"]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(REPO)}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    with RssSampler(proc.pid) as sampler:
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout}s:\n{out[-4000:]}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out[-4000:]}")
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    summary = json.loads((run_dir / "summary.json").read_text())
    return RunOutput(run_dir, summary, metrics, sampler.peak / 2**20, time.monotonic() - started)
