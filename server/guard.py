"""RoundGuard: wraps any strategy to reject malformed replies, count failures and resume mid-run."""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import Strategy

from conf.errors import first_line
from strategies.attacks import ATTACKER_METRIC
from server.bounds import UpdateBounds
from strategies.base import ServerEnv, derive_seed

if TYPE_CHECKING:
    from server.system import SystemModel

log = logging.getLogger("corolla")


class TooManyFailures(RuntimeError):
    """More replies of a round failed than the run's `failures.max_fraction` allows."""

    def __init__(self, message: str, *, details: str | None = None) -> None:
        super().__init__(message)
        self.details = details   # the first client's full error text (traceback), for run.log


_EXCEPTION_LINE = re.compile(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning)): ?(.*)$")
_WRAPPERS = ("ClientAppException", "RayTaskError", "ActorDiedError")


def client_error(reason: str | None) -> str:
    """`ValueError: message` out of a client's error text (Flower and Ray wrap it in their own)."""
    found = None
    for line in (reason or "").splitlines():
        match = _EXCEPTION_LINE.match(line)
        if match and not match.group(1).split(".")[-1].startswith(_WRAPPERS):
            message = match.group(2).strip().removesuffix("'>")  # Flower's `<class ...>:<'...'>` wrapper
            found = f"{match.group(1).split('.')[-1]}: {message}"
    return found or first_line(reason or "")


@dataclass
class RoundStats:
    """What happened to one round's training messages."""

    sent: int = 0
    replies: int = 0
    errors: int = 0
    rejected: int = 0
    late: int = 0           # replies after system.deadline_s (server/system), left out
    sim_s: float = 0.0      # the round's simulated duration (server/system)
    work_fraction: float | None = None   # system.partial_work: mean share of the full local work done
    started: float = field(default_factory=time.monotonic)
    train_metrics: dict[str, float] = field(default_factory=dict)
    server_s: float = 0.0   # the strategy's own time: configure_train + aggregate_train
    attackers: list[int] | None = None   # partitions whose replies said they attacked (attack=...)

    @property
    def failures(self) -> int:
        """Errors, rejected and late replies and replies that never came."""
        return self.errors + self.rejected + self.late + (self.sent - self.replies)


class RoundGuard(Strategy):
    """Delegates to a strategy; Flower's own `start()` loop drives it.

    - Rounds are numbered globally: a resumed run continues at `first_round`.
    - Sampling is seeded by (seed, round), so runs and resumes pick the same clients.
    - Replies are validated by the strategy's `validate_train_reply`; bad ones are logged
      with the node id and left out, and the round goes on with the rest.
    - A round whose failures exceed `max_failure_fraction` stops the run with the first
      client error.
    """

    def __init__(self, inner: Any, *, env: ServerEnv, seed: int, first_round: int = 1,
                 max_failure_fraction: float = 0.5,
                 order_key: Callable[[int], int] | None = None,
                 partition_of: Callable[[int], int | None] | None = None, bounds: UpdateBounds | None = None,
                 node_of: Callable[[Message], int] | None = None, system: SystemModel | None = None) -> None:
        self.inner = inner
        self.bounds = bounds
        self.node_of = node_of or (lambda reply: reply.metadata.src_node_id)
        self.env = env
        self.seed = seed
        self.offset = first_round - 1
        self.max_failure_fraction = max_failure_fraction
        self.order_key = order_key or (lambda node: node)
        self.partition_of = partition_of or (lambda node: None)
        self.rounds: dict[int, RoundStats] = {}
        self.system = system
        self._sent_arrays: ArrayRecord | None = None
        self.federated: Any = None  # server.federated.FederatedEvaluation, when clients evaluate
        self._eval_grid: Any = None

    def global_round(self, server_round: int) -> int:
        return server_round + self.offset

    def summary(self) -> None:
        self.inner.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        rnd = self.global_round(server_round)
        config["task-id"] = self.env.task_of_round(rnd)
        random.seed(derive_seed(self.seed, rnd, "sample"))
        started = time.perf_counter()
        if self.system:  # the strategy samples among the clients online this round
            need = max(int(getattr(self.inner, "min_available_nodes", 1)), int(getattr(self.inner, "min_train_nodes", 1)))
            grid = self.system.round_grid(grid, rnd, need=need)
        messages = list(self.inner.configure_train(rnd, arrays, config, grid))
        self._sent_arrays = arrays
        self.rounds[rnd] = RoundStats(sent=len(messages), server_s=time.perf_counter() - started)
        return self.system.send(rnd, messages) if self.system else messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        rnd = self.global_round(server_round)
        stats = self.rounds.setdefault(rnd, RoundStats())
        # Aggregate in partition order: float sums then repeat bit for bit across runs and resumes.
        replies = sorted(replies, key=lambda m: self.order_key(self.node_of(m)))
        stats.replies = len(replies)
        if self.system:  # late replies are left out and counted like failures
            replies = self.system.settle(rnd, replies)
            timing = self.system.rounds[rnd]
            stats.late, stats.sim_s, stats.work_fraction = timing.late, timing.sim_s, timing.work_fraction
        good, first_error = [], None
        for reply in replies:
            node = self.node_of(reply)
            if reply.has_error():
                stats.errors += 1
                first_error = first_error or reply.error.reason
                log.warning("round %d: node %s (partition %s) failed: %s", rnd, node, self.partition_of(node),
                            client_error(reply.error.reason))
                log.debug("round %d: node %s failed; its full error:\n%s", rnd, node, reply.error.reason)
                continue
            reason = self.inner.validate_train_reply(reply.content, self._sent_arrays)
            if reason:
                stats.rejected += 1
                first_error = first_error or f"node {node}: reply rejected: {reason}"
                log.warning("round %d: rejected reply from node %s (partition %s): %s", rnd, node,
                            self.partition_of(node), reason)
                continue
            good.append(reply)
            claims = next(iter(reply.content.metric_records.values()), {})
            if ATTACKER_METRIC in claims:
                stats.attackers = (stats.attackers or []) + ([self.order_key(node)] if claims[ATTACKER_METRIC] else [])
        if self.bounds is not None:  # plausibility across the round's replies (server/bounds.py)
            good, refused = self.bounds.screen(rnd, good, self._sent_arrays)
            for node, reason in refused:
                stats.rejected += 1
                first_error = first_error or f"node {node}: reply rejected: {reason}"
                log.warning("round %d: rejected reply from node %s: %s", rnd, node, reason)
        if stats.sent and stats.failures / stats.sent > self.max_failure_fraction:
            raise TooManyFailures(
                f"round {rnd}: {stats.failures} of {stats.sent} replies failed, more than "
                f"failures.max_fraction={self.max_failure_fraction}; first client error: "
                f"{client_error(first_error)}", details=first_error)
        if not good:
            if stats.sent:  # a round that sent nothing (CreamFL's public-only, fraction_train=0) lost nothing
                log.warning("round %d: no usable replies; the global model stays as it was", rnd)
            return None, None
        started = time.perf_counter()
        arrays, metrics = self.inner.aggregate_train(rnd, good)
        stats.server_s += time.perf_counter() - started
        if arrays is not None and self._sent_arrays is not None:
            arrays = _match_dtypes(arrays, self._sent_arrays)
        if metrics is not None:
            stats.train_metrics = {k: float(v) for k, v in metrics.items()
                                   if isinstance(v, (int, float)) and k != ATTACKER_METRIC}
        return arrays, metrics

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        rnd = self.global_round(server_round)
        config["task-id"] = self.env.task_of_round(rnd)
        if self.federated is not None:
            self._eval_grid = grid
            return self.federated.configure(rnd, arrays, self.env.task_of_round(rnd), grid.get_node_ids())
        return self.inner.configure_evaluate(rnd, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        if self.federated is not None:
            if self.federated.due(self.global_round(server_round)):
                self.federated.aggregate(self.global_round(server_round), list(replies),
                                         getattr(self._eval_grid, "partition_of", {}))
            return None
        good = [r for r in replies if not r.has_error()]
        return self.inner.aggregate_evaluate(self.global_round(server_round), good) if good else None


def _match_dtypes(arrays: ArrayRecord, reference: ArrayRecord) -> ArrayRecord:
    """Cast aggregated arrays back to the global model's dtypes (averaging turns int64 into float64)."""
    out = ArrayRecord()
    for key, arr in arrays.items():
        ref = reference.get(key)
        values = arr.numpy()
        if ref is not None and values.dtype != np.dtype(ref.dtype):
            target = np.dtype(ref.dtype)
            values = np.rint(values).astype(target) if np.issubdtype(target, np.integer) else values.astype(target)
            arr = Array(np.asarray(values))  # 0-d results come back as numpy scalars
        out[key] = arr
    return out

