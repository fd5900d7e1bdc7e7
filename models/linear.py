"""A single Linear layer on flattened inputs: a classifier head on frozen features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import Classifier, flat_size


@dataclass(frozen=True)
class LinearConfig:
    bias: bool = True


class LinearModel(Classifier):
    def __init__(self, cfg: LinearConfig, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        self.head = nn.Linear(flat_size(input_shape), num_classes, bias=cfg.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)
