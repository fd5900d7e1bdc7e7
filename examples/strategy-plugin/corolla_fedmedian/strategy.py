"""FedMedian as a corolla plugin named `mymedian` (the built-in `fedmedian` is Flower's own FedMedian)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from flwr.app import Array, Message
from flwr.serverapp.strategy import FedMedian

from conf.typed import between
from strategies import StrategyDef
from strategies.fedavg import FedAvgConfig, FedAvgServer, WeightsClient


@dataclass(frozen=True)
class FedMedianConfig(FedAvgConfig):
    """The strategy section, parsed and checked before any engine starts.

    FedAvg's sampling keys come with `FedAvgConfig`; the defaults of every key live in
    conf/strategy/mymedian.yaml, not here.
    """

    # Clients clip their update w_local - w_global to this L2 norm before replying (null: off).
    clip_update: float | None = field(metadata=between(0, lo_open=True))


class FedMedianServer(FedAvgServer, FedMedian):
    """Flower's FedMedian: the coordinate-wise median of the client models, robust to outliers.

    FedAvgServer brings corolla's contract (state_dict, reply validation, round metrics, sampling
    that fits the federation's size) and turns `config` into Flower's keyword arguments; FedMedian
    brings the aggregation.
    """

    def __init__(self, *, config: FedMedianConfig) -> None:
        super().__init__(config=config)

    def round_metrics(self, server_round: int) -> dict[str, float]:
        return {"median_aggregation": 1.0}


class FedMedianClient(WeightsClient):
    """FedAvg's local training; the update is clipped when the config says so."""

    def train(self, message: Message) -> Message:
        reply = super().train(message)
        config: FedMedianConfig = self.env.strategy_config  # the same dataclass the server half got
        if config.clip_update is None:
            return reply
        sent, trained = message.content["arrays"], reply.content["arrays"]
        keys = [k for k in sent if np.issubdtype(sent[k].numpy().dtype, np.floating)]
        deltas = {k: trained[k].numpy().astype(np.float64) - sent[k].numpy() for k in keys}
        norm = float(np.sqrt(sum((d ** 2).sum() for d in deltas.values())))
        if norm > config.clip_update:
            scale = config.clip_update / norm
            for k, d in deltas.items():
                trained[k] = Array((sent[k].numpy() + scale * d).astype(sent[k].numpy().dtype))
        return reply


STRATEGY = StrategyDef(name="mymedian", server=FedMedianServer, client=FedMedianClient, config=FedMedianConfig,
                       description="FedMedian (example plugin)")
