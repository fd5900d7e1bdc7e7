"""A per-node index of undelivered messages for Flower's in-memory LinkState (large simulations).

Flower's simulation engine asks the LinkState for each virtual node's next message every 0.1 s
(`vce_api.add_messages_to_queue`), and `InMemoryLinkState.get_message_ins` answers by scanning
every stored message, validating each one. A sweep costs nodes x stored messages: with 10,000
virtual clients and one message to each of them (a partition hello, or full participation) that
is 10^8 validations per sweep and the run stalls. Indexing the undelivered messages by
destination makes a node without messages O(1) and a node with messages O(its own messages),
with the same answers: the same validation and expiry checks, insertion order, and
`delivered_at` marking. `install()` patches the class once per process; it is applied only by
corolla's simulation engine.
"""

from __future__ import annotations

from typing import Any

from flwr.app import Message
from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState
from flwr.supercore.date import now

_ORIGINAL_STORE = InMemoryLinkState.store_message_ins
_ORIGINAL_GET = InMemoryLinkState.get_message_ins
_INDEX = "_corolla_pending_by_node"


def _pending(state: InMemoryLinkState) -> dict[int, dict[str, None]]:
    """node id -> ids of messages stored for it and not yet handed out (an insertion-ordered set)."""
    return state.__dict__.setdefault(_INDEX, {})


def store_message_ins(self: InMemoryLinkState, message: Message) -> str | None:
    message_id = _ORIGINAL_STORE(self, message)
    if message_id is not None:
        with self.lock:
            _pending(self).setdefault(message.metadata.dst_node_id, {})[message_id] = None
    return message_id


def get_message_ins(self: InMemoryLinkState, node_id: int, limit: int | None, *,
                    run_id: int | None = None) -> list[Message]:
    """Flower's `get_message_ins`, looking only at the messages stored for `node_id`."""
    if limit is not None and limit < 1:
        raise AssertionError("`limit` must be >= 1")
    found: list[Message] = []
    with self.lock:
        pending = _pending(self).get(node_id)
        if not pending:
            return found
        for msg_id in list(pending):
            self._check_stored_messages({msg_id})  # drops expired or out-of-federation messages
            message = self.message_ins_store.get(msg_id)
            if message is None or message.metadata.delivered_at != "":
                del pending[msg_id]
                continue
            if run_id is not None and message.metadata.run_id != run_id:
                continue
            found.append(message)
            del pending[msg_id]
            if limit and len(found) == limit:
                break
    delivered_at = now().isoformat()
    for message in found:
        message.metadata.delivered_at = delivered_at
    return found


def install() -> None:
    """Patch InMemoryLinkState with the indexed lookup (idempotent)."""
    cls: Any = InMemoryLinkState
    cls.store_message_ins = store_message_ins
    cls.get_message_ins = get_message_ins


def uninstall() -> None:
    """Back to Flower's scanning lookup (for tests that compare the two)."""
    cls: Any = InMemoryLinkState
    cls.store_message_ins = _ORIGINAL_STORE
    cls.get_message_ins = _ORIGINAL_GET

