"""Small CNN (conv-ReLU-pool stages, then one hidden Linear) for 8x8 to 28x28 images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import Classifier, image_shape
from models.config import check_positive


@dataclass(frozen=True)
class CNNConfig:
    channels: tuple[int, ...] = (32, 64)  # one conv + 2x2 max-pool stage per entry
    fc: int = 128                         # width of the hidden Linear (the features)
    pool: int = 4                         # spatial size, at most, of the last feature map
    bias: bool = True

    def __post_init__(self) -> None:
        check_positive("channels", self.channels, allow_empty=False)
        check_positive("fc", self.fc)
        check_positive("pool", self.pool)


class CNN(Classifier):
    def __init__(self, cfg: CNNConfig, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        c, h, w = image_shape(input_shape, "cnn")
        side = min(h, w) >> len(cfg.channels)
        if side < 1:
            raise ValueError(
                f"model.channels has {len(cfg.channels)} pooling stages, too many for "
                f"{h}x{w} inputs; use at most {min(h, w).bit_length() - 1}"
            )
        layers: list[nn.Module] = []
        for out in cfg.channels:
            layers += [nn.Conv2d(c, out, 3, padding=1, bias=cfg.bias), nn.ReLU(), nn.MaxPool2d(2)]
            c = out
        # Adaptive pooling gives one Linear size for 28x28 (7x7 -> 4x4) while small inputs
        # (8x8 -> 2x2) are kept as they are rather than upsampled.
        pooled = min(cfg.pool, side)
        layers += [nn.AdaptiveAvgPool2d(pooled), nn.Flatten(),
                   nn.Linear(c * pooled * pooled, cfg.fc, bias=cfg.bias), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(cfg.fc, num_classes, bias=cfg.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
