"""FedProx (Li et al., 2020): Flower's FedProx server half; clients add (mu/2)||w - w_global||^2."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedProx

from conf.errors import ConfigError
from conf.typed import between
from models.training import LossTerm
from strategies.base import StrategyDef
from strategies.fedavg import FedAvgConfig, FedAvgServer, WeightsClient

MU_KEY = "proximal-mu"  # the ConfigRecord key Flower's FedProx sends mu under


@dataclass(frozen=True)
class FedProxConfig(FedAvgConfig):
    """FedAvg's settings plus the proximal weight; defaults in conf/strategy/fedprox.yaml."""

    proximal_mu: float = field(metadata=between(0))


class FedProxServer(FedAvgServer, FedProx):
    """Flower's FedProx: it sends `proximal-mu` in every training config, which the clients use.

    Built as ``FedProxServer(config=FedProxConfig)``; without ``config``, keyword arguments are
    Flower's (``proximal_mu=...``), as for `FedAvgServer`.
    """

    def __init__(self, *, config: FedProxConfig | None = None, **kwargs: Any) -> None:
        if config is not None:
            kwargs = {"proximal_mu": config.proximal_mu, **kwargs}
        if kwargs.get("proximal_mu", 0.0) < 0:
            raise ConfigError(f"strategy.proximal_mu={kwargs['proximal_mu']} must be >= 0",
                              key="strategy.proximal_mu")
        super().__init__(config=config, **kwargs)


def proximal_term(global_model: torch.nn.Module, mu: float) -> LossTerm:
    """The loss term (mu/2)·||w − w_global||² against a frozen copy of the received weights."""
    anchors = [p.detach().clone() for p in global_model.parameters()]

    def term(model: torch.nn.Module, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = list(model.parameters())
        if anchors[0].device != params[0].device:  # the loop moved the model after we copied it
            anchors[:] = [a.to(params[0].device) for a in anchors]
        total = logits.new_zeros((), dtype=torch.float32)
        for p, anchor in zip(params, anchors):
            total = total + (p - anchor).pow(2).sum()
        return 0.5 * mu * total

    return term


class FedProxClient(WeightsClient):
    """Weights client whose local objective carries the proximal term."""

    def loss_terms(self, config: ConfigRecord, global_model: torch.nn.Module) -> list[LossTerm]:
        # mu comes with the message, not from env.strategy_config: the server half decides it,
        # and a wrapper such as GGEUR runs this client half under its own strategy section.
        if MU_KEY not in config:
            raise ValueError(f"a FedProx training message lacks {MU_KEY!r} in its ConfigRecord; "
                             "the server half must be FedProxServer (Flower's FedProx sends it)")
        mu = float(config[MU_KEY])
        return [proximal_term(global_model, mu)] if mu > 0 else []


STRATEGY = StrategyDef(name="fedprox", server=FedProxServer, client=FedProxClient, config=FedProxConfig,
                       description="FedProx (Li et al., 2020)")
