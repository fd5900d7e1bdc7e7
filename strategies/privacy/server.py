"""`privacy=<mode>`: a server half wrapped in Flower's own DP strategy wrappers, with RDP accounting.

Flower's wrappers (`flwr.serverapp.strategy.DifferentialPrivacy*`) clip (server-side modes), call
the strategy they hold, and add Gaussian noise of std z*C/m to what it returns. corolla gives them
`MeanOfClipped`: the plain mean of the (clipped) updates over the m clients sampled, the quantity
that noise is calibrated to. The noised mean then goes to the wrapped server half as one reply (as
secure aggregation does), so FedAvg, FedProx and the server optimizers keep their own update rule,
applied to a private release. Each aggregated round is composed in a `PrivacyLedger`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    DifferentialPrivacyClientSideAdaptiveClipping,
    DifferentialPrivacyClientSideFixedClipping,
    DifferentialPrivacyServerSideAdaptiveClipping,
    DifferentialPrivacyServerSideFixedClipping,
    Strategy,
)

from conf.errors import ConfigError
from strategies.base import derive_seed
from strategies.privacy.accounting import PrivacyLedger, local_noise_multiplier
from strategies.privacy.config import ADAPTIVE, PrivacyConfig, num_sampled
from strategies.wrapper import StrategyWrapper

log = logging.getLogger("corolla")


class MeanOfClipped(Strategy):
    """What Flower's DP wrappers hold: the server half's sampling, and the mean update over m clients.

    The mean divides the sum of the updates by m, the clients sampled, even when fewer replied
    (McMahan et al., 2018's fixed denominator): one client more or less then moves it by at most C/m,
    the sensitivity the wrappers' noise std z*C/m assumes. Client weights (num-examples) are not used.
    """

    def __init__(self, inner: Any, *, num_sampled: int) -> None:
        self.inner = inner
        self.num_sampled = num_sampled
        self.sent: ArrayRecord | None = None

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        self.sent = arrays
        return self.inner.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        if not replies or self.sent is None:
            return None, None
        mean = ArrayRecord()
        for name, base in self.sent.items():
            ref = base.numpy()
            total = sum(next(iter(r.content.array_records.values()))[name].numpy().astype(np.float64) - ref
                        for r in replies)
            mean[name] = Array(np.asarray((ref + total / self.num_sampled).astype(ref.dtype)))
        metrics: dict[str, float] = {}
        for reply in replies:
            for key, value in next(iter(reply.content.metric_records.values())).items():
                if isinstance(value, (int, float)):
                    metrics[key] = metrics.get(key, 0.0) + float(value) / len(replies)
        metrics["num-examples"] = sum(int(next(iter(r.content.metric_records.values()))["num-examples"])
                                      for r in replies)
        return mean, MetricRecord(metrics)

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        return self.inner.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        return self.inner.aggregate_evaluate(server_round, replies)

    def summary(self) -> None:
        self.inner.summary()


def flower_wrapper(mean: MeanOfClipped, config: PrivacyConfig, *, num_sampled: int) -> Strategy:
    """Flower's DP wrapper for the mode, around the mean."""
    z, clip = config.noise_multiplier, config.clipping_norm
    if config.name == "central-fixed":
        return DifferentialPrivacyServerSideFixedClipping(mean, z, clip, num_sampled)
    if config.name == "client-fixed":
        return DifferentialPrivacyClientSideFixedClipping(mean, z, clip, num_sampled)
    adaptive = {"initial_clipping_norm": clip, "target_clipped_quantile": config.target_clipped_quantile,
                "clip_norm_lr": config.clip_norm_lr, "clipped_count_stddev": config.clipped_count_stddev}
    if config.name == "central-adaptive":
        return DifferentialPrivacyServerSideAdaptiveClipping(mean, z, num_sampled, **adaptive)
    if config.name == "client-adaptive":
        return DifferentialPrivacyClientSideAdaptiveClipping(mean, z, num_sampled, **adaptive)
    raise ValueError(f"privacy={config.name} has no server-side wrapper")


def adaptive_round_multiplier(*, update_multiplier: float, count_stddev: float, clip_used: float,
                              clip_noised: float) -> float:
    """The noise multiplier one adaptive round's two releases amount to, as Flower runs them.

    Flower clips with the round's norm but adds the update noise with the norm already adapted for
    the next round, so the update's multiplier is z_update * clip_noised / clip_used. The clipped
    count (sensitivity 1: a 0/1 indicator per client) has noise std `count_stddev`. Two Gaussian
    releases compose like one with 1/z^2 = 1/z_1^2 + 1/z_2^2.
    """
    effective_update = update_multiplier * clip_noised / clip_used
    return 1.0 / math.sqrt(effective_update ** -2 + count_stddev ** -2)


class PrivateAggregation(StrategyWrapper):
    """Holds a weight-averaging server half; Flower's DP wrapper (or the clients' LocalDpMod) privatises it."""

    def __init__(self, inner: Any, *, config: PrivacyConfig) -> None:
        super().__init__(inner)
        self.config = config
        self.flower: Any = None
        self.ledger: PrivacyLedger | None = None
        self.sampled = 0
        self.seed = 0

    # corolla's hooks -------------------------------------------------------------------------
    def setup(self, env: Any) -> None:
        self.inner.setup(env)
        self.seed = int(env.cfg["seed"])
        population = env.task.num_clients
        self.sampled = num_sampled(self.inner, population)
        integers = [k for k, v in env.build_model().state_dict().items() if not v.is_floating_point()]
        if integers:
            raise ConfigError(f"privacy={self.config.name} clips the whole update, but model={env.cfg['model']['name']} "
                              f"has integer buffers ({', '.join(integers[:3])}) that cannot be clipped or noised; "
                              "use a model without them (mlp, cnn, linear) or privacy=none", key="privacy")
        if self.config.name == "local":
            self.ledger = PrivacyLedger(delta=self.config.delta, population=1, sampling="no-amplification")
        else:
            self.flower = flower_wrapper(MeanOfClipped(self.inner, num_sampled=self.sampled), self.config,
                                         num_sampled=self.sampled)
            self.ledger = PrivacyLedger(delta=self.config.delta, population=population, sampling=self.config.sampling)

    def state_dict(self) -> dict[str, Any]:
        assert self.ledger is not None
        privacy: dict[str, Any] = {"accountant": self.ledger.state_dict()}
        if self.config.name in ADAPTIVE:
            privacy["clipping_norm"] = float(self.flower.clipping_norm)
        return {"inner": self.inner.state_dict(), "privacy": privacy}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        assert self.ledger is not None
        self.inner.load_state_dict(state.get("inner", {}))
        privacy = state.get("privacy", {})
        if "accountant" in privacy:
            self.ledger.load_state_dict(privacy["accountant"])
        if self.config.name in ADAPTIVE and "clipping_norm" in privacy:
            self.flower.clipping_norm = float(privacy["clipping_norm"])

    def summary_extra(self) -> dict[str, Any]:
        assert self.ledger is not None
        section: dict[str, Any] = {
            "mode": self.config.name, "epsilon": self.ledger.epsilon(), "delta": self.config.delta,
            "accountant": "rdp", "releases": self.ledger.releases, "clipping_norm": self.config.clipping_norm}
        if self.config.name == "local":
            section.update(local_epsilon=self.config.local_epsilon, local_delta=self.config.local_delta,
                           noise_multiplier=local_noise_multiplier(self.config.local_epsilon, self.config.local_delta))
        else:
            section.update(noise_multiplier=self.config.noise_multiplier, sampling=self.config.sampling,
                           clients_per_round=self.sampled, sampling_rate=self.sampled / self.ledger.population)
        return {**self.inner.summary_extra(), "privacy": section}

    # Flower's Strategy -----------------------------------------------------------------------
    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        target = self.inner if self.flower is None else self.flower
        return target.configure_train(server_round, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        assert self.ledger is not None
        replies = list(replies)
        if self.flower is None:  # local: the clients noised their updates already
            arrays, metrics = self.inner.aggregate_train(server_round, replies)
            if arrays is not None:
                self.ledger.release(noise_multiplier=local_noise_multiplier(self.config.local_epsilon,
                                                                            self.config.local_delta), sample_size=1)
                self._record(server_round)
            return arrays, metrics
        replies = self._moved(replies)
        if not replies:
            return None, None
        np.random.seed(derive_seed(self.seed, server_round, "dp-noise"))  # Flower's wrappers draw from numpy's global RNG
        clip_used = float(self.flower.clipping_norm)
        mean, metrics = self.flower.aggregate_train(server_round, replies)
        if mean is None:
            return None, None
        z = self.config.noise_multiplier
        if self.config.name in ADAPTIVE:
            z = adaptive_round_multiplier(update_multiplier=self.flower.noise_multiplier,
                                          count_stddev=self.flower.clipped_count_stddev, clip_used=clip_used,
                                          clip_noised=float(self.flower.clipping_norm))
        self.ledger.release(noise_multiplier=z, sample_size=self.sampled)
        self._record(server_round, clipping_norm=clip_used)
        one = Message(RecordDict({"arrays": mean, "metrics": metrics or MetricRecord({"num-examples": 1})}),
                      dst_node_id=0, message_type="train")
        return self.inner.aggregate_train(server_round, [one])

    def _moved(self, replies: list[Message]) -> list[Message]:
        """The replies whose update is not exactly zero.

        Flower's clipping divides by the update's norm, so one reply equal to the global model (a
        site that did not train, or chose to send it back) would stop the run; it adds nothing to
        the sum of updates, and the mean's denominator is m either way.
        """
        sent = self.flower.strategy.sent
        if sent is None or self.config.name not in ("central-fixed", "central-adaptive"):
            return replies
        kept = [r for r in replies if any(not np.array_equal(arr.numpy(), sent[name].numpy())
                                          for name, arr in next(iter(r.content.array_records.values())).items())]
        if len(kept) < len(replies):
            log.info("privacy: %d replies with a zero update add nothing to the sum", len(replies) - len(kept))
        return kept

    def _record(self, server_round: int, **extra: float) -> None:
        assert self.ledger is not None
        self.round_extras[server_round] = {"epsilon": self.ledger.epsilon(), "delta": self.config.delta, **extra}
