"""`secagg=true`: a wrapper that has a weight-averaging server half see only the sum of the updates.

Each training round runs one secure sum around the strategy's own training messages: the keys
and shares go first, the training message carries the routed shares, each client replies with
its masked update (weighted by its capped example count, with the weight and loss in the same
sum), and the unmasking step turns the masked replies into one aggregate. The wrapped strategy
then aggregates that aggregate as if one client had sent it, so FedAvg, FedProx and the server
optimizers (FedAdam, FedYogi, FedAdagrad, FedAvgM) keep their own update rule.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from strategies.secagg.config import SecAggConfig
from strategies.secagg.fixedpoint import FixedPoint
from strategies.secagg.server import SecureSumSession
from strategies.wrapper import StrategyWrapper

log = logging.getLogger("corolla")

WEIGHT = "~weight"        # sum of capped num-examples / weight_scale
LOSS = "~train_loss"      # sum of weight x train loss
WEIGHT_SCALE_KEY = "secagg-weight-scale"


def refusal(server_half: type, section: dict[str, Any] | None = None) -> str | None:
    """Why a server half cannot run under secure aggregation, or None.

    The class whose `aggregate_train` is in use must need only the weighted mean of the replies:
    Flower's FedAvg, FedProx (FedAvg's), FedAdam, FedYogi, FedAdagrad and FedAvgM (the mean, then a
    server update), or a class of corolla's that declares ``aggregates_by_sum = True`` beside its own
    `aggregate_train` (FOT). Everything else may need each client's reply and is refused.
    """
    from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvg, FedAvgM, FedYogi

    if section is not None and hasattr(server_half, "secagg_refusal"):
        server_half.secagg_refusal(section)  # settings of its own that need each client's values: ConfigError
    owner = next((k for k in server_half.__mro__ if "aggregate_train" in vars(k)), None)
    if owner in (FedAvg, FedAdam, FedYogi, FedAdagrad, FedAvgM) or (owner and vars(owner).get("aggregates_by_sum")):
        return None
    return getattr(server_half, "secure_sum_refusal", None) or (
        f"{server_half.__name__} aggregates with {getattr(owner, '__name__', '?')}.aggregate_train, which needs each "
        "client's reply; secagg=true works with strategies that aggregate by a weighted mean of the updates")


class SecureAggregation(StrategyWrapper):
    """Holds a weight-averaging server half and runs each round's aggregation as a secure sum."""

    def __init__(self, inner: Any, *, config: SecAggConfig) -> None:
        super().__init__(inner)
        self.config = config
        self.session: SecureSumSession | None = None
        self._global: ArrayRecord | None = None

    def setup(self, env: Any) -> None:
        if hasattr(self.inner, "secure"):  # a method with sums of its own (FOT's sketches) uses them too
            self.inner.secure = self.config
        self.inner.setup(env)

    # Flower's Strategy -----------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        messages = list(self.inner.configure_train(server_round, arrays, config, grid))
        if not messages:
            return messages
        shapes = {name: tuple(arr.shape) for name, arr in arrays.items()}
        shapes.update({WEIGHT: (), LOSS: ()})
        fixed_point = FixedPoint(clip=self.config.clip, modulus_bits=self.config.modulus_bits,
                                 max_parties=max(len(messages), 2))
        self.session = SecureSumSession(grid, shapes=shapes, fixed_point=fixed_point,
                                        max_dropout=self.config.max_dropout, neighbours=self.config.neighbours)
        self._global = arrays
        sharers = set(self.session.open(m.metadata.dst_node_id for m in messages))
        out = []
        for message in messages:
            node = message.metadata.dst_node_id
            if node not in sharers:
                continue
            # Flower's strategies give every node the same content object: copy before adding to it.
            content = RecordDict(dict(message.content.items()))
            content["config"] = ConfigRecord({**message.content["config"], WEIGHT_SCALE_KEY: self.config.weight_scale})
            out.append(Message(self.session.masking_request(node, content), dst_node_id=node,
                               message_type=message.metadata.message_type))
        return out

    def validate_train_reply(self, content: RecordDict, sent: ArrayRecord) -> str | None:
        if self.session is None:
            return "no secure sum is open"
        return self.session.check_reply(content)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        assert self.session is not None and self._global is not None
        result = self.session.finish(list(replies))
        weight = float(result.sums.pop(WEIGHT))
        loss = float(result.sums.pop(LOSS))
        self.round_extras[server_round] = {"secagg_survivors": len(result.survivors),
                                           "secagg_dropped": len(result.dropped),
                                           "secagg_clipped": result.clipped}
        if weight <= 0:
            log.warning("round %d: the secure sum carries no weight; the global model stays", server_round)
            return None, None
        mean = ArrayRecord()
        for name, arr in self._global.items():
            base = arr.numpy()
            values = base.astype(np.float64) + result.sums[name] / weight
            if np.issubdtype(base.dtype, np.integer):
                values = np.rint(values)
            mean[name] = Array(np.asarray(values.astype(base.dtype)))
        metrics = MetricRecord({"num-examples": max(1, round(weight * self.config.weight_scale)),
                                "train_loss": loss / weight})
        aggregate = Message(RecordDict({"arrays": mean, "metrics": metrics}), dst_node_id=0, message_type="train")
        self.session = None
        if hasattr(self.inner, "secure_survivors"):
            self.inner.secure_survivors = list(result.survivors)
        return self.inner.aggregate_train(server_round, [aggregate])


def weighted_update(message: Message, reply: Message) -> dict[str, np.ndarray]:
    """A client's values for the secure sum: its capped weight times its update, the weight, the loss."""
    scale = int(message.content["config"][WEIGHT_SCALE_KEY])
    metrics = reply.content["metrics"]
    weight = min(float(metrics["num-examples"]), scale) / scale
    sent = message.content["arrays"]
    trained = reply.content["arrays"]
    values = {name: weight * (trained[name].numpy().astype(np.float64) - sent[name].numpy().astype(np.float64))
              for name in sent}
    values[WEIGHT] = np.asarray(weight)
    values[LOSS] = np.asarray(weight * float(metrics.get("train_loss", 0.0)))
    return values
