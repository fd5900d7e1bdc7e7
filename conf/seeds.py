"""The one seed derivation: a 32-bit seed from a run's seed and the parts naming its purpose."""

from __future__ import annotations

import hashlib
from typing import Any


def derive_seed(*parts: Any) -> int:
    """A seed in [0, 2**32) from any parts (ints, strings), stable across processes and machines.

    Unlike hash(), it does not change per process; unlike numpy's SeedSequence it takes strings,
    so a purpose can name itself: ``derive_seed(seed, round, partition, "train")``. Parts are
    joined with "/" and hashed with SHA-256; the first 4 bytes, little-endian, are the seed.
    """
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "little")
