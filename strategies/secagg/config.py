"""The `secure_aggregation` section: ring, clipping range, dropout tolerance, weight scale."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from conf.typed import Section, between


@dataclass(frozen=True)
class SecAggConfig(Section):
    """Settings of `secagg=true`; defaults in conf/config.yaml's `secure_aggregation` section."""

    clip: float = field(metadata=between(0, lo_open=True))          # |update value| bound; larger are clipped (counted)
    modulus_bits: Literal[32, 64]                                    # the ring: 32 keeps uploads float32-sized
    max_dropout: float = field(metadata=between(0, 0.5))             # sampled clients that may leave after sharing
    weight_scale: int = field(metadata=between(1))                   # num-examples are capped here when weighting
    sketch_clip: float = field(metadata=between(0, lo_open=True))   # FOT: |sketch entry| bound (64-bit ring)
    stats_clip: float = field(metadata=between(0, lo_open=True))    # GGEUR: |class-sum entry| bound (64-bit ring)
    neighbours: Literal["auto", "all"] | int = field(metadata=between(3))  # SecAgg+ neighbourhood size k
