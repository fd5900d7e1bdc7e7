"""CreamFL's typed config: every setting of both halves, parsed once from `strategy` (defaults: the YAML)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from conf.errors import ConfigError
from conf.typed import between
from models.multimodal import image_spec, text_spec
from strategies.fedavg import FedAvgConfig

CLIENT_TYPES = ("image", "text", "image_text")

POSITIVE = between(0, None, lo_open=True)
NON_NEGATIVE = between(0, None)


@dataclass(frozen=True)
class CreamFLConfig(FedAvgConfig):
    """The `strategy` section of a CreamFL run; its defaults live in conf/strategy/creamfl.yaml.

    Flower's sampling settings come from FedAvgConfig. The server half receives it as `config`;
    the client half reads it as `env.strategy_config`.
    """

    embed_dim: int = field(metadata=between(1, None))
    # the server
    server_image: dict[str, Any]
    server_text: dict[str, Any]
    server_lr: float = field(metadata=POSITIVE)
    server_weight_decay: float = field(metadata=NON_NEGATIVE)
    server_batch_size: int = field(metadata=between(1, None))
    server_epochs: int = field(metadata=NON_NEGATIVE)
    temperature: float = field(metadata=POSITIVE)
    server_data: Literal["public", "all"]
    ensemble: Literal["contrastive", "mean"]
    ensemble_temperature: float = field(metadata=POSITIVE)
    kd_weight: float = field(metadata=NON_NEGATIVE)
    distill_lr: float = field(metadata=POSITIVE)
    distill_epochs: int = field(metadata=NON_NEGATIVE)
    distill_order: Literal["after_clients", "before_public"]
    distill_mode: Literal["separate", "joint"]
    kd_gate: Literal["none", "item", "alignment"]
    kd_loss: Literal["mse", "relational", "crossmodal"]
    relational_temperature: float = field(metadata=POSITIVE)
    kd_normalise: bool
    align_holdout: float = field(metadata=between(0, 0.5))
    kd_clients: Literal["all", "aligned"]
    align_min: float = field(metadata=between(0, 1))
    kd_client_weights: Literal["ensemble", "alignment"]
    distill_probe: bool
    # the clients
    client_models: dict[str, Any]
    local_epochs: int = field(metadata=NON_NEGATIVE)
    client_lr: float = field(metadata=POSITIVE)
    client_batch_size: int = field(metadata=between(1, None))
    client_temperature: float = field(metadata=POSITIVE)
    class_scale: float = field(metadata=POSITIVE)
    inter: bool
    intra: bool
    interintra_weight: float = field(metadata=NON_NEGATIVE)
    inter_temperature: float = field(metadata=POSITIVE)
    intra_temperature: float = field(metadata=POSITIVE)
    reg_passes: int = field(metadata=NON_NEGATIVE)
    wire_dtype: Literal["float32", "float16"]

    def check(self, prefix: str) -> None:
        """Tower specs must build, and alignment choices need held-out pairs to measure on: a bad
        setting fails here, before any engine starts."""
        if self.align_holdout == 0:
            for key, value, default in (("kd_clients", self.kd_clients, "all"),
                                        ("kd_client_weights", self.kd_client_weights, "ensemble")):
                if value != default:
                    raise ConfigError(
                        f"{prefix}.{key}={value} chooses clients by their alignment on held-out public pairs, "
                        f"but {prefix}.align_holdout is 0; set {prefix}.align_holdout=0.2 (a fraction of the "
                        f"public pairs) or {prefix}.{key}={default}", key=f"{prefix}.{key}")
        _spec(image_spec, self.server_image, f"{prefix}.server_image")
        _spec(text_spec, self.server_text, f"{prefix}.server_text")
        key = f"{prefix}.client_models"
        unknown = sorted(set(self.client_models) - set(CLIENT_TYPES))
        missing = [t for t in CLIENT_TYPES if t not in self.client_models]
        if unknown or missing:
            raise ConfigError(
                f"{key} needs one architecture per client type ({', '.join(CLIENT_TYPES)}); "
                f"{'unknown: ' + ', '.join(unknown) if unknown else 'missing: ' + ', '.join(missing)}",
                key=key)
        for client_type, towers in self.client_models.items():
            where = f"{key}.{client_type}"
            if not isinstance(towers, dict):
                raise ConfigError(f"{where}: expected a mapping of towers, got {towers!r}", key=where)
            if client_type != "text":
                _spec(image_spec, towers.get("image"), f"{where}.image", required=True)
            if client_type != "image":
                _spec(text_spec, towers.get("text"), f"{where}.text", required=True)


def _spec(parse: Any, value: Any, key: str, *, required: bool = True) -> None:
    if value is None and required:
        raise ConfigError(f"{key} is missing; give a tower spec such as {{kind: cnn, channels: [16, 32], fc: 64}}",
                          key=key)
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping, got {value!r}", key=key)
    try:
        parse(value, key)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{key}: {err}", key=key) from None
