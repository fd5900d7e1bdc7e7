"""summary.json: the run's final numbers, its status (completed, failed, interrupted) and timing."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from server.continual import continual_metrics
from server.rundir import write_atomic

START_ENV = "COROLLA_START_TIME"   # epoch seconds when the `corolla` process started
STATUSES = ("completed", "failed", "interrupted")


def process_start() -> float:
    """When this run's process started (set by `corolla run`), else now."""
    try:
        return float(os.environ[START_ENV])
    except (KeyError, ValueError):
        return time.time()


def build_summary(cfg: dict[str, Any], history: list[dict[str, Any]], *, status: str, reason: str | None,
                  num_clients: int, uplink_bytes: int, downlink_bytes: int, startup_s: float,
                  wall_s: float, matrix: list[list[float]] | None = None) -> dict[str, Any]:
    """The summary.json contents (docs/architecture.md, run outputs) of a run with these round records."""
    assert status in STATUSES, status
    done = [r for r in history if r.get("status", "completed") == "completed"]
    last = done[-1] if done else {}
    summary: dict[str, Any] = {
        "status": status,
        "reason": reason,
        "strategy": cfg["strategy"]["name"],
        "task": cfg["task"]["name"],
        "model": cfg["model"]["name"],
        "seed": cfg["seed"],
        "num_clients": num_clients,
        "num_rounds": int(cfg["num_rounds"]),
        "rounds": last.get("round", 0),
        "final": {"accuracy": last.get("accuracy"), "loss": last.get("loss"),
                  "split": cfg.get("evaluate", {}).get("split", "test")},
        "failures": {"total": sum(int(r.get("num_failures", 0)) for r in history),
                     "rejected": sum(int(r.get("num_rejected", 0)) for r in history)},
        "communication": {"uplink_bytes": uplink_bytes, "downlink_bytes": downlink_bytes},
        # wall_s counts every session of the run from process start, start-up included.
        "timing": {"startup_s": round(startup_s, 3), "wall_s": round(wall_s, 3)},
    }
    if matrix:
        summary["continual"] = continual_metrics(matrix)
    return summary


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    write_atomic(run_dir / "summary.json", json.dumps(summary, indent=2) + "\n")


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return None
