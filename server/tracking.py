"""Experiment tracking: every round's record and the resolved config to TensorBoard and MLflow."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

log = logging.getLogger("corolla")

TENSORBOARD_DIR = "tensorboard"
MLFLOW_RUN_ID = "mlflow_run_id"    # file in the run dir: a resumed run logs to the same MLflow run
SKIP = ("round", "task", "status", "error")


def flat_config(cfg: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """`{"train.lr": 0.05, ...}`: the config as scalar hyperparameters (lists as text)."""
    out: dict[str, Any] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flat_config(value, prefix=f"{name}."))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[name] = "null" if value is None else value
        else:
            out[name] = str(value)
    return out


def scalars(record: dict[str, Any]) -> dict[str, float]:
    """A round record's numbers under TensorBoard tags (`test/accuracy`, `comm/uplink_bytes`...)."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key in SKIP:
            continue
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, (int, float)) and not isinstance(item, bool):
                    out[f"{_group(key)}/{key}/{i}"] = float(item)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[f"{_group(key)}/{key}"] = float(value)
    return out


def _group(key: str) -> str:
    if key in ("accuracy", "loss", "task_accuracy"):
        return "test"
    if key.endswith("_bytes"):
        return "comm"
    if key.startswith("num_"):
        return "replies"
    if key.endswith("_s"):
        return "time"
    return "method"   # the clients' training metrics and the strategy's own numbers


class TensorBoardSink:
    """Event files in <run dir>/tensorboard/: scalars per round, the config as hparams."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path, *, first_round: int) -> None:
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        # purge_step: rounds logged after the last checkpoint by a killed session are dropped.
        self.writer = SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIR),
                                    purge_step=first_round if first_round > 1 else None)
        self.first_round = first_round
        if first_round == 1:
            params = flat_config(cfg)
            exp, ssi, sei = hparams(params, {"final/accuracy": 0.0})
            for summary in (exp, ssi, sei):
                self.writer.file_writer.add_summary(summary)

    def on_round(self, record: dict[str, Any]) -> None:
        for tag, value in scalars(record).items():
            self.writer.add_scalar(tag, value, global_step=int(record["round"]))
        self.writer.flush()

    def close(self, summary: dict[str, Any]) -> None:
        accuracy = summary.get("final", {}).get("accuracy")
        if accuracy is not None:
            self.writer.add_scalar("final/accuracy", float(accuracy), global_step=int(summary["rounds"]))
        self.writer.close()


class MlflowSink:
    """The same scalars and config in a local MLflow store (`mlruns/` next to the run directories)."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path, *, first_round: int) -> None:
        from mlflow.tracking import MlflowClient

        tracking = cfg.get("tracking") or {}
        uri = tracking.get("mlflow_uri")
        if not uri:
            uri = (run_dir.resolve().parent / "mlruns").as_uri()
            # MLflow 3 keeps its file store (a directory, no database server) behind this opt-in.
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.client = MlflowClient(tracking_uri=uri)
        id_file = run_dir / MLFLOW_RUN_ID
        if id_file.exists():
            self.run_id = id_file.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            name = str(tracking.get("mlflow_experiment") or "corolla")
            experiment = self.client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(name)
            run = self.client.create_run(experiment_id, run_name=run_dir.name,
                                         tags={"corolla.run_dir": str(run_dir.resolve())})
            self.run_id = run.info.run_id
            id_file.write_text(self.run_id + "\n")
            from mlflow.entities import Param

            params = [Param(k, str(v)[:500]) for k, v in flat_config(cfg).items()]
            for i in range(0, len(params), 100):
                self.client.log_batch(self.run_id, params=params[i:i + 100])

    def on_round(self, record: dict[str, Any]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        step = int(record["round"])
        metrics = [Metric(tag.replace("/", "."), value, now, step) for tag, value in scalars(record).items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def close(self, summary: dict[str, Any]) -> None:
        status = {"completed": "FINISHED", "failed": "FAILED"}.get(summary.get("status", ""), "KILLED")
        self.client.set_terminated(self.run_id, status=status)


def open_sinks(cfg: dict[str, Any], run_dir: Path, *, first_round: int = 1) -> list[Any]:
    """The trackers `cfg.tracking` turns on (TensorBoard by default; MLflow with tracking.mlflow=true)."""
    tracking = cfg.get("tracking") or {}
    sinks: list[Any] = []
    if tracking.get("tensorboard", True):
        sinks.append(TensorBoardSink(cfg, run_dir, first_round=first_round))
    if tracking.get("mlflow", False):
        sinks.append(MlflowSink(cfg, run_dir, first_round=first_round))
    return sinks
