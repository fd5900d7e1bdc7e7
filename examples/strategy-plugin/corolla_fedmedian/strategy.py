"""FedMedian as a corolla plugin: a server half, a client half and their StrategyDef."""

from __future__ import annotations

from flwr.serverapp.strategy import FedMedian

from strategies import StrategyDef
from strategies.fedavg import FedAvgServer, WeightsClient


class FedMedianServer(FedAvgServer, FedMedian):
    """Flower's FedMedian: the coordinate-wise median of the client models, robust to outliers.

    FedAvgServer brings corolla's contract (state_dict, reply validation, round metrics, sampling
    that fits the federation's size); FedMedian brings the aggregation.
    """

    def round_metrics(self, server_round: int) -> dict[str, float]:
        return {"median_aggregation": 1.0}


# Clients train exactly as for FedAvg; a method with its own client side subclasses ClientHalf.
STRATEGY = StrategyDef(name="fedmedian", server=FedMedianServer, client=WeightsClient,
                       description="FedMedian (example plugin)")
