"""FedProx (Li et al., 2020): Flower's FedProx server half; clients add (mu/2)||w - w_global||^2."""

from __future__ import annotations

from typing import Any

import torch
from flwr.app import ConfigRecord
from flwr.serverapp.strategy import FedProx

from models.training import LossTerm
from strategies.base import StrategyDef
from strategies.fedavg import FedAvgServer, WeightsClient


class FedProxServer(FedAvgServer, FedProx):
    """Flower's FedProx (it sends `proximal-mu` in every training config)."""

    def __init__(self, *, proximal_mu: float = 0.01, **kwargs: Any) -> None:
        if proximal_mu < 0:
            raise ValueError(f"strategy.proximal_mu must be >= 0, got {proximal_mu}")
        super().__init__(proximal_mu=proximal_mu, **kwargs)


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
        mu = float(config.get("proximal-mu", 0.0))
        return [proximal_term(global_model, mu)] if mu > 0 else []


STRATEGY = StrategyDef(name="fedprox", server=FedProxServer, client=FedProxClient,
                       description="FedProx (Li et al., 2020)")
