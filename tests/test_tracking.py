"""TensorBoard and MLflow tracking, read back with their own readers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conf.compose import compose
from server.tracking import MlflowSink, TensorBoardSink
from tests.simrun import FAST, read_metrics, read_summary, run_corolla, run_dir_of


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def record(r: int) -> dict:
    return {"round": r, "task": 0, "accuracy": r / 10, "loss": 1.0 / r, "uplink_bytes": 100 * r,
            "num_failures": 0, "wall_s": 0.5, "sketch_cols": 7}


def test_resumed_tensorboard_log_holds_each_round_once(tmp_path: Path) -> None:
    cfg = compose(["task=digits"])
    sink = TensorBoardSink(cfg, tmp_path, first_round=1)
    for r in (1, 2, 3):   # round 3 was logged, then the run was killed before its checkpoint
        sink.on_round(record(r))
    sink.writer.close()
    resumed = TensorBoardSink(cfg, tmp_path, first_round=3)
    for r in (3, 4):
        resumed.on_round(record(r))
    resumed.close({"final": {"accuracy": 0.4}, "rounds": 4})
    assert [s for s, _ in scalars(tmp_path, "test/accuracy")] == [1, 2, 3, 4]
    assert scalars(tmp_path, "method/sketch_cols")[0] == (1, 7.0)
    assert scalars(tmp_path, "comm/uplink_bytes")[-1] == (4, 400.0)


def test_mlflow_sink_reuses_its_run_on_resume(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    cfg = compose(["task=digits", "tracking.mlflow=true"])
    run_dir = tmp_path / "runs" / "one"
    run_dir.mkdir(parents=True)
    first = MlflowSink(cfg, run_dir, first_round=1)
    first.on_round(record(1))
    again = MlflowSink(cfg, run_dir, first_round=2)
    again.on_round(record(2))
    again.close({"status": "completed"})
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    assert first.run_id == again.run_id
    assert [m.step for m in client.get_metric_history(first.run_id, "test.accuracy")] == [1, 2]
    assert client.get_run(first.run_id).info.status == "FINISHED"


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_run_writes_tensorboard_events_and_mlflow_records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")   # MLflow 3 reads its file store only with this

    started = time.monotonic()
    result = run_corolla(["run", *FAST, "num_rounds=2", "tracking.mlflow=true", f"out_dir={tmp_path}/runs"])
    elapsed = time.monotonic() - started
    run_dir = run_dir_of(result)
    metrics = read_metrics(run_dir)
    timing = read_summary(run_dir)["timing"]   # start-up is part of the wall time
    assert 0 < timing["startup_s"] < timing["wall_s"] <= elapsed
    assert timing["wall_s"] >= timing["startup_s"] + 0.9 * sum(r["wall_s"] for r in metrics)
    assert timing["wall_s"] > 0.5 * elapsed
    logged = scalars(run_dir, "test/accuracy")
    assert [s for s, _ in logged] == [1, 2]
    assert logged[-1][1] == pytest.approx(metrics[-1]["accuracy"], rel=1e-6)
    for tag in ("test/loss", "comm/uplink_bytes", "comm/downlink_bytes", "replies/num_failures"):
        assert len(scalars(run_dir, tag)) == 2, tag
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")
    client = MlflowClient(tracking_uri=(tmp_path / "runs" / "mlruns").as_uri())
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    run = client.get_run(run_id)
    assert run.data.params["strategy.name"] == "fedavg" and run.data.params["task.name"] == "digits"
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run_id, "test.accuracy")
    assert [m.step for m in history] == [1, 2]
    assert history[-1].value == pytest.approx(metrics[-1]["accuracy"])
