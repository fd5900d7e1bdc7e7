"""`faulty`: FedAvg whose clients fail, send malformed replies or stop in a debugger on chosen partitions.

It has no typed config on purpose: it exercises the registry's path for such plugins (keys checked
against the constructor, which runs once at check time so that its own refusals come first).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from strategies import StrategyDef
from strategies.fedavg import FedAvgServer, WeightsClient


class FaultyServer(FedAvgServer):
    """FedAvg that tells clients which partitions must misbehave, and how."""

    def __init__(self, *, crash: list[int] | None = None, nan: list[int] | None = None,
                 breakpoint_on: list[int] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.crash, self.nan = list(crash or []), list(nan or [])
        if any(not isinstance(p, int) or p < 0 for p in self.crash + self.nan):
            raise ValueError(f"crash and nan list partition ids (integers >= 0), got {self.crash} and {self.nan}")
        self.breakpoint_on = list(breakpoint_on or [])


class FaultyClient(WeightsClient):
    def train(self, message: Message) -> Message:
        strategy_cfg = self.env.cfg["strategy"]  # no typed config: the raw section (faulty.yaml has both keys)
        if self.env.partition_id in strategy_cfg["crash"]:
            raise RuntimeError(f"injected crash on partition {self.env.partition_id}")
        if self.env.partition_id in strategy_cfg.get("breakpoint_on", []):
            breakpoint()  # noqa: T100 - the test drives this debugger
        reply = super().train(message)
        if self.env.partition_id in strategy_cfg["nan"]:
            arrays = reply.content["arrays"]
            first = next(iter(arrays))
            poisoned = arrays[first].numpy().copy()
            poisoned.flat[0] = np.nan
            arrays[first] = Array(poisoned)
        return reply


STRATEGY = StrategyDef(name="faulty", server=FaultyServer, client=FaultyClient,
                       description="test plugin: injected crashes and NaN replies")
