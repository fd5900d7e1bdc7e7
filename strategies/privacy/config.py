"""The `privacy` config group (conf/privacy/<mode>.yaml) and the combinations it refuses."""

from __future__ import annotations

import functools

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import yaml

from conf.compose import CONF_DIR
from conf.errors import ConfigError
from conf.typed import Section, between

Mode = Literal["none", "central-fixed", "central-adaptive", "client-fixed", "client-adaptive", "local"]
CENTRAL: tuple[str, ...] = ("central-fixed", "central-adaptive", "client-fixed", "client-adaptive")
ADAPTIVE: tuple[str, ...] = ("central-adaptive", "client-adaptive")
CLIENT_MODS: tuple[str, ...] = ("client-fixed", "client-adaptive", "local")

# What a method sends outside the clipped, noised weight update (so no privacy mode covers it).
LEAKS: dict[str, str] = {
    "fot": "FOT's subspace sketches (per-layer activation statistics of each client's own data, sent at "
           "every task switch) travel beside the update, unclipped and without noise",
    "ggeur": "GGEUR's class statistics (each client's per-class feature means and covariances, from its "
             "own data) travel to the server unclipped and without noise",
    "creamfl": "CreamFL's public-set representations (each client's embeddings of the public data, "
               "computed by its locally trained model) travel outside the update, unclipped and without noise",
}


@dataclass(frozen=True)
class PrivacyConfig(Section):
    """The `privacy` section; every key's default is in conf/privacy/<mode>.yaml."""

    IGNORED: ClassVar[frozenset[str]] = frozenset()

    name: Mode
    noise_multiplier: float = field(metadata=between(0))                  # z (central modes)
    clipping_norm: float = field(metadata=between(0, lo_open=True))        # C (adaptive: initial)
    delta: float = field(metadata=between(0, 1, lo_open=True, hi_open=True))  # reported epsilon is at this delta
    sampling: Literal["poisson", "no-amplification"]
    target_clipped_quantile: float = field(metadata=between(0, 1))
    clip_norm_lr: float = field(metadata=between(0, lo_open=True))
    clipped_count_stddev: float | None = field(metadata=between(0, lo_open=True))
    local_epsilon: float = field(metadata=between(0, lo_open=True))
    local_delta: float = field(metadata=between(0, 1, lo_open=True, hi_open=True))
    sensitivity: float | None = field(metadata=between(0, lo_open=True))

    @property
    def active(self) -> bool:
        return self.name != "none"

    @property
    def local_sensitivity(self) -> float:
        """LocalDpMod's sensitivity: two clipped updates differ by at most 2 C unless set."""
        return self.sensitivity if self.sensitivity is not None else 2.0 * self.clipping_norm

    def check(self, prefix: str) -> None:
        if self.name in CENTRAL and self.noise_multiplier == 0:
            self.fail(prefix, "noise_multiplier", f"gives privacy={self.name} no noise, so epsilon is infinite: "
                      "set a positive privacy.noise_multiplier, or use privacy=none")


def parse_privacy(section: dict[str, Any] | None) -> PrivacyConfig:
    """The run's `privacy` section (absent: privacy=none), validated; ConfigError names the key."""
    return PrivacyConfig.parse(section or _default_section(), prefix="privacy")


@functools.cache
def _default_section() -> dict[str, Any]:
    """conf/privacy/none.yaml, read once (clients parse the section on every message)."""
    return yaml.safe_load((CONF_DIR / "privacy" / "none.yaml").read_text())


def num_sampled(strategy_config: Any, num_clients: int) -> int:
    """Clients a round samples, as Flower's FedAvg computes it from fraction_train and min_train_nodes."""
    fraction = float(getattr(strategy_config, "fraction_train", 1.0))
    minimum = min(int(getattr(strategy_config, "min_train_nodes", 2)), num_clients)
    return min(max(int(num_clients * fraction), minimum), num_clients)


def aggregation_refusal(server_half: type) -> str | None:
    """Why Flower's DP wrappers cannot calibrate their noise for this server half, or None.

    The wrappers add noise of std z*C/m to the mean of m clipped updates. corolla hands them that
    mean and gives the noised mean to the server half as one reply, so a half whose aggregation is
    a (weighted) mean followed by a server update (FedAvg, FedProx, FedAdam, FedYogi, FedAdagrad,
    FedAvgM) keeps its rule, and the server update is post-processing of a private release.
    Any other aggregation needs each client's update, and the noise says nothing about it. A server
    half with another reason declares it as `privacy_refusal` (FedBuff).
    """
    from flwr.serverapp.strategy import FedAdagrad, FedAdam, FedAvg, FedAvgM, FedYogi

    owner = next((k for k in server_half.__mro__ if "aggregate_train" in vars(k)), None)
    if owner in (FedAvg, FedAdam, FedYogi, FedAdagrad, FedAvgM):
        return None
    return getattr(server_half, "privacy_refusal", None) or (f"{server_half.__name__} aggregates with {getattr(owner, '__name__', '?')}.aggregate_train, which "
            "uses each client's update (a median, a trimmed or Krum-selected set, q-weighting); Flower's DP "
            "wrappers calibrate their noise to the mean of the clipped updates only")


def check_privacy(cfg: dict[str, Any]) -> PrivacyConfig:
    """Refuse, before any engine starts, a privacy mode that cannot hold for this config."""
    from strategies.registry import get_strategy, parse_strategy_config

    privacy = parse_privacy(cfg.get("privacy"))
    if not privacy.active:
        return privacy
    name = str(cfg["strategy"]["name"])
    key = "privacy"
    if name in LEAKS:
        raise ConfigError(f"privacy={privacy.name} cannot make strategy={name} private: {LEAKS[name]}; "
                          f"use privacy=none with {name}, or a weight-averaging strategy (fedavg, fedprox)", key=key)
    definition = get_strategy(name)
    if not definition.client.applies_attacks:
        raise ConfigError(f"privacy={privacy.name} clips and noises the model weights clients send, but "
                          f"strategy={name} does not send them: use privacy=none with it", key=key)
    why = aggregation_refusal(definition.server)
    if why:
        raise ConfigError(f"privacy={privacy.name} cannot run with strategy={name}: {why}; use fedavg, fedprox, "
                          "fedadam, fedyogi, fedadagrad or fedavgm, or privacy=none", key=key)
    if cfg.get("secagg"):
        raise ConfigError(
            f"privacy={privacy.name} with secagg=true is refused: central-* clip on the server, which under "
            "secure aggregation sees no individual update, and the client-side mods (client-*, local) act on "
            "the plain training reply, which the secure sum's masking step replaces; choose one of the two",
            key="secagg")
    num_clients = int(cfg["task"].get("num_clients") or 1)
    sampled = num_sampled(parse_strategy_config(cfg["strategy"]), num_clients)
    if privacy.name in ADAPTIVE:
        from flwr.supercore.differential_privacy import compute_adaptive_noise_params

        try:
            compute_adaptive_noise_params(privacy.noise_multiplier, sampled, privacy.clipped_count_stddev)
        except ValueError as err:
            raise ConfigError(
                f"privacy.noise_multiplier={privacy.noise_multiplier} is too large for adaptive clipping with "
                f"{sampled} clients per round: it must stay below 2 x privacy.clipped_count_stddev "
                f"({privacy.clipped_count_stddev or sampled / 20:g}); raise privacy.clipped_count_stddev or "
                f"lower privacy.noise_multiplier (Flower: {err})", key="privacy.noise_multiplier") from err
    return privacy
