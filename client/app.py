"""The ClientApp: dispatches each message to the run's strategy's client half, found by name."""

from __future__ import annotations

import gc
import traceback

from flwr.app import Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from conf.compose import config_from_run_config
from strategies import npy
from strategies.base import ClientEnv
from strategies.messages import HELLO
from strategies.privacy.client import handle as privately
from strategies.registry import all_message_types, get_strategy

app = ClientApp()
npy.install()  # array records parsed with cached .npy headers: the same arrays, less time per message


class ClientFailure(RuntimeError):
    """A client half raised; the message carries the client's traceback to the server."""


def dispatch(message: Message, context: Context) -> Message:
    """Run the strategy's handler for this message, with the traceback kept for the server."""
    try:
        cfg = config_from_run_config(context.run_config)
        env = ClientEnv(cfg, context)
        if message.metadata.message_type == HELLO:
            return hello(message, env)
        half = get_strategy(cfg["strategy"]["name"]).client(env)
        return privately(message, context, half.handle, cfg=cfg,
                         noise_seed=lambda rnd: env.seed_for(rnd, "local-dp"))
    except Exception as ex:  # Flower keeps only str(ex): put the traceback in it
        raise ClientFailure(f"{type(ex).__name__}: {ex}\n{traceback.format_exc()}") from ex


def hello(message: Message, env: ClientEnv) -> Message:
    """Tell the server which partition this node holds (it samples by partition, reproducibly)."""
    metrics = MetricRecord({"partition-id": env.partition_id, "num-partitions": env.num_partitions})
    return Message(RecordDict({"metrics": metrics}), reply_to=message)


def _register(message_type: str) -> None:
    category, _, action = message_type.partition(".")
    register = getattr(app, category)
    (register(action) if action else register())(dispatch)


for _mtype in sorted(all_message_types() | {HELLO}):
    _register(_mtype)
# The client process's imports live as long as it does: frozen, the collector's full passes skip them.
gc.freeze()
