"""GGEUR's typed config: the `strategy` section of conf/strategy/ggeur.yaml, checked once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from conf.errors import ConfigError
from conf.typed import Section, between
from strategies.ggeur.augment import Noise
from strategies.registry import check_strategy_config


@dataclass(frozen=True)
class GGEURConfig(Section):
    """GGEUR's settings (defaults in conf/strategy/ggeur.yaml); every other key goes to the base.

    The server half is built from it; the client half reads it as ``env.strategy_config``.
    """

    EXTRA = "base_kwargs"

    base: str                                                   # the strategy that runs the rounds
    top_k: int | None = field(metadata=between(1))              # eigenpairs kept per class; None: all
    reduce: Literal["none", "random", "pca"]                    # where the second moments live
    reduce_dim: int = field(metadata=between(1))                # r with a reduction
    sketch_oversample: int = field(metadata=between(0))         # pca: extra sketch columns
    stats_dtype: Literal["float64", "float32"]                  # of the sums clients send
    target_count: Literal["global"] | int = field(metadata=between(1))  # per-class fill target
    noise: Noise                                                # geometry | isotropic | none
    weight_by: Literal["real", "augmented"]                     # the aggregation weight's count
    min_class_samples: int = field(metadata=between(1))         # fewer real samples stop the run
    guided_fraction: float | None = field(metadata=between(0, 1, lo_open=True))  # official option
    amplify: float                                              # > 1 scales the largest eigenvalues
    amplify_top: int                                            # how many of them
    multi_domain: Literal["auto"] | bool                        # share domain prototypes
    global_prototypes: bool                                     # pooled means as prototypes too
    local_steps: Literal["augmented", "real"]                   # real: cap steps at the real data's
    base_kwargs: dict[str, Any] = field(default_factory=dict)   # the base strategy's own keys

    def check(self, prefix: str) -> None:
        """The base must be another strategy, and the keys GGEUR passes on must be its own."""
        if self.base == "ggeur":
            raise ConfigError(f"{prefix}.base=ggeur: GGEUR needs another strategy as its base (fedavg, "
                              "fedprox, ...)", key=f"{prefix}.base")
        try:
            check_strategy_config(self.base_section())
        except ValueError as err:  # the registry's refusal names the key; add where it came from
            key = getattr(err, "key", None) or f"{prefix}.base"
            raise ConfigError(f"{prefix}.base={self.base}: {err} (GGEUR passes every key it does not "
                              "use itself to its base strategy)", key=key) from err

    def base_section(self) -> dict[str, Any]:
        """The base strategy's own config section: its name and the keys GGEUR does not use."""
        return {"name": self.base, **self.base_kwargs}
