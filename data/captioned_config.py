"""The `captioned` task's config: its keys and defaults, and their validation (data/captioned.py builds it)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from data.encoders import EFFNET_LITE0
from data.errors import ConfigError
from data.text_encoders import TEXT_FEATURES

CAPTIONED = "captioned"
IMAGE_FEATURES: tuple[str, ...] = ("none", EFFNET_LITE0)
MODALITIES: tuple[str, ...] = ("image", "text", "image_text")

CAPTIONED_DEFAULTS: dict[str, Any] = {
    "name": CAPTIONED,
    "dataset": CAPTIONED,
    "num_clients": 12,             # must equal the sum of `clients`
    "clients": {"image": 4, "text": 4, "image_text": 4},
    "partition": "dirichlet",      # iid | dirichlet (over each client type's label)
    "alpha": 0.5,
    "min_partition_size": 2,
    "public_size": 500,
    "private_size": 2400,          # pairs shared out among all clients (each keeps its modality)
    "val_size": 300,
    "test_size": 500,
    "image_size": 32,
    "data_seed": 0,                # generation and splits; null: the run seed (models and sampling
                                   # always follow the run seed)
    "features": "none",            # must stay none: use image_features / text_features
    "image_features": "none",      # none (pixels) | effnet-lite0 (frozen, cached 1280-d features)
    "text_features": "none",       # none (word ids) | minilm (frozen, cached 384-d features)
    "data_dir": None,
    "continual": None,
}


@dataclass(frozen=True)
class CaptionedConfig:
    """A validated, hashable `captioned` task config."""

    name: str
    num_clients: int
    clients: tuple[tuple[str, int], ...]
    partition: str
    alpha: float
    min_partition_size: int
    public_size: int
    private_size: int
    val_size: int
    test_size: int
    image_size: int
    data_seed: int | None = 0
    features: str = "none"
    image_features: str = "none"
    text_features: str = "none"
    data_dir: str | None = None
    continual: None = None
    dataset: str = CAPTIONED

    def client_types(self) -> list[str]:
        """The modality of every partition id, in order."""
        return [m for m, n in self.clients for _ in range(n)]


def parse_captioned_config(cfg: Mapping[str, Any]) -> CaptionedConfig:
    """Validate a `captioned` task config; each error names the key and the fix."""
    unknown = sorted(set(cfg) - set(CAPTIONED_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"task.{unknown[0]}: unknown key for the captioned task; valid keys: "
            f"{', '.join(CAPTIONED_DEFAULTS)}"
        )
    merged = {**CAPTIONED_DEFAULTS, **dict(cfg)}
    clients_cfg = merged["clients"]
    if not isinstance(clients_cfg, Mapping) or not clients_cfg:
        raise ConfigError(f"task.clients: expected a mapping like {{image: 4, text: 4, image_text: 4}}, "
                          f"got {clients_cfg!r}")
    bad = sorted(set(clients_cfg) - set(MODALITIES))
    if bad:
        raise ConfigError(f"task.clients.{bad[0]}: unknown client type; valid: {', '.join(MODALITIES)}")
    clients = []
    for m in MODALITIES:
        n = clients_cfg.get(m, 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"task.clients.{m}: must be an integer >= 0, got {n!r}")
        if n:
            clients.append((m, int(n)))
    total = sum(n for _, n in clients)
    num_clients = merged["num_clients"]
    if total < 1:
        raise ConfigError("task.clients: at least one client is needed")
    if num_clients != total:
        raise ConfigError(
            f"task.num_clients={num_clients} must equal the sum of task.clients ({total}: "
            f"{dict(clients)}); set task.num_clients={total} or change task.clients"
        )
    if merged["partition"] not in ("iid", "dirichlet"):
        raise ConfigError(f"task.partition: {merged['partition']!r}; choose one of: iid, dirichlet")
    alpha = merged["alpha"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ConfigError(f"task.alpha: the Dirichlet concentration must be > 0, got {alpha!r}")
    ints = {}
    for key, minimum in (("public_size", 2), ("private_size", 1), ("val_size", 1), ("test_size", 2),
                         ("image_size", 16), ("min_partition_size", 0)):
        value = merged[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(f"task.{key}: must be an integer >= {minimum}, got {value!r}")
        ints[key] = int(value)
    data_seed = merged["data_seed"]
    if data_seed is not None and (isinstance(data_seed, bool) or not isinstance(data_seed, int)):
        raise ConfigError(f"task.data_seed: must be an integer or null, got {data_seed!r}")
    if merged["features"] != "none":
        raise ConfigError(
            f"task.features={merged['features']!r}: the captioned task needs features=none; choose "
            f"frozen encoders per modality with task.image_features ({' | '.join(IMAGE_FEATURES)}) "
            f"and task.text_features ({' | '.join(TEXT_FEATURES)})"
        )
    for key, valid in (("image_features", IMAGE_FEATURES), ("text_features", TEXT_FEATURES)):
        if merged[key] not in valid:
            raise ConfigError(f"task.{key}={merged[key]!r}; valid choices: {', '.join(valid)}")
    if merged["continual"] is not None:
        raise ConfigError("task.continual: the captioned task is not continual; set continual: null")
    if merged["dataset"] != CAPTIONED:
        raise ConfigError(f"task.dataset: the captioned task's dataset is {CAPTIONED!r}")
    per_client = max(1, ints["min_partition_size"])
    if ints["private_size"] < total * per_client:
        raise ConfigError(
            f"task.private_size={ints['private_size']} is too small for {total} clients with "
            f"min_partition_size={ints['min_partition_size']}; raise it or lower the client counts"
        )
    return CaptionedConfig(
        name=str(merged["name"]), num_clients=total, clients=tuple(clients),
        partition=str(merged["partition"]), alpha=float(alpha), data_dir=merged["data_dir"],
        data_seed=data_seed, image_features=str(merged["image_features"]),
        text_features=str(merged["text_features"]), **ints,
    )
