"""Who shares secrets and masks with whom: the complete graph, or SecAgg+'s k-neighbour ring."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from typing import Literal

Neighbours = Literal["auto", "all"] | int

# Up to this many clients every client shares with every other (the complete graph of SecAgg).
COMPLETE_UP_TO = 32


def threshold_for(num_nodes: int, *, max_dropout: float) -> int:
    """The Shamir threshold of the complete graph: tolerates `max_dropout` of the nodes leaving.

    Never below a strict majority, so the server and a minority of clients cannot rebuild an
    honest survivor's self-mask together with a dropped client's mask key.
    """
    return max(num_nodes // 2 + 1, math.ceil(num_nodes * (1 - max_dropout)), 2 if num_nodes >= 2 else 1)


def neighbourhood_size(num_nodes: int, neighbours: Neighbours = "auto") -> int:
    """k, the clients each one shares with (itself included); k >= num_nodes is the complete graph.

    `auto`: the complete graph up to COMPLETE_UP_TO clients, above that the smallest odd k >=
    3 log2(n) (SecAgg+, Bell et al. CCS 2020: O(log n) neighbours keep the sum's privacy and
    dropout robustness with high probability); `all`: always complete; an int: that k (made odd).
    """
    if neighbours == "all" or num_nodes <= 2:
        return num_nodes
    if neighbours == "auto":
        if num_nodes <= COMPLETE_UP_TO:
            return num_nodes
        k = math.ceil(3 * math.log2(num_nodes))
    else:
        k = int(neighbours)
    k += 1 - k % 2  # odd: as many neighbours on each side of the ring
    return min(k, num_nodes)


def ring_graph(nodes: Iterable[int], k: int, *, rng: random.Random | None = None) -> dict[int, frozenset[int]]:
    """Each node's neighbourhood (itself included): k consecutive nodes of a randomly shuffled ring.

    The same construction as Flower's SecAggPlusWorkflow; symmetric (v in N(u) iff u in N(v)).
    """
    order = sorted(set(nodes))
    n = len(order)
    if k >= n:
        everyone = frozenset(order)
        return {u: everyone for u in order}
    (rng or random.SystemRandom()).shuffle(order)
    half = k // 2
    return {u: frozenset(order[(i + off) % n] for off in range(-half, half + 1)) for i, u in enumerate(order)}


def sparse_threshold(k: int) -> int:
    """The Shamir threshold inside a k-neighbourhood: a strict majority of it."""
    return k // 2 + 1
