"""A small network for corolla's model=custom: any function returning an nn.Module will do."""

from __future__ import annotations

import math

from torch import nn


def make_net(input_shape: tuple[int, ...], num_classes: int, width: int = 64, dropout: float = 0.0) -> nn.Module:
    """corolla calls this with the task's input shape ((C, H, W) or (d,)), its classes and model.kwargs.

    Return logits of shape (batch, num_classes). Weight-based strategies (fedavg, fedprox, fot)
    average every tensor of the state dict; FOT projects the Linear and Conv2d weights.
    """
    if len(input_shape) == 3:  # images: one conv block, then a Linear head
        channels = input_shape[0]
        return nn.Sequential(
            nn.Conv2d(channels, width // 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(width // 2 * 16, num_classes),
        )
    return nn.Sequential(nn.Flatten(), nn.Linear(math.prod(input_shape), width), nn.ReLU(),
                         nn.Dropout(dropout), nn.Linear(width, num_classes))
