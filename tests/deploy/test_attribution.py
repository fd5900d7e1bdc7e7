"""A failure is logged against the node that failed, also for Flower's own error replies ("Node
Unavailable"), which come from the SuperLink's node id."""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, Error, Message, RecordDict

from server.grid import TrackedGrid
from server.guard import RoundGuard
from strategies.fedavg import FedAvgServer

SUPERLINK_NODE_ID = 0


class FakeGrid:
    """Sets message ids on push, as Flower's grids do; node 7 is dead and the SuperLink answers for it."""

    def send_and_receive(self, messages: list[Message], *, timeout: float | None = None) -> list[Message]:
        replies = []
        for i, m in enumerate(messages):
            m.metadata.__dict__["_message_id"] = f"id-{i}"
            reply = Message(Error(code=5, reason="Error: Node Unavailable"), reply_to=m)
            reply.metadata.__dict__["_src_node_id"] = SUPERLINK_NODE_ID
            replies.append(reply)
        return replies

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(name)


def test_node_unavailable_is_logged_against_the_dead_node(caplog: pytest.LogCaptureFixture) -> None:
    grid = TrackedGrid(FakeGrid())  # type: ignore[arg-type]
    sent = [Message(RecordDict(), dst_node_id=node, message_type="train") for node in (7,)]
    replies = list(grid.send_and_receive(sent))
    assert replies[0].metadata.src_node_id == SUPERLINK_NODE_ID and grid.node_of(replies[0]) == 7
    env = SimpleNamespace(task_of_round=lambda r: 0, task=SimpleNamespace(num_clients=2))
    guard = RoundGuard(FedAvgServer(), env=env, seed=0, max_failure_fraction=1.0,  # type: ignore[arg-type]
                       node_of=grid.node_of)
    guard._sent_arrays = ArrayRecord({"w": Array(np.zeros(2, np.float32))})
    with caplog.at_level("WARNING", logger="corolla"):
        guard.aggregate_train(1, replies)
    assert re.search(r"round 1: node 7 (\(partition [^)]*\) )?failed", caplog.text), caplog.text
    assert not re.search(rf"node {SUPERLINK_NODE_ID} (\(partition [^)]*\) )?failed", caplog.text)
