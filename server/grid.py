"""A Grid wrapper that counts message bytes and lists nodes in partition order."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid

from conf.errors import first_line
from strategies.messages import HELLO
from strategies.payload import record_nbytes

log = logging.getLogger("corolla")
# How often the ServerApp polls Flower's in-memory link state for replies in simulation (Flower's
# default, 0.1 s, leaves a round idle for 50 ms on average after its last reply).
SIM_PULL_INTERVAL_S = 0.02


def is_deployed(grid: Grid) -> bool:
    """Whether the grid reaches a SuperLink (`flwr run`), not a simulation or the inline engine.

    Looked up in sys.modules: importing Flower's HttpGrid costs 0.6 s of start-up, and a grid
    cannot be one unless its module is already loaded.
    """
    module = sys.modules.get("flwr.superlink.grid.http_grid")
    return module is not None and isinstance(grid, module.HttpGrid)


def poll_faster_in_simulation(grid: Grid) -> None:
    """Shorten the simulation engine's reply polling (a no-op on any other grid)."""
    module = sys.modules.get("flwr.superlink.grid.inmemory_grid")
    if module is not None and isinstance(grid, module.InMemoryGrid):
        grid.pull_interval = SIM_PULL_INTERVAL_S


class GridDelegate(Grid):
    """Flower's Grid API passed through to an inner grid; subclasses change what they need."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def set_run(self, run: Any) -> None:
        self._grid.set_run(run)

    @property
    def run(self) -> Any:
        return self._grid.run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        return self._grid.create_message(*args, **kwargs)

    def get_nodes(self) -> Iterable[Any]:
        return self._grid.get_nodes()

    def get_node_ids(self) -> Iterable[int]:
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self._grid.send_and_receive(messages, timeout=timeout)


class TrackedGrid(GridDelegate):
    """Delegates to Flower's grid; meters uplink/downlink bytes and orders nodes by partition.

    Nodes are ordered by the partition they hold (learned from a `query.hello` exchange), so a
    seeded sampler picks the same partitions in every run, whatever node ids the engine assigns.
    """

    def __init__(self, grid: Grid, *, hello_timeout: float = 60.0) -> None:
        super().__init__(grid)
        self._hello_timeout = hello_timeout
        self.partition_of: dict[int, int] = {}
        self.num_partitions_of: dict[int, int] = {}
        self.uplink_bytes = 0
        self.downlink_bytes = 0
        self.messages_sent = 0
        self.error_replies = 0
        self.dst_of: dict[str, int] = {}  # message id -> the node it went to

    # Flower's Grid API, metered ---------------------------------------------------------
    def get_node_ids(self) -> list[int]:
        ids = list(self._grid.get_node_ids())
        unknown = [n for n in ids if n not in self.partition_of]
        if unknown:
            self._learn_partitions(unknown)
        return sorted(ids, key=lambda n: (self.partition_of.get(n, 1 << 62), n))

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        messages = list(messages)
        self._count_out(messages)
        ids = self._grid.push_messages(messages)
        self._note_destinations(messages)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        replies = list(self._grid.pull_messages(message_ids))
        self._count_in(replies)
        return replies

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        messages = list(messages)
        self._count_out(messages)
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        self._note_destinations(messages)
        self._count_in(replies)
        return replies

    def node_of(self, reply: Message) -> int:
        """The node a reply is about: Flower's own error replies (e.g. "Node Unavailable") come from
        the SuperLink's id, so look up where the message they answer went."""
        return self.dst_of.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)

    # corolla's additions ------------------------------------------------------------------
    def _count_out(self, messages: list[Message]) -> None:
        self.messages_sent += len(messages)
        self.downlink_bytes += sum(record_nbytes(m.content) for m in messages)

    def _note_destinations(self, messages: list[Message]) -> None:
        # Flower's grids set each message's id on the object when they push it.
        for m in messages:
            if m.metadata.message_id:
                self.dst_of[m.metadata.message_id] = m.metadata.dst_node_id

    def _count_in(self, replies: list[Message]) -> None:
        for reply in replies:
            if reply.has_error():
                self.error_replies += 1
            else:
                self.uplink_bytes += record_nbytes(reply.content)

    def _learn_partitions(self, node_ids: list[int]) -> None:
        """Ask new nodes which partition they hold; nodes that do not answer stay unordered."""
        messages = [Message(RecordDict(), dst_node_id=n, message_type=HELLO) for n in node_ids]
        started = time.monotonic()
        for reply in self._grid.send_and_receive(messages, timeout=self._hello_timeout):
            if reply.has_error():
                log.warning("node %s failed the hello exchange: %s", reply.metadata.src_node_id,
                            first_line(reply.error.reason or ""))
                continue
            metrics = next(iter(reply.content.metric_records.values()))
            self.partition_of[reply.metadata.src_node_id] = int(metrics["partition-id"])
            self.num_partitions_of[reply.metadata.src_node_id] = int(metrics["num-partitions"])
        log.debug("learned partitions of %d nodes in %.2fs", len(node_ids), time.monotonic() - started)
