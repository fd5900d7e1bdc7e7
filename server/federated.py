"""Federated evaluation: the global model on each client's own test split, aggregated by examples."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, RecordDict

from conf.errors import ConfigError, first_line

log = logging.getLogger("corolla")

WHERE = ("server", "clients", "both")


def check_evaluate_config(cfg: dict[str, Any]) -> None:
    """Refuse evaluate.where/every settings that cannot run, naming the key and the fix."""
    section = cfg.get("evaluate", {})
    where, every = section.get("where", "server"), section.get("every", 1)
    if where not in WHERE:
        raise ConfigError(f"evaluate.where={where!r} is not one of {', '.join(WHERE)}", key="evaluate.where")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"evaluate.every={every!r} must be an integer >= 1 (rounds between federated "
                          "evaluations)", key="evaluate.every")
    if where == "server":
        return
    task = cfg["task"]
    if task.get("continual"):
        raise ConfigError(f"evaluate.where={where}: continual tasks keep server evaluation (the accuracy "
                          "matrix needs every task's test split after every task); set evaluate.where=server",
                          key="evaluate.where")
    if cfg["strategy"].get("name") == "creamfl" or task.get("name") == "captioned":
        raise ConfigError(f"evaluate.where={where}: CreamFL keeps server evaluation (retrieval needs the "
                          "server's paired test split); set evaluate.where=server", key="evaluate.where")
    if "local_test_fraction" in task and not task["local_test_fraction"]:
        raise ConfigError(f"evaluate.where={where} needs a test split on every client: set "
                          "task.local_test_fraction (e.g. 0.2)", key="task.local_test_fraction")


class FederatedEvaluation:
    """Sends `evaluate` messages every `evaluate.every` rounds and keeps each round's distribution."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        section = cfg.get("evaluate", {})
        self.where = str(section.get("where", "server"))
        self.every = int(section.get("every", 1))
        self.num_rounds = int(cfg["num_rounds"])
        self.records: dict[int, dict[str, Any]] = {}

    @property
    def on_clients(self) -> bool:
        return self.where in ("clients", "both")

    @property
    def on_server(self) -> bool:
        return self.where in ("server", "both")

    def due(self, rnd: int) -> bool:
        return self.on_clients and (rnd % self.every == 0 or rnd == self.num_rounds)

    def configure(self, rnd: int, arrays: ArrayRecord, task_id: int, node_ids: Iterable[int]) -> list[Message]:
        """One `evaluate` message per connected node (all of them: the distribution needs every site)."""
        if not self.due(rnd):
            return []
        config = ConfigRecord({"server-round": rnd, "task-id": task_id})
        return [Message(RecordDict({"arrays": arrays, "config": config}), message_type=MessageType.EVALUATE,
                        dst_node_id=node) for node in node_ids]

    def aggregate(self, rnd: int, replies: Iterable[Message], partition_of: dict[int, int]) -> None:
        """Weighted mean by examples, plus mean, 10th percentile, worst and per-client accuracy."""
        per_client: dict[int, tuple[float, float, int]] = {}
        failures = 0
        for reply in replies:
            node = reply.metadata.src_node_id
            if reply.has_error():
                failures += 1
                log.warning("round %d: evaluation on node %s failed: %s", rnd, node, first_line(reply.error.reason))
                continue
            metrics = reply.content["metrics"]
            n = int(metrics["num-examples"])
            if n > 0:
                per_client[partition_of.get(node, node)] = (float(metrics["eval_accuracy"]),
                                                            float(metrics["eval_loss"]), n)
        self.records[rnd] = summarise(per_client, failures)

    def record(self, rnd: int) -> dict[str, Any] | None:
        """The round's `clients` section for metrics.jsonl (None: no federated evaluation this round)."""
        return self.records.get(rnd)


def summarise(per_client: dict[int, tuple[float, float, int]], failures: int = 0) -> dict[str, Any]:
    """The distribution of client accuracies: weighted by examples, mean, p10, worst, per client."""
    if not per_client:
        return {"accuracy": None, "loss": None, "mean": None, "p10": None, "worst": None,
                "num_examples": 0, "num_clients": 0, "num_failures": failures, "per_client": {}}
    ids = sorted(per_client)
    acc = np.array([per_client[i][0] for i in ids])
    loss = np.array([per_client[i][1] for i in ids])
    n = np.array([per_client[i][2] for i in ids], dtype=np.float64)
    return {
        "accuracy": float(acc @ n / n.sum()),
        "loss": float(loss @ n / n.sum()),
        "mean": float(acc.mean()),
        "p10": float(np.percentile(acc, 10)),
        "worst": float(acc.min()),
        "num_examples": int(n.sum()),
        "num_clients": len(ids),
        "num_failures": failures,
        "per_client": {str(i): float(per_client[i][0]) for i in ids},
    }


def summary_section(history: list[dict[str, Any]]) -> dict[str, Any]:
    """summary.json's `clients`: the last federated evaluation, and the round it was made in."""
    last = next((r for r in reversed(history) if r.get("clients")), None)
    return {"round": last["round"], **last["clients"]} if last else {"round": None}
