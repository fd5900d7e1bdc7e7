"""The strategy contract: the server-half mixin, the client-half base (StrategyDef, tying them, is in the registry)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar

from flwr.app import ArrayRecord, Context, Message, RecordDict

from conf.seeds import derive_seed  # re-exported: strategies and their tests import it from here
from strategies.registry import StrategyDef, parse_strategy_config

__all__ = ["ClientEnv", "ClientHalf", "CorollaStrategy", "ServerEnv", "StrategyDef", "derive_seed"]

if TYPE_CHECKING:
    import torch
    from data import TaskBundle


@dataclass
class ServerEnv:
    """What a server half may use: the resolved config, the task, a model factory and the run dir."""

    cfg: dict[str, Any]
    task: "TaskBundle"
    build_model: Callable[[], "torch.nn.Module"]
    run_dir: Path
    rounds_per_task: int

    def task_of_round(self, server_round: int) -> int:
        """The continual task a (1-based) round trains on."""
        return min((server_round - 1) // self.rounds_per_task, self.task.num_tasks - 1)

    def is_task_end(self, server_round: int) -> bool:
        """True on the last round of a task."""
        return server_round % self.rounds_per_task == 0


class CorollaStrategy:
    """Mixin for server halves: resume state, reply validation and per-round metrics.

    Put it before the Flower strategy in the bases: ``class MyServer(CorollaStrategy, FedAvg)``.
    """

    env: ServerEnv

    def setup(self, env: ServerEnv) -> None:
        """Receive the run's environment before the first round."""
        self.env = env

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs beyond the global model (tensors, numbers, strings, lists)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def validate_train_reply(self, content: RecordDict, sent: ArrayRecord) -> str | None:
        """Why a training reply must be rejected, or None. The default checks model weights."""
        from strategies.validation import check_weights_reply

        return check_weights_reply(content, sent, max_num_examples=self.max_num_examples)

    max_num_examples: int = 10_000_000

    def round_metrics(self, server_round: int) -> dict[str, float]:
        """The method's own numbers for this round's metrics.jsonl record."""
        return {}

    def initial_arrays(self, default: ArrayRecord) -> ArrayRecord:
        """The global arrays Flower's loop starts from (default: the task model's initial weights).

        A method whose global state is not the task model (CreamFL's server model) returns its own.
        """
        return default

    def evaluate_global(self, server_round: int, arrays: ArrayRecord) -> dict[str, Any] | None:
        """Held-out evaluation of the global state after a round, or None for corolla's default
        (classification accuracy/loss of the task model on the test split of every seen task).

        A returned dict must hold `accuracy` and `loss` (None where they do not apply) and may hold
        more keys; it becomes part of the round's metrics.jsonl record.
        """
        return None

    def summary_extra(self) -> dict[str, Any]:
        """Sections the method adds to summary.json (e.g. `retrieval`)."""
        return {}


_REUSED_MODEL: dict[str, Any] = {}  # model_to_overwrite's one model of this process


class ClientEnv:
    """What a client half may use: config, partition, data, model factory, device and state."""

    def __init__(self, cfg: dict[str, Any], context: Context) -> None:
        self.cfg = cfg
        self.context = context
        node_config = context.node_config
        if "partition-id" not in node_config:
            raise KeyError(
                "this SuperNode has no 'partition-id' in its node config; start it with "
                "--node-config \"partition-id=<i> num-partitions=<n>\""
            )
        self.partition_id = int(node_config["partition-id"])
        self.num_partitions = int(node_config.get("num-partitions", cfg["task"]["num_clients"]))

    @property
    def state(self) -> RecordDict:
        """Client-side state that survives between rounds (Flower's Context.state)."""
        return self.context.state

    @cached_property
    def task(self) -> "TaskBundle":
        from data import load_site_task, load_task

        site_data = self.context.node_config.get("data")
        if site_data:  # a deployed site's own data (corolla deploy supernode --data)
            return load_site_task(self.cfg["task"], str(site_data), partition_id=self.partition_id,
                                  num_partitions=self.num_partitions, seed=int(self.cfg["seed"]))
        return load_task(self._task_cfg(), seed=int(self.cfg["seed"]))

    def _task_cfg(self) -> dict[str, Any]:
        task_cfg = dict(self.cfg["task"])
        from data.config import reads_data_dir

        data_dir = self.context.node_config.get("data-dir")
        if data_dir and reads_data_dir(task_cfg):  # a deployed site's copy of the files the task reads
            task_cfg["data_dir"] = str(data_dir)
        return task_cfg

    @cached_property
    def strategy_config(self) -> Any:
        """The run's strategy section parsed into the strategy's typed config (None without one)."""
        return parse_strategy_config(self.cfg["strategy"])

    @cached_property
    def device(self) -> "torch.device":
        from models.accel import pick_device

        return pick_device(str(self.cfg.get("device", "auto")))

    def build_model(self) -> "torch.nn.Module":
        """A fresh model of the run's architecture (weights come from the server's message)."""
        from models import build_model

        task = self.task
        return build_model(self.cfg["model"], task.input_shape, task.num_classes)

    def model_to_overwrite(self) -> "torch.nn.Module":
        """This process's one model of the run's architecture, for callers that load all its weights.

        Building a model per message costs several times loading its weights, so a client half
        that overwrites every weight (WeightsClient.load_global) reuses one per process; its
        gradients are cleared here. A process runs one client half at a time (a Ray actor, or
        engine=inline), so no two messages share it at once.
        """
        task = self.task
        key = json.dumps([self.cfg["model"], list(task.input_shape), task.num_classes], sort_keys=True, default=str)
        model = _REUSED_MODEL.get(key)
        if model is None:
            _REUSED_MODEL.clear()
            model = _REUSED_MODEL[key] = self.build_model()
        model.zero_grad(set_to_none=True)
        return model

    def class_mask(self, task_id: int) -> list[int] | None:
        """Allowed output classes: the task's own in task-incremental learning, else all."""
        if self.task.scenario == "task-incremental":
            return list(self.task.task_classes[task_id])
        return None

    def seed_for(self, server_round: int, purpose: str = "train") -> int:
        """A seed that differs per run seed, round, client and purpose, and repeats across runs."""
        return derive_seed(self.cfg["seed"], server_round, self.partition_id, purpose)


class ClientHalf:
    """Base of client halves: maps message types to handler methods.

    ``message_types`` maps a Flower message type (``"train"``, ``"query.sketch"``, ...) to the
    name of the method that handles it; each handler takes the Message and returns the reply.
    """

    message_types: ClassVar[dict[str, str]] = {}
    applies_attacks: ClassVar[bool] = False   # True: its replies carry model weights an attack can poison

    def __init__(self, env: ClientEnv) -> None:
        self.env = env

    def handle(self, message: Message) -> Message:
        """Dispatch one message to its handler (secure-aggregation steps to the secure sum)."""
        from strategies.secagg import client as secagg

        mtype = message.metadata.message_type
        if mtype in secagg.MESSAGE_TYPES:
            return secagg.handle(message, self.env.state)
        if secagg.is_masking_request(message):
            rounding = self.env.seed_for(int(message.content["config"].get("server-round", 0)), "secagg-rounding")
            return secagg.handle(message, self.env.state, lambda m: (self.secure_values(m), RecordDict()),
                                 rounding_seed=rounding)
        return self._dispatch(message)

    def secure_values(self, message: Message) -> dict[str, Any]:
        """The float arrays this client adds to a secure sum for `message` (secagg=true)."""
        raise ValueError(f"{type(self).__name__} takes part in no secure sum; its strategy refuses secagg=true")

    def _dispatch(self, message: Message) -> Message:
        mtype = message.metadata.message_type
        try:
            method = self.message_types[mtype]
        except KeyError:
            raise ValueError(
                f"{type(self).__name__} does not handle message type {mtype!r}; "
                f"it handles {sorted(self.message_types)}"
            ) from None
        return getattr(self, method)(message)
