"""Privacy spent, accounted with Flower's RDP accountant (flwr.supercore.privacy_accounting on dp-accounting)."""

from __future__ import annotations

import logging
import math
from typing import Any

from flwr.supercore.privacy_accounting import GaussianPrivacyEvent, NeighboringRelation, SamplingMethod
from flwr.supercore.privacy_accounting import PrivacyConfig as FlowerPrivacyConfig
from flwr.supercore.privacy_accounting.rdp_accountant import RdpAccountant

# dp-accounting warns through absl whenever a fractional RDP order does not converge and is left out
# of the minimum (the integer orders still bound epsilon): noise for every run, not news.
logging.getLogger("absl").setLevel(logging.ERROR)


def local_noise_multiplier(epsilon: float, delta: float) -> float:
    """LocalDpMod's noise std over its sensitivity: sqrt(2 ln(1.25/delta)) / epsilon (the classic Gaussian mechanism)."""
    return math.sqrt(2.0 * math.log(1.25 / delta)) / epsilon


class PrivacyLedger:
    """The releases of one run composed in an RDP accountant; epsilon at the run's delta.

    Central modes: one sampled Gaussian release per aggregated round, ``sample_size`` of
    ``population`` clients under the add-or-remove-one-client relation, amplified by Poisson
    sampling at rate sample_size / population (``sampling="poisson"``) or not at all
    (``"no-amplification"``). Local mode: one Gaussian release per round for a client that takes
    part in every round (population 1, no amplification): the worst case over clients.
    """

    def __init__(self, *, delta: float, population: int, sampling: str) -> None:
        method = SamplingMethod.POISSON if sampling == "poisson" else SamplingMethod.NO_AMPLIFICATION
        self.delta = delta
        self.population = population
        self.accountant = RdpAccountant(FlowerPrivacyConfig(
            target_delta=delta, population_size=population,
            neighboring_relation=NeighboringRelation.ADD_OR_REMOVE_ONE, sampling_method=method))

    @property
    def releases(self) -> int:
        return self.accountant.num_releases

    def release(self, *, noise_multiplier: float, sample_size: int) -> None:
        """Compose one round's Gaussian release."""
        self.accountant.compose(GaussianPrivacyEvent(noise_multiplier=noise_multiplier, sample_size=sample_size,
                                                     population_size=self.population))

    def epsilon(self) -> float:
        """Epsilon spent so far at `delta` (0 before the first release)."""
        if not self.releases:
            return 0.0
        return float(self.accountant.get_privacy_spent(self.delta).epsilon)

    def state_dict(self) -> dict[str, Any]:
        return self.accountant.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.accountant.load_state_dict(state)
