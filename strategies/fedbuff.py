"""FedBuff (Nguyen et al., 2022): buffered asynchronous aggregation with staleness-weighted updates.

The server keeps `concurrency` clients training at once. Each client trains on the global model of
the version it was sent; its update (its weights minus those it received) joins a buffer as it
arrives. When the buffer holds `buffer_size` (K) updates, the server steps:
``w <- w + server_lr * (1/K) * sum_i (1 + s_i)^-staleness_exponent * update_i``, where the
staleness s_i is how many server steps happened since the client was sent its model
(exponent 0.5: FedBuff's 1/sqrt(1 + s)). One server step is one "round" of metrics.jsonl.

This module holds the method: its config, its state (version, clock, clients in flight, the
models they hold, the buffer) and the server step. The loop that sends and receives, driven by
the simulated clock or by real arrival order, is the server's (`server/system/asynchronous.py`),
which runs every strategy whose server half says ``asynchronous = True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg

from conf.typed import Section, between
from strategies.base import CorollaStrategy, ServerEnv, StrategyDef
from strategies.fedavg import WeightsClient


@dataclass(frozen=True)
class FedBuffConfig(Section):
    """FedBuff's settings; defaults in conf/strategy/fedbuff.yaml."""

    concurrency: int = field(metadata=between(1))               # clients training at once
    buffer_size: int = field(metadata=between(1))               # K: updates per server step
    staleness_exponent: float = field(metadata=between(0.0))    # weight (1 + staleness)^-a
    server_lr: float = field(metadata=between(0.0, lo_open=True))


@dataclass
class Flight:
    """One client training now: the dispatch's ticket, its partition, the version it holds, when it was sent."""

    ticket: int
    partition: int
    version: int
    sent_at: float


class FedBuffServer(CorollaStrategy, FedAvg):
    """FedBuff's server half: state and server step; `server/system/asynchronous.py` drives it."""

    asynchronous = True
    secure_sum_refusal = ("fedbuff adds each update to its buffer as it arrives, with its own staleness "
                          "weight; a secure sum of one synchronous round has no place in it")
    privacy_refusal = ("fedbuff applies each update as it arrives, with its own staleness weight: there is no "
                       "per-round mean of clipped updates for Flower's DP wrappers to noise, and no round of "
                       "sampled clients for the accountant")

    def __init__(self, *, config: FedBuffConfig) -> None:
        super().__init__(fraction_train=1.0, fraction_evaluate=0.0, min_train_nodes=1,
                         min_evaluate_nodes=1, min_available_nodes=1)
        self.config = config
        self.concurrency = config.concurrency
        self.version = 0                      # server steps done (== the last round recorded)
        self.clock = 0.0                      # simulated seconds since the start
        self.step_clock = 0.0                 # the clock at the last server step
        self.ticket = 0                       # dispatches so far (each client-round's id)
        self.in_flight: dict[int, Flight] = {}
        self.bases: dict[int, ArrayRecord] = {}   # version -> global arrays a client in flight holds
        self.buffer: list[tuple[dict[str, np.ndarray], int]] = []   # (update, staleness)
        self.staleness_log: dict[int, list[int]] = {}   # version -> staleness of each update it applied

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        self.concurrency = min(self.config.concurrency, env.task.num_clients)

    # ---- the method -------------------------------------------------------------------
    def dispatch(self, partition: int) -> Flight:
        """Record that the client of `partition` is sent the current version under this ticket."""
        flight = self.in_flight[self.ticket] = Flight(ticket=self.ticket, partition=partition,
                                                      version=self.version, sent_at=self.clock)
        return flight

    def weight(self, staleness: int) -> float:
        """The staleness discount (1 + s)^-a."""
        return float((1.0 + staleness) ** -self.config.staleness_exponent)

    def add_update(self, reply: ArrayRecord, flight: Flight) -> bool:
        """Buffer one client's update against the model it was sent; True when the buffer is full."""
        base = self.bases[flight.version]
        update = {}
        for key, arr in reply.items():
            new, old = arr.numpy(), base[key].numpy()
            update[key] = new - old if np.issubdtype(new.dtype, np.floating) else new
        self.buffer.append((update, self.version - flight.version))
        return len(self.buffer) >= self.config.buffer_size

    def step(self, arrays: ArrayRecord) -> ArrayRecord:
        """The server step: apply the buffer's staleness-weighted mean update; the next version."""
        k = len(self.buffer)
        out = ArrayRecord()
        for key, arr in arrays.items():
            current = arr.numpy()
            if np.issubdtype(current.dtype, np.floating):
                total = sum(self.weight(s) * update[key] for update, s in self.buffer)
                value = (current + self.config.server_lr * total / k).astype(current.dtype)
            else:  # counters (e.g. batch norm's): the latest arrival's
                value = self.buffer[-1][0][key]
            out[key] = Array(np.asarray(value))
        self.version += 1
        self.staleness_log = {self.version: [s for _, s in self.buffer]}
        self.buffer = []
        self.bases[self.version] = out
        self.forget_unused_bases()
        return out

    def forget_unused_bases(self) -> None:
        held = {f.version for f in self.in_flight.values()} | {self.version}
        self.bases = {v: a for v, a in self.bases.items() if v in held}

    def round_metrics(self, server_round: int) -> dict[str, Any]:
        stale = self.staleness_log.get(server_round)
        if not stale:
            return {}
        return {"staleness": stale, "staleness_mean": sum(stale) / len(stale), "staleness_max": max(stale)}

    # ---- resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"version": self.version, "clock": self.clock, "step_clock": self.step_clock, "ticket": self.ticket,
                "in_flight": [vars(f).copy() for f in self.in_flight.values()],
                "bases": {v: a.to_torch_state_dict() for v, a in self.bases.items()},
                "buffer": [({k: torch.from_numpy(np.array(u)) for k, u in update.items()}, s) for update, s in self.buffer]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.version, self.ticket = int(state["version"]), int(state["ticket"])
        self.clock, self.step_clock = float(state["clock"]), float(state["step_clock"])
        self.in_flight = {int(f["ticket"]): Flight(**f) for f in state["in_flight"]}
        self.bases = {int(v): ArrayRecord(a) for v, a in state["bases"].items()}
        self.buffer = [({k: t.numpy() for k, t in update.items()}, int(s)) for update, s in state["buffer"]]

    # ---- Flower's synchronous loop is not how it runs -----------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        raise RuntimeError("fedbuff runs asynchronously: server.coordinator drives it with "
                           "server/system/asynchronous.py, not with a synchronous round loop")

    def aggregate_train(self, server_round: int, replies: Any) -> tuple[ArrayRecord | None, MetricRecord | None]:
        raise RuntimeError("fedbuff aggregates each update as it arrives (FedBuffServer.add_update/step)")


STRATEGY = StrategyDef(name="fedbuff", server=FedBuffServer, client=WeightsClient, config=FedBuffConfig,
                       description="FedBuff: buffered asynchronous aggregation (Nguyen et al., 2022)")
