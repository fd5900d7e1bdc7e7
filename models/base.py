"""The shape every corolla model has: `features(x)` (penultimate representation) then `head`."""

from __future__ import annotations

import math

import torch
from torch import nn


class Classifier(nn.Module):
    """A backbone ending in a Linear `head`; methods train heads or read embeddings through this."""

    head: nn.Linear

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate representation, shape (n, head.in_features)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def flat_size(input_shape: tuple[int, ...]) -> int:
    """Number of input features once an example is flattened."""
    return math.prod(input_shape)


def image_shape(input_shape: tuple[int, ...], model: str) -> tuple[int, int, int]:
    """(channels, height, width) of an image input, or ValueError for a flat one."""
    if len(input_shape) != 3:
        raise ValueError(
            f"model '{model}' needs image inputs (channels, height, width), got input shape "
            f"{tuple(input_shape)}; use model=mlp or model=linear for flat features"
        )
    c, h, w = input_shape
    return int(c), int(h), int(w)
