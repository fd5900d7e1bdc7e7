"""Fixed-point quantisation of float vectors into integers modulo 2^bits, with a stated error."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DTYPES = {32: np.uint32, 64: np.uint64}


@dataclass(frozen=True)
class FixedPoint:
    """Values clipped to [-clip, clip] and rounded stochastically to a grid of 2^value_bits points.

    Sums of up to `max_parties` quantised vectors fit the ring Z_{2^modulus_bits} without wrapping,
    so the masked sum decodes exactly to the sum of the quantised values. Per value the rounding
    error is below one step, `step = 2 clip / (2^value_bits - 1)`; the sum of n vectors is off by
    at most n steps (unbiased: stochastic rounding has zero mean).
    """

    clip: float
    modulus_bits: int = 32
    max_parties: int = 1024

    def __post_init__(self) -> None:
        if self.modulus_bits not in DTYPES:
            raise ValueError(f"modulus_bits must be one of {sorted(DTYPES)}, got {self.modulus_bits}")
        if not self.clip > 0:
            raise ValueError(f"clip must be > 0, got {self.clip}")
        if self.value_bits < 8:
            raise ValueError(f"{self.max_parties} parties leave {self.value_bits} bits per value in a "
                             f"{self.modulus_bits}-bit ring; use modulus_bits=64 or fewer parties")

    @property
    def dtype(self) -> type[np.unsignedinteger]:
        return DTYPES[self.modulus_bits]

    @property
    def value_bits(self) -> int:
        """Bits per quantised value: what the ring leaves after room for `max_parties` summands."""
        headroom = int(np.ceil(np.log2(max(self.max_parties, 2))))
        return min(self.modulus_bits - headroom, 53)  # float64 holds 53 exact bits

    @property
    def levels(self) -> int:
        return (1 << self.value_bits) - 1

    @property
    def step(self) -> float:
        """The quantisation step: the largest rounding error of one value."""
        return 2 * self.clip / self.levels

    def encode(self, values: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """(ring elements, number of clipped values) for a float vector."""
        values = np.asarray(values, dtype=np.float64)
        clipped = int(np.count_nonzero(np.abs(values) > self.clip))
        scaled = (np.clip(values, -self.clip, self.clip) + self.clip) / (2 * self.clip) * self.levels
        floor = np.floor(scaled)
        rounded = floor + (rng.random(scaled.shape) < (scaled - floor))
        return rounded.astype(self.dtype), clipped

    def decode_sum(self, total: np.ndarray, parties: int) -> np.ndarray:
        """The float sum of `parties` encoded vectors from their ring sum."""
        if parties > self.max_parties:
            raise ValueError(f"{parties} parties exceed max_parties={self.max_parties}: the sum may have wrapped")
        return total.astype(np.float64) * (2 * self.clip / self.levels) - parties * self.clip
