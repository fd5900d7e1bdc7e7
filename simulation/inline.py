"""engine=inline: corolla's ServerApp and ClientApp driven in this process, one client at a time.

`InlineGrid` is a Flower Grid whose nodes are calls of the ClientApp (`client.app.app`), each node
with its own Flower Context kept between rounds, as Flower's simulation engine keeps them. The
messages, reply validation, byte metering, run directory, checkpoints and resume are those of
`engine=ray`; what differs is the transport: no Ray start-up, no actor processes, no polling.
A client half runs in this thread, so `breakpoint()` in it stops here. A client that raises
becomes an error reply, as under Ray; a client that kills its process (os._exit, out of memory)
kills the run, where Ray would lose only that actor.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid

from conf.compose import to_run_config

FIRST_NODE_ID = 1000


class InlineGrid(Grid):
    """A Flower Grid whose nodes are ClientApp calls in this process, one Context each."""

    def __init__(self, cfg: dict[str, Any], run_dir: Path) -> None:
        run_config = to_run_config(cfg, run_dir)
        threads = cfg["engine"].get("client_threads")
        self.client_threads = int(threads) if threads else None
        n = int(cfg["task"]["num_clients"])
        self.contexts = {
            FIRST_NODE_ID + i: Context(run_id=1, node_id=FIRST_NODE_ID + i,
                                       node_config={"partition-id": i, "num-partitions": n},
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
        from client.app import app as client_app

        message.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        try:
            reply = client_app(message, self.contexts[message.metadata.dst_node_id])
        except Exception as ex:  # the error reply Flower's engine makes of a ClientApp exception
            error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=f"{type(ex)}:<'{ex}'>")
            reply = Message(error=error, reply_to=message)
        reply.metadata.__dict__["_message_id"] = str(uuid.uuid4())
        return reply

    @contextmanager
    def _client_threads(self) -> Iterator[None]:
        """Clients compute with `client_threads` torch threads, the server with the process's own.

        As under Ray (an actor with num_cpus=1 has one thread, the driver torch's default), so both
        engines reduce in the same order. Switched once per batch: a switch costs milliseconds.
        """
        import torch

        before = torch.get_num_threads()
        if self.client_threads is None or self.client_threads == before:
            yield
            return
        torch.set_num_threads(self.client_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        with self._client_threads():
            for message in messages:
                reply = self._deliver(message)  # gives the message its id
                self._replies[message.metadata.message_id] = reply
                ids.append(message.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        with self._client_threads():
            return [self._deliver(m) for m in messages]


def _server_context(cfg: dict[str, Any], run_dir: Path) -> Context:
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 1
    return Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config=to_run_config(cfg, run_dir))


def simulate_inline(cfg: dict[str, Any], run_dir: Path, *, verbose: bool = False) -> None:
    """Run the experiment in `cfg` through corolla's ServerApp on an InlineGrid; raises if it fails."""
    from server.app import app as server_app

    if not verbose:
        logging.getLogger("flwr").setLevel(logging.WARNING)
    server_app(InlineGrid(cfg, run_dir), _server_context(cfg, run_dir))


def run_inline(overrides: list[str], run_dir: Path | None = None) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    """One experiment composed from Hydra overrides, on an InlineGrid, without a progress bar.

    Returns (summary, metrics.jsonl records, run dir); the caller owns the dir (a fresh temporary
    one by default). The benches run many short experiments through this.
    """
    import json
    import tempfile

    from conf.compose import compose
    from server.config_check import check_config
    from server.coordinator import run_federation
    from server.rundir import prepare_run_dir

    logging.getLogger("flwr").setLevel(logging.ERROR)
    cfg = compose(overrides)
    check_config(cfg)
    run_dir = run_dir or Path(tempfile.mkdtemp(prefix="corolla-inline-"))
    prepare_run_dir(run_dir, cfg)
    _server_context(cfg, run_dir)
    summary = run_federation(InlineGrid(cfg, run_dir), cfg, run_dir)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    return summary, records, run_dir
