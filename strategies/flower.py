"""Flower's own Message-API strategies by name (FedAdam ... Bulyan): one generic wrapper, small declarations.

Each strategy is Flower's class under corolla's `FedAvgServer` (reply validation, metrics,
checkpoints, node caps) with a typed config whose defaults are Flower's, in
`conf/strategy/<name>.yaml`. Clients are the shared `WeightsClient`: every one of these strategies
sends and receives model weights. Server optimizer state (FedAdam/FedYogi/FedAdagrad moments,
FedAvgM momentum) is named in `STATE` and travels in every checkpoint, so a resumed run continues
with the same moments. Flower's XGBoost strategies are not here: they exchange trees, not weights.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from flwr.app import ArrayRecord, ConfigRecord, Message
from flwr.serverapp import Grid
from flwr.serverapp.strategy import (
    Bulyan, FedAdagrad, FedAdam, FedAvgM, FedMedian, FedTrimmedAvg, FedYogi, Krum, MultiKrum, QFedAvg,
)

from conf.errors import ConfigError
from conf.typed import between
from strategies.base import ServerEnv, StrategyDef
from strategies.fedavg import FedAvgConfig, FedAvgServer, WeightsClient


class FlowerServer(FedAvgServer):
    """corolla's server half over any Flower FedAvg-derived strategy: ``class X(FlowerServer, Flower)``.

    The config's fields are the Flower class's keyword arguments. ``STATE`` names the attributes a
    resume needs (server optimizer moments); they are saved by `state_dict` in every checkpoint.
    """

    STATE: ClassVar[tuple[str, ...]] = ()
    NAME: ClassVar[str] = ""   # the registered name, whose YAML fills a config built from keywords

    def __init__(self, *, config: FedAvgConfig | None = None, **kwargs: Any) -> None:
        if config is None:  # built from keyword arguments (GGEUR's base section): the YAML fills the rest
            from strategies.registry import parse_strategy_config

            config = parse_strategy_config({"name": self.NAME, **kwargs})
        super().__init__(config=config, **self.strategy_kwargs(config))

    def strategy_kwargs(self, config: FedAvgConfig) -> dict[str, Any]:
        """The Flower class's own keyword arguments: every field beyond FedAvg's, by its name."""
        shared = {f.name for f in fields(FedAvgConfig)}
        return {f.name: getattr(config, f.name) for f in fields(config) if f.name not in shared}

    def state_dict(self) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self.STATE:
            if name in state:
                setattr(self, name, copy.deepcopy(state[name]))


# ---- configs (Flower's defaults are in conf/strategy/<name>.yaml) -----------------------------------
@dataclass(frozen=True, kw_only=True)
class FedAdamConfig(FedAvgConfig):
    """FedAdam / FedYogi (Reddi et al., 2021): server Adam/Yogi on the averaged update."""

    eta: float = field(metadata=between(0, lo_open=True))        # server learning rate
    beta_1: float = field(metadata=between(0, 1, hi_open=True))  # first-moment decay
    beta_2: float = field(metadata=between(0, 1, hi_open=True))  # second-moment decay
    tau: float = field(metadata=between(0, lo_open=True))        # adaptivity (epsilon)


@dataclass(frozen=True, kw_only=True)
class FedAdagradConfig(FedAvgConfig):
    """FedAdagrad (Reddi et al., 2021)."""

    eta: float = field(metadata=between(0, lo_open=True))
    tau: float = field(metadata=between(0, lo_open=True))


@dataclass(frozen=True, kw_only=True)
class FedAvgMConfig(FedAvgConfig):
    """FedAvgM (Hsu et al., 2019): server SGD with momentum on the pseudo-gradient."""

    server_learning_rate: float = field(metadata=between(0, lo_open=True))
    server_momentum: float = field(metadata=between(0, 1, hi_open=True))


@dataclass(frozen=True, kw_only=True)
class QFedAvgConfig(FedAvgConfig):
    """q-FedAvg (Li et al., 2020): fairness-weighted updates; q = 0 is FedAvg-like."""

    q: float = field(metadata=between(0))
    client_learning_rate: float | None = field(metadata=between(0, lo_open=True))  # null: train.lr


@dataclass(frozen=True, kw_only=True)
class FedTrimmedAvgConfig(FedAvgConfig):
    """FedTrimmedAvg (Yin et al., 2018): coordinate-wise mean without the beta tails."""

    beta: float = field(metadata=between(0, 0.5, hi_open=True))


@dataclass(frozen=True, kw_only=True)
class KrumConfig(FedAvgConfig):
    """Krum (Blanchard et al., 2017) and Bulyan (El Mhamdi et al., 2018)."""

    num_malicious_nodes: int = field(metadata=between(0))


@dataclass(frozen=True, kw_only=True)
class MultiKrumConfig(KrumConfig):
    """MultiKrum: the mean of the `num_nodes_to_select` best-scored updates."""

    num_nodes_to_select: int = field(metadata=between(1))


# ---- server halves ---------------------------------------------------------------------------------
class FedAdamServer(FlowerServer, FedAdam):
    """Flower's FedAdam; its moments m_t, v_t survive a resume."""

    STATE = ("m_t", "v_t")


class FedYogiServer(FlowerServer, FedYogi):
    """Flower's FedYogi; its moments m_t, v_t survive a resume."""

    STATE = ("m_t", "v_t")


class FedAdagradServer(FlowerServer, FedAdagrad):
    """Flower's FedAdagrad; its accumulators survive a resume."""

    STATE = ("m_t", "v_t")


class FedAvgMServer(FlowerServer, FedAvgM):
    """Flower's FedAvgM; the momentum vector survives a resume."""

    STATE = ("momentum_vector",)

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> list[Message]:
        # Flower keeps the previous aggregate as the reference; the arrays actually sent are the
        # same values and exist after a resume too.
        self.current_arrays = arrays
        return list(super().configure_train(server_round, arrays, config, grid))


class QFedAvgServer(FlowerServer, QFedAvg):
    """Flower's q-FedAvg; its Lipschitz estimate 1/lr uses the clients' train.lr unless set."""

    def strategy_kwargs(self, config: FedAvgConfig) -> dict[str, Any]:
        kwargs = super().strategy_kwargs(config)
        kwargs["client_learning_rate"] = kwargs["client_learning_rate"] or 1.0  # set in setup()
        return kwargs

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        assert isinstance(self.config, QFedAvgConfig)
        self.client_learning_rate = self.config.client_learning_rate or float(env.cfg["train"]["lr"])


class FedMedianServer(FlowerServer, FedMedian):
    """Flower's FedMedian (coordinate-wise median)."""


class FedTrimmedAvgServer(FlowerServer, FedTrimmedAvg):
    """Flower's FedTrimmedAvg."""


class _Byzantine(FlowerServer):
    """Krum-family servers: refuse a federation too small for `num_malicious_nodes` up front."""

    MIN_REPLIES: ClassVar[tuple[int, int]] = (2, 3)   # needs at least a*f + b replies

    def setup(self, env: ServerEnv) -> None:
        super().setup(env)
        f = int(getattr(self.config, "num_malicious_nodes", 0))
        a, b = self.MIN_REPLIES
        sampled = max(int(env.task.num_clients * self.fraction_train), self.min_train_nodes)
        if sampled < a * f + b:
            raise ConfigError(
                f"strategy.num_malicious_nodes={f} needs at least {a * f + b} replies per round "
                f"({a}f+{b}) but a round samples {sampled} of task.num_clients={env.task.num_clients}: "
                f"raise strategy.fraction_train or task.num_clients, or lower strategy.num_malicious_nodes",
                key="strategy.num_malicious_nodes")


class KrumServer(_Byzantine, Krum):
    """Flower's Krum (one update chosen per round)."""


class MultiKrumServer(_Byzantine, MultiKrum):
    """Flower's MultiKrum."""


class BulyanServer(_Byzantine, Bulyan):
    """Flower's Bulyan (MultiKrum selection, then a trimmed coordinate-wise mean)."""

    MIN_REPLIES = (4, 3)


def _define(name: str, server: type[FlowerServer], config: type, description: str) -> StrategyDef:
    server.NAME = name
    return StrategyDef(name=name, server=server, client=WeightsClient, config=config, description=description)


FEDADAM = _define("fedadam", FedAdamServer, FedAdamConfig, "FedAdam (Reddi et al., 2021), Flower's")
FEDYOGI = _define("fedyogi", FedYogiServer, FedAdamConfig, "FedYogi (Reddi et al., 2021), Flower's")
FEDADAGRAD = _define("fedadagrad", FedAdagradServer, FedAdagradConfig, "FedAdagrad (Reddi et al., 2021), Flower's")
FEDAVGM = _define("fedavgm", FedAvgMServer, FedAvgMConfig, "FedAvg with server momentum (Hsu et al., 2019), Flower's")
QFEDAVG = _define("qfedavg", QFedAvgServer, QFedAvgConfig, "q-FedAvg (Li et al., 2020), Flower's")
FEDMEDIAN = _define("fedmedian", FedMedianServer, FedAvgConfig, "FedMedian (Yin et al., 2018), Flower's")
FEDTRIMMEDAVG = _define("fedtrimmedavg", FedTrimmedAvgServer, FedTrimmedAvgConfig,
                        "FedTrimmedAvg (Yin et al., 2018), Flower's")
KRUM = _define("krum", KrumServer, KrumConfig, "Krum (Blanchard et al., 2017), Flower's")
MULTIKRUM = _define("multikrum", MultiKrumServer, MultiKrumConfig, "MultiKrum (Blanchard et al., 2017), Flower's")
BULYAN = _define("bulyan", BulyanServer, KrumConfig, "Bulyan (El Mhamdi et al., 2018), Flower's")

NAMES = ("fedadam", "fedyogi", "fedadagrad", "fedavgm", "qfedavg", "fedmedian", "fedtrimmedavg", "krum",
         "multikrum", "bulyan")
