"""Multi-layer perceptron on flattened inputs (ReLU hidden layers, optionally bias-free)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import Classifier, flat_size
from models.config import check_positive


@dataclass(frozen=True)
class MLPConfig:
    hidden: tuple[int, ...] = (200, 200)
    bias: bool = True  # bias-free layers keep every update inside the weights' row space (FOT)

    def __post_init__(self) -> None:
        check_positive("hidden", self.hidden)


class MLP(Classifier):
    def __init__(self, cfg: MLPConfig, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = flat_size(input_shape)
        for h in cfg.hidden:
            layers += [nn.Linear(width, h, bias=cfg.bias), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes, bias=cfg.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
