"""Attacks (a fault injector) applied in the weights client half: sign-flip, gaussian, scaling, label-flip.

The attackers are a fixed set of partitions drawn from the run's seed (``attack.fraction`` of the
clients), so every weight-based strategy of a run faces the same attackers. An attacker trains
as usual (on flipped labels under ``label-flip``) and then replaces its reply:

- ``sign-flip``: ``w_global - scale * (w_local - w_global)`` (the update reversed and amplified);
- ``gaussian``: ``w_global + N(0, scale^2)`` per coordinate (the update replaced by noise);
- ``scaling``: ``w_global + scale * (w_local - w_global)`` (a boosted update);
- ``label-flip``: trained on labels ``C - 1 - y``; the reply is the honest result of that.

Each reply says whether it came from an attacker (metric ``attacker``), so the server records
which nodes attacked each round. This simulates attacks; a real attacker would not say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from conf.typed import Section, between
from strategies.base import derive_seed

Mode = Literal["none", "sign-flip", "gaussian", "scaling", "label-flip"]
ATTACKER_METRIC = "attacker"


@dataclass(frozen=True)
class AttackConfig(Section):
    """The `attack` config group (conf/attack/<name>.yaml)."""

    IGNORED: ClassVar[frozenset[str]] = frozenset()

    name: Mode
    fraction: float = field(metadata=between(0, 1))   # share of the clients that attack
    scale: float = field(metadata=between(0))          # sign-flip/scaling factor, gaussian std

    @property
    def active(self) -> bool:
        return self.name != "none" and self.fraction > 0


def parse_attack(section: dict[str, Any] | None) -> AttackConfig:
    """The run's `attack` section (absent: no attack), validated; ConfigError names the key."""
    return AttackConfig.parse(section or {"name": "none", "fraction": 0.0, "scale": 0.0}, prefix="attack")


def attackers(*, seed: int, num_clients: int, fraction: float) -> frozenset[int]:
    """The attacking partitions: round(fraction * n) of them, drawn from the seed alone."""
    count = int(round(fraction * num_clients))
    order = np.random.default_rng(derive_seed(seed, "attackers")).permutation(num_clients)
    return frozenset(int(p) for p in order[:count])


def flip_labels(y: Any, num_classes: int) -> Any:
    """Labels y -> C - 1 - y (works on numpy arrays and torch tensors)."""
    return (num_classes - 1) - y


def poison_weights(local: dict[str, Any], sent: dict[str, Any], *, mode: str, scale: float,
                   seed: int) -> dict[str, Any]:
    """The attacker's reply from its trained weights `local` and the global weights `sent` (torch)."""
    import torch

    if mode == "label-flip":
        return local
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, w in local.items():
        ref = sent[key].to(w.dtype)
        if not torch.is_floating_point(w):
            out[key] = w
        elif mode == "sign-flip":
            out[key] = ref - scale * (w - ref)
        elif mode == "scaling":
            out[key] = ref + scale * (w - ref)
        elif mode == "gaussian":
            out[key] = ref + scale * torch.randn(w.shape, generator=generator, dtype=w.dtype)
        else:
            raise ValueError(f"attack={mode!r} is not a weights attack")
    return out
