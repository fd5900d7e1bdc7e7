"""FedAvg (McMahan et al., 2017): Flower's FedAvg as corolla's server half, plus the weights client half."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

import torch
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg

from conf.typed import Section, between
from models.training import LossTerm, TrainConfig, evaluate, train_local
from strategies.attacks import ATTACKER_METRIC, AttackConfig, attackers, flip_labels, parse_attack, poison_weights
from strategies.base import ClientHalf, CorollaStrategy, ServerEnv, StrategyDef
from strategies.messages import EVALUATE, MAX_STEPS_KEY, STEPS_METRIC, TRAIN


@dataclass(frozen=True)
class FedAvgConfig(Section):
    """Flower's FedAvg sampling settings; defaults in conf/strategy/fedavg.yaml.

    Strategies built on Flower's FedAvg (FedProx, FOT, plugins) extend this dataclass.
    """

    fraction_train: float = field(metadata=between(0, 1))      # clients sampled per training round
    fraction_evaluate: float = field(metadata=between(0, 1))   # clients asked to evaluate (0: corolla evaluates centrally)
    min_train_nodes: int = field(metadata=between(0))
    min_evaluate_nodes: int = field(metadata=between(0))
    min_available_nodes: int = field(metadata=between(0))

    def flower_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of Flower's FedAvg these settings stand for."""
        return {"fraction_train": self.fraction_train, "fraction_evaluate": self.fraction_evaluate,
                "min_train_nodes": self.min_train_nodes, "min_evaluate_nodes": self.min_evaluate_nodes,
                "min_available_nodes": self.min_available_nodes}


class FedAvgServer(CorollaStrategy, FedAvg):
    """Flower's FedAvg as corolla's server half.

    The registry builds it as ``FedAvgServer(config=FedAvgConfig)``. Without ``config`` (a subclass or
    a plugin that has no typed config) the keyword arguments are Flower's FedAvg's, with its
    defaults, except that client-side evaluation is off: corolla evaluates centrally.
    """

    def __init__(self, *, config: FedAvgConfig | None = None, **kwargs: Any) -> None:
        self.config = config
        if config is not None:
            kwargs = {**config.flower_kwargs(), **kwargs}
        kwargs.setdefault("fraction_evaluate", 0.0)
        super().__init__(**kwargs)

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

    message_types: ClassVar[dict[str, str]] = {TRAIN: "train", EVALUATE: "evaluate"}
    applies_attacks: ClassVar[bool] = True

    def loss_terms(self, config: ConfigRecord, global_model: torch.nn.Module) -> list[LossTerm]:
        """Extra loss terms for the local objective (FedProx adds its proximal term here)."""
        return []

    def after_backward(self, config: ConfigRecord) -> Callable[[torch.nn.Module], None] | None:
        """A hook run after each backward pass, before the optimizer step (e.g. freezing layers)."""
        return None

    def attack(self) -> AttackConfig | None:
        """The run's attack if this client is one of its attackers (drawn from the seed), else None."""
        attack = parse_attack(self.env.cfg.get("attack"))
        if not attack.active:
            return None
        chosen = attackers(seed=int(self.env.cfg["seed"]), num_clients=self.env.num_partitions,
                           fraction=attack.fraction)
        return attack if self.env.partition_id in chosen else None

    def load_global(self, message: Message) -> torch.nn.Module:
        model = self.env.model_to_overwrite()
        model.load_state_dict(message.content["arrays"].to_torch_state_dict())
        return model

    def train(self, message: Message) -> Message:
        config = message.content["config"]
        server_round = int(config["server-round"])
        task_id = int(config.get("task-id", 0))
        model = self.load_global(message)
        split = self.env.task.client_train(self.env.partition_id, task_id)
        attack = self.attack()
        sent = {k: v.detach().clone() for k, v in model.state_dict().items()} if attack else {}
        labels = flip_labels(split.y, self.env.task.num_classes) if attack and attack.name == "label-flip" else split.y
        train_cfg = TrainConfig.from_mapping(self.env.cfg["train"])
        cap = config.get(MAX_STEPS_KEY)   # system.partial_work: the steps it can finish by the deadline
        if cap is not None:
            train_cfg = dataclasses.replace(train_cfg, max_steps=min(int(cap), train_cfg.max_steps or int(cap)))
        result = train_local(
            model, split.x, labels, train_cfg,
            device=self.env.device, seed=self.env.seed_for(server_round),
            class_mask=self.env.class_mask(task_id),
            loss_terms=self.loss_terms(config, model),
            after_backward=self.after_backward(config),
        )
        metrics = MetricRecord({"num-examples": result.num_examples, "train_loss": result.loss,
                                "train_accuracy": result.accuracy})
        if cap is not None:
            metrics[STEPS_METRIC] = result.steps
        weights = model.to("cpu").state_dict()
        if attack:
            weights = poison_weights(weights, sent, mode=attack.name, scale=attack.scale,
                                     seed=self.env.seed_for(server_round, "attack"))
        if parse_attack(self.env.cfg.get("attack")).active:
            metrics[ATTACKER_METRIC] = 1.0 if attack else 0.0
        arrays = ArrayRecord(weights)
        return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=message)

    def secure_values(self, message: Message) -> dict[str, Any]:
        """Under secagg=true: the weighted update, its weight and loss, summed securely."""
        from strategies.secagg.strategy import weighted_update

        return weighted_update(message, self.train(message))

    def evaluate(self, message: Message) -> Message:
        config = message.content["config"]
        task_id = int(config.get("task-id", 0))
        model = self.load_global(message)
        split = self.env.task.client_test(self.env.partition_id, task_id)  # its own test split
        result = evaluate(model, split.x, split.y, device=self.env.device,
                          class_mask=self.env.class_mask(task_id))
        metrics = MetricRecord({"num-examples": result.num_examples, "eval_loss": result.loss,
                                "eval_accuracy": result.accuracy})
        return Message(RecordDict({"metrics": metrics}), reply_to=message)


STRATEGY = StrategyDef(name="fedavg", server=FedAvgServer, client=WeightsClient, config=FedAvgConfig,
                       description="Federated Averaging (McMahan et al., 2017)")
