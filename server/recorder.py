"""RunRecorder: central evaluation each round, metrics.jsonl, checkpoints, summary.json, plots, tracking."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from flwr.app import ArrayRecord, MetricRecord

from conf.errors import first_line
from models.training import evaluate
from server.checkpoints import LAST, reconcile_metrics, save_checkpoint
from server.grid import TrackedGrid
from server.guard import RoundGuard
from server.summary import build_summary, process_start, write_summary
from server.system import sim_time_summary
from strategies.base import ServerEnv

log = logging.getLogger("corolla")

CHECKPOINT = LAST


class RoundSink(Protocol):
    """Something that receives every round's record and the summary (TensorBoard, MLflow...)."""

    def on_round(self, record: dict[str, Any]) -> None: ...

    def close(self, summary: dict[str, Any]) -> None: ...


class RunRecorder:
    """Writes what a run produces (README, "What a run writes"); its evaluate_fn goes to Flower."""

    def __init__(self, run_dir: Path, env: ServerEnv, *, device: torch.device, strategy: Any = None,
                 progress: Callable[[int, dict[str, Any]], None] | None = None) -> None:
        self.run_dir = run_dir
        self.env = env
        self.cfg = env.cfg
        self.device = device
        self.progress = progress
        self.strategy = strategy
        self.metrics_path = run_dir / "metrics.jsonl"
        self.matrix: list[list[float]] = []   # A[t][i]: accuracy on task i after training task t
        self.history: list[dict[str, Any]] = []
        self.sinks: list[RoundSink] = []
        self.uplink_bytes = 0
        self.downlink_bytes = 0
        self.final_arrays: ArrayRecord | None = None
        self.t0 = process_start()                 # this session's start (epoch seconds)
        self.prior_wall_s = 0.0                   # earlier sessions, up to their last checkpoint
        self.prior_startup_s = 0.0
        self.startup_s: float | None = None       # this session's start-up, set when rounds begin
        self._mark = time.monotonic()
        self._bytes_mark = (0, 0)
        self.guard: RoundGuard | None = None
        self.grid: TrackedGrid | None = None
        self.federated: Any = None  # server.federated.FederatedEvaluation (evaluate.where=clients|both)

    # ---- state for resume -------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"matrix": self.matrix, "wall_s": self._wall_s(), "startup_s": self._startup_s(),
                "uplink_bytes": self.uplink_bytes, "downlink_bytes": self.downlink_bytes,
                "history": self.history}

    def load_state(self, state: dict[str, Any], last_round: int) -> None:
        self.matrix = [list(row) for row in state["matrix"]]
        self.prior_wall_s = float(state["wall_s"])
        self.prior_startup_s = float(state.get("startup_s", 0.0))
        self.uplink_bytes = int(state["uplink_bytes"])
        self.downlink_bytes = int(state["downlink_bytes"])
        for note in reconcile_metrics(self.run_dir, {"round": last_round, "recorder": state}):
            log.warning("resume: %s", note)
        self.history = [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line]

    def _wall_s(self) -> float:
        return self.prior_wall_s + (time.time() - self.t0)

    def _startup_s(self) -> float:
        return self.prior_startup_s + (self.startup_s if self.startup_s is not None else time.time() - self.t0)

    def attach(self, guard: RoundGuard, grid: TrackedGrid, strategy: Any) -> None:
        self.guard, self.grid, self.strategy = guard, grid, strategy
        self.startup_s = time.time() - self.t0
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
        clients = self.federated.record(rnd) if self.federated is not None else None
        if own is None and self.federated is not None and not self.federated.on_server:
            own = {"accuracy": clients and clients["accuracy"], "loss": clients and clients["loss"]}
        if own is None:
            accs, losses = self._evaluate_tasks(arrays, upto=task_id)
            if self.env.task.num_tasks > 1 and self.env.is_task_end(rnd) and len(self.matrix) == task_id:
                self.matrix.append(accs + [float("nan")] * (self.env.task.num_tasks - len(accs)))
            evaluation: dict[str, Any] = {"accuracy": sum(accs) / len(accs), "loss": sum(losses) / len(losses)}
            if self.env.task.num_tasks > 1:
                evaluation["task_accuracy"] = accs
        else:
            evaluation = own
        record = self._round_record(rnd, task_id)
        record["accuracy"] = evaluation.pop("accuracy")
        record["loss"] = evaluation.pop("loss")
        record.update(evaluation)
        if clients is not None:
            record["clients"] = clients
        stats = self.guard.rounds.get(rnd)
        if stats:
            record.update({k: v for k, v in stats.train_metrics.items() if k != "num-examples"})
            if stats.work_fraction is not None:
                record["work_fraction"] = round(stats.work_fraction, 6)
            if stats.attackers is not None:
                record["attackers"] = sorted(stats.attackers)
        record.update(self.strategy.round_metrics(rnd))
        self._append(record)
        self.final_arrays = arrays
        every = int(self.cfg.get("checkpoint_every", 1))
        if rnd % every == 0 or rnd == int(self.cfg["num_rounds"]):
            self.checkpoint(rnd, arrays)
        if self.progress:
            self.progress(rnd, record)
        return MetricRecord({k: float(record[k]) for k in ("accuracy", "loss") if record[k] is not None})

    def _round_record(self, rnd: int, task_id: int) -> dict[str, Any]:
        """The bookkeeping fields of round `rnd`'s record: replies, failures, bytes, time."""
        assert self.guard is not None and self.grid is not None
        stats = self.guard.rounds.get(rnd)
        up = self.grid.uplink_bytes - self._bytes_mark[0]
        down = self.grid.downlink_bytes - self._bytes_mark[1]
        self._bytes_mark = (self.grid.uplink_bytes, self.grid.downlink_bytes)
        self.uplink_bytes += up
        self.downlink_bytes += down
        now = time.monotonic()
        wall, self._mark = now - self._mark, now
        return {
            "round": rnd,
            "task": task_id,
            "accuracy": None,
            "loss": None,
            "num_replies": (stats.replies - stats.errors - stats.rejected - stats.late) if stats else 0,
            "num_failures": stats.failures if stats else 0,
            "num_rejected": stats.rejected if stats else 0,
            "uplink_bytes": up,
            "downlink_bytes": down,
            "wall_s": round(wall, 4),
            "server_s": round(stats.server_s, 6) if stats else 0.0,
            # the simulated clock (server/system): cumulative, carried on by a resume through history
            "sim_time_s": round((self.history[-1].get("sim_time_s", 0.0) if self.history else 0.0)
                                + (stats.sim_s if stats else 0.0), 6),
            "num_late": stats.late if stats else 0,
        }

    def _append(self, record: dict[str, Any]) -> None:
        self.history.append(record)
        with self.metrics_path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        for sink in self.sinks:
            sink.on_round(record)

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
        payload = {"round": rnd, "model": arrays.to_torch_state_dict(),
                   "strategy": self.strategy.state_dict(), "recorder": self.state()}
        save_checkpoint(self.run_dir, payload)

    # ---- the end ----------------------------------------------------------------------
    def fail(self, error: BaseException) -> dict[str, Any]:
        """Record the round that failed (metrics.jsonl) and write summary.json with status failed."""
        reason = f"{type(error).__name__}: {first_line(error)}"
        if self.guard is not None and self.grid is not None and self.guard.rounds:
            rnd = max(self.guard.rounds)
            if not self.history or self.history[-1]["round"] < rnd:
                record = self._round_record(rnd, self.env.task_of_round(rnd))
                record.update({"status": "failed", "error": reason})
                self._append(record)
        return self.finish(status="failed", reason=reason)

    def finish(self, *, status: str = "completed", reason: str | None = None) -> dict[str, Any]:
        summary = build_summary(
            self.cfg, self.history, status=status, reason=reason, num_clients=self.env.task.num_clients,
            uplink_bytes=self.uplink_bytes, downlink_bytes=self.downlink_bytes,
            startup_s=self._startup_s(), wall_s=self._wall_s(), matrix=self.matrix)
        if self.federated is not None and self.federated.on_clients:
            from server.federated import summary_section

            summary["final"]["split"] = "test" if self.federated.on_server else "clients"
            summary["clients"] = summary_section(self.history)
        if self.strategy is not None:
            summary.update(self.strategy.summary_extra())
        sim_time_summary(summary, self.cfg, self.history)
        write_summary(self.run_dir, summary)
        for sink in self.sinks:
            try:
                sink.close(summary)
            except Exception as err:  # tracking must not turn a finished run into a failed one
                log.warning("tracking: %s failed to close: %s", type(sink).__name__, first_line(err))
        if self.cfg.get("plots", True):
            from server.plots import write_plots

            write_plots(self.run_dir / "plots", self.history, self.matrix, title=plot_title(self.cfg))
        return summary


def plot_title(cfg: dict[str, Any]) -> str:
    """`fedavg on digits (mlp), seed 0`: what a plot shows."""
    return f"{cfg['strategy']['name']} on {cfg['task']['name']} ({cfg['model']['name']}), seed {cfg['seed']}"
