"""Helpers for tests that run `corolla` as a real process (Flower's engine, Ray on loopback)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "simulation.cli"]
# Small, fast settings every simulation test starts from.
FAST = ["task=digits", "model=mlp", "task.num_clients=8", "strategy.fraction_train=0.5",
        "progress=false", "plots=false"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def corolla_env(extra_pythonpath: list[Path] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    paths = [str(p) for p in (extra_pythonpath or [])] + [str(REPO)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_corolla(args: list[str], *, timeout: float = 300, extra_pythonpath: list[Path] | None = None,
                check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `corolla <args>` to completion in its own process group, killed by PID on timeout."""
    proc = subprocess.Popen([*CLI, *args], cwd=REPO, env=corolla_env(extra_pythonpath), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"corolla {' '.join(args)} timed out after {timeout}s\n{out[-3000:]}\n{err[-3000:]}")
    result = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check and proc.returncode != 0:
        raise AssertionError(f"corolla {' '.join(args)} exited {proc.returncode}\n{out[-3000:]}\n{err[-5000:]}")
    return result


def run_dir_of(result: subprocess.CompletedProcess[str]) -> Path:
    """The run directory from the contract's last line, `run dir: <path>`."""
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("run dir: "), f"last line is not 'run dir: ...': {last!r}"
    return Path(last.removeprefix("run dir: "))


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]


def read_summary(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "summary.json").read_text())
