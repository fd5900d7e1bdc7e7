"""Image-text models for multimodal FL: towers into a shared, L2-normalised embedding space.

The server model has both towers (the spine's small ResNet and a transformer text encoder); a
client model has the towers of its modalities only (a small CNN, an embedding bag or a tiny
transformer), each with a projection head into the shared dimension, plus a cosine classifier for
its private task. Towers are specified by small dicts (the strategy's config), so the server never
needs a client's weights or even its architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.cnn import CNN, CNNConfig
from models.resnet import ResNet, ResNetConfig
from models.text import TEXT_ENCODERS, build_text_encoder

IMAGE_ENCODERS = ("resnet", "cnn")


@dataclass(frozen=True)
class ImageSpec:
    """An image tower: `resnet` (widths, blocks, norm) or `cnn` (channels, fc)."""

    kind: str = "resnet"
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 1
    norm: str = "batch"
    channels: tuple[int, ...] = (16, 32)
    fc: int = 64

    def __post_init__(self) -> None:
        if self.kind not in IMAGE_ENCODERS:
            raise ValueError(f"image encoder kind {self.kind!r}; valid choices: {', '.join(IMAGE_ENCODERS)}")


@dataclass(frozen=True)
class TextSpec:
    """A text tower: `transformer` (dim, depth, heads) or `bag` (dim, hidden)."""

    kind: str = "transformer"
    dim: int = 64
    depth: int = 2
    heads: int = 4
    hidden: int = 128

    def __post_init__(self) -> None:
        if self.kind not in TEXT_ENCODERS:
            raise ValueError(f"text encoder kind {self.kind!r}; valid choices: {', '.join(TEXT_ENCODERS)}")


def _spec(cls: type, value: Mapping[str, Any] | None, where: str) -> Any:
    if value is None:
        return None
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]} is not a key of a {cls.__name__}; valid keys: {', '.join(sorted(names))}")
    kwargs = {k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in value.items()}
    return cls(**kwargs)


def image_spec(value: Mapping[str, Any] | None, where: str = "image") -> ImageSpec | None:
    return _spec(ImageSpec, value, where)


def text_spec(value: Mapping[str, Any] | None, where: str = "text") -> TextSpec | None:
    return _spec(TextSpec, value, where)


class ImageTower(nn.Module):
    """A spine backbone's features, then a projection head to `embed_dim`."""

    def __init__(self, spec: ImageSpec, input_shape: tuple[int, ...], embed_dim: int) -> None:
        super().__init__()
        if spec.kind == "resnet":
            backbone: nn.Module = ResNet(ResNetConfig(widths=spec.widths, blocks=spec.blocks, norm=spec.norm),
                                         input_shape, 1)
            width = spec.widths[-1]
        else:
            backbone = CNN(CNNConfig(channels=spec.channels, fc=spec.fc), input_shape, 1)
            width = spec.fc
        backbone.head = nn.Identity()  # type: ignore[assignment]  # features only
        self.backbone = backbone
        self.proj = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.backbone.features(x))


class TextTower(nn.Module):
    """A text encoder, then a projection head to `embed_dim`."""

    def __init__(self, spec: TextSpec, vocab_size: int, embed_dim: int, max_len: int) -> None:
        super().__init__()
        self.encoder = build_text_encoder(spec.kind, vocab_size, dim=spec.dim, depth=spec.depth,
                                          heads=spec.heads, hidden=spec.hidden, max_len=max_len)
        width = int(self.encoder.out_dim)  # type: ignore[arg-type]
        self.proj = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, embed_dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.proj(self.encoder(tokens))


class ImageTextModel(nn.Module):
    """Image and/or text towers into one L2-normalised space; optional cosine classifier.

    `encode_image(x)` and `encode_text(tokens)` return unit vectors (n, embed_dim); `classify(z)`
    gives `scale * cos(z, class weight)` logits for a client's private task.
    """

    def __init__(self, *, embed_dim: int, input_shape: tuple[int, ...], vocab_size: int, max_len: int = 16,
                 image: ImageSpec | None = None, text: TextSpec | None = None, num_classes: int = 0,
                 class_scale: float = 10.0) -> None:
        super().__init__()
        if image is None and text is None:
            raise ValueError("a model needs an image tower, a text tower or both")
        self.embed_dim = int(embed_dim)
        self.image = ImageTower(image, tuple(input_shape), embed_dim) if image is not None else None
        self.text = TextTower(text, vocab_size, embed_dim, max_len) if text is not None else None
        self.classifier = nn.Linear(embed_dim, num_classes, bias=False) if num_classes else None
        self.class_scale = float(class_scale)

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m, tower in (("img", self.image), ("txt", self.text)) if tower is not None)

    def encode_image(self, x: torch.Tensor) -> torch.Tensor:
        assert self.image is not None, "this model has no image tower"
        return F.normalize(self.image(x).float(), dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        assert self.text is not None, "this model has no text tower"
        return F.normalize(self.text(tokens).float(), dim=-1)

    def encode(self, modality: str, inputs: torch.Tensor) -> torch.Tensor:
        return self.encode_image(inputs) if modality == "img" else self.encode_text(inputs)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        assert self.classifier is not None, "this model has no classifier"
        return self.class_scale * z @ F.normalize(self.classifier.weight.float(), dim=-1).T

    def forward(self, images: torch.Tensor | None = None,
                tokens: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        if images is not None:
            out["img"] = self.encode_image(images)
        if tokens is not None:
            out["txt"] = self.encode_text(tokens)
        return out


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
