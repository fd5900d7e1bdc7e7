"""The one seed derivation (conf/seeds.py), used by the data partitions and the strategies alike."""

from __future__ import annotations

import data.build
import strategies.base
from conf.seeds import derive_seed


def test_seeds_are_pinned_and_in_range() -> None:
    # Pinned: a change here changes every partition and every benchmark number.
    assert derive_seed(0, "init") == 3802343722
    assert derive_seed(0, 1, 2, "train") == 587644837
    seeds = {derive_seed(s, r, p, "train") for s in range(3) for r in range(20) for p in range(20)}
    assert len(seeds) == 1200 and all(0 <= x < 2**32 for x in seeds)


def test_purposes_and_parts_separate() -> None:
    assert derive_seed(0, "val") != derive_seed(0, "partition") != derive_seed(1, "partition")
    assert derive_seed(0, 1, 2) != derive_seed(0, 12) != derive_seed(0, 1, "2", "x")


def test_one_function_everywhere() -> None:
    assert strategies.base.derive_seed is derive_seed
    assert data.build.derive_seed is derive_seed
