"""Model backbones by name: `build_model(cfg["model"], input_shape, num_classes)`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from models.cnn import CNN, CNNConfig
from models.custom import build_custom, check_custom
from models.config import parse_config
from models.linear import LinearConfig, LinearModel
from models.mlp import MLP, MLPConfig
from models.resnet import ResNet, ResNetConfig

__all__ = ["MODEL_NAMES", "build_model", "check_model_config"]

# name -> (config dataclass, model class taking (config, input_shape, num_classes))
_REGISTRY: dict[str, tuple[type, Callable[..., nn.Module]]] = {
    "mlp": (MLPConfig, MLP),
    "linear": (LinearConfig, LinearModel),
    "cnn": (CNNConfig, CNN),
    "resnet": (ResNetConfig, ResNet),
}
CUSTOM = "custom"  # model.factory=<module:function>, built by models/custom.py
MODEL_NAMES: tuple[str, ...] = tuple(sorted(_REGISTRY))  # the built-in architectures


def _lookup(model_cfg: Mapping[str, Any]) -> tuple[type, Callable[..., nn.Module]]:
    name = model_cfg.get("name")
    if name not in _REGISTRY:
        raise ValueError(f"unknown model.name {name!r}; valid choices: {', '.join(MODEL_NAMES)}, {CUSTOM} "
                         "(model.factory=<module:function>)")
    return _REGISTRY[name]


def check_model_config(model_cfg: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
                       num_classes: int | None = None) -> None:
    """Raise ValueError for an unknown model.name or a bad field, before any work is done.

    With the task's ``input_shape`` and ``num_classes``, a custom model is also built and run on
    one batch.
    """
    if model_cfg.get("name") == CUSTOM:
        check_custom(model_cfg, input_shape, num_classes)
        return
    config_cls, _ = _lookup(model_cfg)
    parse_config(config_cls, model_cfg)


def build_model(model_cfg: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """A freshly initialised model for inputs of `input_shape` (one example, no batch dim)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if model_cfg.get("name") == CUSTOM:
        return build_custom(model_cfg, tuple(input_shape), int(num_classes))
    config_cls, model_cls = _lookup(model_cfg)
    return model_cls(parse_config(config_cls, model_cfg), tuple(input_shape), int(num_classes))
