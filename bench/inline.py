"""An in-process Flower Grid for benches: corolla's ServerApp and ClientApp code without Ray.

`run_inline` runs one experiment through `server.coordinator.run_federation` and the ClientApp's
`client.app.dispatch`, one Flower Context per node: the same messages, reply validation, byte
metering, metrics.jsonl and summary.json as `corolla run`, without Ray's start-up and polling per
run, which would dominate a bench of many short runs on 2 cores. `run_many` spreads runs over
worker processes. Seconds per round measured here are the method's compute, not the transport.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import multiprocessing
import os
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.serverapp import Grid

from conf.errors import first_line


class InlineGrid(Grid):
    """A Flower Grid whose nodes are ClientApp dispatches in this process, one Context each."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path) -> None:
        from conf.compose import to_run_config

        run_config = to_run_config(cfg, run_dir)
        n = int(cfg["task"]["num_clients"])
        self.contexts = {
            1000 + i: Context(run_id=1, node_id=1000 + i, node_config={"partition-id": i, "num-partitions": n},
                              state=RecordDict(), run_config=dict(run_config))
            for i in range(n)
        }
        self._replies: dict[str, Message] = {}
        self._run: Any = None

    def set_run(self, run: Any) -> None:
        self._run = run

    @property
    def run(self) -> Any:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def _deliver(self, message: Message) -> Message:
        from client.app import dispatch

        message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        try:
            return dispatch(message, self.contexts[message.metadata.dst_node_id])
        except Exception as ex:  # as Flower does: a client exception becomes an error reply
            return Message(error=Error(code=0, reason=f"{ex}\n{traceback.format_exc()}"), reply_to=message)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for message in messages:
            reply = self._deliver(message)  # gives the message its id
            self._replies[message.metadata.message_id] = reply
            ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return [self._deliver(m) for m in messages]


def run_inline(overrides: list[str], run_dir: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """One experiment on an InlineGrid: (summary, metrics.jsonl records, run dir). The caller owns the dir."""
    from flwr.supercore.task_identity import TaskIdentity

    from conf.compose import compose
    from server.config_check import check_config
    from server.coordinator import run_federation
    from server.rundir import prepare_run_dir

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    logging.getLogger("flwr").setLevel(logging.ERROR)
    cfg = compose(overrides)
    check_config(cfg)
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="corolla-inline-"))
    prepare_run_dir(run_dir, cfg)
    summary = run_federation(InlineGrid(cfg, run_dir), cfg, run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return summary, records, run_dir


def default_workers() -> int:
    """Parallel runs of a bench: $COROLLA_BENCH_JOBS, else min(2, CPUs)."""
    return int(os.environ.get("COROLLA_BENCH_JOBS", str(min(2, os.cpu_count() or 1))))


def failures(results: dict[Any, Any], name: Callable[[Any], str] = str) -> dict[str, str]:
    """The failed runs of a `run_many` result, by name: exception type and message (2,000 chars)."""
    return {name(k): f"{type(v).__name__}: {str(v)[:2000]}" for k, v in results.items() if isinstance(v, BaseException)}


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def run_many(fn: Callable[[list[str]], dict[str, float]], jobs: list[tuple[Any, list[str]]], *, workers: int,
             threads: int = 1, label: str = "bench", shown: tuple[str, ...] = ()) -> dict[Any, dict[str, float] | BaseException]:
    """fn(overrides) for every (key, overrides) job, `workers` at a time in spawned processes.

    `fn` must be importable (a module-level function). A failed run is reported and kept as its
    exception; the others go on. Returns the results by key.
    """
    started = time.monotonic()
    results: dict[Any, dict[str, float] | BaseException] = {}
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                initargs=(threads,)) as pool:
        futures = {pool.submit(fn, overrides): key for key, overrides in jobs}
        for future in cf.as_completed(futures):
            key = futures[future]
            try:
                results[key] = res = future.result()
                line = " ".join(f"{k}={res[k]:.4g}" for k in shown if k in res)
            except Exception as ex:  # noqa: BLE001 - a failed run is reported, the others go on
                results[key] = ex
                line = f"FAILED: {type(ex).__name__}: {first_line(ex)}"
            print(f"[{label}] {len(results)}/{len(jobs)} {key}: {line} ({time.monotonic() - started:.0f}s)",
                  flush=True)
    return results
