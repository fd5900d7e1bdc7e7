"""The per-node message index answers like Flower's scanning lookup and looks only at a node's own messages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flwr.app import RecordDict
from flwr.common.constant import TASK_ID_NUM_BYTES
from flwr.proto.task_pb2 import Task  # pylint: disable=E0611
from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
from flwr.server.superlink.linkstate import InMemoryLinkState, LinkStateFactory
from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
from flwr.server.superlink.linkstate.utils import generate_rand_int_from_bytes
from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
from flwr.supercore.object_store import ObjectStoreFactory
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity
from flwr.superlink.federation import NoOpFederationManager
from flwr.superlink.grid import InMemoryGrid

from simulation import linkstate_index


@pytest.fixture(params=["flower", "indexed"])
def lookup(request: pytest.FixtureRequest) -> Iterator[str]:
    linkstate_index.install() if request.param == "indexed" else linkstate_index.uninstall()
    yield request.param
    linkstate_index.uninstall()


def federation(num_nodes: int) -> tuple[InMemoryLinkState, InMemoryGrid, list[int]]:
    """A simulation LinkState with one run and `num_nodes` nodes, set up as flwr.simulation does."""
    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    run = Run.create_empty(run_id=TaskIdentity.run_id)  # the id Flower's Message() stamps (conftest)
    run = replace(run, primary_task_id=generate_rand_int_from_bytes(TASK_ID_NUM_BYTES), federation_id=NOOP_FEDERATION_ID)
    state = factory.state()
    state.run_ids[run.run_id] = RunRecord(run=run)
    state.task_store[run.primary_task_id] = Task(task_id=run.primary_task_id, run_id=run.run_id)
    nodes = list(_register_nodes(num_nodes, factory))
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    return state, grid, nodes


def push(grid: InMemoryGrid, dst: list[int]) -> list[str]:
    return list(grid.push_messages([grid.create_message(RecordDict(), "query.hello", d, "g") for d in dst]))


def test_every_node_gets_its_own_messages_in_order_once(lookup: str) -> None:
    state, grid, nodes = federation(6)
    sent = push(grid, [nodes[0], nodes[1], nodes[0], nodes[3]])
    assert [m.metadata.message_id for m in state.get_message_ins(nodes[0], limit=1)] == [sent[0]]
    assert [m.metadata.message_id for m in state.get_message_ins(nodes[0], limit=None)] == [sent[2]]
    assert state.get_message_ins(nodes[0], limit=None) == []  # delivered once
    got = state.get_message_ins(nodes[1], limit=5)
    assert [m.metadata.message_id for m in got] == [sent[1]] and got[0].metadata.delivered_at != ""
    assert state.get_message_ins(nodes[2], limit=1) == []
    assert [m.metadata.message_id for m in state.get_message_ins(nodes[3], limit=1, run_id=grid.run.run_id)] == [sent[3]]
    with pytest.raises(AssertionError):
        state.get_message_ins(nodes[0], limit=0)


def test_expired_messages_are_dropped(lookup: str) -> None:
    state, grid, nodes = federation(2)
    (msg_id,) = push(grid, [nodes[0]])
    state.message_ins_store[msg_id].metadata.__dict__["_created_at"] -= 10 ** 7  # far past its ttl
    assert state.get_message_ins(nodes[0], limit=1) == []
    assert msg_id not in state.message_ins_store


def test_indexed_lookup_checks_only_the_nodes_own_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    linkstate_index.install()
    try:
        state, grid, nodes = federation(50)
        push(grid, nodes[:40])  # a hello to most nodes: Flower's scan would check 40 messages per call
        checked: list[set[str]] = []
        real = InMemoryLinkState._check_stored_messages
        monkeypatch.setattr(InMemoryLinkState, "_check_stored_messages",
                            lambda self, ids, run_id=None: (checked.append(set(ids)), real(self, ids, run_id))[1])
        for node in nodes:
            state.get_message_ins(node, limit=1)
        assert len(checked) == 40  # one check per delivered message, none for the 10 idle nodes
    finally:
        linkstate_index.uninstall()
