"""Small ResNet (He et al., 2016): a 3x3 stem and stages of BasicBlocks, for 8x8 to 28x28 images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from models.base import Classifier, image_shape
from models.config import check_choice, check_positive

NORMS = ("batch", "group", "none")


@dataclass(frozen=True)
class ResNetConfig:
    widths: tuple[int, ...] = (16, 32, 64)  # one stage per entry; stages after the first halve the size
    blocks: int = 1                         # BasicBlocks per stage
    norm: str = "batch"  # group norm suits non-IID federated training (Hsieh et al., 2020)
    groups: int = 8      # groups of GroupNorm; every width must be a multiple
    bias: bool = True    # the head's bias, and the convs' when norm is none

    def __post_init__(self) -> None:
        check_positive("widths", self.widths, allow_empty=False)
        check_positive("blocks", self.blocks)
        check_choice("norm", self.norm, NORMS)
        check_positive("groups", self.groups)
        if self.norm == "group" and any(w % self.groups for w in self.widths):
            raise ValueError(f"model.widths {list(self.widths)} must be multiples of model.groups "
                             f"({self.groups}) with norm=group")


def _norm(cfg: ResNetConfig, channels: int) -> nn.Module:
    if cfg.norm == "batch":
        return nn.BatchNorm2d(channels)
    if cfg.norm == "group":
        return nn.GroupNorm(cfg.groups, channels)
    return nn.Identity()


def _conv(cfg: ResNetConfig, cin: int, cout: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    # A conv followed by a norm layer has its bias absorbed by the norm's shift.
    return nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2,
                     bias=cfg.norm == "none" and cfg.bias)


class BasicBlock(nn.Module):
    def __init__(self, cfg: ResNetConfig, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = _conv(cfg, cin, cout, 3, stride)
        self.norm1 = _norm(cfg, cout)
        self.conv2 = _conv(cfg, cout, cout, 3)
        self.norm2 = _norm(cfg, cout)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cfg, cin, cout, 1, stride), _norm(cfg, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet(Classifier):
    def __init__(self, cfg: ResNetConfig, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__()
        c, _, _ = image_shape(input_shape, "resnet")  # any size: padded stride-2 convs stop at 1x1
        # No stride or max-pool in the stem: inputs are already small.
        self.stem = nn.Sequential(_conv(cfg, c, cfg.widths[0], 3), _norm(cfg, cfg.widths[0]), nn.ReLU())
        blocks: list[nn.Module] = []
        cin = cfg.widths[0]
        for i, width in enumerate(cfg.widths):
            for j in range(cfg.blocks):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(BasicBlock(cfg, cin, width, stride))
                cin = width
        self.stages = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(cin, num_classes, bias=cfg.bias)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.stages(self.stem(x)))
