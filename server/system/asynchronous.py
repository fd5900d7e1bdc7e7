"""The asynchronous loop for server halves with ``asynchronous = True`` (FedBuff), on Flower's push/pull grid.

No synchronous rounds: `concurrency` clients train at once; as soon as one reply is taken, a new
client is sent the current model. Which reply is taken next:

- simulated order (every engine but a deployment): the reply that arrives first on the simulated
  clock, sent_at + the client-round's duration under the system model; the loop waits until every
  client in flight has replied, then takes the earliest (ties: the earlier dispatch);
- real order (a deployment, `HttpGrid`): replies in the order `pull_messages` returns them, as
  they come; the simulated clock still advances by the model's durations.

The world (availability, dropout, deadline) is the system model's, as in synchronous rounds:
clients are picked among those online at the next version, a dropped client is a failure that
frees its slot at once, a reply slower than `system.deadline_s` is late (left out, its slot freed
at the deadline). Every server step is recorded as one round by RunRecorder's evaluate_fn, which
also checkpoints the strategy's state (version, clock, clients in flight and the models they hold);
a resume sends those clients their models again under the same ticket, so a deterministic client
replies as it did.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any, Callable

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid

from conf.errors import first_line
from server.guard import RoundGuard, RoundStats, TooManyFailures, _match_dtypes, client_error
from strategies.base import derive_seed
from strategies.messages import TRAIN
from strategies.payload import record_nbytes

log = logging.getLogger("corolla")

POLL_S = 0.05
DRAIN_LIMIT_S = 60.0   # at the end of a deployed run: how long to wait for clients still training


class AsyncLoop:
    """Drives one asynchronous strategy (the guard's inner) until `num_rounds` more server steps."""

    def __init__(self, guard: RoundGuard, grid: Grid, *, real_order: bool, timeout: float) -> None:
        self.guard = guard
        self.strategy: Any = guard.inner
        self.system = guard.system
        self.grid = grid
        self.real_order = real_order
        self.timeout = timeout
        nodes = list(grid.get_node_ids())
        self.node_of = {guard.partition_of(n): n for n in nodes}
        self.partitions = sorted(p for p in self.node_of if p is not None)
        self.pending: dict[str, int] = {}        # message id -> ticket
        self.replies: dict[int, Message] = {}    # ticket -> reply, not yet taken
        self.down: dict[int, int] = {}           # ticket -> bytes sent
        self.stats = RoundStats()

    # ---- sending ----------------------------------------------------------------------
    def _message(self, flight: Any) -> Message:
        s = self.strategy
        config = ConfigRecord({"server-round": flight.ticket, "task-id": s.env.task_of_round(s.version + 1)})
        content = RecordDict({"arrays": s.bases[flight.version], "config": config})
        return Message(content, dst_node_id=self.node_of[flight.partition], message_type=TRAIN)

    def _push(self, flights: list[Any]) -> None:
        if not flights:
            return
        messages = [self._message(f) for f in flights]
        ids = list(self.grid.push_messages(messages))
        for flight, message, mid in zip(flights, messages, ids):
            self.pending[mid] = flight.ticket
            self.down[flight.ticket] = record_nbytes(message.content)

    def _fill(self) -> None:
        """Send the current model to idle clients until `concurrency` are training."""
        s, system = self.strategy, self.system
        sent = []
        while len(s.in_flight) < s.concurrency:
            busy = {f.partition for f in s.in_flight.values()}
            idle = [p for p in self.partitions if p not in busy]
            online = [p for p in idle if system is None or system.online(p, s.version + 1)]
            if not online:
                if s.in_flight:   # wait for a reply; more may be online at the next version
                    break
                online = idle     # nobody training and nobody online: the server waits, the first to come join
            s.ticket += 1
            partition = random.Random(derive_seed(self.guard.seed, "fedbuff", s.ticket)).choice(online)
            if system is not None and system.drops_out(partition, s.ticket):
                self.stats.sent += 1   # sent, never replies (a failure); its disconnect is seen at once
                continue
            sent.append(s.dispatch(partition))
        self._push(sent)

    # ---- receiving --------------------------------------------------------------------
    def _pull(self, *, wait_all: bool) -> None:
        deadline = time.monotonic() + self.timeout
        while self.pending:
            for reply in self.grid.pull_messages(list(self.pending)):
                ticket = self.pending.pop(reply.metadata.reply_to_message_id, None)
                if ticket is not None:
                    self.replies[ticket] = reply
            if not self.pending or (self.replies and not wait_all):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(self.pending)} clients did not reply within engine.timeout_s={self.timeout}")
            time.sleep(POLL_S)

    def drain(self, limit_s: float) -> None:
        """Wait (at most `limit_s`) for the replies of clients still training when the last version
        was made, and discard them: FedBuff keeps `concurrency` clients busy to the end, and a site
        must not be left pushing a reply into a finished run (the SuperLink refuses it)."""
        deadline = time.monotonic() + limit_s
        while self.pending and time.monotonic() < deadline:
            for reply in self.grid.pull_messages(list(self.pending)):
                self.pending.pop(reply.metadata.reply_to_message_id, None)
            if self.pending:
                time.sleep(POLL_S)
        if self.pending:
            log.warning("fedbuff: %d clients still training after the last version did not reply within %.0f s; "
                        "their replies will be refused", len(self.pending), limit_s)

    def _arrival(self, ticket: int) -> tuple[float, float]:
        """(simulated arrival time, duration) of a reply."""
        s, reply = self.strategy, self.replies[ticket]
        flight = s.in_flight[ticket]
        if reply.has_error() or self.system is None:
            return flight.sent_at, 0.0
        metrics = next(iter(reply.content.metric_records.values()), {})
        seconds = self.system.duration(flight.partition, num_examples=int(metrics.get("num-examples", 0)),
                                       down_bytes=self.down.get(ticket, 0), up_bytes=record_nbytes(reply.content))
        return flight.sent_at + seconds, seconds

    def _next(self) -> int:
        self._pull(wait_all=not self.real_order)
        if self.real_order:   # what came first, in the order the grid gave it
            return next(iter(self.replies))
        return min(self.replies, key=lambda t: (self._arrival(t)[0], t))

    # ---- one reply ---------------------------------------------------------------------
    def _take(self, ticket: int) -> bool:
        """Take one reply into the buffer (or count it lost); True when the buffer is full."""
        s = self.strategy
        arrive_at, seconds = self._arrival(ticket)
        reply = self.replies.pop(ticket)
        flight = s.in_flight.pop(ticket)
        self.down.pop(ticket, None)
        deadline = self.system.config.deadline_s if self.system is not None else None
        late = deadline is not None and seconds > deadline
        s.clock = max(s.clock, flight.sent_at + deadline if late else arrive_at)
        self.stats.sent += 1   # in this step's record: `sent` = dispatches resolved (replied or dropped)
        self.stats.replies += 1
        node = self.node_of[flight.partition]
        if reply.has_error():
            self.stats.errors += 1
            self.first_error = self.first_error or reply.error.reason
            log.warning("fedbuff: node %s (partition %s) failed: %s", node, flight.partition,
                        client_error(reply.error.reason))
            return False
        if late:
            self.stats.late += 1
            return False
        reason = s.validate_train_reply(reply.content, s.bases[flight.version])
        if reason:
            self.stats.rejected += 1
            self.first_error = self.first_error or f"node {node}: reply rejected: {reason}"
            log.warning("fedbuff: rejected reply from node %s (partition %s): %s", node, flight.partition, reason)
            return False
        metrics = next(iter(reply.content.metric_records.values()))
        self.train.append({k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
        return s.add_update(reply.content["arrays"], flight)

    def _train_metrics(self) -> dict[str, float]:
        total = sum(m.get("num-examples", 0.0) for m in self.train) or 1.0
        keys = {k for m in self.train for k in m} - {"num-examples"}
        return {k: sum(m.get(k, 0.0) * m.get("num-examples", 0.0) for m in self.train) / total for k in sorted(keys)}

    # ---- the loop ----------------------------------------------------------------------
    def run(self, arrays: ArrayRecord, *, num_rounds: int,
            evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None]) -> ArrayRecord:
        s, guard = self.strategy, self.guard
        s.bases[s.version] = arrays
        target = s.version + num_rounds
        evaluate_fn(0, arrays)
        self._push(sorted(s.in_flight.values(), key=lambda f: f.ticket))   # a resume: again, as they were
        self.first_error: str | None = None
        self.train: list[dict[str, float]] = []
        while s.version < target:
            self._fill()
            if not s.in_flight:
                continue   # every pick dropped out; pick again
            if not self._take(self._next()):
                self._check_failures()
                continue
            started = time.perf_counter()
            arrays = _match_dtypes(s.step(arrays), arrays)
            self.stats.server_s += time.perf_counter() - started
            self.stats.sim_s, s.step_clock = s.clock - s.step_clock, s.clock
            self.stats.train_metrics = self._train_metrics()
            guard.rounds[s.version] = self.stats
            self._check_failures()
            server_round = s.version - guard.offset
            self._evaluate_on_clients(server_round, arrays)
            evaluate_fn(server_round, arrays)
            self.stats, self.first_error, self.train = RoundStats(), None, []
        return arrays

    def _check_failures(self) -> None:
        stats, limit = self.stats, self.guard.max_failure_fraction
        if stats.sent and stats.failures / stats.sent > limit and stats.failures >= self.strategy.config.buffer_size:
            raise TooManyFailures(
                f"version {self.strategy.version + 1}: {stats.failures} of {stats.sent} dispatches failed, more "
                f"than failures.max_fraction={limit}; first client error: {client_error(self.first_error)}",
                details=self.first_error)

    def _evaluate_on_clients(self, server_round: int, arrays: ArrayRecord) -> None:
        """evaluate.where=clients|both: the same evaluate round Flower's loop runs after training."""
        messages = list(self.guard.configure_evaluate(server_round, arrays, ConfigRecord(), self.grid))
        if messages:
            replies = self.grid.send_and_receive(messages, timeout=self.timeout)
            self.guard.aggregate_evaluate(server_round, replies)


def run_async(guard: RoundGuard, *, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int, timeout: float,
              evaluate_fn: Callable[[int, ArrayRecord], MetricRecord | None], real_order: bool) -> ArrayRecord:
    """Run `num_rounds` server steps of the guard's asynchronous strategy; the final global arrays."""
    loop = AsyncLoop(guard, grid, real_order=real_order, timeout=timeout)
    missing = [p for p in range(guard.env.task.num_clients) if p not in loop.node_of]
    if missing:
        log.warning("fedbuff: no node holds partitions %s", first_line(str(missing)))
    arrays = loop.run(initial_arrays, num_rounds=num_rounds, evaluate_fn=evaluate_fn)
    if real_order:   # a deployment; a simulated run's engine ends with its run
        loop.drain(min(timeout, DRAIN_LIMIT_S))
    return arrays
