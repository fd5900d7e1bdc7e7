"""The simulated world of one run: who is online, who drops out, how long each client-round takes.

Every draw is seeded by (run seed, what, partition id[, round]) and keeps no state, so a run and
its resume see the same world. Clients are named by partition id, never by engine node id.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid

from server.grid import GridDelegate
from server.system.config import SystemConfig
from strategies.base import derive_seed
from strategies.messages import MAX_STEPS_KEY, STEPS_METRIC
from strategies.payload import record_nbytes


@dataclass
class RoundTiming:
    """The simulated clock's view of one round."""

    sim_s: float = 0.0                     # when the round ended, in simulated seconds after it started
    dropped: int = 0                       # sampled clients that never replied
    late: int = 0                          # replies after system.deadline_s, left out of aggregation
    durations: dict[int, float] = field(default_factory=dict)   # partition -> simulated seconds
    work: list[float] = field(default_factory=list)   # partial_work: steps taken / full steps, per on-time reply

    @property
    def work_fraction(self) -> float | None:
        """The mean fraction of their full local work the on-time replies did (None: none came)."""
        return sum(self.work) / len(self.work) if self.work else None


class AvailableGrid(GridDelegate):
    """Flower's grid as the strategy sees it in one round: only the online clients are listed."""

    listing_is_final = True   # waiting will not bring more nodes this round (GGEUR's statistics phase asks)

    def __init__(self, grid: Grid, node_ids: list[int]) -> None:
        super().__init__(grid)
        self._node_ids = node_ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)

    def get_node_ids(self) -> list[int]:
        return list(self._node_ids)


class SystemModel:
    """Applies a SystemConfig server-side, so every strategy's training rounds see the same world."""

    def __init__(self, config: SystemConfig, *, seed: int, num_clients: int, train: dict[str, Any],
                 partition_of: Callable[[int], int]) -> None:
        self.config = config
        self.seed = seed
        self.num_clients = num_clients
        self.epochs = int(train.get("epochs", 1))
        self.batch_size = int(train.get("batch_size", 32))
        self.max_steps = train.get("max_steps")
        self.partition_of = partition_of
        self.rounds: dict[int, RoundTiming] = {}
        self._down_bytes: dict[int, dict[int, int]] = {}
        self._slow = self._slow_clients()

    # ---- the world ----------------------------------------------------------------------
    def _rng(self, *parts: Any) -> random.Random:
        return random.Random(derive_seed(self.seed, "system", *parts))

    def online_prob(self, partition: int, rnd: int) -> float:
        c = self.config
        if c.availability == "always":
            return 1.0
        if c.availability == "bernoulli":
            return c.online_prob
        phase = self._rng("phase", partition).random()   # the client's time zone
        p = c.online_prob + c.diurnal_amplitude * math.sin(2 * math.pi * (rnd / c.diurnal_period + phase))
        return min(1.0, max(0.0, p))

    def online(self, partition: int, rnd: int) -> bool:
        return self._rng("online", partition, rnd).random() < self.online_prob(partition, rnd)

    def drops_out(self, partition: int, rnd: int) -> bool:
        return self.config.dropout > 0 and self._rng("dropout", partition, rnd).random() < self.config.dropout

    def _slow_clients(self) -> set[int]:
        c = self.config
        if c.speed != "slow_fraction":
            return set()
        order = list(range(self.num_clients))
        self._rng("slow").shuffle(order)
        return set(order[:round(c.slow_fraction * self.num_clients)])

    def speed(self, partition: int) -> float:
        """Relative compute speed (1: a step costs system.step_cost_s)."""
        c = self.config
        if c.speed == "lognormal":
            return math.exp(self._rng("speed", partition).gauss(0.0, c.speed_sigma))
        if c.speed == "slow_fraction" and partition in self._slow:
            return 1.0 / c.slow_factor
        return 1.0

    def bandwidth_bps(self, partition: int) -> float:
        """Link bandwidth in bytes per second."""
        c = self.config
        factor = math.exp(self._rng("bandwidth", partition).gauss(0.0, c.bandwidth_sigma)) if c.bandwidth_sigma else 1.0
        return c.bandwidth_mbps * factor * 1e6 / 8

    def local_steps(self, num_examples: int) -> int:
        steps = self.epochs * -(-num_examples // self.batch_size)
        return min(steps, int(self.max_steps)) if self.max_steps else steps

    def duration(self, partition: int, *, num_examples: int, down_bytes: int, up_bytes: int,
                 steps: int | None = None) -> float:
        """Simulated seconds of one client-round: compute at its speed plus transfer at its bandwidth."""
        steps = self.local_steps(num_examples) if steps is None else steps
        compute = steps * self.config.step_cost_s / self.speed(partition)
        return compute + (down_bytes + up_bytes) / self.bandwidth_bps(partition)

    def step_budget(self, partition: int, *, down_bytes: int) -> int | None:
        """partial_work: the local steps a client can take and still reply by the deadline.

        The reply is assumed as large as the message (weights in, weights out); None when even the
        transfer alone misses the deadline (the client is late whatever it does).
        """
        deadline = self.config.deadline_s
        assert deadline is not None
        left = deadline - 2 * down_bytes / self.bandwidth_bps(partition)
        if left <= 0:
            return None
        return max(1, math.floor(left * self.speed(partition) / self.config.step_cost_s + 1e-9))

    def _cap_work(self, message: Message, partition: int, down_bytes: int) -> None:
        """Tell a training message's client how many steps it may take (partial_work)."""
        content = message.content
        if "config" not in content.config_records:
            return
        budget = self.step_budget(partition, down_bytes=down_bytes)
        if budget is None:
            return
        # Flower's strategies send one RecordDict to every client: each gets its own config copy.
        config = ConfigRecord(dict(content.config_records["config"]))
        config[MAX_STEPS_KEY] = budget
        records = {key: (config if key == "config" else value) for key, value in content.items()}
        message.content = RecordDict(records)

    # ---- hooks for RoundGuard -----------------------------------------------------------
    def round_grid(self, grid: Grid, rnd: int, *, need: int) -> Grid:
        """The grid the strategy samples from: the online clients (at least `need`, as a server waits)."""
        if self.config.availability == "always":
            return grid
        nodes = list(grid.get_node_ids())
        online = [n for n in nodes if self.online(self.partition_of(n), rnd)]
        if len(online) < need:  # the server waits: the first clients to come online join
            offline = [n for n in nodes if n not in online]
            self._rng("wait", rnd).shuffle(offline)
            joined = set(online) | set(offline[:need - len(online)])
            online = [n for n in nodes if n in joined]
        return AvailableGrid(grid, online)

    def send(self, rnd: int, messages: list[Message]) -> list[Message]:
        """The messages that reach a client that will reply; dropped clients' messages stay unsent."""
        timing = self.rounds[rnd] = RoundTiming()
        kept = []
        for message in messages:
            partition = self.partition_of(message.metadata.dst_node_id)
            if self.drops_out(partition, rnd):
                timing.dropped += 1
                continue
            down = self._down_bytes.setdefault(rnd, {})[partition] = record_nbytes(message.content)
            if self.config.partial_work:
                self._cap_work(message, partition, down)
            kept.append(message)
        return kept

    def settle(self, rnd: int, replies: list[Message]) -> list[Message]:
        """The replies that arrive by the deadline; counts the late ones and sets the round's sim time."""
        timing = self.rounds.setdefault(rnd, RoundTiming())
        down = self._down_bytes.pop(rnd, {})
        deadline = self.config.deadline_s
        on_time, slowest = [], 0.0
        for reply in replies:
            if reply.has_error():
                on_time.append(reply)
                continue
            partition = self.partition_of(reply.metadata.src_node_id)
            metrics = next(iter(reply.content.metric_records.values()), {})
            num_examples = int(metrics.get("num-examples", 0))
            steps = int(metrics[STEPS_METRIC]) if STEPS_METRIC in metrics else None
            seconds = self.duration(partition, num_examples=num_examples, down_bytes=down.get(partition, 0),
                                    up_bytes=record_nbytes(reply.content), steps=steps)
            timing.durations[partition] = seconds
            if deadline is not None and seconds > deadline:
                timing.late += 1
                continue
            slowest = max(slowest, seconds)
            on_time.append(reply)
            if self.config.partial_work:
                full = self.local_steps(num_examples)
                timing.work.append(min(1.0, steps / full) if steps is not None and full else 1.0)
        waited_out = deadline is not None and (timing.late or timing.dropped)
        timing.sim_s = float(deadline) if waited_out else slowest
        return on_time


def sim_time_summary(summary: dict[str, Any], cfg: dict[str, Any], history: list[dict[str, Any]]) -> None:
    """Add the simulated clock to summary.json: timing.sim_time_s and, with system.tta_targets, time_to_accuracy."""
    from server.system.config import system_config

    done = [r for r in history if r.get("status", "completed") == "completed"]
    summary.setdefault("timing", {})["sim_time_s"] = done[-1].get("sim_time_s", 0.0) if done else 0.0
    targets = system_config(cfg).tta_targets
    if targets:
        summary["time_to_accuracy"] = time_to_accuracy(done, targets)


def time_to_accuracy(history: list[dict[str, Any]], targets: Iterable[float]) -> dict[str, float | None]:
    """Simulated seconds until the global accuracy first reached each target (None: never)."""
    out: dict[str, float | None] = {}
    for target in targets:
        hit = next((r for r in history if r.get("accuracy") is not None and r["accuracy"] >= target), None)
        out[str(target)] = None if hit is None else hit.get("sim_time_s")
    return out
