"""model=custom: your own network from `model.factory=<package.module:function>` (+ kwargs, weights)."""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from conf.errors import ConfigError

KEYS = ("name", "factory", "kwargs", "weights")


def resolve_factory(model_cfg: Mapping[str, Any]) -> Callable[..., Any]:
    """The function named by model.factory; ConfigError naming the key when it cannot be found."""
    unknown = sorted(set(model_cfg) - set(KEYS))
    if unknown:
        raise ConfigError(f"model.{unknown[0]} is not a setting of model=custom; its settings: "
                          f"{', '.join(KEYS[1:])} (constructor arguments go in model.kwargs)",
                          key=f"model.{unknown[0]}")
    target = model_cfg.get("factory")
    if not isinstance(target, str) or target.count(":") != 1:
        raise ConfigError(f"model.factory={target!r} must be '<package.module>:<function>', e.g. "
                          "model.factory=my_models.nets:make_net", key="model.factory")
    kwargs = model_cfg.get("kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(f"model.kwargs={kwargs!r} must be a mapping of the factory's keyword "
                          "arguments", key="model.kwargs")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise ConfigError(f"model.factory={target!r}: cannot import {module_name} ({type(err).__name__}: "
                          f"{err}); is it installed or on PYTHONPATH?", key="model.factory") from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise ConfigError(f"model.factory={target!r}: {module_name} has no function {attr!r}",
                          key="model.factory")
    return factory


def build_custom(model_cfg: Mapping[str, Any], input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """Call the factory with the task's input shape and number of classes; load model.weights."""
    factory = resolve_factory(model_cfg)
    kwargs = dict(model_cfg.get("kwargs") or {})
    target = model_cfg["factory"]
    offered = {"input_shape": tuple(input_shape), "num_classes": int(num_classes)}
    try:
        params = inspect.signature(factory).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        # A factory that does not take input_shape (torchvision's resnet18) gets only what it takes.
        offered = {k: v for k, v in offered.items() if takes_any or k in params}
    except (TypeError, ValueError):
        pass
    try:
        model = factory(**offered, **kwargs)
    except Exception as err:
        raise ConfigError(f"model.factory={target!r} failed when called with {offered} and model.kwargs="
                          f"{kwargs}: {type(err).__name__}: {err}", key="model.factory") from None
    if not isinstance(model, nn.Module):
        raise ConfigError(f"model.factory={target!r} returned {type(model).__name__}, not a "
                          "torch.nn.Module", key="model.factory")
    if model_cfg.get("weights"):
        _load_weights(model, str(model_cfg["weights"]))
    return model


def check_custom(model_cfg: Mapping[str, Any], input_shape: tuple[int, ...] | None = None,
                 num_classes: int | None = None) -> None:
    """Refuse a custom model before any engine: it imports, builds and maps one batch to logits."""
    resolve_factory(model_cfg)
    if input_shape is None or num_classes is None:
        return
    model = build_custom(model_cfg, input_shape, num_classes)
    batch = torch.zeros((2, *input_shape))
    try:
        with torch.no_grad():
            logits = model.eval()(batch)
    except Exception as err:
        raise ConfigError(f"model.factory={model_cfg['factory']!r}: a forward pass on a batch of shape "
                          f"{tuple(batch.shape)} (the task's inputs) failed: {type(err).__name__}: {err}",
                          key="model.factory") from None
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"model.factory={model_cfg['factory']!r}: the model maps a batch of "
                          f"{tuple(batch.shape)} to {shape}, not to logits of shape (2, {num_classes}) "
                          "(batch, task classes)", key="model.factory")


def _load_weights(model: nn.Module, path: str) -> None:
    state = _state_dict(path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ConfigError(f"model.weights={path!r} does not fit the model: {str(err).splitlines()[0]} "
                          f"{' '.join(str(err).split())[:300]}", key="model.weights") from None


@functools.lru_cache(maxsize=2)
def _state_dict(path: str) -> dict[str, torch.Tensor]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(f"model.weights={path!r}: no such file", key="model.weights")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"model.weights={path!r}: not a state dict saved by torch.save ({type(err).__name__}: "
                          f"{err})", key="model.weights") from None
    if not isinstance(state, dict):
        raise ConfigError(f"model.weights={path!r} holds a {type(state).__name__}, not a state dict "
                          "(save model.state_dict())", key="model.weights")
    return state
