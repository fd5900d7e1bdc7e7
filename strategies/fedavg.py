"""FedAvg (McMahan et al., 2017): Flower's FedAvg as corolla's server half, plus the weights client half."""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from models.training import LossTerm, TrainConfig, evaluate, train_local
from strategies.base import ClientHalf, CorollaStrategy, ServerEnv, StrategyDef


class FedAvgServer(CorollaStrategy, FedAvg):
    """Flower's FedAvg; corolla evaluates centrally, so client-side evaluation is off by default."""

    def __init__(self, *, fraction_train: float = 1.0, fraction_evaluate: float = 0.0,
                 min_train_nodes: int = 2, min_evaluate_nodes: int = 2,
                 min_available_nodes: int = 2, **kwargs: Any) -> None:
        super().__init__(fraction_train=fraction_train, fraction_evaluate=fraction_evaluate,
                         min_train_nodes=min_train_nodes, min_evaluate_nodes=min_evaluate_nodes,
                         min_available_nodes=min_available_nodes, **kwargs)

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        # Flower waits forever for more nodes than exist; a federation smaller than the
        # defaults (2) must still run.
        n = env.task.num_clients
        self.min_train_nodes = min(self.min_train_nodes, n)
        self.min_evaluate_nodes = min(self.min_evaluate_nodes, n)
        self.min_available_nodes = min(self.min_available_nodes, n)


class WeightsClient(ClientHalf):
    """Client half for strategies that send model weights: load, train locally, reply weights."""

    message_types: ClassVar[dict[str, str]] = {"train": "train", "evaluate": "evaluate"}

    def loss_terms(self, config: ConfigRecord, global_model: torch.nn.Module) -> list[LossTerm]:
        """Extra loss terms for the local objective (FedProx adds its proximal term here)."""
        return []

    def after_backward(self, config: ConfigRecord) -> Callable[[torch.nn.Module], None] | None:
        """A hook run after each backward pass, before the optimizer step (e.g. freezing layers)."""
        return None

    def load_global(self, message: Message) -> torch.nn.Module:
        model = self.env.build_model()
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        return model

    def train(self, message: Message) -> Message:
        config = message.content["config"]
        server_round = int(config["server-round"])
        task_id = int(config.get("task-id", 0))
        model = self.load_global(message)
        split = self.env.task.client_train(self.env.partition_id, task_id)
        result = train_local(
            model, split.x, split.y, TrainConfig.from_mapping(self.env.cfg["train"]),
            device=self.env.device, seed=self.env.seed_for(server_round),
            class_mask=self.env.class_mask(task_id),
            loss_terms=self.loss_terms(config, model),
            after_backward=self.after_backward(config),
        )
        metrics = MetricRecord({"num-examples": result.num_examples, "train_loss": result.loss,
                                "train_accuracy": result.accuracy})
        arrays = ArrayRecord(model.to("cpu").state_dict())
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    def evaluate(self, message: Message) -> Message:
        config = message.content["config"]
        task_id = int(config.get("task-id", 0))
        model = self.load_global(message)
        split = self.env.task.client_train(self.env.partition_id, task_id)
        result = evaluate(model, split.x, split.y, device=self.env.device,
                          class_mask=self.env.class_mask(task_id))
        metrics = MetricRecord({"num-examples": result.num_examples, "eval_loss": result.loss,
                                "eval_accuracy": result.accuracy})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)


STRATEGY = StrategyDef(name="fedavg", server=FedAvgServer, client=WeightsClient,
                       description="Federated Averaging (McMahan et al., 2017)")
