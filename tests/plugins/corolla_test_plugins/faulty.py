"""`faulty`: FedAvg whose clients fail or send malformed replies on chosen partitions."""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from strategies import StrategyDef
from strategies.fedavg import FedAvgServer, WeightsClient


class FaultyServer(FedAvgServer):
    """FedAvg that tells clients which partitions must misbehave, and how."""

    def __init__(self, *, crash: list[int] | None = None, nan: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash, self.nan = list(crash or []), list(nan or [])


class FaultyClient(WeightsClient):
    def train(self, message: Message) -> Message:
        strategy_cfg = self.env.cfg["strategy"]
        if self.env.partition_id in strategy_cfg.get("crash", []):
            raise RuntimeError(f"injected crash on partition {self.env.partition_id}")
        reply = super().train(message)
        if self.env.partition_id in strategy_cfg.get("nan", []):
            arrays = reply.content["arrays"]
            first = next(iter(arrays))
            poisoned = arrays[first].numpy().copy()
            poisoned.flat[0] = np.nan
            arrays[first] = Array(poisoned)
        return reply


STRATEGY = StrategyDef(name="faulty", server=FaultyServer, client=FaultyClient,
                       description="test plugin: injected crashes and NaN replies")
