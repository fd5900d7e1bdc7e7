"""digit-domains: four digit domains (MNIST, sklearn digits, SynthDigits, MNIST-M) as 3x28x28."""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from data.build import PARTITION_SEED, VAL_SEED, carve_val, derive_seed, partition_pool
from data.bundle import Normalisation, Store, TaskBundle, TaskData
from data.catalogue import load_source
from data.config import NUM_CLASSES, TaskConfig
from data.sources import Source

# Domain name -> source name, in client-group order.
DOMAINS: dict[str, str] = {
    "mnist": "mnist5k",
    "digits": "digits",
    "synth": "synth",
    "mnistm": "mnistm",
}
SHAPE = (3, 28, 28)


def to_rgb28(images: np.ndarray) -> np.ndarray:
    """uint8 (n, C, H, W) -> uint8 (n, 3, 28, 28): bilinear resize, grey replicated to RGB."""
    x = images
    if x.shape[2:] != SHAPE[1:]:
        resized = F.interpolate(
            torch.from_numpy(x.astype(np.float32)),
            size=SHAPE[1:],
            mode="bilinear",
            align_corners=False,
        )
        x = resized.round_().clamp_(0, 255).to(torch.uint8).numpy()
    if x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    return np.ascontiguousarray(x)


@functools.lru_cache(maxsize=1)
def domain_sources() -> dict[str, Source]:
    """Each domain's fixed train/test split, converted to uint8 (n, 3, 28, 28)."""
    out = {}
    for domain, source_name in DOMAINS.items():
        s = load_source(source_name)
        out[domain] = Source(domain, to_rgb28(s.x_train), s.y_train, to_rgb28(s.x_test), s.y_test)
    return out


@functools.lru_cache(maxsize=1)
def _stores() -> tuple[Store, Store, Normalisation]:
    sources = domain_sources().values()
    train = Store(
        np.concatenate([s.x_train for s in sources]), np.concatenate([s.y_train for s in sources])
    )
    test = Store(
        np.concatenate([s.x_test for s in sources]), np.concatenate([s.y_test for s in sources])
    )
    return train, test, Normalisation.of(train.x)


def build_domains(cfg: TaskConfig, seed: int) -> TaskBundle:
    """One client group per domain (num_clients / 4 clients each), partitioned inside the domain.

    Clients 0..k-1 hold mnist, k..2k-1 digits, and so on; ``cfg.partition`` shapes the labels
    within each group. With one client per domain (k = 1), ``partition: dirichlet`` skews the
    labels across the domains instead (see ``skew_across_domains``). Validation is carved per
    domain; test splits are fixed per domain.
    """
    sources = domain_sources()
    train, test, normalisation = _stores()
    per_domain = cfg.num_clients // len(sources)
    clients: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    test_domains: dict[str, np.ndarray] = {}
    train_offset = test_offset = 0
    pools_vals = [
        carve_val(s.y_train, cfg.val_fraction, derive_seed(seed, VAL_SEED, d))
        for d, s in enumerate(sources.values())
    ]
    across = per_domain == 1 and cfg.partition == "dirichlet"
    if across:  # one client per domain: Dirichlet skews the labels across the domains instead
        kept = skew_across_domains(
            [pool for pool, _ in pools_vals], [s.y_train for s in sources.values()], cfg, seed
        )
    for d, (domain, s) in enumerate(sources.items()):
        pool, val = pools_vals[d]
        if across:
            parts = [kept[d]]
        else:
            parts = partition_pool(
                pool, s.y_train, cfg, per_domain, derive_seed(seed, PARTITION_SEED, d)
            )
        clients += [p + train_offset for p in parts]
        vals.append(val + train_offset)
        test_domains[domain] = np.arange(len(s.y_test)) + test_offset
        train_offset += len(s.y_train)
        test_offset += len(s.y_test)
    return TaskBundle(
        name=cfg.name,
        input_shape=SHAPE,
        num_classes=NUM_CLASSES,
        num_clients=cfg.num_clients,
        num_tasks=1,
        scenario="multi-domain",
        task_classes=[list(range(NUM_CLASSES))],
        domains=list(sources),
        train_store=train,
        test_store=test,
        tasks=[TaskData(clients, np.concatenate(vals), np.arange(len(test.y)))],
        normalisation=normalisation,
        client_domains=[domain for domain in sources for _ in range(per_domain)],
        test_domains=test_domains,
    )


def skew_across_domains(
    pools: list[np.ndarray], labels: list[np.ndarray], cfg: TaskConfig, seed: int
) -> list[np.ndarray]:
    """Label skew across domains (one client each): per class, shares q ~ Dir(alpha) over the
    domains; domain d keeps round(q_d / max(q) * n_dc) of its n_dc samples of the class (the
    domain with the largest share keeps all of them). Redrawn until every domain keeps
    ``min_partition_size`` samples. Deterministic in the seed.
    """
    rng = np.random.default_rng(derive_seed(seed, PARTITION_SEED, len(pools)))
    need = cfg.min_partition_size or 1
    for _ in range(100):
        shares = rng.dirichlet(np.full(len(pools), cfg.alpha), size=NUM_CLASSES)  # (classes, domains)
        shares = shares / shares.max(axis=1, keepdims=True)
        kept = []
        for d, pool in enumerate(pools):
            keep = []
            for c in range(NUM_CLASSES):
                members = pool[labels[d][pool] == c]
                count = int(round(shares[c, d] * len(members)))
                keep.append(np.sort(rng.permutation(members)[:count]))
            kept.append(np.sort(np.concatenate(keep)).astype(np.int64))
        if min(len(k) for k in kept) >= need:
            return kept
    raise ValueError(
        f"label skew across domains (alpha={cfg.alpha}) left a domain with fewer than "
        f"min_partition_size={need} samples in 100 draws; raise task.alpha"
    )
