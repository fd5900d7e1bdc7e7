"""RunRecorder: central evaluation each round, metrics.jsonl, checkpoints, summary.json and plots."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from flwr.app import ArrayRecord, MetricRecord

from models.training import evaluate
from server.continual import continual_metrics
from server.grid import TrackedGrid
from server.guard import RoundGuard
from strategies.base import ServerEnv

log = logging.getLogger("corolla")

CHECKPOINT = "checkpoints/last.pt"


class RunRecorder:
    """Writes what a run produces (docs/architecture.md, "What a run writes"); its evaluate_fn goes to Flower."""

    def __init__(self, run_dir: Path, env: ServerEnv, *, device: torch.device,
                 progress: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.run_dir = run_dir
        self.env = env
        self.cfg = env.cfg
        self.device = device
        self.progress = progress
        self.metrics_path = run_dir / "metrics.jsonl"
        self.matrix: list[list[float]] = []   # A[t][i]: accuracy on task i after training task t
        self.history: list[dict[str, Any]] = []
        self.wall_s = 0.0
        self.uplink_bytes = 0
        self.downlink_bytes = 0
        self.final_arrays: ArrayRecord | None = None
        self._mark = time.monotonic()
        self._bytes_mark = (0, 0)
        self.guard: RoundGuard | None = None
        self.grid: TrackedGrid | None = None
        self.strategy: Any = None

    # ---- state for resume -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"matrix": self.matrix, "wall_s": self.wall_s, "uplink_bytes": self.uplink_bytes,
                "downlink_bytes": self.downlink_bytes}

    def load_state(self, state: dict[str, Any], last_round: int) -> None:
        self.matrix = [list(row) for row in state["matrix"]]
        self.wall_s = float(state["wall_s"])
        self.uplink_bytes = int(state["uplink_bytes"])
        self.downlink_bytes = int(state["downlink_bytes"])
        # Drop records of rounds after the checkpoint (an interrupted run may have written them).
        kept = [r for r in self._read_metrics() if r["round"] <= last_round]
        self.metrics_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.history = kept

    def _read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.exists():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def attach(self, guard: RoundGuard, grid: TrackedGrid, strategy: Any) -> None:
        self.guard, self.grid, self.strategy = guard, grid, strategy
        self._mark = time.monotonic()

    # ---- Flower's evaluate_fn ---------------------------------------------------------
    def evaluate_fn(self, server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        """Called by Flower's strategy loop before round 1 (0) and after every round."""
        if server_round == 0:
            return None
        assert self.guard is not None and self.grid is not None
        rnd = self.guard.global_round(server_round)
        task_id = self.env.task_of_round(rnd)
        own = self.strategy.evaluate_global(rnd, arrays)
        if own is None:
            accs, losses = self._evaluate_tasks(arrays, upto=task_id)
            if self.env.task.num_tasks > 1 and self.env.is_task_end(rnd) and len(self.matrix) == task_id:
                self.matrix.append(accs + [float("nan")] * (self.env.task.num_tasks - len(accs)))
            evaluation: dict[str, Any] = {"accuracy": sum(accs) / len(accs), "loss": sum(losses) / len(losses)}
            if self.env.task.num_tasks > 1:
                evaluation["task_accuracy"] = accs
        else:
            evaluation = own
        stats = self.guard.rounds.get(rnd)
        up = self.grid.uplink_bytes - self._bytes_mark[0]
        down = self.grid.downlink_bytes - self._bytes_mark[1]
        self._bytes_mark = (self.grid.uplink_bytes, self.grid.downlink_bytes)
        self.uplink_bytes += up
        self.downlink_bytes += down
        now = time.monotonic()
        wall = now - self._mark
        self._mark = now
        self.wall_s += wall
        record: dict[str, Any] = {
            "round": rnd,
            "task": task_id,
            "accuracy": evaluation.pop("accuracy"),
            "loss": evaluation.pop("loss"),
            "num_replies": (stats.replies - stats.errors - stats.rejected) if stats else 0,
            "num_failures": stats.failures if stats else 0,
            "num_rejected": stats.rejected if stats else 0,
            "uplink_bytes": up,
            "downlink_bytes": down,
            "wall_s": round(wall, 4),
            "server_s": round(stats.server_s, 6) if stats else 0.0,
        }
        record.update(evaluation)
        if stats:
            record.update({k: v for k, v in stats.train_metrics.items() if k != "num-examples"})
        record.update(self.strategy.round_metrics(rnd))
        self.history.append(record)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        self.final_arrays = arrays
        every = int(self.cfg.get("checkpoint_every", 1))
        if rnd % every == 0 or rnd == int(self.cfg["num_rounds"]):
            self.checkpoint(rnd, arrays)
        if self.progress:
            self.progress(rnd, record)
        return MetricRecord({k: float(record[k]) for k in ("accuracy", "loss") if record[k] is not None})

    def _evaluate_tasks(self, arrays: ArrayRecord, upto: int) -> tuple[list[float], list[float]]:
        model = self.env.build_model()
        model.load_state_dict(arrays.to_torch_state_dict())
        accs, losses = [], []
        held_out = self.env.task.val if self.cfg["evaluate"].get("split", "test") == "val" else self.env.task.test
        for t in range(upto + 1):
            split = held_out(t)
            mask = list(self.env.task.task_classes[t]) if self.env.task.scenario == "task-incremental" else None
            res = evaluate(model, split.x, split.y, device=self.device,
                           batch_size=int(self.cfg["evaluate"]["batch_size"]), class_mask=mask)
            accs.append(res.accuracy)
            losses.append(res.loss)
        return accs, losses

    # ---- checkpoints ------------------------------------------------------------------
    def checkpoint(self, rnd: int, arrays: ArrayRecord) -> None:
        path = self.run_dir / CHECKPOINT
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"round": rnd, "model": arrays.to_torch_state_dict(),
                   "strategy": self.strategy.state_dict(), "recorder": self.state()}
        tmp = path.with_suffix(".tmp")
        torch.save(payload, tmp)
        os.replace(tmp, path)  # atomic: a kill mid-write leaves the previous checkpoint intact

    # ---- the end ----------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        task = self.env.task
        summary: dict[str, Any] = {
            "strategy": self.cfg["strategy"]["name"],
            "task": self.cfg["task"]["name"],
            "model": self.cfg["model"]["name"],
            "seed": self.cfg["seed"],
            "num_clients": task.num_clients,
            "rounds": last.get("round", 0),
            "final": {"accuracy": last.get("accuracy"), "loss": last.get("loss"),
                      "split": self.cfg["evaluate"].get("split", "test")},
            "failures": {"total": sum(r["num_failures"] for r in self.history),
                         "rejected": sum(r.get("num_rejected", 0) for r in self.history)},
            "communication": {"uplink_bytes": self.uplink_bytes, "downlink_bytes": self.downlink_bytes},
            "timing": {"wall_s": round(self.wall_s, 3)},
        }
        if self.matrix:
            summary["continual"] = continual_metrics(self.matrix)
        summary.update(self.strategy.summary_extra())
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        if self.cfg.get("plots", True):
            from server.plots import write_plots

            write_plots(self.run_dir / "plots", self.history, self.matrix)
        return summary
